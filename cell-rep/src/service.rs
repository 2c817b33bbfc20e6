//! The `Rep` gRPC service (reference 2.2-2.4): `State` (the bid), `Perform` (reserve what was
//! won), `StopLRPInstance`, `CancelTask`, `UpdateLRPInstance`, `Evacuate`, `Ping`.
//!
//! This is the gRPC adapter: it decodes requests, acts on the executor and the shared context,
//! and encodes answers. Reservations start nothing here; the executor's *reserved* event hands
//! each one to the generator, which claims it and runs it (reference 2.4, last paragraph).

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::error::ErrorCode;
use proto::models::{DomainName, ProcessGuid, TaskGuid};
use proto::pb::models::v1 as models_pb;
use proto::pb::rep::v1 as rep_pb;
use tonic::{Request, Response, Status};

use crate::context::{InstanceInfo, RepContext, rep_tags};
use crate::executor::{AllocationRequest, Container, ContainerState, Resources, tags};
use crate::generator::Generator;

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

    /// The cell's bid, recomputed from the executor's registry (cheap: no runtime calls).
    pub fn state(&self) -> rep_pb::CellState {
        let cell = &self.ctx.cell;
        let containers = self.ctx.executor.list();
        let mut lrps = Vec::new();
        let mut tasks = Vec::new();
        for container in &containers {
            match tags::get(&container.tags, tags::LIFECYCLE) {
                tags::LRP => lrps.push(lrp_of(container)),
                tags::TASK => tasks.push(task_of(container)),
                _ => {}
            }
        }
        let starting = containers.iter().filter(|c| c.state.is_starting()).count();
        rep_pb::CellState {
            cell_id: cell.cell_id.to_string(),
            rep_url: format!("http://{}", cell.rep_address),
            zone: cell.zone.clone(),
            rootfs_providers: vec![models_pb::Provider {
                name: "preloaded".into(),
                properties: cell.rootfs_names.clone(),
            }],
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
            if let Err(reason) = self.reserve_lrp(&lrp) {
                let key = lrp.actual_lrp_key.clone().unwrap_or_default();
                tracing::warn!(cell_id, process_guid = %key.process_guid, index = key.index, reason = %reason, "refusing lrp instance");
                failed_lrps.push(lrp);
            }
        }
        let mut failed_tasks = Vec::new();
        for task in work.tasks {
            if let Err(reason) = self.reserve_task(&task) {
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
    fn reserve_lrp(&self, lrp: &rep_pb::Lrp) -> Result<String, String> {
        let key = lrp.actual_lrp_key.as_ref().ok_or("actual_lrp_key is required")?;
        let process_guid = ProcessGuid::parse(key.process_guid.as_str()).map_err(|e| e.to_string())?;
        let domain = DomainName::parse(key.domain.as_str()).map_err(|e| e.to_string())?;
        if key.index < 0 {
            return Err("index must not be negative".into());
        }
        let resource = lrp.resource.unwrap_or_default();
        let constraint = lrp.placement_constraint.clone().unwrap_or_default();
        self.check_rootfs(&constraint.rootfs)?;
        let instance_guid = uuid::Uuid::new_v4().to_string();
        let mut container_tags = constraint_tags(&constraint, resource.max_pids);
        container_tags.insert(tags::LIFECYCLE.into(), tags::LRP.into());
        container_tags.insert(tags::PROCESS_GUID.into(), process_guid.to_string());
        container_tags.insert(tags::INDEX.into(), key.index.to_string());
        container_tags.insert(tags::DOMAIN.into(), domain.to_string());
        container_tags.insert(tags::INSTANCE_GUID.into(), instance_guid.clone());
        let request =
            AllocationRequest { memory_mb: resource.memory_mb, disk_mb: resource.disk_mb, tags: container_tags };
        self.ctx.executor.reserve(&instance_guid, request).map_err(|e| e.to_string())?;
        Ok(instance_guid)
    }

    /// Reserves one task under its task guid.
    fn reserve_task(&self, task: &rep_pb::Task) -> Result<(), String> {
        let task_guid = TaskGuid::parse(task.task_guid.as_str()).map_err(|e| e.to_string())?;
        let domain = DomainName::parse(task.domain.as_str()).map_err(|e| e.to_string())?;
        let resource = task.resource.unwrap_or_default();
        let constraint = task.placement_constraint.clone().unwrap_or_default();
        self.check_rootfs(&constraint.rootfs)?;
        let mut container_tags = constraint_tags(&constraint, resource.max_pids);
        container_tags.insert(tags::LIFECYCLE.into(), tags::TASK.into());
        container_tags.insert(tags::TASK_GUID.into(), task_guid.to_string());
        container_tags.insert(tags::DOMAIN.into(), domain.to_string());
        let request =
            AllocationRequest { memory_mb: resource.memory_mb, disk_mb: resource.disk_mb, tags: container_tags };
        self.ctx.executor.reserve(task_guid.as_str(), request).map_err(|e| e.to_string())
    }
}

fn resources_pb(r: Resources) -> rep_pb::Resources {
    rep_pb::Resources { memory_mb: r.memory_mb, disk_mb: r.disk_mb, containers: r.containers }
}

fn constraint_tags(constraint: &models_pb::PlacementConstraint, max_pids: i32) -> BTreeMap<String, String> {
    let json = |list: &[String]| serde_json::to_string(list).unwrap_or_else(|_| "[]".into());
    BTreeMap::from([
        (rep_tags::ROOTFS.to_owned(), constraint.rootfs.clone()),
        (rep_tags::PLACEMENT_TAGS.to_owned(), json(&constraint.placement_tags)),
        (rep_tags::VOLUME_DRIVERS.to_owned(), json(&constraint.volume_drivers)),
        (rep_tags::MAX_PIDS.to_owned(), max_pids.to_string()),
    ])
}

fn constraint_of(container: &Container) -> models_pb::PlacementConstraint {
    let list = |key: &str| serde_json::from_str::<Vec<String>>(tags::get(&container.tags, key)).unwrap_or_default();
    models_pb::PlacementConstraint {
        rootfs: tags::get(&container.tags, rep_tags::ROOTFS).to_owned(),
        placement_tags: list(rep_tags::PLACEMENT_TAGS),
        volume_drivers: list(rep_tags::VOLUME_DRIVERS),
    }
}

fn resource_of(container: &Container) -> models_pb::Resource {
    models_pb::Resource {
        memory_mb: container.allocation.memory_mb,
        disk_mb: container.allocation.disk_mb,
        max_pids: tags::get(&container.tags, rep_tags::MAX_PIDS).parse().unwrap_or(0),
    }
}

fn lrp_of(container: &Container) -> rep_pb::Lrp {
    rep_pb::Lrp {
        actual_lrp_key: Some(models_pb::ActualLrpKey {
            process_guid: tags::get(&container.tags, tags::PROCESS_GUID).to_owned(),
            index: tags::get(&container.tags, tags::INDEX).parse().unwrap_or(0),
            domain: tags::get(&container.tags, tags::DOMAIN).to_owned(),
        }),
        resource: Some(resource_of(container)),
        placement_constraint: Some(constraint_of(container)),
    }
}

fn task_of(container: &Container) -> rep_pb::Task {
    rep_pb::Task {
        task_guid: container.guid.clone(),
        domain: tags::get(&container.tags, tags::DOMAIN).to_owned(),
        resource: Some(resource_of(container)),
        placement_constraint: Some(constraint_of(container)),
        failed: container.state == ContainerState::Completed && container.result.as_ref().is_some_and(|r| r.failed),
    }
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
            tags::get(&c.tags, tags::LIFECYCLE) == tags::LRP
                && tags::get(&c.tags, tags::PROCESS_GUID) == request.process_guid
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
        if self.ctx.executor.get(&guid).is_some_and(|c| tags::get(&c.tags, tags::LIFECYCLE) == tags::TASK) {
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
