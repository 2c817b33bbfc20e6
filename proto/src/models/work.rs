//! The work a cell is offered: one LRP instance or one task to start, with what it needs
//! ([`Resource`]) and where it may run ([`PlacementConstraint`]). The auctioneer sends these to a
//! rep's `Perform`, and a rep describes what it holds in `State` with the same shapes (the rep's
//! `LRP` and `Task` messages).

use super::{ActualLrpKey, DomainName, TaskGuid};

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
