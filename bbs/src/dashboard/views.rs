//! The JSON the dashboard page reads, built by pure functions from store records and events.
//!
//! Every view is bounded by [`Limits`]: a listing shows at most so many items and says how many
//! more there are (or at least how many, when counting them all would cost too much), so one
//! answer's size does not grow with the cluster.

use std::collections::{BTreeMap, HashMap};

use proto::models::{ActualLrp, CellPresence, Presence, SchedulingInfo, Task, TaskState};
use proto::pb::models::v1 as pb;
use serde::Serialize;

/// How much one answer of the dashboard's API may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Desired LRPs per page of `/api/lrps`.
    pub lrps_per_page: usize,
    /// Instance rows shown per desired LRP.
    pub instances_per_lrp: usize,
    /// Desired LRPs counted after a page for its "N more" (past this, "at least N").
    pub lrps_counted: usize,
    /// Cells shown by `/api/cells`.
    pub cells: usize,
    /// Instance rows and tasks read per cell to sum its use (past this, the use is a lower bound).
    pub rows_per_cell: usize,
    /// Tasks read to count them by state (past this, the counts are lower bounds).
    pub tasks_counted: usize,
    /// Most recently updated tasks shown.
    pub recent_tasks: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            lrps_per_page: 25,
            instances_per_lrp: 100,
            lrps_counted: 5_000,
            cells: 200,
            rows_per_cell: 1_000,
            tasks_counted: 10_000,
            recent_tasks: 20,
        }
    }
}

/// A count that may have stopped early: `count` items, or at least that many when `at_least`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Count {
    /// Items counted.
    pub count: usize,
    /// The counting stopped at a limit; there may be more.
    pub at_least: bool,
}

/// `/api/status`: who leads and whether the live event stream is served here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// This BBS leads (its data and events are the live ones).
    pub leading: bool,
    /// The leader's advertised gRPC address, when this is a standby that knows it.
    pub leader: Option<String>,
    /// `/api/events` streams the event hub here.
    pub events: bool,
}

/// Memory, disk and containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Resources {
    /// Memory in MB.
    pub memory_mb: i64,
    /// Disk in MB.
    pub disk_mb: i64,
    /// Containers.
    pub containers: i64,
}

/// What the instance rows and tasks placed on one cell use, as the gatherer read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CellLoad {
    /// Resources of the rows and tasks read.
    pub used: Resources,
    /// Instance rows placed on the cell.
    pub instances: usize,
    /// Tasks running on the cell.
    pub tasks: usize,
    /// More rows or tasks than were read: `used` is a lower bound.
    pub truncated: bool,
}

impl CellLoad {
    /// Adds one placed instance row of an LRP needing `info`'s resources (`None`: its desired
    /// LRP is gone, so it counts as a container only).
    pub fn add_instance(&mut self, info: Option<&SchedulingInfo>) {
        self.instances += 1;
        self.used.containers += 1;
        if let Some(info) = info {
            self.used.memory_mb += i64::from(info.memory_mb);
            self.used.disk_mb += i64::from(info.disk_mb);
        }
    }

    /// Adds one task running on the cell.
    pub fn add_task(&mut self, task: &Task) {
        self.tasks += 1;
        self.used.containers += 1;
        self.used.memory_mb += i64::from(task.definition.memory_mb());
        self.used.disk_mb += i64::from(task.definition.disk_mb());
    }
}

/// One live cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellView {
    /// Its id.
    pub cell_id: String,
    /// Its availability zone.
    pub zone: String,
    /// The rep's gRPC address.
    pub rep_address: String,
    /// What it offers.
    pub capacity: Resources,
    /// What the rows and tasks placed on it use.
    pub used: Resources,
    /// Instance rows placed on it.
    pub instances: usize,
    /// Tasks running on it.
    pub tasks: usize,
    /// `used` is a lower bound (too many rows to read them all).
    pub truncated: bool,
}

/// `/api/cells`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellsView {
    /// Live cells by id, at most [`Limits::cells`].
    pub cells: Vec<CellView>,
    /// Live cells not shown.
    pub more_cells: usize,
}

/// The cells view of `presences` (sorted by id, the first `limits.cells`), with each cell's load
/// from `loads` (keyed by cell id; a cell missing there uses nothing).
pub fn cells_view(mut presences: Vec<CellPresence>, loads: &HashMap<String, CellLoad>, limits: &Limits) -> CellsView {
    presences.sort_by(|a, b| a.cell_id.as_str().cmp(b.cell_id.as_str()));
    let more_cells = presences.len().saturating_sub(limits.cells);
    presences.truncate(limits.cells);
    let cells = presences
        .into_iter()
        .map(|p| {
            let load = loads.get(p.cell_id.as_str()).copied().unwrap_or_default();
            CellView {
                cell_id: p.cell_id.to_string(),
                zone: p.zone,
                rep_address: p.rep_address,
                capacity: Resources {
                    memory_mb: i64::from(p.capacity.memory_mb),
                    disk_mb: i64::from(p.capacity.disk_mb),
                    containers: i64::from(p.capacity.containers),
                },
                used: load.used,
                instances: load.instances,
                tasks: load.tasks,
                truncated: load.truncated,
            }
        })
        .collect();
    CellsView { cells, more_cells }
}

/// One instance row of a desired LRP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceView {
    /// Its index.
    pub index: i32,
    /// `UNCLAIMED`, `CLAIMED`, `RUNNING` or `CRASHED`.
    pub state: &'static str,
    /// `ORDINARY`, `EVACUATING` or `SUSPECT`.
    pub presence: &'static str,
    /// The cell it is placed on; empty while unplaced.
    pub cell_id: String,
    /// Why the auctioneer could not place it (only while UNCLAIMED).
    pub placement_error: String,
    /// Consecutive crashes.
    pub crash_count: i32,
    /// Why it last crashed.
    pub crash_reason: String,
    /// Nanoseconds since the epoch of its last state change.
    pub since: i64,
}

/// One desired LRP and its first instance rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LrpView {
    /// Its process guid.
    pub process_guid: String,
    /// Its domain.
    pub domain: String,
    /// Instances desired.
    pub desired_instances: i32,
    /// Memory per instance in MB.
    pub memory_mb: i32,
    /// Disk per instance in MB.
    pub disk_mb: i32,
    /// Rows in (index, presence) order, at most [`Limits::instances_per_lrp`].
    pub instances: Vec<InstanceView>,
    /// Shown rows per state.
    pub states: BTreeMap<&'static str, usize>,
    /// Rows not shown: the desired instances past the shown indexes (at least one when the
    /// listing had more rows).
    pub more_instances: usize,
}

/// `/api/lrps`: one page of desired LRPs by process guid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LrpsView {
    /// The page.
    pub lrps: Vec<LrpView>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub next_after: Option<String>,
    /// Desired LRPs after this page.
    pub more_lrps: Count,
}

/// The presence's name on the page.
pub fn presence_name(presence: Presence) -> &'static str {
    match presence {
        Presence::Ordinary => "ORDINARY",
        Presence::Evacuating => "EVACUATING",
        Presence::Suspect => "SUSPECT",
    }
}

/// The view of one desired LRP from its scheduling info and the first rows of its instances
/// (`rows`, in listing order, possibly more than `limits.instances_per_lrp`; `more_rows` when
/// the listing stopped before its end).
pub fn lrp_view(info: &SchedulingInfo, mut rows: Vec<ActualLrp>, more_rows: bool, limits: &Limits) -> LrpView {
    let more_rows = more_rows || rows.len() > limits.instances_per_lrp;
    rows.truncate(limits.instances_per_lrp);
    let mut states = BTreeMap::new();
    let instances: Vec<InstanceView> = rows
        .into_iter()
        .map(|row| {
            *states.entry(row.state.as_str()).or_insert(0) += 1;
            InstanceView {
                index: row.key.index,
                state: row.state.as_str(),
                presence: presence_name(row.presence),
                cell_id: row.instance_key.map(|k| k.cell_id.to_string()).unwrap_or_default(),
                placement_error: row.placement_error,
                crash_count: row.crash_count,
                crash_reason: row.crash_reason,
                since: row.since,
            }
        })
        .collect();
    let more_instances = if more_rows {
        let past_shown = instances.last().map_or(0, |last| i64::from(last.index) + 1);
        usize::try_from(i64::from(info.instances) - past_shown).unwrap_or(0).max(1)
    } else {
        0
    };
    LrpView {
        process_guid: info.process_guid.to_string(),
        domain: info.domain.to_string(),
        desired_instances: info.instances,
        memory_mb: info.memory_mb,
        disk_mb: info.disk_mb,
        instances,
        states,
        more_instances,
    }
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// Its guid.
    pub task_guid: String,
    /// Its domain.
    pub domain: String,
    /// `PENDING`, `RUNNING`, `COMPLETED` or `RESOLVING`.
    pub state: &'static str,
    /// The cell running it; empty when none.
    pub cell_id: String,
    /// Whether it failed (once completed).
    pub failed: bool,
    /// Why it failed.
    pub failure_reason: String,
    /// Nanoseconds since the epoch of its last change.
    pub updated_at: i64,
}

/// `/api/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TasksView {
    /// Tasks per state (every state present, zero included).
    pub states: BTreeMap<&'static str, usize>,
    /// Tasks counted.
    pub total: Count,
    /// The most recently updated tasks first, at most [`Limits::recent_tasks`].
    pub recent: Vec<TaskView>,
}

/// A task state's name on the page.
pub fn task_state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "PENDING",
        TaskState::Running => "RUNNING",
        TaskState::Completed => "COMPLETED",
        TaskState::Resolving => "RESOLVING",
    }
}

/// Counts tasks by state and keeps the most recently updated ones, in memory bounded by
/// [`Limits::recent_tasks`] whatever the number of tasks added.
#[derive(Debug)]
pub struct TaskTally {
    keep: usize,
    states: BTreeMap<&'static str, usize>,
    total: usize,
    /// Newest first by (updated_at, guid), at most `keep`.
    recent: Vec<TaskView>,
}

impl TaskTally {
    /// An empty tally keeping the `limits.recent_tasks` most recent tasks.
    pub fn new(limits: &Limits) -> Self {
        let states = TaskState::ALL.into_iter().map(|s| (task_state_name(s), 0)).collect();
        Self { keep: limits.recent_tasks, states, total: 0, recent: Vec::new() }
    }

    /// Counts `task`.
    pub fn add(&mut self, task: &Task) {
        self.total += 1;
        *self.states.entry(task_state_name(task.state)).or_insert(0) += 1;
        let guid = task.task_guid.as_str();
        let newer = |kept: &TaskView| (kept.updated_at, kept.task_guid.as_str()) > (task.updated_at, guid);
        let at = self.recent.partition_point(newer);
        if at >= self.keep {
            return;
        }
        self.recent.insert(
            at,
            TaskView {
                task_guid: guid.to_owned(),
                domain: task.domain.to_string(),
                state: task_state_name(task.state),
                cell_id: task.cell_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                failed: task.failed,
                failure_reason: task.failure_reason.clone(),
                updated_at: task.updated_at,
            },
        );
        self.recent.truncate(self.keep);
    }

    /// The view; `stopped_early` when the tasks were not all added.
    pub fn view(self, stopped_early: bool) -> TasksView {
        TasksView {
            states: self.states,
            total: Count { count: self.total, at_least: stopped_early },
            recent: self.recent,
        }
    }
}

/// One event of the hub, as the page's event log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// `desired_lrp_created`, `actual_lrp_crashed`, `task_changed`, ...
    pub kind: &'static str,
    /// The process guid or task guid the event is about.
    pub guid: String,
    /// The instance index, for instance events.
    pub index: Option<i32>,
    /// The cell involved, when one is.
    pub cell_id: String,
    /// The state after the event, when it has one.
    pub state: Option<&'static str>,
    /// A crash reason, placement error or failure reason.
    pub detail: String,
}

fn lrp_state_name(state: i32) -> Option<&'static str> {
    match pb::ActualLrpState::try_from(state).ok()? {
        pb::ActualLrpState::Invalid => None,
        pb::ActualLrpState::Unclaimed => Some("UNCLAIMED"),
        pb::ActualLrpState::Claimed => Some("CLAIMED"),
        pb::ActualLrpState::Running => Some("RUNNING"),
        pb::ActualLrpState::Crashed => Some("CRASHED"),
    }
}

fn pb_task_state_name(state: i32) -> Option<&'static str> {
    TaskState::from_i32(state).map(task_state_name)
}

fn desired_guid(lrp: Option<&pb::DesiredLrp>) -> String {
    lrp.map(|l| l.process_guid.clone()).unwrap_or_default()
}

/// The log line of an instance or desired-LRP event.
pub fn instance_event_view(event: &pb::instance_event::Event) -> EventView {
    use pb::instance_event::Event;
    let blank = |kind| EventView {
        kind,
        guid: String::new(),
        index: None,
        cell_id: String::new(),
        state: None,
        detail: String::new(),
    };
    let keyed = |kind, key: Option<&pb::ActualLrpKey>, instance: Option<&pb::ActualLrpInstanceKey>| EventView {
        guid: key.map(|k| k.process_guid.clone()).unwrap_or_default(),
        index: key.map(|k| k.index),
        cell_id: instance.map(|i| i.cell_id.clone()).unwrap_or_default(),
        ..blank(kind)
    };
    let actual = |kind, lrp: Option<&pb::ActualLrp>| {
        let Some(lrp) = lrp else { return blank(kind) };
        EventView {
            state: lrp_state_name(lrp.state),
            detail: if lrp.placement_error.is_empty() { lrp.crash_reason.clone() } else { lrp.placement_error.clone() },
            ..keyed(kind, lrp.actual_lrp_key.as_ref(), lrp.actual_lrp_instance_key.as_ref())
        }
    };
    match event {
        Event::DesiredLrpCreated(e) => {
            EventView { guid: desired_guid(e.desired_lrp.as_ref()), ..blank("desired_lrp_created") }
        }
        Event::DesiredLrpChanged(e) => EventView {
            guid: desired_guid(e.after.as_ref().or(e.before.as_ref())),
            detail: e.after.as_ref().map(|a| format!("{} instances", a.instances)).unwrap_or_default(),
            ..blank("desired_lrp_changed")
        },
        Event::DesiredLrpRemoved(e) => {
            EventView { guid: desired_guid(e.desired_lrp.as_ref()), ..blank("desired_lrp_removed") }
        }
        Event::ActualLrpInstanceCreated(e) => actual("actual_lrp_created", e.actual_lrp.as_ref()),
        Event::ActualLrpInstanceRemoved(e) => actual("actual_lrp_removed", e.actual_lrp.as_ref()),
        Event::ActualLrpInstanceChanged(e) => {
            let after = e.after.as_ref();
            EventView {
                state: after.and_then(|a| lrp_state_name(a.state)),
                detail: after
                    .map(
                        |a| {
                            if a.placement_error.is_empty() {
                                a.crash_reason.clone()
                            } else {
                                a.placement_error.clone()
                            }
                        },
                    )
                    .unwrap_or_default(),
                ..keyed("actual_lrp_changed", e.actual_lrp_key.as_ref(), e.actual_lrp_instance_key.as_ref())
            }
        }
        Event::ActualLrpCrashed(e) => EventView {
            detail: e.crash_reason.clone(),
            ..keyed("actual_lrp_crashed", e.actual_lrp_key.as_ref(), e.actual_lrp_instance_key.as_ref())
        },
    }
}

/// The log line of a task event.
pub fn task_event_view(event: &pb::task_event::Event) -> EventView {
    use pb::task_event::Event;
    let (kind, task) = match event {
        Event::TaskCreated(e) => ("task_created", e.task.as_ref()),
        Event::TaskChanged(e) => ("task_changed", e.after.as_ref().or(e.before.as_ref())),
        Event::TaskRemoved(e) => ("task_removed", e.task.as_ref()),
    };
    EventView {
        kind,
        guid: task.map(|t| t.task_guid.clone()).unwrap_or_default(),
        index: None,
        cell_id: task.map(|t| t.cell_id.clone()).unwrap_or_default(),
        state: task.and_then(|t| pb_task_state_name(t.state)),
        detail: task.map(|t| t.failure_reason.clone()).unwrap_or_default(),
    }
}

/// One Server-Sent Events message: `event: name` and one `data:` line of `json` (serde_json
/// never writes a raw newline, so one line always holds it).
pub fn sse_message(name: &str, json: &str) -> String {
    format!("event: {name}\ndata: {json}\n\n")
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
