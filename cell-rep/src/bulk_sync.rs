//! Bulk sync (reference 2.6, `harmonizer/bulker.go`, `generator/generator.go`): a level-triggered
//! pass comparing the executor's containers with the BBS's actual LRPs and tasks for this cell.
//!
//! One [`BulkSync::tick`]:
//! 1. lists the BBS's actual LRPs and tasks on this cell and the executor's containers (a failed
//!    list skips the pass);
//! 2. runs the container operation of every container (the generator's state machine), which
//!    re-claims, re-starts (re-creating RUNNING records after a BBS data loss), reports crashes
//!    and completions that were missed, stops containers the BBS gave to another instance, and,
//!    while evacuating, asks again whether each evacuated instance's replacement runs;
//! 3. removes actual LRPs of this cell that have no container (`RemoveActualLRP`, or
//!    `RemoveEvacuatingActualLRP` for evacuating records) so the converger replaces them;
//! 4. fails tasks running on this cell that have no container.
//!
//! Each removal re-checks that the container is still absent just before acting, since a
//! `Perform` may have reserved it after the listing. [`run`] drives `tick` every polling
//! interval (the evacuation interval once the cell evacuates, starting at once).

use std::sync::Arc;
use std::time::Duration;

use proto::error::ErrorCode;
use proto::models::{Presence, TaskState};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::bbs_client::{BbsError, TaskCompletion};
use crate::generator::Generator;

/// The failure reason of a task whose container vanished.
pub const TASK_CONTAINER_MISSING: &str = "task container does not exist";

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkSyncReport {
    /// Containers whose operation ran.
    pub containers: usize,
    /// Ordinary actual LRPs removed because no container backs them.
    pub lrps_removed: usize,
    /// Evacuating actual LRPs removed because no container backs them.
    pub evacuating_removed: usize,
    /// Tasks failed because no container backs them.
    pub tasks_failed: usize,
}

/// The bulk sync of one cell.
#[derive(Debug, Clone)]
pub struct BulkSync {
    generator: Arc<Generator>,
}

impl BulkSync {
    /// A bulk sync driving `generator`'s operations.
    pub fn new(generator: Arc<Generator>) -> Self {
        Self { generator }
    }

    /// One pass; an error means a list call failed and nothing was done.
    pub async fn tick(&self) -> Result<BulkSyncReport, BbsError> {
        let started = Instant::now();
        let result = self.sync().await;
        let ctx = self.generator.context();
        crate::metrics::record_bulk_sync(ctx.cell.cell_id.as_str(), started.elapsed(), result.is_ok());
        match &result {
            Ok(report) => {
                tracing::debug!(cell_id = %ctx.cell.cell_id, ?report, elapsed = ?started.elapsed(), "bulk sync done")
            }
            Err(e) => tracing::warn!(cell_id = %ctx.cell.cell_id, error = %e, "bulk sync skipped"),
        }
        result
    }

    async fn sync(&self) -> Result<BulkSyncReport, BbsError> {
        let ctx = self.generator.context();
        let cell_id = ctx.cell.cell_id.as_str();
        let (lrps, tasks) = tokio::join!(ctx.bbs.actual_lrps_by_cell(cell_id), ctx.bbs.tasks_by_cell(cell_id));
        let (lrps, tasks) = (lrps?, tasks?);
        let containers = ctx.executor.list();
        let mut report = BulkSyncReport { containers: containers.len(), ..BulkSyncReport::default() };

        let operations: Vec<_> = containers.iter().map(|c| self.generator.enqueue(&c.guid)).collect();
        futures::future::join_all(operations).await;

        for lrp in lrps {
            let Some(instance) = lrp.instance_key.clone() else { continue };
            if instance.cell_id.as_str() != cell_id || ctx.executor.get(instance.instance_guid.as_str()).is_some() {
                continue;
            }
            match lrp.presence {
                Presence::Evacuating => {
                    tracing::info!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, instance_guid = %instance.instance_guid, "removing an evacuating actual lrp with no container");
                    match ctx.bbs.remove_evacuating_actual_lrp(&lrp.key, &instance).await {
                        Ok(()) => report.evacuating_removed += 1,
                        Err(e) => {
                            tracing::warn!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot remove the evacuating actual lrp")
                        }
                    }
                }
                // A suspect record is the BBS's to resolve: it promotes it back when this cell's
                // presence returns (and the next pass removes it), or retires it once a
                // replacement runs.
                Presence::Suspect => {}
                Presence::Ordinary => {
                    tracing::info!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, instance_guid = %instance.instance_guid, state = lrp.state.as_str(), "removing an actual lrp with no container");
                    match ctx.bbs.remove_actual_lrp(&lrp.key, &instance).await {
                        Ok(()) => report.lrps_removed += 1,
                        Err(e) if e.is(ErrorCode::ResourceNotFound) => {}
                        Err(e) => {
                            tracing::warn!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot remove the actual lrp")
                        }
                    }
                }
            }
        }

        for task in tasks {
            let guid = task.task_guid.as_str();
            if task.state != TaskState::Running || ctx.executor.get(guid).is_some() {
                continue;
            }
            tracing::info!(cell_id, task_guid = %guid, "failing a task with no container");
            let completion = TaskCompletion {
                task_guid: guid.to_owned(),
                cell_id: cell_id.to_owned(),
                failed: true,
                failure_reason: TASK_CONTAINER_MISSING.to_owned(),
                result: String::new(),
            };
            match ctx.bbs.complete_task(&completion).await {
                Ok(()) => report.tasks_failed += 1,
                Err(e) => tracing::warn!(cell_id, task_guid = %guid, error = %e, "cannot fail the task"),
            }
        }
        Ok(report)
    }
}

/// Runs `sync.tick()` every `interval` (every `evacuation_interval` once the cell evacuates,
/// starting with an immediate pass), and whenever `kick` is notified, until `shutdown`.
pub async fn run(
    sync: BulkSync,
    interval: Duration,
    evacuation_interval: Duration,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let ctx = Arc::clone(sync.generator.context());
    let mut evacuation = ctx.evacuation.subscribe();
    let mut evacuating = *evacuation.borrow_and_update();
    let mut ticker = new_interval(if evacuating { evacuation_interval } else { interval });
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            () = kick.notified() => {}
            changed = evacuation.changed(), if !evacuating => {
                if changed.is_err() {
                    return;
                }
                evacuating = *evacuation.borrow_and_update();
                if evacuating {
                    tracing::info!(cell_id = %ctx.cell.cell_id, ?evacuation_interval, "evacuating; syncing now and then every evacuation interval");
                    ticker = new_interval(evacuation_interval);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sync.tick() => {}
        }
    }
}

fn new_interval(period: Duration) -> tokio::time::Interval {
    // The first tick of an interval fires at once; skip it so passes start one period in
    // (the generator handles events meanwhile). Evacuation starts its own pass explicitly.
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}
