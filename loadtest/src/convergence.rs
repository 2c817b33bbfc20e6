//! The convergence pass timed on the seeded data: `converger::LrpConvergence::tick` on a store
//! over the BBS's database, with effects that do nothing (on the seeded data every instance
//! runs on a live cell, so a correct pass plans nothing and writes nothing). Recorded as the
//! whole pass (`ConvergenceLRPPass`) and as its snapshot read (`ConvergenceGather`, what Diego's
//! "BBS convergence gathering" figure measured).

use std::sync::Arc;

use bbs::clock::{Clock, SystemClock};
use converger::{
    ConvergenceConfig, EffectError, Effects, KeyGuard, LockKey, LostCells, LrpConvergence, LrpStartRequest,
    StopInstance, TaskStartRequest,
};
use db::Store;
use db::sql::actual_lrps::IndexChange;
use futures::future::BoxFuture;
use proto::models::{ActualLrp, Task};
use serde::Serialize;
use tokio::time::Instant;

use crate::stats::Recorder;

/// Operation names of the convergence phase.
pub mod ops {
    /// One whole LRP convergence pass (cells, snapshot, plan, execute).
    pub const PASS: &str = "ConvergenceLRPPass";
    /// The pass's snapshot read (every desired and actual LRP, the fresh domains).
    pub const GATHER: &str = "ConvergenceGather";
}

/// Effects that do nothing: the benchmark has no auctioneer, reps or subscribers to tell.
struct NoEffects;

impl Effects for NoEffects {
    fn request_lrp_auctions(&self, _: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async { Ok(()) })
    }
    fn request_task_auctions(&self, _: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async { Ok(()) })
    }
    fn stop_instance(&self, _: StopInstance) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async { Ok(()) })
    }
    fn retry_callback(&self, _: Task) {}
    fn publish_index_change(&self, _: &IndexChange<()>) {}
    fn publish_removed(&self, _: &ActualLrp) {}
    fn publish_task_change(&self, _: &Task, _: Option<&Task>) {}
    fn lock_key<'a>(&'a self, _: LockKey<'a>) -> BoxFuture<'a, KeyGuard<'a>> {
        Box::pin(async { Box::new(()) as KeyGuard<'a> })
    }
}

/// What the passes found (from the last pass's report).
#[derive(Debug, Clone, Serialize)]
pub struct ConvergenceReport {
    /// Passes run.
    pub passes: usize,
    /// The last pass's phases, in seconds: cells, snapshot, plan, writes, calls.
    pub phases_s: [f64; 5],
    /// Instances the last pass would have created, restarted, retired or auctioned again (all
    /// zero on correctly seeded data).
    pub actions: u64,
    /// The last pass's report, as its debug text.
    pub last: String,
}

/// Runs `passes` LRP convergence passes on `store` and records their durations.
pub async fn run(store: &Store, passes: usize, recorder: &Recorder) -> Option<ConvergenceReport> {
    let clock: Arc<dyn converger::Clock> = Arc::new(|| SystemClock.now_ns());
    let mut convergence = LrpConvergence::new(
        converger::fixed_store(store.clone()),
        Arc::new(NoEffects),
        clock,
        ConvergenceConfig::default(),
        LostCells::default(),
    );
    let mut report = None;
    for _ in 0..passes {
        let started = Instant::now();
        match convergence.tick().await {
            Ok(tick) => {
                recorder.record(ops::PASS, started.elapsed());
                recorder.record(ops::GATHER, tick.phases.snapshot);
                let p = &tick.phases;
                let actions = (tick.created
                    + tick.stale_auctioned
                    + tick.restarted
                    + tick.suspected
                    + tick.unclaimed
                    + tick.promoted
                    + tick.stops
                    + tick.starts) as u64
                    + tick.retired_deleted;
                report = Some(ConvergenceReport {
                    passes,
                    phases_s: [p.cells, p.snapshot, p.plan, p.writes, p.calls].map(|d| d.as_secs_f64()),
                    actions,
                    last: format!("{tick:?}"),
                });
            }
            Err(e) => recorder.fail(ops::PASS, e.to_string()),
        }
    }
    report
}
