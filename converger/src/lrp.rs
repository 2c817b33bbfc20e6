//! LRP convergence (bbs.md 6.2): [`LrpConvergence::tick`] reads the cells and one snapshot,
//! asks the pure [`plan::plan`] what to do, and lets the executor apply it in batches.
//!
//! - [`plan`]: the rules, as a pure function with case-by-case tests.
//! - `execute`: the thin executor (set-based deletes, per-index writes `workers` at a time, one
//!   auction call, parallel rep stops).

mod execute;
pub mod plan;

use std::sync::Arc;

use tokio::time::Instant;

use crate::cells::{CellBaseline, LostCells, read_cells};
use crate::effects::Effects;
use crate::error::{Error, Result};
use crate::report::LrpTickReport;
use crate::{Clock, ConvergenceConfig, StoreProvider, metrics};

/// The LRP half of convergence. One value per BBS process; [`LrpConvergence::tick`] takes
/// `&mut self`, so passes of one value never overlap.
pub struct LrpConvergence {
    store: StoreProvider,
    effects: Arc<dyn Effects>,
    clock: Arc<dyn Clock>,
    config: ConvergenceConfig,
    lost: LostCells,
    baseline: CellBaseline,
    /// Desired plus actual LRP rows when this value last refreshed the planner's statistics.
    analyzed_rows: Option<usize>,
}

impl LrpConvergence {
    /// LRP convergence writing through the store `store` provides, acting through `effects`,
    /// reading wall time from `clock`, with lost cells reported into `lost`.
    pub fn new(
        store: StoreProvider,
        effects: Arc<dyn Effects>,
        clock: Arc<dyn Clock>,
        config: ConvergenceConfig,
        lost: LostCells,
    ) -> Self {
        Self { store, effects, clock, config, lost, baseline: CellBaseline::default(), analyzed_rows: None }
    }

    /// The cell count the next pass compares against.
    pub fn baseline(&self) -> &CellBaseline {
        &self.baseline
    }

    /// One pass: read the cell presences and the snapshot, plan, execute, record metrics.
    ///
    /// Fails with [`Error::NotLeading`] when the provider has no store (the baseline is then
    /// forgotten: a new leadership term starts without one), and with [`Error::Store`] when the
    /// snapshot cannot be read or a write was fenced. Single failed writes and calls are counted
    /// in the report and left to the next pass.
    pub async fn tick(&mut self) -> Result<LrpTickReport> {
        let started = Instant::now();
        let Some(store) = (self.store)() else {
            self.baseline = CellBaseline::default();
            return Err(Error::NotLeading);
        };
        let now_ns = self.clock.now_ns();
        let cells = read_cells(&store, &self.lost, &self.baseline, &self.config).await;
        let cells_read = started.elapsed();
        let snapshot = match store.lrp_convergence_snapshot(now_ns).await {
            Ok(snapshot) => snapshot,
            Err(source) => {
                metrics::lrp_pass_failed();
                return Err(Error::Store { step: "snapshot read", source });
            }
        };
        let snapshot_read = started.elapsed();
        let plan = plan::plan(&snapshot, &cells, now_ns, &self.config);
        let planned = started.elapsed();
        if let Some(reason) = &plan.guard {
            tracing::warn!(
                reason = %reason,
                guard = reason.label(),
                withheld = plan.withheld.len(),
                "lrp convergence withheld every destructive action"
            );
        }
        if self.baseline.advance(&cells, plan.guard.as_ref(), &self.config) {
            tracing::warn!(cells = cells.live.len(), "accepting the smaller cell set after repeated guarded passes");
        }

        let mut report = LrpTickReport {
            guard: plan.guard.clone(),
            withheld: plan.withheld.len(),
            counts: plan.counts.clone(),
            ..LrpTickReport::default()
        };
        report.phases.cells = cells_read;
        report.phases.snapshot = snapshot_read.saturating_sub(cells_read);
        report.phases.plan = planned.saturating_sub(snapshot_read);
        let executor = execute::Executor {
            store: &store,
            effects: &*self.effects,
            config: &self.config,
            cells: &cells,
            snapshot: &snapshot,
            now_ns,
        };
        let outcome = executor.run(&plan, &mut report).await;
        // The snapshot counts the rows the BBS's queries are planned over: refresh the planner's
        // statistics when they have grown or shrunk a lot (db::sql::statistics).
        let rows = snapshot.desired.len() + snapshot.actual.len();
        if db::sql::statistics::statistics_stale(self.analyzed_rows, rows) {
            match store.refresh_statistics().await {
                Ok(()) => self.analyzed_rows = Some(rows),
                Err(e) => tracing::warn!(error = %e, "could not refresh the database's statistics"),
            }
        }
        report.duration = started.elapsed();
        match outcome {
            Ok(()) => {
                metrics::record_lrp(&report, &snapshot.fresh_domains);
                Ok(report)
            }
            Err(e) => {
                metrics::lrp_pass_failed();
                Err(e)
            }
        }
    }
}
