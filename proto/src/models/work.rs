//! The work a cell is offered: one LRP instance or one task to start, with what it needs
//! ([`Resource`]) and where it may run ([`PlacementConstraint`]). The auctioneer sends these to a
//! rep's `Perform`, and a rep describes what it holds in `State` with the same shapes (the rep's
//! `LRP` and `Task` messages).

use super::{ActualLrpKey, DomainName, ProcessGuid, TaskDefinition, TaskGuid};
use crate::pb::auctioneer::v1 as auction_pb;
use crate::pb::models::v1 as pb;

/// What one LRP instance or task needs from a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Resource {
    /// Memory in MB.
    pub memory_mb: i32,
    /// Disk in MB.
    pub disk_mb: i32,
    /// Process limit (0 = unlimited).
    pub max_pids: i32,
}

/// Where a piece of work may run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PlacementConstraint {
    /// The root filesystem URL, for example `preloaded:cflinuxfs4` or `docker:///busybox`.
    pub rootfs: String,
    /// Requested placement tags.
    pub placement_tags: Vec<String>,
    /// Volume drivers the work mounts.
    pub volume_drivers: Vec<String>,
}

/// One LRP instance a cell is asked to start (the rep's `LRP` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LrpStart {
    /// Which index of which desired LRP.
    pub key: ActualLrpKey,
    /// What the instance needs.
    pub resource: Resource,
    /// Where it may run.
    pub placement_constraint: PlacementConstraint,
}

/// One task a cell is asked to start (the rep's `Task` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStart {
    /// The task.
    pub task_guid: TaskGuid,
    /// Its domain.
    pub domain: DomainName,
    /// What the task needs.
    pub resource: Resource,
    /// Where it may run.
    pub placement_constraint: PlacementConstraint,
    /// In a rep's `State`: the task's container completed with a failure.
    pub failed: bool,
}

/// Some indices of one desired LRP to place: what the BBS's controllers and its converger ask the
/// auctioneer for (the auctioneer's `LRPStartRequest`). All indices of one process guid started at
/// once travel in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LrpStartRequest {
    /// The desired LRP.
    pub process_guid: ProcessGuid,
    /// Its domain.
    pub domain: DomainName,
    /// The indices to place, ascending.
    pub indices: Vec<i32>,
    /// Memory per instance in MB.
    pub memory_mb: i32,
    /// Disk per instance in MB.
    pub disk_mb: i32,
    /// Process limit per instance.
    pub max_pids: i32,
    /// Root filesystem URL.
    pub rootfs: String,
    /// Placement tags the cell must match.
    pub placement_tags: Vec<String>,
    /// Volume drivers the cell must offer.
    pub volume_drivers: Vec<String>,
}

/// One task to place (the auctioneer's `TaskStartRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStartRequest {
    /// The task.
    pub task_guid: TaskGuid,
    /// Its domain.
    pub domain: DomainName,
    /// Memory in MB.
    pub memory_mb: i32,
    /// Disk in MB.
    pub disk_mb: i32,
    /// Process limit.
    pub max_pids: i32,
    /// Root filesystem URL.
    pub rootfs: String,
    /// Placement tags the cell must match.
    pub placement_tags: Vec<String>,
    /// Volume drivers the cell must offer.
    pub volume_drivers: Vec<String>,
}

impl TaskStartRequest {
    /// The auction request of a task, from its definition (Diego's
    /// `NewTaskStartRequestFromModel`): resources, rootfs, placement tags, and the driver of each
    /// volume mount.
    pub fn of(task_guid: &TaskGuid, domain: &DomainName, definition: &TaskDefinition) -> Self {
        let wire = definition.as_pb();
        Self {
            task_guid: task_guid.clone(),
            domain: domain.clone(),
            memory_mb: wire.memory_mb,
            disk_mb: wire.disk_mb,
            max_pids: wire.max_pids,
            rootfs: wire.root_fs.clone(),
            placement_tags: wire.placement_tags.clone(),
            volume_drivers: wire.volume_mounts.iter().map(|mount| mount.driver.clone()).collect(),
        }
    }
}

fn wire_resource(memory_mb: i32, disk_mb: i32, max_pids: i32) -> Option<pb::Resource> {
    Some(pb::Resource { memory_mb, disk_mb, max_pids })
}

fn wire_constraint(rootfs: &str, tags: &[String], drivers: &[String]) -> Option<pb::PlacementConstraint> {
    Some(pb::PlacementConstraint {
        rootfs: rootfs.to_owned(),
        placement_tags: tags.to_vec(),
        volume_drivers: drivers.to_vec(),
    })
}

impl From<&LrpStartRequest> for auction_pb::LrpStartRequest {
    fn from(r: &LrpStartRequest) -> Self {
        Self {
            process_guid: r.process_guid.to_string(),
            domain: r.domain.to_string(),
            indices: r.indices.clone(),
            resource: wire_resource(r.memory_mb, r.disk_mb, r.max_pids),
            placement_constraint: wire_constraint(&r.rootfs, &r.placement_tags, &r.volume_drivers),
        }
    }
}

impl From<&TaskStartRequest> for auction_pb::TaskStartRequest {
    fn from(r: &TaskStartRequest) -> Self {
        Self {
            task_guid: r.task_guid.to_string(),
            domain: r.domain.to_string(),
            resource: wire_resource(r.memory_mb, r.disk_mb, r.max_pids),
            placement_constraint: wire_constraint(&r.rootfs, &r.placement_tags, &r.volume_drivers),
        }
    }
}
