//! The `Rep` gRPC service (reference 2.2-2.4): `State` (the bid), `Perform` (reserve what was
//! won), `StopLRPInstance`, `CancelTask`, `UpdateLRPInstance`, `Evacuate`, `Ping`.
//!
//! This is the gRPC adapter: it decodes requests, acts on the executor and the shared context,
//! and encodes answers. Reservations start nothing here; the executor's *reserved* event hands
//! each one to the generator, which claims it and runs it (reference 2.4, last paragraph).

use std::sync::Arc;

use proto::error::ErrorCode;
use proto::models::{InstanceGuid, LrpStart, RootfsProvider, TaskStart};
use proto::pb::rep::v1 as rep_pb;
use tonic::{Request, Response, Status};

use crate::context::{InstanceInfo, RepContext};
use crate::executor::{AllocationRequest, Container, ContainerState, Resources, Workload};
use crate::generator::Generator;
use crate::workload::{LrpWorkload, TaskWorkload};

/// The `Rep` service of one cell.
#[derive(Debug, Clone)]
pub struct RepService {
    ctx: Arc<RepContext>,
    generator: Arc<Generator>,
}

impl RepService {
    /// The service over the rep's shared state.
    pub fn new(generator: Arc<Generator>) -> Self {
        Self { ctx: Arc::clone(generator.context()), generator }
    }

    /// The cell's application logs: its runtime's store, or an empty one.
    pub fn logs(&self) -> crate::logs::LogStore {
        self.ctx.executor.runtime().logs().unwrap_or_else(crate::logs::LogStore::in_memory)
    }

    /// The rep's shared state.
    pub fn context(&self) -> &Arc<RepContext> {
        &self.ctx
    }

    /// The cell's bid, recomputed from the executor's registry (cheap: no runtime calls).
    pub fn state(&self) -> rep_pb::CellState {
        let cell = &self.ctx.cell;
        let (lrps, tasks, starting) = self.ctx.executor.inspect(|containers| {
            let mut lrps = Vec::new();
            let mut tasks = Vec::new();
            for container in containers {
                match &container.workload {
                    Workload::Lrp(lrp) => lrps.push(lrp_of(container, lrp)),
                    Workload::Task(task) => tasks.push(task_of(container, task)),
                }
            }
            (lrps, tasks, containers.iter().filter(|c| c.state.is_starting()).count())
        });
        rep_pb::CellState {
            cell_id: cell.cell_id.to_string(),
            rep_url: format!("http://{}", cell.rep_address),
            zone: cell.zone.clone(),
            rootfs_providers: vec![RootfsProvider::fixed("preloaded", cell.rootfs_names.clone()).into()],
            available_resources: Some(resources_pb(self.ctx.executor.available())),
            total_resources: Some(resources_pb(self.ctx.executor.total())),
            lrps,
            tasks,
            starting_container_count: i32::try_from(starting).unwrap_or(i32::MAX),
            volume_drivers: Vec::new(),
            placement_tags: cell.placement_tags.clone(),
            optional_placement_tags: cell.optional_placement_tags.clone(),
            evacuating: self.ctx.evacuation.is_set(),
        }
    }

    /// Reserves what fits and returns what did not (reference 2.4). While evacuating, all of it.
    /// Each item is converted to its domain type here, at the edge; one that does not convert is
    /// refused like one that does not fit.
    pub fn perform(&self, work: rep_pb::Work) -> rep_pb::PerformResponse {
        let cell_id = self.ctx.cell.cell_id.as_str();
        if self.ctx.evacuation.is_set() {
            tracing::info!(cell_id, lrps = work.lrps.len(), tasks = work.tasks.len(), "evacuating; refusing all work");
            crate::metrics::record_refused(cell_id, work.lrps.len(), work.tasks.len());
            return rep_pb::PerformResponse { failed_lrps: work.lrps, failed_tasks: work.tasks };
        }
        let mut lrps = work.lrps;
        // Biggest first, so small instances do not crowd out large ones (a stable sort).
        lrps.sort_by_key(|lrp| std::cmp::Reverse(lrp.resource.as_ref().map_or(0, |r| r.memory_mb)));
        let mut failed_lrps = Vec::new();
        for lrp in lrps {
            let reserved =
                LrpStart::try_from(lrp.clone()).map_err(|e| e.to_string()).and_then(|start| self.reserve_lrp(start));
            if let Err(reason) = reserved {
                let key = lrp.actual_lrp_key.clone().unwrap_or_default();
                tracing::warn!(cell_id, process_guid = %key.process_guid, index = key.index, reason = %reason, "refusing lrp instance");
                failed_lrps.push(lrp);
            }
        }
        let mut failed_tasks = Vec::new();
        for task in work.tasks {
            let reserved =
                TaskStart::try_from(task.clone()).map_err(|e| e.to_string()).and_then(|start| self.reserve_task(start));
            if let Err(reason) = reserved {
                tracing::warn!(cell_id, task_guid = %task.task_guid, reason = %reason, "refusing task");
                failed_tasks.push(task);
            }
        }
        crate::metrics::record_refused(cell_id, failed_lrps.len(), failed_tasks.len());
        rep_pb::PerformResponse { failed_lrps, failed_tasks }
    }

    fn check_rootfs(&self, rootfs: &str) -> Result<(), String> {
        match rootfs.strip_prefix("preloaded:") {
            Some(name) if self.ctx.cell.rootfs_names.iter().any(|n| n == name.trim_start_matches('/')) => Ok(()),
            Some(name) => Err(format!("this cell has no preloaded rootfs {name:?}")),
            None => Err(format!("unsupported rootfs {rootfs:?}: this cell offers only preloaded rootfses")),
        }
    }

    /// Reserves one LRP instance under a fresh instance guid.
    fn reserve_lrp(&self, lrp: LrpStart) -> Result<String, String> {
        self.check_rootfs(&lrp.placement_constraint.rootfs)?;
        let instance_guid = InstanceGuid::parse(uuid::Uuid::new_v4().to_string()).map_err(|e| e.to_string())?;
        let guid = instance_guid.as_str().to_owned();
        let (memory_mb, disk_mb) = (lrp.resource.memory_mb, lrp.resource.disk_mb);
        let request = AllocationRequest { memory_mb, disk_mb, workload: Workload::lrp(lrp, instance_guid) };
        self.ctx.executor.reserve(&guid, request).map_err(|e| e.to_string())?;
        Ok(guid)
    }

    /// Reserves one task under its task guid.
    fn reserve_task(&self, task: TaskStart) -> Result<(), String> {
        self.check_rootfs(&task.placement_constraint.rootfs)?;
        let guid = task.task_guid.as_str().to_owned();
        let (memory_mb, disk_mb) = (task.resource.memory_mb, task.resource.disk_mb);
        let request = AllocationRequest { memory_mb, disk_mb, workload: Workload::task(task) };
        self.ctx.executor.reserve(&guid, request).map_err(|e| e.to_string())
    }
}

fn resources_pb(r: Resources) -> rep_pb::Resources {
    rep_pb::Resources { memory_mb: r.memory_mb, disk_mb: r.disk_mb, containers: r.containers }
}

/// An LRP container as `State` reports it: its key, the memory and disk it holds, and what it
/// was asked for.
fn lrp_of(container: &Container, lrp: &LrpWorkload) -> rep_pb::Lrp {
    lrp.to_start(container.allocation.memory_mb, container.allocation.disk_mb).into()
}

/// A task container as `State` reports it; `failed` once it completed with a failure.
fn task_of(container: &Container, task: &TaskWorkload) -> rep_pb::Task {
    let failed = container.state == ContainerState::Completed && container.result.as_ref().is_some_and(|r| r.failed);
    task.to_start(container.allocation.memory_mb, container.allocation.disk_mb, failed).into()
}

#[tonic::async_trait]
impl rep_pb::rep_server::Rep for RepService {
    async fn state(&self, _request: Request<rep_pb::StateRequest>) -> Result<Response<rep_pb::CellState>, Status> {
        Ok(Response::new(RepService::state(self)))
    }

    async fn perform(&self, request: Request<rep_pb::Work>) -> Result<Response<rep_pb::PerformResponse>, Status> {
        Ok(Response::new(RepService::perform(self, request.into_inner())))
    }

    async fn stop_lrp_instance(
        &self,
        request: Request<rep_pb::StopLrpInstanceRequest>,
    ) -> Result<Response<rep_pb::StopLrpInstanceResponse>, Status> {
        let request = request.into_inner();
        if request.instance_guid.trim().is_empty() || request.process_guid.trim().is_empty() {
            return Err(
                ErrorCode::InvalidRequest.to_status("invalid request: process_guid and instance_guid are required")
            );
        }
        let matches = self.ctx.executor.get(&request.instance_guid).is_some_and(|c| {
            c.workload.as_lrp().is_some_and(|lrp| lrp.key.process_guid.as_str() == request.process_guid)
        });
        if !matches {
            return Err(ErrorCode::ResourceNotFound.to_status(format!(
                "no container for instance {} of {} on this cell",
                request.instance_guid, request.process_guid
            )));
        }
        tracing::info!(process_guid = %request.process_guid, index = request.index, instance_guid = %request.instance_guid, "stop requested");
        // The stop completes the container as stopped; the generator then removes the actual
        // LRP and deletes the container.
        self.generator.stop_in_background(&request.instance_guid, "stop requested");
        Ok(Response::new(rep_pb::StopLrpInstanceResponse {}))
    }

    async fn cancel_task(
        &self,
        request: Request<rep_pb::CancelTaskRequest>,
    ) -> Result<Response<rep_pb::CancelTaskResponse>, Status> {
        let guid = request.into_inner().task_guid;
        if guid.trim().is_empty() {
            return Err(ErrorCode::InvalidRequest.to_status("invalid request: task_guid is required"));
        }
        // Answer at once and delete in the background; an unknown task counts as cancelled.
        if self.ctx.executor.get(&guid).is_some_and(|c| c.workload.is_task()) {
            tracing::info!(task_guid = %guid, "task cancelled; deleting its container");
            let executor = self.ctx.executor.clone();
            tokio::spawn(async move {
                if let Err(e) = executor.delete(&guid).await {
                    tracing::debug!(task_guid = %guid, error = %e, "deleting a cancelled task's container failed");
                }
            });
        }
        Ok(Response::new(rep_pb::CancelTaskResponse {}))
    }

    async fn update_lrp_instance(
        &self,
        request: Request<rep_pb::UpdateLrpInstanceRequest>,
    ) -> Result<Response<rep_pb::UpdateLrpInstanceResponse>, Status> {
        let request = request.into_inner();
        if request.instance_guid.trim().is_empty() {
            return Err(ErrorCode::InvalidRequest.to_status("invalid request: instance_guid is required"));
        }
        let Some(container) = self.ctx.executor.get(&request.instance_guid) else {
            return Err(ErrorCode::ResourceNotFound
                .to_status(format!("no container for instance {} on this cell", request.instance_guid)));
        };
        let info = InstanceInfo {
            internal_routes: request
                .internal_routes
                .into_iter()
                .map(|r| r.hostname)
                .filter(|h| !h.is_empty())
                .collect(),
            metric_tags: request.metric_tags.into_iter().collect(),
        };
        tracing::info!(process_guid = %request.process_guid, instance_guid = %request.instance_guid, internal_routes = info.internal_routes.len(), "instance updated");
        self.ctx.set_instance_info(&request.instance_guid, info);
        if container.state == ContainerState::Running {
            // Re-assert at once instead of waiting for the next bulk sync.
            drop(self.generator.enqueue(&request.instance_guid));
        }
        Ok(Response::new(rep_pb::UpdateLrpInstanceResponse {}))
    }

    async fn evacuate(
        &self,
        _request: Request<rep_pb::EvacuateRequest>,
    ) -> Result<Response<rep_pb::EvacuateResponse>, Status> {
        if self.ctx.evacuation.start() {
            tracing::info!(cell_id = %self.ctx.cell.cell_id, "evacuation requested");
        }
        Ok(Response::new(rep_pb::EvacuateResponse {}))
    }

    async fn ping(&self, _request: Request<rep_pb::PingRequest>) -> Result<Response<rep_pb::PingResponse>, Status> {
        Ok(Response::new(rep_pb::PingResponse { available: true }))
    }
}
