//! Conversions between the wire messages (`proto::pb`) and the placement model. Only adapter
//! code (`service.rs`, `rep_client.rs`) calls these. Every conversion is total: missing
//! messages become zero values and out-of-range numbers saturate, so no input panics.

use proto::pb::models::v1 as models_pb;
use proto::pb::rep::v1 as rep_pb;

use crate::batch::Work;
use crate::placement::{
    CellState, ExistingInstance, LrpWork, PlacementConstraint, Resources, RootfsProvider, TaskWork, WorkResource,
};

/// A work resource from the wire; absent means zero.
pub(crate) fn resource_from_pb(r: Option<&models_pb::Resource>) -> WorkResource {
    let r = r.copied().unwrap_or_default();
    WorkResource { memory_mb: i64::from(r.memory_mb), disk_mb: i64::from(r.disk_mb), max_pids: i64::from(r.max_pids) }
}

/// A placement constraint from the wire; absent means no rootfs, tags or drivers.
pub(crate) fn constraint_from_pb(c: Option<&models_pb::PlacementConstraint>) -> PlacementConstraint {
    c.cloned().map(PlacementConstraint::from).unwrap_or_default()
}

fn saturate(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

fn resource_to_pb(r: &WorkResource) -> models_pb::Resource {
    models_pb::Resource {
        memory_mb: saturate(r.memory_mb),
        disk_mb: saturate(r.disk_mb),
        max_pids: saturate(r.max_pids),
    }
}

fn resources_from_pb(r: Option<&rep_pb::Resources>) -> Resources {
    let r = r.copied().unwrap_or_default();
    Resources::new(i64::from(r.memory_mb), i64::from(r.disk_mb), i64::from(r.containers))
}

/// A rep's `State` answer as the placement model sees it (reference §2.3): zone, total and
/// available resources, rootfs providers, volume drivers, required and optional tags, starting
/// containers, the process guids of its LRP instances and the number of its tasks.
pub fn cell_state_from_pb(state: rep_pb::CellState) -> CellState {
    CellState {
        total: resources_from_pb(state.total_resources.as_ref()),
        available: resources_from_pb(state.available_resources.as_ref()),
        rootfs_providers: state.rootfs_providers.into_iter().map(RootfsProvider::from).collect(),
        volume_drivers: state.volume_drivers,
        placement_tags: state.placement_tags,
        optional_placement_tags: state.optional_placement_tags,
        starting_containers: i64::from(state.starting_container_count),
        existing: state
            .lrps
            .into_iter()
            .map(|l| ExistingInstance { process_guid: l.actual_lrp_key.map(|k| k.process_guid).unwrap_or_default() })
            .collect(),
        existing_tasks: i64::try_from(state.tasks.len()).unwrap_or(i64::MAX),
        evacuating: state.evacuating,
        cell_id: state.cell_id,
        zone: state.zone,
    }
}

/// An LRP instance as a rep receives it in `Perform`.
pub fn lrp_to_pb(lrp: &LrpWork) -> rep_pb::Lrp {
    rep_pb::Lrp {
        actual_lrp_key: Some(models_pb::ActualLrpKey {
            process_guid: lrp.process_guid.clone(),
            index: lrp.index,
            domain: lrp.domain.clone(),
        }),
        resource: Some(resource_to_pb(&lrp.resource)),
        placement_constraint: Some(lrp.constraint.clone().into()),
    }
}

/// A task as a rep receives it in `Perform`.
pub fn task_to_pb(task: &TaskWork) -> rep_pb::Task {
    rep_pb::Task {
        task_guid: task.task_guid.clone(),
        domain: task.domain.clone(),
        resource: Some(resource_to_pb(&task.resource)),
        placement_constraint: Some(task.constraint.clone().into()),
        failed: false,
    }
}

/// An LRP instance from a rep's message.
pub fn lrp_from_pb(lrp: rep_pb::Lrp) -> LrpWork {
    let key = lrp.actual_lrp_key.unwrap_or_default();
    LrpWork {
        process_guid: key.process_guid,
        index: key.index,
        domain: key.domain,
        resource: resource_from_pb(lrp.resource.as_ref()),
        constraint: constraint_from_pb(lrp.placement_constraint.as_ref()),
    }
}

/// A task from a rep's message.
pub fn task_from_pb(task: rep_pb::Task) -> TaskWork {
    TaskWork {
        resource: resource_from_pb(task.resource.as_ref()),
        constraint: constraint_from_pb(task.placement_constraint.as_ref()),
        task_guid: task.task_guid,
        domain: task.domain,
    }
}

/// The `Perform` request for `work`.
pub fn work_to_pb(work: &Work) -> rep_pb::Work {
    rep_pb::Work { lrps: work.lrps.iter().map(lrp_to_pb).collect(), tasks: work.tasks.iter().map(task_to_pb).collect() }
}

/// The work a rep refused, from its `Perform` answer.
pub fn refused_from_pb(response: rep_pb::PerformResponse) -> Work {
    Work {
        lrps: response.failed_lrps.into_iter().map(lrp_from_pb).collect(),
        tasks: response.failed_tasks.into_iter().map(task_from_pb).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lrp() -> LrpWork {
        LrpWork {
            process_guid: "pg".into(),
            index: 3,
            domain: "d".into(),
            resource: WorkResource { memory_mb: 256, disk_mb: 1024, max_pids: 10 },
            constraint: PlacementConstraint {
                rootfs: "preloaded:busybox".into(),
                placement_tags: vec!["gpu".into()],
                volume_drivers: vec!["nfs".into()],
            },
        }
    }

    #[test]
    fn work_round_trips_through_the_wire() {
        let task = TaskWork {
            task_guid: "t".into(),
            domain: "d".into(),
            resource: WorkResource { memory_mb: 1, disk_mb: 2, max_pids: 3 },
            constraint: PlacementConstraint::default(),
        };
        let work = Work { lrps: vec![lrp()], tasks: vec![task] };
        let pb = work_to_pb(&work);
        let back = refused_from_pb(rep_pb::PerformResponse { failed_lrps: pb.lrps, failed_tasks: pb.tasks });
        assert_eq!(back, work);
    }

    #[test]
    fn huge_values_saturate_instead_of_wrapping() {
        let mut big = lrp();
        big.resource.memory_mb = i64::MAX;
        big.resource.disk_mb = i64::MIN;
        let pb = lrp_to_pb(&big);
        let r = pb.resource.unwrap_or_default();
        assert_eq!((r.memory_mb, r.disk_mb), (i32::MAX, i32::MIN));
    }

    #[test]
    fn cell_state_keeps_everything_placement_needs() {
        let state = rep_pb::CellState {
            cell_id: "cell-1".into(),
            zone: "z1".into(),
            rootfs_providers: vec![models_pb::Provider {
                name: "preloaded".into(),
                properties: vec!["busybox".into()],
            }],
            available_resources: Some(rep_pb::Resources { memory_mb: 100, disk_mb: 200, containers: 3 }),
            total_resources: Some(rep_pb::Resources { memory_mb: 1000, disk_mb: 2000, containers: 30 }),
            lrps: vec![lrp_to_pb(&lrp())],
            tasks: vec![task_to_pb(&TaskWork::default()), task_to_pb(&TaskWork::default())],
            starting_container_count: 2,
            volume_drivers: vec!["nfs".into()],
            placement_tags: vec!["a".into()],
            optional_placement_tags: vec!["b".into()],
            evacuating: true,
            ..Default::default()
        };
        let cell = cell_state_from_pb(state);
        assert_eq!(cell.cell_id, "cell-1");
        assert_eq!(cell.zone, "z1");
        assert_eq!(cell.total, Resources::new(1000, 2000, 30));
        assert_eq!(cell.available, Resources::new(100, 200, 3));
        assert_eq!(cell.rootfs_providers, [RootfsProvider::fixed("preloaded", ["busybox"])]);
        assert_eq!(cell.volume_drivers, ["nfs"]);
        assert_eq!(cell.placement_tags, ["a"]);
        assert_eq!(cell.optional_placement_tags, ["b"]);
        assert_eq!(cell.starting_containers, 2);
        assert_eq!(cell.existing, [ExistingInstance { process_guid: "pg".into() }]);
        assert_eq!(cell.existing_tasks, 2);
        assert!(cell.evacuating);
    }

    #[test]
    fn an_empty_state_gives_an_empty_cell() {
        assert_eq!(cell_state_from_pb(rep_pb::CellState::default()), CellState::default());
    }
}
