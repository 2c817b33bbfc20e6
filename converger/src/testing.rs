//! Test doubles (feature `testing`): [`RecordingEffects`], an [`Effects`] that records every
//! call and can be told to fail, and [`ManualClock`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use db::sql::actual_lrps::IndexChange;
use futures::future::BoxFuture;
use proto::models::{ActualLrp, CellId, DesiredLrp, ProcessGuid, Task};

use crate::effects::{
    CellReport, EffectError, Effects, KeyGuard, LockKey, LrpStartRequest, StopInstance, TaskStartRequest,
};

/// Everything [`RecordingEffects`] saw, in call order per kind.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// Each LRP auction call.
    pub lrp_auctions: Vec<Vec<LrpStartRequest>>,
    /// Each task auction call.
    pub task_auctions: Vec<Vec<TaskStartRequest>>,
    /// Each rep stop.
    pub stops: Vec<StopInstance>,
    /// Each callback queued.
    pub callbacks: Vec<Task>,
    /// Each index change published.
    pub index_changes: Vec<IndexChange<()>>,
    /// Each removal published.
    pub removed: Vec<ActualLrp>,
    /// Each task change published.
    pub task_changes: Vec<(Task, Option<Task>)>,
    /// How many key locks were taken.
    pub locks: usize,
    /// Each cell report asked for: the cell and the process guids whose run info was asked.
    pub cell_reports: Vec<(CellId, Vec<ProcessGuid>)>,
    /// Each immediate bulk sync asked of a cell.
    pub cell_syncs: Vec<CellId>,
    /// Each recovered desired LRP published.
    pub recovered: Vec<DesiredLrp>,
}

impl Recorded {
    /// Every LRP start of every call, flattened to (process guid, index), sorted.
    pub fn started(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .lrp_auctions
            .iter()
            .flatten()
            .flat_map(|s| s.indices.iter().map(|i| (s.process_guid.to_string(), *i)))
            .collect();
        out.sort();
        out
    }

    /// Every rep stop as (cell, process guid, index), sorted.
    pub fn stopped(&self) -> Vec<(String, String, i32)> {
        let mut out: Vec<(String, String, i32)> =
            self.stops.iter().map(|s| (s.cell_id.to_string(), s.process_guid.to_string(), s.index)).collect();
        out.sort();
        out
    }
}

/// An [`Effects`] that records every call. Cheap to clone; clones share the record.
#[derive(Debug, Default, Clone)]
pub struct RecordingEffects {
    recorded: Arc<Mutex<Recorded>>,
    fail_auctions: Arc<AtomicBool>,
    fail_stops: Arc<AtomicBool>,
    /// The cells' reports; empty: no reports (`Ok(None)`). A cell mapped to `None` does not
    /// answer.
    reports: Arc<Mutex<BTreeMap<CellId, Option<CellReport>>>>,
    /// The process guids [`Effects::removed_lately`] names.
    removed_lately: Arc<Mutex<BTreeSet<ProcessGuid>>>,
}

impl RecordingEffects {
    /// A fake that succeeds at everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes auction calls fail (after recording them).
    pub fn fail_auctions(&self, fail: bool) {
        self.fail_auctions.store(fail, Ordering::SeqCst);
    }

    /// Makes rep stops fail (after recording them).
    pub fn fail_stops(&self, fail: bool) {
        self.fail_stops.store(fail, Ordering::SeqCst);
    }

    /// Sets what `cell` reports (`None`: it does not answer). Once any cell is set, cells not
    /// set report nothing running.
    pub fn set_cell_report(&self, cell: CellId, report: Option<CellReport>) {
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).insert(cell, report);
    }

    /// Makes [`Effects::removed_lately`] name `process_guid`.
    pub fn set_removed_lately(&self, process_guid: ProcessGuid) {
        self.removed_lately.lock().unwrap_or_else(|p| p.into_inner()).insert(process_guid);
    }

    /// A copy of what was recorded so far.
    pub fn recorded(&self) -> Recorded {
        self.lock().clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        *self.lock() = Recorded::default();
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outcome(flag: &AtomicBool, what: &str) -> Result<(), EffectError> {
        if flag.load(Ordering::SeqCst) { Err(EffectError::new(format!("{what} failed (test)"))) } else { Ok(()) }
    }
}

impl Effects for RecordingEffects {
    fn request_lrp_auctions(&self, starts: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        self.lock().lrp_auctions.push(starts);
        Box::pin(async { Self::outcome(&self.fail_auctions, "lrp auction") })
    }

    fn request_task_auctions(&self, starts: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        self.lock().task_auctions.push(starts);
        Box::pin(async { Self::outcome(&self.fail_auctions, "task auction") })
    }

    fn stop_instance(&self, stop: StopInstance) -> BoxFuture<'_, Result<(), EffectError>> {
        self.lock().stops.push(stop);
        Box::pin(async { Self::outcome(&self.fail_stops, "stop") })
    }

    fn retry_callback(&self, task: Task) {
        self.lock().callbacks.push(task);
    }

    fn publish_index_change(&self, change: &IndexChange<()>) {
        self.lock().index_changes.push(change.clone());
    }

    fn publish_removed(&self, lrp: &ActualLrp) {
        self.lock().removed.push(lrp.clone());
    }

    fn publish_task_change(&self, before: &Task, after: Option<&Task>) {
        self.lock().task_changes.push((before.clone(), after.cloned()));
    }

    fn lock_key<'a>(&'a self, _key: LockKey<'a>) -> BoxFuture<'a, KeyGuard<'a>> {
        self.lock().locks += 1;
        Box::pin(async { Box::new(()) as KeyGuard<'a> })
    }

    fn cell_report<'a>(
        &'a self,
        cell: &'a CellId,
        desired_for: &'a [ProcessGuid],
    ) -> BoxFuture<'a, Result<Option<CellReport>, EffectError>> {
        self.lock().cell_reports.push((cell.clone(), desired_for.to_vec()));
        let reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = if reports.is_empty() {
            Ok(None)
        } else {
            match reports.get(cell) {
                Some(None) => Err(EffectError::new(format!("cell {cell} does not answer (test)"))),
                Some(Some(report)) => {
                    let mut report = report.clone();
                    report.desired.retain(|d| desired_for.contains(&d.scheduling.process_guid));
                    Ok(Some(report))
                }
                None => Ok(Some(CellReport::default())),
            }
        };
        Box::pin(async move { outcome })
    }

    fn request_cell_sync<'a>(&'a self, cell: &'a CellId) -> BoxFuture<'a, Result<(), EffectError>> {
        self.lock().cell_syncs.push(cell.clone());
        Box::pin(async { Ok(()) })
    }

    fn publish_desired_recovered(&self, lrp: &DesiredLrp) {
        self.lock().recovered.push(lrp.clone());
    }

    fn removed_lately(&self, process_guid: &ProcessGuid) -> bool {
        self.removed_lately.lock().unwrap_or_else(|p| p.into_inner()).contains(process_guid)
    }
}

/// The one manual clock, from the service toolkit.
pub use svc::clock::ManualClock;
