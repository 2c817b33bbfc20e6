//! Test support (feature `testing`): [`FakeBbs`], a recording BBS and Locket fake that keeps an
//! in-memory model of actual LRPs, desired LRPs, tasks and presences, close enough to the BBS
//! rules (bbs.md 3.1, 3.3, 3.5) for the generator, bulk-sync and evacuation tests; and builders
//! for desired LRPs and tasks.
//!
//! [`TestCell`] is one rep's machinery on the `sim` runtime without servers or loops: tests
//! call `Perform` through its service, bulk sync through `tick()` and evacuation through the
//! evacuator, and wait with [`eventually`] (always inside a `tokio::time::timeout`).
//!
//! The model is deliberately small: no modification tags, no events, no convergence, no
//! auctions (tests play auctioneer by calling `Perform` on a rep for the UNCLAIMED records).

mod cell;
mod fake_bbs;

use proto::models::{
    ActualLrpInstanceKey, ActualLrpKey, CellId, DesiredLrp, DomainName, InstanceGuid, LrpStart, NetInfo,
    PlacementConstraint, ProcessGuid, Resource, Task, TaskDefinition, TaskGuid, TaskStart, TaskState,
};
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep_pb;

pub use cell::{TestCell, TestCellOptions, eventually, running_cell};
pub use fake_bbs::{BbsCall, FakeBbs, FakePresence, LrpRef};

use crate::bbs_client::RunningLrp;
pub use crate::workload::{lrp_workload, task_workload, workload};

/// The rootfs the builders ask for; every rep offers it by default.
pub const ROOTFS: &str = "preloaded:busybox";

// --- builders --------------------------------------------------------------------------------

/// A run action of `path` with `args`.
pub fn run_action(path: &str, args: &[&str]) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: path.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        })),
    }
}

/// A desired LRP on [`ROOTFS`] in domain `d` with `instances` instances of `memory_mb` MB and
/// 16 MB of disk, whose action sleeps (the `sim` runtime ignores it).
pub fn desired_lrp(process_guid: &str, instances: i32, memory_mb: i32) -> DesiredLrp {
    desired_lrp_with(process_guid, instances, memory_mb, |_| {})
}

/// [`desired_lrp`] with the wire message adjusted by `edit` before validation.
///
/// # Panics
///
/// When `edit` makes the desired LRP invalid (a test bug).
pub fn desired_lrp_with(
    process_guid: &str,
    instances: i32,
    memory_mb: i32,
    edit: impl FnOnce(&mut pb::DesiredLrp),
) -> DesiredLrp {
    let mut desired = pb::DesiredLrp {
        process_guid: process_guid.to_owned(),
        domain: "d".into(),
        rootfs: ROOTFS.into(),
        instances,
        memory_mb,
        disk_mb: 16,
        action: Some(run_action("/bin/sh", &["-c", "sleep 3600"])),
        ports: vec![8080],
        log_guid: process_guid.to_owned(),
        ..Default::default()
    };
    edit(&mut desired);
    #[allow(clippy::expect_used)]
    DesiredLrp::try_from(desired).expect("test desired lrp is valid")
}

/// A PENDING task on [`ROOTFS`] in domain `d` needing `memory_mb` MB and 16 MB of disk.
///
/// # Panics
///
/// Never for valid guids; a guid outside `[A-Za-z0-9_-]+` is a test bug.
pub fn task(task_guid: &str, memory_mb: i32) -> Task {
    let definition = pb::TaskDefinition {
        root_fs: ROOTFS.into(),
        action: Some(run_action("/bin/sh", &["-c", "echo done"])),
        memory_mb,
        disk_mb: 16,
        ..Default::default()
    };
    #[allow(clippy::expect_used)]
    Task {
        task_guid: TaskGuid::parse(task_guid).expect("valid task guid"),
        domain: DomainName::parse("d").expect("valid domain"),
        definition: TaskDefinition::try_from(definition).expect("valid task definition"),
        created_at: 0,
        updated_at: 0,
        first_completed_at: 0,
        state: TaskState::Pending,
        cell_id: None,
        result: String::new(),
        failed: false,
        failure_reason: String::new(),
        rejection_count: 0,
        rejection_reason: String::new(),
    }
}

/// The key of index `index` of `process_guid` in domain `d`.
///
/// # Panics
///
/// When `process_guid` is not a valid guid (a test bug).
pub fn lrp_key(process_guid: &str, index: i32) -> ActualLrpKey {
    #[allow(clippy::expect_used)]
    ActualLrpKey {
        process_guid: ProcessGuid::parse(process_guid).expect("valid process guid"),
        index,
        domain: DomainName::parse("d").expect("valid domain"),
    }
}

/// The start report of index `index` of `process_guid` (instance `<process_guid>-<index>`) on
/// `cell_id`, routable, with no ports.
///
/// # Panics
///
/// When the guids or the cell id are not valid (a test bug).
pub fn running_lrp(process_guid: &str, index: i32, cell_id: &str) -> RunningLrp {
    #[allow(clippy::expect_used)]
    RunningLrp {
        key: lrp_key(process_guid, index),
        instance_key: ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(format!("{process_guid}-{index}")).expect("valid instance guid"),
            cell_id: CellId::parse(cell_id).expect("valid cell id"),
        },
        net_info: NetInfo::default(),
        internal_routes: Vec::new(),
        metric_tags: std::collections::BTreeMap::new(),
        routable: true,
        availability_zone: "z1".into(),
    }
}

/// A desired LRP instance as auction work for `Perform`.
pub fn lrp_work(desired: &DesiredLrp, index: i32) -> rep_pb::Lrp {
    let scheduling = &desired.scheduling;
    LrpStart {
        key: ActualLrpKey { process_guid: scheduling.process_guid.clone(), index, domain: scheduling.domain.clone() },
        resource: Resource {
            memory_mb: scheduling.memory_mb,
            disk_mb: scheduling.disk_mb,
            max_pids: scheduling.max_pids,
        },
        placement_constraint: PlacementConstraint {
            rootfs: scheduling.rootfs.clone(),
            placement_tags: scheduling.placement_tags.clone(),
            volume_drivers: Vec::new(),
        },
    }
    .into()
}

/// A task as auction work for `Perform`.
pub fn task_work(task: &Task) -> rep_pb::Task {
    TaskStart {
        task_guid: task.task_guid.clone(),
        domain: task.domain.clone(),
        resource: Resource { memory_mb: task.definition.memory_mb(), disk_mb: task.definition.disk_mb(), max_pids: 0 },
        placement_constraint: PlacementConstraint {
            rootfs: task.definition.rootfs().to_owned(),
            ..PlacementConstraint::default()
        },
        failed: false,
    }
    .into()
}
