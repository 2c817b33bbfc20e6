//! The rep's metric names, declared once, and the helpers that record them. They go to whatever
//! `metrics` recorder the process installed; `admin.rs` installs the Prometheus one. Every
//! series carries `cell_id`, since `diego dev` and the tests run many cells in one process.

use std::time::Duration;

/// Total capacity; labels `cell_id`, `resource` (`memory_mb`, `disk_mb`, `containers`).
pub const CAPACITY_TOTAL: &str = "rep_capacity_total";
/// Remaining capacity; labels `cell_id`, `resource`.
pub const CAPACITY_AVAILABLE: &str = "rep_capacity_available";
/// Containers by state; labels `cell_id`, `state`.
pub const CONTAINERS: &str = "rep_containers";
/// Wall time of one bulk sync; label `cell_id`.
pub const BULK_SYNC_DURATION: &str = "rep_bulk_sync_duration_seconds";
/// Bulk syncs skipped because a list call failed; label `cell_id`.
pub const BULK_SYNC_FAILURES: &str = "rep_bulk_sync_failures_total";
/// Work refused by `Perform`; labels `cell_id`, `kind` (`lrp`, `task`).
pub const PERFORM_REFUSED: &str = "rep_perform_refused_total";
/// 1 while the cell presence is held; label `cell_id`.
pub const PRESENCE_HELD: &str = "rep_presence_held";
/// 1 while the cell evacuates; label `cell_id`.
pub const EVACUATING: &str = "rep_evacuating";

/// Registers descriptions and units with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CAPACITY_TOTAL, "total capacity of the cell");
    describe_gauge!(CAPACITY_AVAILABLE, "capacity not reserved by any container");
    describe_gauge!(CONTAINERS, "containers on the cell by lifecycle state");
    describe_histogram!(BULK_SYNC_DURATION, Unit::Seconds, "duration of one bulk sync with the bbs");
    describe_counter!(BULK_SYNC_FAILURES, "bulk syncs skipped because the bbs or executor could not be listed");
    describe_counter!(PERFORM_REFUSED, "lrp instances and tasks perform refused");
    describe_counter!(crate::exec::EXEC_SESSIONS, "diego ssh sessions by outcome");
    describe_gauge!(PRESENCE_HELD, "1 while the cell presence is held");
    describe_gauge!(EVACUATING, "1 while the cell evacuates");
}

/// A snapshot of what the cell holds, recorded on each `/metrics` scrape and bulk sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellSnapshot {
    /// The cell id.
    pub cell_id: String,
    /// Total (memory MB, disk MB, containers).
    pub total: (i32, i32, i32),
    /// Available (memory MB, disk MB, containers).
    pub available: (i32, i32, i32),
    /// Container counts by state name.
    pub containers_by_state: Vec<(&'static str, usize)>,
    /// Whether the cell evacuates.
    pub evacuating: bool,
}

/// Records a snapshot as gauges.
pub fn record_snapshot(snapshot: &CellSnapshot) {
    let cell = snapshot.cell_id.clone();
    for (name, (memory, disk, containers)) in
        [(CAPACITY_TOTAL, snapshot.total), (CAPACITY_AVAILABLE, snapshot.available)]
    {
        for (resource, value) in [("memory_mb", memory), ("disk_mb", disk), ("containers", containers)] {
            metrics::gauge!(name, "cell_id" => cell.clone(), "resource" => resource).set(f64::from(value));
        }
    }
    for (state, count) in &snapshot.containers_by_state {
        metrics::gauge!(CONTAINERS, "cell_id" => cell.clone(), "state" => *state).set(*count as f64);
    }
    metrics::gauge!(EVACUATING, "cell_id" => cell).set(if snapshot.evacuating { 1.0 } else { 0.0 });
}

/// Records one bulk sync.
pub(crate) fn record_bulk_sync(cell_id: &str, duration: Duration, ok: bool) {
    metrics::histogram!(BULK_SYNC_DURATION, "cell_id" => cell_id.to_owned()).record(duration.as_secs_f64());
    if !ok {
        metrics::counter!(BULK_SYNC_FAILURES, "cell_id" => cell_id.to_owned()).increment(1);
    }
}

/// Records refused work.
pub(crate) fn record_refused(cell_id: &str, lrps: usize, tasks: usize) {
    if lrps > 0 {
        metrics::counter!(PERFORM_REFUSED, "cell_id" => cell_id.to_owned(), "kind" => "lrp").increment(lrps as u64);
    }
    if tasks > 0 {
        metrics::counter!(PERFORM_REFUSED, "cell_id" => cell_id.to_owned(), "kind" => "task").increment(tasks as u64);
    }
}

/// Records whether the presence is held.
pub(crate) fn record_presence(cell_id: &str, held: bool) {
    metrics::gauge!(PRESENCE_HELD, "cell_id" => cell_id.to_owned()).set(if held { 1.0 } else { 0.0 });
}
