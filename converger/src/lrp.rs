//! LRP convergence (bbs.md 6.2): [`LrpConvergence::tick`] reads the cells and one snapshot,
//! asks the pure [`plan::plan`] what to do, and lets the executor apply it in batches.
//!
//! - [`plan`]: the rules, as a pure function with case-by-case tests.
//! - `execute`: the thin executor (set-based deletes, per-index writes `workers` at a time, one
//!   auction call, parallel rep stops).
//! - [`recovery`]: asking the live cells what they run before acting on a database that may
//!   have forgotten it, and rebuilding lost desired LRPs from their reports (issue 19).

mod execute;
pub mod plan;
pub mod recovery;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use db::sql::convergence::LrpSnapshot;
use futures::{StreamExt, stream};
use proto::models::{CellId, DesiredLrp, ProcessGuid};
use tokio::time::Instant;

use self::recovery::{Asked, CellReport, CellReports, SeenCounts};

use crate::cells::{CellBaseline, CellSet, LostCells, read_cells};
use crate::effects::Effects;
use crate::error::{Error, Result};
use crate::report::LrpTickReport;
use crate::{Clock, ConvergenceConfig, StoreProvider, config, metrics};

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
    /// The row counts of the last successful pass of this leadership term (`None` at its start
    /// and after a failed pass: the next pass then asks the cells, see [`recovery`]).
    seen: Option<SeenCounts>,
    /// When the current hold began (see [`recovery::CellReports::held_since`]).
    held_since: Option<i64>,
    /// What the cells last answered without contradicting the database (see [`recovery::Asked`]).
    asked: Option<Asked>,
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
        Self {
            store,
            effects,
            clock,
            config,
            lost,
            baseline: CellBaseline::default(),
            analyzed_rows: None,
            seen: None,
            held_since: None,
            asked: None,
        }
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
            self.seen = None;
            self.held_since = None;
            self.asked = None;
            return Err(Error::NotLeading);
        };
        let now_ns = self.clock.now_ns();
        let cells = read_cells(&store, &self.lost, &self.baseline, &self.config).await;
        let cells_read = started.elapsed();
        let snapshot = match store.lrp_convergence_snapshot(now_ns).await {
            Ok(snapshot) => snapshot,
            Err(source) => {
                metrics::lrp_pass_failed();
                self.seen = None;
                return Err(Error::Store { step: "snapshot read", source });
            }
        };
        let snapshot_read = started.elapsed();
        let (plan, recovered) = self.plan(&snapshot, &cells, now_ns).await;
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
            hold: plan.hold.clone(),
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
            recovered: &recovered,
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
                self.seen = Some(SeenCounts { desired: snapshot.desired.len(), actual: snapshot.actual.len() });
                metrics::record_lrp(&report, &snapshot.fresh_domains);
                Ok(report)
            }
            Err(e) => {
                self.seen = None;
                metrics::lrp_pass_failed();
                Err(e)
            }
        }
    }

    /// The pass's plan: from the database alone, or, when [`recovery::should_ask`] says so and
    /// the live cells answer, with their reports (the hold). Also returns the desired LRPs the
    /// cells reported for process guids the database lacks.
    async fn plan(
        &mut self,
        snapshot: &LrpSnapshot,
        cells: &CellSet,
        now_ns: i64,
    ) -> (plan::LrpPlan, BTreeMap<ProcessGuid, DesiredLrp>) {
        let unreported = plan::plan(snapshot, cells, now_ns, &self.config);
        let counts = SeenCounts { desired: snapshot.desired.len(), actual: snapshot.actual.len() };
        let usable = cells.read_error.is_none() && !cells.live.is_empty();
        let reason = recovery::should_ask(
            self.seen,
            counts,
            &unreported,
            self.asked.as_ref(),
            &cells.live,
            self.config.max_cell_loss_fraction,
        );
        let Some(reason) = reason.filter(|_| usable) else {
            self.held_since = None;
            // Not asked because nothing acts, or only on what the cells answered for: keep what
            // still acts (forgetting what no longer does).
            let acting = Asked::of(&unreported, &cells.live);
            self.asked = (reason.is_none() && !acting.is_empty()).then_some(acting);
            return (unreported, BTreeMap::new());
        };
        self.asked = None;
        let Some((mut reports, recovered)) = self.ask_cells(cells, snapshot).await else {
            // The cells have no reports to give (a runtime without them): nothing to ask again.
            self.held_since = None;
            self.asked = Some(Asked::of(&unreported, &cells.live));
            return (unreported, BTreeMap::new());
        };
        tracing::debug!(
            ?reason,
            running = reports.running.len(),
            unanswered = reports.unanswered.len(),
            "asked the cells what they run"
        );
        // A hold that starts now first: if nothing is held back, no hold runs.
        reports.held_since = None;
        let fresh = plan::plan_with(snapshot, cells, Some(&reports), now_ns, &self.config);
        let Some(hold) = fresh.hold.clone() else {
            self.held_since = None;
            if reports.unanswered.is_empty() {
                self.asked = Some(Asked::of(&unreported, &cells.live));
            }
            return (fresh, recovered);
        };
        let since = *self.held_since.get_or_insert(now_ns);
        reports.held_since = Some(since);
        if reports.holding(now_ns, config::nanos(self.config.cell_sync_grace)) {
            self.request_syncs(&fresh, &reports).await;
            tracing::info!(
                unanswered = hold.unanswered,
                adopting = hold.adopting,
                orphans = hold.orphans,
                creations = hold.creations,
                "lrp convergence holds back what the cells' reports contradict"
            );
            return (fresh, recovered);
        }
        tracing::warn!(
            held_for = ?std::time::Duration::from_nanos(u64::try_from(now_ns.saturating_sub(since)).unwrap_or(0)),
            "the cells' grace period is over; converging from the database"
        );
        (plan::plan_with(snapshot, cells, Some(&reports), now_ns, &self.config), recovered)
    }

    /// Asks the cells running instances the hold leaves for re-adoption to bulk sync at once
    /// (their records are gone; a rep re-creates them on its next sync), a failure only logged.
    async fn request_syncs(&self, plan: &plan::LrpPlan, reports: &CellReports) {
        let mut cells: BTreeSet<&CellId> = BTreeSet::new();
        for action in &plan.withheld {
            let held: Vec<(&ProcessGuid, i32)> = match action {
                plan::LrpAction::CreateMissing { process_guid, indices, .. } => {
                    indices.iter().map(|i| (process_guid, *i)).collect()
                }
                plan::LrpAction::AuctionStaleUnclaimed { process_guid, index } => vec![(process_guid, *index)],
                _ => Vec::new(),
            };
            cells.extend(held.into_iter().filter_map(|(g, i)| reports.running.get(&(g.clone(), i))));
        }
        // Boxed before they go into the stream, as the executor's calls are: the pass future
        // must be Send.
        let effects = &*self.effects;
        let calls: Vec<futures::future::BoxFuture<'_, ()>> = cells
            .into_iter()
            .map(|cell| -> futures::future::BoxFuture<'_, ()> {
                Box::pin(async move {
                    if let Err(e) = effects.request_cell_sync(cell).await {
                        tracing::warn!(cell_id = %cell, error = %e, "cannot ask the cell to sync; its polling will");
                    }
                })
            })
            .collect();
        stream::iter(calls).buffer_unordered(self.config.workers.max(1)).collect::<Vec<()>>().await;
    }

    /// Asks every live cell what it runs, then the cells running instances of process guids the
    /// database has no desired LRP for for their run info. `None` when the effects have no
    /// reports to give.
    async fn ask_cells(
        &self,
        cells: &CellSet,
        snapshot: &LrpSnapshot,
    ) -> Option<(CellReports, BTreeMap<ProcessGuid, DesiredLrp>)> {
        let known: BTreeSet<&ProcessGuid> = snapshot.desired.iter().map(|d| &d.process_guid).collect();
        let first = self.ask(cells.live.iter().map(|c| (c.clone(), Vec::new())).collect()).await?;
        let (mut reports, _) = recovery::collect(first, &known, None);
        let unknown = recovery::unknown_guids(&reports, &known);
        if unknown.is_empty() {
            return Some((reports, BTreeMap::new()));
        }
        let second = self.ask(unknown.into_iter().collect()).await.unwrap_or_default();
        let (more, recovered) = recovery::collect(second, &known, None);
        reports.recoverable = more.recoverable;
        Some((reports, recovered))
    }

    /// One round of [`crate::Effects::cell_report`] calls, `workers` at a time; `None` when no
    /// cell has reports to give.
    async fn ask(&self, asks: Vec<(CellId, Vec<ProcessGuid>)>) -> Option<Vec<(CellId, Option<CellReport>)>> {
        let effects = &*self.effects;
        let calls = asks.into_iter().map(|(cell, guids)| async move {
            let answer = effects.cell_report(&cell, &guids).await;
            (cell, answer)
        });
        let answers: Vec<_> = stream::iter(calls).buffer_unordered(self.config.workers.max(1)).collect().await;
        if answers.iter().all(|(_, a)| matches!(a, Ok(None))) {
            return None;
        }
        let answers = answers
            .into_iter()
            .map(|(cell, answer)| match answer {
                Ok(report) => (cell, Some(report.unwrap_or_default())),
                Err(e) => {
                    tracing::warn!(cell_id = %cell, error = %e, "the cell did not say what it runs");
                    (cell, None)
                }
            })
            .collect();
        Some(answers)
    }
}
