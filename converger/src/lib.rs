//! Convergence: the loops that make diego-rs self-healing (docs/reference/bbs.md §6, issue 6).
//! The BBS leader runs them; this crate does not depend on the `bbs` crate.
//!
//! Layout (docs/architecture.md, "Deciding is separate from applying"):
//! - [`lrp`]: [`LrpConvergence::tick`] = read cells + one snapshot, pure [`lrp::plan::plan`], thin
//!   executor.
//! - [`task`]: [`TaskConvergence::tick`], likewise, with [`task::plan::plan`].
//! - [`cells`]: the cell set and the guard against empty or sharply shrunken cell sets.
//! - [`effects`]: the [`Effects`] trait, everything outside the store (auctions, rep stops,
//!   events, callbacks, key locks).
//! - [`driver`]: [`driver::run_every`], the interval + kick loop; [`spawn`] wires it all.
//! - [`report`], [`metrics`]: what a pass did, as a report, metrics and one summary log line.
//! - `testing` (feature `testing`): a recording [`Effects`] fake and a manual clock.
//!
//! # Wiring it into the BBS
//!
//! ```ignore
//! let handle = converger::spawn(
//!     // The fenced store while leading, None otherwise; asked once per pass, so a new
//!     // leadership term (new fence) is picked up by the next pass.
//!     Arc::new({ let l = leadership.clone(); move || l.writer().ok() }),
//!     Arc::new(BbsEffects { ctx: ctx.clone() }), // implements converger::Effects
//!     Arc::new({ let c = ctx.clock.clone(); move || c.now_ns() }),
//!     converger_config,                          // mapped from BbsConfig, validated
//!     stop.clone().cancelled_owned(),
//! );
//! // Fast lost-cell recovery: every expired presence the BBS takes is reported (which kicks).
//! for cell in lost_cells { handle.report_lost_cell(cell) }
//! // On becoming leader (and at start-up): handle.kick().
//! ```
//!
//! Passes while not leading are skipped (logged at debug). Both halves run concurrently in one
//! pass; passes never overlap.

pub mod cells;
pub mod config;
pub mod driver;
pub mod effects;
mod error;
pub mod lrp;
pub mod metrics;
pub mod report;
pub mod task;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::sync::Arc;

use db::Store;
use proto::models::CellId;
use tokio::sync::Notify;

pub use self::cells::{CellSet, GuardReason, LostCells};
pub use self::config::{ConfigError, ConvergenceConfig};
pub use self::effects::{EffectError, Effects, KeyGuard, LockKey, LrpStartRequest, StopInstance, TaskStartRequest};
pub use self::error::{Error, Result};
pub use self::lrp::LrpConvergence;
pub use self::report::{LrpTickReport, PassReport, TaskTickReport};
pub use self::task::TaskConvergence;

/// Wall-clock time in nanoseconds since the Unix epoch: the time stored in `since`,
/// `created_at` and friends (the service toolkit's one clock). Any `Fn() -> i64` is a clock.
pub use svc::clock::Clock;

/// Gives the store to converge with: the BBS's fenced store while it leads, `None` otherwise.
/// Called once per pass by each half.
pub type StoreProvider = Arc<dyn Fn() -> Option<Store> + Send + Sync>;

/// A provider that always gives `store` (tests, tools, benchmarks).
pub fn fixed_store(store: Store) -> StoreProvider {
    Arc::new(move || Some(store.clone()))
}

/// Both halves of convergence, run concurrently by [`Converger::tick`].
pub struct Converger {
    lrp: LrpConvergence,
    task: TaskConvergence,
}

impl Converger {
    /// Both halves over the same store, effects, clock, config and lost-cell set.
    pub fn new(
        store: StoreProvider,
        effects: Arc<dyn Effects>,
        clock: Arc<dyn Clock>,
        config: ConvergenceConfig,
        lost: LostCells,
    ) -> Self {
        Self {
            lrp: LrpConvergence::new(store.clone(), effects.clone(), clock.clone(), config.clone(), lost.clone()),
            task: TaskConvergence::new(store, effects, clock, config, lost),
        }
    }

    /// One pass: LRP and task convergence concurrently (as Diego runs them).
    pub async fn tick(&mut self) -> PassReport {
        let (lrp, task) = futures::join!(self.lrp.tick(), self.task.tick());
        PassReport { lrp, task }
    }
}

/// The running converger: kick it, report lost cells to it, wait for it to stop.
#[derive(Debug)]
pub struct ConvergerHandle {
    kick: Arc<Notify>,
    lost: LostCells,
    join: tokio::task::JoinHandle<()>,
}

impl ConvergerHandle {
    /// Runs a pass as soon as the current one (if any) finishes.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Records that `cell`'s presence expired (so the guard counts it as explained) and kicks.
    pub fn report_lost_cell(&self, cell: CellId) {
        self.lost.report(cell);
        self.kick();
    }

    /// Waits until the loop stopped (after shutdown, once the pass in flight finished).
    pub async fn join(self) {
        if let Err(e) = self.join.await {
            tracing::error!(error = %e, "the convergence loop ended abnormally");
        }
    }
}

/// Starts the convergence loop on the current tokio runtime: a pass at once, then every
/// `config.interval` and on every kick, until `shutdown` completes. Each pass logs one summary
/// line and records its metrics.
pub fn spawn(
    store: StoreProvider,
    effects: Arc<dyn Effects>,
    clock: Arc<dyn Clock>,
    config: ConvergenceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> ConvergerHandle {
    let kick = Arc::new(Notify::new());
    let lost = LostCells::default();
    let interval = config.interval;
    let mut converger = Converger::new(store, effects, clock, config, lost.clone());
    let notify = kick.clone();
    let join = tokio::spawn(async move {
        driver::run_every(interval, notify, shutdown, &mut converger, |c, trigger| {
            Box::pin(async move {
                tracing::debug!(?trigger, "convergence pass starting");
                c.tick().await.log();
            })
        })
        .await;
        tracing::info!("convergence stopped");
    });
    ConvergerHandle { kick, lost, join }
}
