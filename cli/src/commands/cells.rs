//! `cells`: every live cell with its capacity and what is placed on it. Use is computed here,
//! not asked of the reps: the memory, disk and one container of every CLAIMED or RUNNING
//! actual LRP (sized by its desired LRP's scheduling info) and every RUNNING task on the cell.

use std::collections::BTreeMap;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde::Serialize;

use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format, Table, or_dash};

/// Memory, disk and containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// Memory in MB.
    pub memory_mb: i64,
    /// Disk in MB.
    pub disk_mb: i64,
    /// Containers.
    pub containers: i64,
}

impl Resources {
    fn add(&mut self, memory_mb: i32, disk_mb: i32) {
        self.memory_mb += i64::from(memory_mb);
        self.disk_mb += i64::from(disk_mb);
        self.containers += 1;
    }
}

/// One row of `cells`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CellView {
    /// The cell's id.
    pub cell_id: String,
    /// Its availability zone.
    pub zone: String,
    /// Its rep's gRPC address.
    pub rep_address: String,
    /// What it offers.
    pub capacity: Resources,
    /// What its LRP instances and tasks take.
    pub used: Resources,
    /// CLAIMED or RUNNING LRP instances on it.
    pub lrp_instances: usize,
    /// RUNNING tasks on it.
    pub tasks: usize,
    /// Its placement tags.
    pub placement_tags: Vec<String>,
    /// Root filesystems it provides, as `scheme:name` (or `scheme` for any name).
    pub rootfs: Vec<String>,
}

/// Adds up the use per cell.
pub fn compute(
    cells: Vec<pb::CellPresence>,
    actual: &[pb::ActualLrp],
    infos: &[pb::DesiredLrpSchedulingInfo],
    tasks: &[pb::Task],
) -> Vec<CellView> {
    let sizes: BTreeMap<&str, (i32, i32)> = infos
        .iter()
        .filter_map(|info| {
            let key = info.desired_lrp_key.as_ref()?;
            let resource = info.desired_lrp_resource.clone().unwrap_or_default();
            Some((key.process_guid.as_str(), (resource.memory_mb, resource.disk_mb)))
        })
        .collect();
    let mut views: BTreeMap<String, CellView> = cells
        .into_iter()
        .map(|cell| {
            let capacity = cell.capacity.unwrap_or_default();
            let rootfs = cell
                .rootfs_providers
                .iter()
                .flat_map(|p| {
                    if p.properties.is_empty() {
                        vec![p.name.clone()]
                    } else {
                        p.properties.iter().map(|name| format!("{}:{name}", p.name)).collect()
                    }
                })
                .collect();
            let view = CellView {
                cell_id: cell.cell_id.clone(),
                zone: cell.zone,
                rep_address: cell.rep_address,
                capacity: Resources {
                    memory_mb: i64::from(capacity.memory_mb),
                    disk_mb: i64::from(capacity.disk_mb),
                    containers: i64::from(capacity.containers),
                },
                placement_tags: cell.placement_tags,
                rootfs,
                ..Default::default()
            };
            (cell.cell_id, view)
        })
        .collect();
    let holds_container =
        |state: i32| state == pb::ActualLrpState::Claimed as i32 || state == pb::ActualLrpState::Running as i32;
    for lrp in actual.iter().filter(|lrp| holds_container(lrp.state)) {
        let (Some(key), Some(instance)) = (&lrp.actual_lrp_key, &lrp.actual_lrp_instance_key) else { continue };
        if let Some(view) = views.get_mut(&instance.cell_id) {
            let (memory, disk) = sizes.get(key.process_guid.as_str()).copied().unwrap_or_default();
            view.used.add(memory, disk);
            view.lrp_instances += 1;
        }
    }
    for task in tasks.iter().filter(|t| t.state == pb::task::State::Running as i32) {
        if let Some(view) = views.get_mut(&task.cell_id) {
            let def = task.task_definition.clone().unwrap_or_default();
            view.used.add(def.memory_mb, def.disk_mb);
            view.tasks += 1;
        }
    }
    views.into_values().collect()
}

/// Lists live cells with capacity and use.
pub async fn list(bbs: &Bbs, format: Format) -> Result<(), Error> {
    let cells = bbs.all(api::CellsRequest::default(), |mut c, r| async move { c.cells(r).await }).await?;
    let actual = bbs.all(api::ActualLrPsRequest::default(), |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
    let request = api::DesiredLrPsRequest::default();
    let infos = bbs.all(request, |mut c, r| async move { c.desired_lrp_scheduling_infos(r).await }).await?;
    let tasks = bbs.all(api::TasksRequest::default(), |mut c, r| async move { c.tasks(r).await }).await?;
    let views = compute(cells, &actual, &infos, &tasks);
    if format == Format::Json {
        return output::print_json(&views);
    }
    let mut table = Table::new(&["CELL", "ZONE", "MEMORY", "DISK", "CONTAINERS", "LRPS", "TASKS", "REP ADDRESS"]);
    for cell in &views {
        table.row(vec![
            cell.cell_id.clone(),
            or_dash(&cell.zone),
            format!("{}/{} MB", cell.used.memory_mb, cell.capacity.memory_mb),
            format!("{}/{} MB", cell.used.disk_mb, cell.capacity.disk_mb),
            format!("{}/{}", cell.used.containers, cell.capacity.containers),
            cell.lrp_instances.to_string(),
            cell.tasks.to_string(),
            cell.rep_address.clone(),
        ]);
    }
    output::print(&table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(guid: &str, cell: &str, state: pb::ActualLrpState) -> pb::ActualLrp {
        pb::ActualLrp {
            actual_lrp_key: Some(pb::ActualLrpKey { process_guid: guid.into(), index: 0, domain: "d".into() }),
            actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey { instance_guid: "i".into(), cell_id: cell.into() }),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn use_adds_claimed_and_running_instances_and_running_tasks() {
        let cell = pb::CellPresence {
            cell_id: "cell-1".into(),
            capacity: Some(pb::CellCapacity { memory_mb: 1024, disk_mb: 4096, containers: 10 }),
            ..Default::default()
        };
        let info = pb::DesiredLrpSchedulingInfo {
            desired_lrp_key: Some(pb::DesiredLrpKey { process_guid: "web".into(), ..Default::default() }),
            desired_lrp_resource: Some(pb::DesiredLrpResource { memory_mb: 128, disk_mb: 256, ..Default::default() }),
            ..Default::default()
        };
        let actual = [
            instance("web", "cell-1", pb::ActualLrpState::Running),
            instance("web", "cell-1", pb::ActualLrpState::Claimed),
            instance("web", "cell-1", pb::ActualLrpState::Crashed),
            instance("web", "cell-2", pb::ActualLrpState::Running),
        ];
        let task = pb::Task {
            cell_id: "cell-1".into(),
            state: pb::task::State::Running as i32,
            task_definition: Some(pb::TaskDefinition { memory_mb: 64, disk_mb: 10, ..Default::default() }),
            ..Default::default()
        };
        let views = compute(vec![cell], &actual, &[info], &[task]);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].used, Resources { memory_mb: 320, disk_mb: 522, containers: 3 });
        assert_eq!((views[0].lrp_instances, views[0].tasks), (2, 1));
    }
}
