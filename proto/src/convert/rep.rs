//! The rep's work messages: resources, placement constraints, and the LRP instances and tasks of
//! `Perform` and `State`. Resources and constraints convert totally (absent is the zero value);
//! an LRP needs a valid `actual_lrp_key`, a task a valid guid and domain.

use crate::models::{DomainName, LrpStart, PlacementConstraint, Resource, TaskGuid, TaskStart, ValidationError};
use crate::pb::models::v1 as pb;
use crate::pb::rep::v1 as rep_pb;

use super::ids::actual_lrp_key_from_pb;

impl From<pb::Resource> for Resource {
    fn from(r: pb::Resource) -> Self {
        Self { memory_mb: r.memory_mb, disk_mb: r.disk_mb, max_pids: r.max_pids }
    }
}

impl From<Resource> for pb::Resource {
    fn from(r: Resource) -> Self {
        Self { memory_mb: r.memory_mb, disk_mb: r.disk_mb, max_pids: r.max_pids }
    }
}

impl From<pb::PlacementConstraint> for PlacementConstraint {
    fn from(c: pb::PlacementConstraint) -> Self {
        Self { rootfs: c.rootfs, placement_tags: c.placement_tags, volume_drivers: c.volume_drivers }
    }
}

impl From<PlacementConstraint> for pb::PlacementConstraint {
    fn from(c: PlacementConstraint) -> Self {
        Self { rootfs: c.rootfs, placement_tags: c.placement_tags, volume_drivers: c.volume_drivers }
    }
}

impl TryFrom<rep_pb::Lrp> for LrpStart {
    type Error = ValidationError;

    /// Needs a valid `actual_lrp_key`; an absent resource or constraint is the zero value.
    fn try_from(lrp: rep_pb::Lrp) -> Result<Self, Self::Error> {
        Ok(Self {
            key: actual_lrp_key_from_pb(lrp.actual_lrp_key)?,
            resource: lrp.resource.map(Resource::from).unwrap_or_default(),
            placement_constraint: lrp.placement_constraint.map(PlacementConstraint::from).unwrap_or_default(),
        })
    }
}

impl From<LrpStart> for rep_pb::Lrp {
    fn from(lrp: LrpStart) -> Self {
        Self {
            actual_lrp_key: Some(pb::ActualLrpKey::from(lrp.key)),
            resource: Some(lrp.resource.into()),
            placement_constraint: Some(lrp.placement_constraint.into()),
        }
    }
}

impl TryFrom<rep_pb::Task> for TaskStart {
    type Error = ValidationError;

    /// Needs a valid task guid and domain; an absent resource or constraint is the zero value.
    fn try_from(task: rep_pb::Task) -> Result<Self, Self::Error> {
        Ok(Self {
            task_guid: TaskGuid::parse(task.task_guid)?,
            domain: DomainName::parse(task.domain)?,
            resource: task.resource.map(Resource::from).unwrap_or_default(),
            placement_constraint: task.placement_constraint.map(PlacementConstraint::from).unwrap_or_default(),
            failed: task.failed,
        })
    }
}

impl From<TaskStart> for rep_pb::Task {
    fn from(task: TaskStart) -> Self {
        Self {
            task_guid: task.task_guid.into_string(),
            domain: task.domain.into_string(),
            resource: Some(task.resource.into()),
            placement_constraint: Some(task.placement_constraint.into()),
            failed: task.failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lrp() -> rep_pb::Lrp {
        rep_pb::Lrp {
            actual_lrp_key: Some(pb::ActualLrpKey { process_guid: "web".into(), index: 2, domain: "d".into() }),
            resource: Some(pb::Resource { memory_mb: 256, disk_mb: 1024, max_pids: 10 }),
            placement_constraint: Some(pb::PlacementConstraint {
                rootfs: "preloaded:busybox".into(),
                placement_tags: vec!["gpu".into()],
                volume_drivers: vec!["nfs".into()],
            }),
        }
    }

    fn task() -> rep_pb::Task {
        rep_pb::Task {
            task_guid: "t-1".into(),
            domain: "d".into(),
            resource: Some(pb::Resource { memory_mb: 64, disk_mb: 16, max_pids: 0 }),
            placement_constraint: Some(pb::PlacementConstraint { rootfs: "docker:///x".into(), ..Default::default() }),
            failed: true,
        }
    }

    #[test]
    fn lrps_and_tasks_round_trip() {
        let start = LrpStart::try_from(lrp()).expect("valid");
        assert_eq!(start.key.index, 2);
        assert_eq!(start.resource.max_pids, 10);
        assert_eq!(start.placement_constraint.volume_drivers, ["nfs"]);
        assert_eq!(rep_pb::Lrp::from(start), lrp());
        let start = TaskStart::try_from(task()).expect("valid");
        assert_eq!(start.task_guid.as_str(), "t-1");
        assert_eq!(rep_pb::Task::from(start), task());
    }

    #[test]
    fn absent_resources_and_constraints_are_zero() {
        let bare = rep_pb::Lrp { resource: None, placement_constraint: None, ..lrp() };
        let start = LrpStart::try_from(bare).expect("valid");
        assert_eq!(start.resource, Resource::default());
        assert_eq!(start.placement_constraint, PlacementConstraint::default());
    }

    #[test]
    fn invalid_keys_and_guids_are_refused_naming_the_field() {
        let err = LrpStart::try_from(rep_pb::Lrp { actual_lrp_key: None, ..lrp() }).expect_err("no key");
        assert_eq!(err.to_string(), "actual_lrp_key is required");
        let mut negative = lrp();
        if let Some(key) = negative.actual_lrp_key.as_mut() {
            key.index = -1;
        }
        let err = LrpStart::try_from(negative).expect_err("negative index");
        assert_eq!(err.field, "actual_lrp_key.index");
        let err = TaskStart::try_from(rep_pb::Task { task_guid: String::new(), ..task() }).expect_err("no guid");
        assert_eq!(err.field, "task_guid");
        let err = TaskStart::try_from(rep_pb::Task { domain: String::new(), ..task() }).expect_err("no domain");
        assert_eq!(err.field, "domain");
    }
}
