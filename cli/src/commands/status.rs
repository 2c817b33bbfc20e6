//! `status`: the cluster on one screen: which BBS leads and which auctioneer, each cell's
//! capacity and use, the LRPs (running / desired / crashing / unplaceable), tasks by state and
//! the most common placement errors. `--json` prints the same view.
//!
//! The leaders come from the Locket leases every BBS serves (`Fetch` of `bbs` and
//! `auctioneer`): the owner and the address the leader advertises. Every running BBS, leader or
//! standby, holds a `bbs-replica/<owner>` lock with its address (`bbs::leader`): the standbys are
//! those whose owner is not the leader's (`FetchAll` of the locks).
//!
//! [`build`] turns what was fetched into the view; it is pure and unit tested. [`show`]
//! fetches and prints.

use std::collections::BTreeMap;

use clap::Args;
use proto::pb::bbs::v1 as api;
use proto::pb::locket::v1 as locket;
use proto::pb::models::v1 as pb;
use serde::Serialize;

use super::cells::{self, CellView};
use super::lrps::{IndexStates, LrpSummary};
use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format, Table, or_dash};
use crate::views::{InstanceView, TaskView};

/// How many placement errors and LRPs with trouble `status` lists.
pub const WORST: usize = 5;

/// `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {}

/// A leader lease as fetched: its owner and its value (the leader's address), `None` when no
/// one holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Leader {
    /// The lease owner (an identity URI and an instance).
    pub owner: String,
    /// The address the leader advertises.
    pub address: String,
}

/// Everything `status` reads.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The BBS address the CLI talks to.
    pub connected: String,
    /// The `bbs` lock.
    pub bbs: Option<Leader>,
    /// The `auctioneer` lock.
    pub auctioneer: Option<Leader>,
    /// The `bbs-replica/*` locks: every running BBS.
    pub replicas: Vec<Leader>,
    /// Live cells.
    pub cells: Vec<pb::CellPresence>,
    /// Desired LRPs.
    pub desired: Vec<pb::DesiredLrpSchedulingInfo>,
    /// Actual LRPs.
    pub actual: Vec<pb::ActualLrp>,
    /// Tasks.
    pub tasks: Vec<pb::Task>,
}

/// The BBS part of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BbsView {
    /// The address the CLI talks to.
    pub connected: String,
    /// The leader, when one holds the lock.
    pub leader: Option<Leader>,
    /// Whether the address talked to is the leader's advertised one.
    pub connected_is_leader: bool,
    /// The running BBSs that do not lead.
    pub standbys: Vec<Leader>,
}

/// LRP totals over every desired LRP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LrpTotals {
    /// Desired LRPs.
    pub lrps: usize,
    /// Desired instances.
    pub desired: i64,
    /// RUNNING indices.
    pub running: usize,
    /// Indices placed or waiting for a cell.
    pub starting: usize,
    /// CRASHED indices.
    pub crashing: usize,
    /// Indices that could not be placed.
    pub unplaceable: usize,
}

/// One LRP that is not fully running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LrpTrouble {
    /// The process guid.
    pub process_guid: String,
    /// Desired instances.
    pub desired: i32,
    /// RUNNING indices.
    pub running: usize,
    /// CRASHED indices.
    pub crashing: usize,
    /// Unplaceable indices.
    pub unplaceable: usize,
}

/// One placement error and how many instances it holds back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacementError {
    /// The auctioneer's reason.
    pub error: String,
    /// Instances with it.
    pub instances: usize,
    /// The LRPs concerned (at most [`WORST`]).
    pub process_guids: Vec<String>,
    /// Nanoseconds since the Unix epoch of the latest instance with it.
    pub latest: i64,
}

/// The whole screen.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// Leader and standbys.
    pub bbs: BbsView,
    /// The auctioneer leading, if any.
    pub auctioneer: Option<Leader>,
    /// Every live cell.
    pub cells: Vec<CellView>,
    /// LRP totals.
    pub lrps: LrpTotals,
    /// The LRPs not fully running, worst first (at most [`WORST`]).
    pub lrps_in_trouble: Vec<LrpTrouble>,
    /// Tasks per state (`PENDING`, `RUNNING`, ...).
    pub tasks: BTreeMap<String, usize>,
    /// The placement errors holding back most instances (at most [`WORST`]).
    pub placement_errors: Vec<PlacementError>,
}

/// Builds the view from what was fetched.
pub fn build(fetched: Fetched) -> StatusView {
    let Fetched { connected, bbs, auctioneer, replicas, cells, desired, actual, tasks } = fetched;
    let leader_owner = bbs.as_ref().map(|l| l.owner.as_str());
    let mut standbys: Vec<Leader> = replicas.into_iter().filter(|r| Some(r.owner.as_str()) != leader_owner).collect();
    standbys.sort_by(|a, b| a.address.cmp(&b.address));
    let connected_is_leader = bbs.as_ref().is_some_and(|l| same_address(&l.address, &connected));
    let cell_views = cells::compute(cells, &actual, &desired, &tasks);

    let mut states: BTreeMap<String, IndexStates> = BTreeMap::new();
    let mut errors: BTreeMap<String, PlacementError> = BTreeMap::new();
    for lrp in &actual {
        let view = InstanceView::new(lrp);
        if view.unplaceable() {
            let entry = errors.entry(view.placement_error.clone()).or_insert_with(|| PlacementError {
                error: view.placement_error.clone(),
                instances: 0,
                process_guids: Vec::new(),
                latest: 0,
            });
            entry.instances += 1;
            entry.latest = entry.latest.max(view.since);
            if entry.process_guids.len() < WORST && !entry.process_guids.contains(&view.process_guid) {
                entry.process_guids.push(view.process_guid.clone());
            }
        }
        states.entry(view.process_guid.clone()).or_default().add(&view);
    }
    let mut totals = LrpTotals { lrps: desired.len(), ..Default::default() };
    let mut trouble = Vec::new();
    for info in &desired {
        let guid = info.desired_lrp_key.as_ref().map(|k| k.process_guid.clone()).unwrap_or_default();
        let mut summary = LrpSummary::default();
        if let Some(s) = states.get(&guid) {
            s.count_into(&mut summary);
        }
        totals.desired += i64::from(info.instances);
        totals.running += summary.running;
        totals.starting += summary.claimed + summary.unclaimed;
        totals.crashing += summary.crashed;
        totals.unplaceable += summary.unplaceable;
        if summary.running < usize::try_from(info.instances).unwrap_or(0) {
            trouble.push(LrpTrouble {
                process_guid: guid,
                desired: info.instances,
                running: summary.running,
                crashing: summary.crashed,
                unplaceable: summary.unplaceable,
            });
        }
    }
    // Worst first: most instances not running, then by guid for a stable order.
    trouble.sort_by(|a, b| {
        let missing = |t: &LrpTrouble| i64::from(t.desired) - t.running as i64;
        missing(b).cmp(&missing(a)).then_with(|| a.process_guid.cmp(&b.process_guid))
    });
    trouble.truncate(WORST);
    let mut placement_errors: Vec<PlacementError> = errors.into_values().collect();
    placement_errors.sort_by(|a, b| b.instances.cmp(&a.instances).then_with(|| b.latest.cmp(&a.latest)));
    placement_errors.truncate(WORST);
    let mut task_states: BTreeMap<String, usize> = BTreeMap::new();
    for task in &tasks {
        *task_states.entry(TaskView::new(task).state.to_owned()).or_default() += 1;
    }
    StatusView {
        bbs: BbsView { connected, leader: bbs, connected_is_leader, standbys },
        auctioneer,
        cells: cell_views,
        lrps: totals,
        lrps_in_trouble: trouble,
        tasks: task_states,
        placement_errors,
    }
}

/// Whether two `host:port` addresses (either maybe with `http(s)://`) are the same.
fn same_address(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        s.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_ascii_lowercase()
    };
    !a.is_empty() && strip(a) == strip(b)
}

/// A bar of `width` characters, `used` of `total` filled: `[######--------------]`.
pub fn bar(used: i64, total: i64, width: usize) -> String {
    let filled = if total <= 0 {
        0
    } else {
        let share = (used.clamp(0, total) as f64 / total as f64 * width as f64).round();
        (share as usize).min(width)
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// The view as text.
pub fn render(view: &StatusView) -> String {
    let mut lines = Vec::new();
    lines.push("BBS".to_owned());
    match &view.bbs.leader {
        Some(leader) => {
            let this = if view.bbs.connected_is_leader { " (this one)" } else { "" };
            lines.push(format!("  leader:      {}{this}  owner {}", or_dash(&leader.address), leader.owner));
        }
        None => lines.push("  leader:      none: no BBS holds the lock".to_owned()),
    }
    if !view.bbs.connected_is_leader {
        lines.push(format!("  answering:   {} (a standby, or the leader under another address)", view.bbs.connected));
    }
    let standbys: Vec<String> =
        view.bbs.standbys.iter().map(|s| format!("{}  owner {}", or_dash(&s.address), s.owner)).collect();
    lines.push(format!("  standbys:    {}", if standbys.is_empty() { "none".to_owned() } else { standbys.join(", ") }));
    lines.push("AUCTIONEER".to_owned());
    match &view.auctioneer {
        Some(leader) => lines.push(format!("  leader:      {}  owner {}", or_dash(&leader.address), leader.owner)),
        None => lines.push("  leader:      none: no auctioneer holds the lock; nothing gets placed".to_owned()),
    }
    lines.push(format!("CELLS ({})", view.cells.len()));
    if view.cells.is_empty() {
        lines.push("  none: no live cell".to_owned());
    } else {
        let mut table = Table::new(&["  CELL", "ZONE", "MEMORY", "USED", "DISK", "CONTAINERS"]);
        for cell in &view.cells {
            table.row(vec![
                format!("  {}", cell.cell_id),
                or_dash(&cell.zone),
                bar(cell.used.memory_mb, cell.capacity.memory_mb, 20),
                format!("{}/{} MB", cell.used.memory_mb, cell.capacity.memory_mb),
                format!("{}/{} MB", cell.used.disk_mb, cell.capacity.disk_mb),
                format!("{}/{}", cell.used.containers, cell.capacity.containers),
            ]);
        }
        lines.push(table.render());
    }
    let t = &view.lrps;
    lines.push(format!("LRPS ({})", t.lrps));
    lines.push(format!(
        "  instances:   {} running / {} desired, {} starting, {} crashing, {} unplaceable",
        t.running, t.desired, t.starting, t.crashing, t.unplaceable
    ));
    if !view.lrps_in_trouble.is_empty() {
        let mut table = Table::new(&["  GUID", "RUNNING", "CRASHING", "UNPLACEABLE"]);
        for lrp in &view.lrps_in_trouble {
            table.row(vec![
                format!("  {}", lrp.process_guid),
                format!("{}/{}", lrp.running, lrp.desired),
                lrp.crashing.to_string(),
                lrp.unplaceable.to_string(),
            ]);
        }
        lines.push(table.render());
    }
    let tasks: Vec<String> = view.tasks.iter().map(|(state, n)| format!("{n} {state}")).collect();
    lines.push(format!("TASKS ({})", view.tasks.values().sum::<usize>()));
    lines.push(format!("  {}", if tasks.is_empty() { "none".to_owned() } else { tasks.join(", ") }));
    lines.push("PLACEMENT ERRORS".to_owned());
    if view.placement_errors.is_empty() {
        lines.push("  none".to_owned());
    }
    for error in &view.placement_errors {
        lines.push(format!("  {} instance(s) of {}: {}", error.instances, error.process_guids.join(", "), error.error));
    }
    lines.join("\n")
}

/// Fetches one leader lease; a lease no one holds is `None`.
async fn leader(bbs: &Bbs, key: &str) -> Result<Option<Leader>, Error> {
    let request = locket::FetchRequest { key: key.to_owned() };
    match tokio::time::timeout(crate::client::CALL_TIMEOUT, bbs.locket().fetch(request)).await {
        Ok(Ok(response)) => {
            let resource = response.into_inner().resource.unwrap_or_default();
            Ok(Some(Leader { owner: resource.owner, address: resource.value }))
        }
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => Ok(None),
        Ok(Err(status)) => Err(bbs.status_error(&status)),
        Err(_) => {
            Err(Error::Timeout { address: bbs.address().to_owned(), seconds: crate::client::CALL_TIMEOUT.as_secs() })
        }
    }
}

/// The `bbs-replica/*` locks: every running BBS, with its address.
async fn replicas(bbs: &Bbs) -> Result<Vec<Leader>, Error> {
    let request = locket::FetchAllRequest { type_code: locket::TypeCode::Lock as i32 };
    match tokio::time::timeout(crate::client::CALL_TIMEOUT, bbs.locket().fetch_all(request)).await {
        Ok(Ok(response)) => Ok(response
            .into_inner()
            .resources
            .into_iter()
            .filter(|r| r.key.starts_with(BBS_REPLICA_PREFIX))
            .map(|r| Leader { owner: r.owner, address: r.value })
            .collect()),
        Ok(Err(status)) => Err(bbs.status_error(&status)),
        Err(_) => {
            Err(Error::Timeout { address: bbs.address().to_owned(), seconds: crate::client::CALL_TIMEOUT.as_secs() })
        }
    }
}

/// The prefix of the lock every running BBS holds (`bbs::leader::BBS_REPLICA_PREFIX`).
const BBS_REPLICA_PREFIX: &str = "bbs-replica/";

/// Fetches everything and prints the screen.
pub async fn show(bbs: &Bbs, _args: &StatusArgs, format: Format) -> Result<(), Error> {
    let fetched = Fetched {
        connected: bbs.address().to_owned(),
        bbs: leader(bbs, "bbs").await?,
        auctioneer: leader(bbs, "auctioneer").await?,
        replicas: replicas(bbs).await?,
        cells: bbs.all(api::CellsRequest::default(), |mut c, r| async move { c.cells(r).await }).await?,
        desired: bbs
            .all(api::DesiredLrPsRequest::default(), |mut c, r| async move { c.desired_lrp_scheduling_infos(r).await })
            .await?,
        actual: bbs.all(api::ActualLrPsRequest::default(), |mut c, r| async move { c.actual_lr_ps(r).await }).await?,
        tasks: bbs.all(api::TasksRequest::default(), |mut c, r| async move { c.tasks(r).await }).await?,
    };
    let view = build(fetched);
    match format {
        Format::Json => output::print_json(&view),
        Format::Table => output::print(&render(&view)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(guid: &str, instances: i32) -> pb::DesiredLrpSchedulingInfo {
        pb::DesiredLrpSchedulingInfo {
            desired_lrp_key: Some(pb::DesiredLrpKey { process_guid: guid.into(), ..Default::default() }),
            instances,
            desired_lrp_resource: Some(pb::DesiredLrpResource { memory_mb: 256, disk_mb: 10, ..Default::default() }),
            ..Default::default()
        }
    }

    fn actual(guid: &str, index: i32, state: pb::ActualLrpState, cell: &str, error: &str) -> pb::ActualLrp {
        pb::ActualLrp {
            actual_lrp_key: Some(pb::ActualLrpKey { process_guid: guid.into(), index, domain: "d".into() }),
            actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey { instance_guid: "i".into(), cell_id: cell.into() }),
            state: state as i32,
            placement_error: error.into(),
            since: i64::from(index) + 1,
            ..Default::default()
        }
    }

    fn fetched() -> Fetched {
        use pb::ActualLrpState::{Crashed, Running, Unclaimed};
        Fetched {
            connected: "127.0.0.1:8889".into(),
            bbs: Some(Leader { owner: "diego://bbs#a".into(), address: "127.0.0.1:8889".into() }),
            auctioneer: None,
            replicas: vec![
                Leader { owner: "diego://bbs#b".into(), address: "127.0.0.1:9889".into() },
                Leader { owner: "diego://bbs#a".into(), address: "127.0.0.1:8889".into() },
            ],
            cells: vec![pb::CellPresence {
                cell_id: "cell-1".into(),
                zone: "z1".into(),
                capacity: Some(pb::CellCapacity { memory_mb: 1024, disk_mb: 1000, containers: 10 }),
                ..Default::default()
            }],
            desired: vec![info("web", 3), info("big", 2), info("ok", 1)],
            actual: vec![
                actual("web", 0, Running, "cell-1", ""),
                actual("web", 1, Crashed, "", ""),
                actual("web", 2, Unclaimed, "", "insufficient resources: memory"),
                actual("big", 0, Unclaimed, "", "insufficient resources: memory"),
                actual("big", 1, Unclaimed, "", "found no compatible cell"),
                actual("ok", 0, Running, "cell-1", ""),
            ],
            tasks: vec![
                pb::Task { state: pb::task::State::Pending as i32, ..Default::default() },
                pb::Task { state: pb::task::State::Pending as i32, ..Default::default() },
                pb::Task { state: pb::task::State::Completed as i32, ..Default::default() },
            ],
        }
    }

    #[test]
    fn the_view_counts_lrps_tasks_and_groups_placement_errors() {
        let view = build(fetched());
        assert!(view.bbs.connected_is_leader);
        assert_eq!(view.lrps, LrpTotals { lrps: 3, desired: 6, running: 2, starting: 0, crashing: 1, unplaceable: 3 });
        let guids: Vec<&str> = view.lrps_in_trouble.iter().map(|t| t.process_guid.as_str()).collect();
        assert_eq!(guids, ["big", "web"]);
        assert_eq!(view.tasks, BTreeMap::from([("COMPLETED".into(), 1), ("PENDING".into(), 2)]));
        assert_eq!(view.placement_errors[0].error, "insufficient resources: memory");
        assert_eq!(view.placement_errors[0].instances, 2);
        assert_eq!(view.placement_errors[0].process_guids, ["web", "big"]);
        assert_eq!(view.cells[0].used.memory_mb, 512);
    }

    #[test]
    fn the_screen_has_every_section() {
        let text = render(&build(fetched()));
        for section in ["BBS", "AUCTIONEER", "CELLS (1)", "LRPS (3)", "TASKS (3)", "PLACEMENT ERRORS"] {
            assert!(text.lines().any(|l| l == section), "{section}:\n{text}");
        }
        assert!(text.contains("127.0.0.1:8889 (this one)"), "{text}");
        // The leader's own replica lock is not a standby.
        assert!(text.contains("standbys:    127.0.0.1:9889  owner diego://bbs#b\n"), "{text}");
        assert!(text.contains("no auctioneer holds the lock"), "{text}");
        assert!(text.contains("[##########----------]  512/1024 MB"), "{text}");
        assert!(text.contains("2 instance(s) of web, big: insufficient resources: memory"), "{text}");
    }

    #[test]
    fn bars_fill_in_proportion_and_never_overflow() {
        assert_eq!(bar(0, 100, 4), "[----]");
        assert_eq!(bar(50, 100, 4), "[##--]");
        assert_eq!(bar(200, 100, 4), "[####]");
        assert_eq!(bar(5, 0, 4), "[----]");
    }
}
