//! The gRPC adapter of `diego.bbs.v1.Bbs`: each method decodes its request into domain types
//! (validation errors become INVALID_ARGUMENT naming the field, and nothing is written), calls
//! one controller method, and encodes the result. The field rules of that decoding are in
//! [`decode`]; request count and latency per RPC are recorded by [`observe`]; the list RPCs are
//! paged, in [`listings`], and the two bulk ones also come streamed (StreamActualLRPs,
//! StreamDesiredLRPSchedulingInfos: the whole listing as bounded pages). Who may call what is decided by role before a request gets here
//! ([`svc::authz::AuthzLayer`]); a cell's calls marked "own cell" in that table are checked here,
//! before anything is written, against the cell id the request or the stored record names
//! ([`require_own_cell`]).

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use proto::convert::{actual_lrp_key_from_pb, instance_key_from_pb};
use proto::models::{DesiredLrp, DesiredLrpUpdate, DomainName, TaskDefinition};
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_server::Bbs;
use proto::pb::models::v1 as pb;
use svc::authz::require_own_cell;
use svc::identity::{Peer, Role};
use tonic::{Request, Response, Status};

use self::decode::{
    cell_id, index, invalid, process_guid, required_instance_key, start_info, start_request, task_guid,
};
use self::observe::observe;
use crate::Result;
use crate::controllers::Context;
use crate::controllers::actual_lrps::ActualLrps;
use crate::controllers::desired_lrps::DesiredLrps;
use crate::controllers::evacuation::Evacuation;
use crate::controllers::tasks::Tasks;
use crate::paging::StreamPage;

/// The `Bbs` service.
pub struct BbsService {
    ctx: Context,
    fatal: tokio_util::sync::CancellationToken,
    /// Turns of the batch writes ([`batch_turns`]).
    batches: tokio::sync::Semaphore,
}

/// How many batch writes (DesireLRPs, StartActualLRPs) run at once: twice the cores. More wait
/// for a turn, first come first served, before any of their work starts.
///
/// A batch of a thousand items is tens of milliseconds of CPU between its statements (rows
/// built, sealed, bound; events published). With 32 of them running at once on 2 cores, every
/// ready task (a transaction's next statement, a lease renewal, a rep's fetch) waited behind all
/// of them: the BBS ran ready tasks over a second late, many times a minute, while 500,000 LRPs
/// were seeded (`svc::lag`, docs/performance.md, seventh round). Batches that wait for a turn
/// hold no connection and no transaction, and the CPU does the same work in fewer, shorter
/// queues.
pub fn batch_turns() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get) * 2
}

impl BbsService {
    /// A service over `ctx`; `fatal` is cancelled when a request hits an unrecoverable store
    /// error (a table is gone), so the process steps down and its supervisor restarts it.
    pub fn new(ctx: Context, fatal: tokio_util::sync::CancellationToken) -> Self {
        Self { ctx, fatal, batches: tokio::sync::Semaphore::new(batch_turns()) }
    }

    /// Waits for a batch write's turn ([`batch_turns`]); the turn ends when the permit drops.
    async fn batch_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed.
        self.batches.acquire().await.ok()
    }

    async fn observe<T>(&self, rpc: &'static str, body: impl Future<Output = Result<T>>) -> GrpcResult<T> {
        observe(rpc, body, &self.fatal).await
    }
}

type GrpcResult<T> = std::result::Result<Response<T>, Status>;

mod batch;
mod decode;
mod listings;
mod observe;

/// The cell an optional instance key of a request names (`""` without one), for
/// [`require_own_cell`]: a cell must name its own instance key.
fn key_cell(key: &Option<pb::ActualLrpInstanceKey>) -> &str {
    key.as_ref().map_or("", |key| key.cell_id.as_str())
}

type EventStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

/// A streamed listing once its first message is read: an error there (a filter the store
/// refuses, the database down) fails the call itself, as the unary listing's would; later
/// errors end the stream with their status. Each page becomes a response through `to_wire`.
async fn started<P, R>(
    mut pages: listings::Pages<P>,
    to_wire: impl Fn(StreamPage<P>) -> R + Send + 'static,
) -> Result<EventStream<R>>
where
    P: Send + 'static,
    R: Send + 'static,
{
    let first = match pages.next().await {
        Some(page) => page?,
        None => return Ok(Box::pin(futures::stream::empty())),
    };
    let rest = pages.map(|page| page.map_err(Status::from));
    Ok(Box::pin(futures::stream::once(async { Ok(first) }).chain(rest).map(move |page| page.map(&to_wire))))
}

#[tonic::async_trait]
impl Bbs for BbsService {
    async fn ping(&self, _: Request<api::PingRequest>) -> GrpcResult<api::PingResponse> {
        self.observe("Ping", async { Ok(api::PingResponse { available: true }) }).await
    }

    async fn domains(&self, _: Request<api::DomainsRequest>) -> GrpcResult<api::DomainsResponse> {
        self.observe("Domains", async {
            let now_ns = self.ctx.now_ns();
            let domains = self.ctx.reader().fresh_domains(now_ns).await?;
            let ttl_remaining = domains.iter().map(|d| d.ttl_remaining_secs(now_ns)).collect();
            Ok(api::DomainsResponse {
                domains: domains.into_iter().map(|d| d.name.into_string()).collect(),
                ttl_remaining,
            })
        })
        .await
    }

    async fn upsert_domain(&self, request: Request<api::UpsertDomainRequest>) -> GrpcResult<api::UpsertDomainResponse> {
        self.observe("UpsertDomain", async {
            let request = request.into_inner();
            let domain = DomainName::parse(request.domain)?;
            let ttl = Duration::from_secs(u64::from(request.ttl));
            self.ctx.writer()?.upsert_domain(&domain, ttl, self.ctx.now_ns()).await?;
            Ok(api::UpsertDomainResponse {})
        })
        .await
    }

    async fn cells(&self, request: Request<api::CellsRequest>) -> GrpcResult<api::CellsResponse> {
        self.observe("Cells", listings::cells(&self.ctx, request.into_inner())).await
    }

    async fn actual_lr_ps(&self, request: Request<api::ActualLrPsRequest>) -> GrpcResult<api::ActualLrPsResponse> {
        // A cell lists only its own cell's instances.
        require_own_cell(&Peer::of(&request), &request.get_ref().cell_id)?;
        self.observe("ActualLRPs", listings::actual_lrps(&self.ctx, request.into_inner())).await
    }

    type StreamActualLRPsStream = EventStream<api::ActualLrPsResponse>;

    async fn stream_actual_lr_ps(
        &self,
        request: Request<api::ActualLrPsRequest>,
    ) -> GrpcResult<Self::StreamActualLRPsStream> {
        // The same rule as ActualLRPs: a cell streams only its own cell's instances.
        require_own_cell(&Peer::of(&request), &request.get_ref().cell_id)?;
        self.observe("StreamActualLRPs", async {
            let pages = listings::stream_actual_lrps(&self.ctx, request.into_inner())?;
            let to_wire = |page: StreamPage<pb::ActualLrp>| api::ActualLrPsResponse {
                actual_lrps: page.items,
                next_page_token: page.next_page_token,
            };
            started(pages, to_wire).await
        })
        .await
    }

    async fn claim_actual_lrp(
        &self,
        request: Request<api::ClaimActualLrpRequest>,
    ) -> GrpcResult<api::ActualLrpLifecycleResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("ClaimActualLRP", async {
            let request = request.into_inner();
            let guid = process_guid(request.process_guid)?;
            let key = required_instance_key(request.actual_lrp_instance_key)?;
            ActualLrps(&self.ctx).claim(&guid, index(request.index)?, &key).await?;
            Ok(api::ActualLrpLifecycleResponse {})
        })
        .await
    }

    async fn start_actual_lrp(
        &self,
        request: Request<api::StartActualLrpRequest>,
    ) -> GrpcResult<api::ActualLrpLifecycleResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("StartActualLRP", async {
            let (key, instance_key, start) = start_request(request.into_inner())?;
            ActualLrps(&self.ctx).start(&key, &instance_key, &start).await?;
            Ok(api::ActualLrpLifecycleResponse {})
        })
        .await
    }

    async fn start_actual_lr_ps(
        &self,
        request: Request<api::StartActualLrPsRequest>,
    ) -> GrpcResult<api::BatchResponse> {
        batch::require_own_cells(&Peer::of(&request), request.get_ref())?;
        self.observe("StartActualLRPs", async {
            let _turn = self.batch_turn().await;
            batch::start_actual_lrps(&self.ctx, request.into_inner()).await
        })
        .await
    }

    async fn crash_actual_lrp(
        &self,
        request: Request<api::CrashActualLrpRequest>,
    ) -> GrpcResult<api::ActualLrpLifecycleResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("CrashActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
            ActualLrps(&self.ctx).crash(&key, &instance_key, &request.error_message).await?;
            Ok(api::ActualLrpLifecycleResponse {})
        })
        .await
    }

    async fn fail_actual_lrp(
        &self,
        request: Request<api::FailActualLrpRequest>,
    ) -> GrpcResult<api::ActualLrpLifecycleResponse> {
        self.observe("FailActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            ActualLrps(&self.ctx).fail(&key, &request.error_message).await?;
            Ok(api::ActualLrpLifecycleResponse {})
        })
        .await
    }

    async fn remove_actual_lrp(
        &self,
        request: Request<api::RemoveActualLrpRequest>,
    ) -> GrpcResult<api::ActualLrpLifecycleResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("RemoveActualLRP", async {
            let request = request.into_inner();
            let guid = process_guid(request.process_guid)?;
            let instance_key = instance_key_from_pb(request.actual_lrp_instance_key)?;
            ActualLrps(&self.ctx).remove(&guid, index(request.index)?, instance_key.as_ref()).await?;
            Ok(api::ActualLrpLifecycleResponse {})
        })
        .await
    }

    async fn retire_actual_lrp(
        &self,
        request: Request<api::RetireActualLrpRequest>,
    ) -> GrpcResult<api::ActualLrpLifecycleResponse> {
        self.observe("RetireActualLRP", async {
            let key = actual_lrp_key_from_pb(request.into_inner().actual_lrp_key)?;
            ActualLrps(&self.ctx).retire(&key).await?;
            Ok(api::ActualLrpLifecycleResponse {})
        })
        .await
    }

    async fn evacuate_claimed_actual_lrp(
        &self,
        request: Request<api::EvacuateClaimedActualLrpRequest>,
    ) -> GrpcResult<api::EvacuationResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("EvacuateClaimedActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
            let keep_container = Evacuation(&self.ctx).evacuate_claimed(&key, &instance_key).await?;
            Ok(api::EvacuationResponse { keep_container })
        })
        .await
    }

    async fn evacuate_running_actual_lrp(
        &self,
        request: Request<api::EvacuateRunningActualLrpRequest>,
    ) -> GrpcResult<api::EvacuationResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("EvacuateRunningActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
            let start = start_info(
                request.actual_lrp_net_info,
                request.actual_lrp_internal_routes,
                request.metric_tags,
                request.routable,
                request.availability_zone,
            )?;
            let keep_container = Evacuation(&self.ctx).evacuate_running(&key, &instance_key, &start).await?;
            Ok(api::EvacuationResponse { keep_container })
        })
        .await
    }

    async fn evacuate_stopped_actual_lrp(
        &self,
        request: Request<api::EvacuateStoppedActualLrpRequest>,
    ) -> GrpcResult<api::EvacuationResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("EvacuateStoppedActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
            let keep_container = Evacuation(&self.ctx).evacuate_stopped(&key, &instance_key).await?;
            Ok(api::EvacuationResponse { keep_container })
        })
        .await
    }

    async fn evacuate_crashed_actual_lrp(
        &self,
        request: Request<api::EvacuateCrashedActualLrpRequest>,
    ) -> GrpcResult<api::EvacuationResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("EvacuateCrashedActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
            let keep_container =
                Evacuation(&self.ctx).evacuate_crashed(&key, &instance_key, &request.error_message).await?;
            Ok(api::EvacuationResponse { keep_container })
        })
        .await
    }

    async fn remove_evacuating_actual_lrp(
        &self,
        request: Request<api::RemoveEvacuatingActualLrpRequest>,
    ) -> GrpcResult<api::RemoveEvacuatingActualLrpResponse> {
        require_own_cell(&Peer::of(&request), key_cell(&request.get_ref().actual_lrp_instance_key))?;
        self.observe("RemoveEvacuatingActualLRP", async {
            let request = request.into_inner();
            let key = actual_lrp_key_from_pb(request.actual_lrp_key)?;
            let instance_key = required_instance_key(request.actual_lrp_instance_key)?;
            Evacuation(&self.ctx).remove_evacuating(&key, &instance_key).await?;
            Ok(api::RemoveEvacuatingActualLrpResponse {})
        })
        .await
    }

    async fn desired_lr_ps(&self, request: Request<api::DesiredLrPsRequest>) -> GrpcResult<api::DesiredLrPsResponse> {
        self.observe("DesiredLRPs", listings::desired_lrps(&self.ctx, request.into_inner())).await
    }

    async fn desired_lrp_by_process_guid(
        &self,
        request: Request<api::DesiredLrpByProcessGuidRequest>,
    ) -> GrpcResult<api::DesiredLrpResponse> {
        self.observe("DesiredLRPByProcessGuid", async {
            let guid = process_guid(request.into_inner().process_guid)?;
            let lrp = DesiredLrps(&self.ctx).get(&guid).await?;
            Ok(api::DesiredLrpResponse { desired_lrp: Some(lrp.into()) })
        })
        .await
    }

    async fn desired_lrp_scheduling_infos(
        &self,
        request: Request<api::DesiredLrPsRequest>,
    ) -> GrpcResult<api::DesiredLrpSchedulingInfosResponse> {
        self.observe("DesiredLRPSchedulingInfos", listings::scheduling_infos(&self.ctx, request.into_inner())).await
    }

    type StreamDesiredLRPSchedulingInfosStream = EventStream<api::DesiredLrpSchedulingInfosResponse>;

    async fn stream_desired_lrp_scheduling_infos(
        &self,
        request: Request<api::DesiredLrPsRequest>,
    ) -> GrpcResult<Self::StreamDesiredLRPSchedulingInfosStream> {
        self.observe("StreamDesiredLRPSchedulingInfos", async {
            let pages = listings::stream_scheduling_infos(&self.ctx, request.into_inner())?;
            let to_wire = |page: StreamPage<pb::DesiredLrpSchedulingInfo>| api::DesiredLrpSchedulingInfosResponse {
                desired_lrp_scheduling_infos: page.items,
                next_page_token: page.next_page_token,
            };
            started(pages, to_wire).await
        })
        .await
    }

    async fn desired_lrp_scheduling_info_by_process_guid(
        &self,
        request: Request<api::DesiredLrpByProcessGuidRequest>,
    ) -> GrpcResult<api::DesiredLrpSchedulingInfoByProcessGuidResponse> {
        self.observe("DesiredLRPSchedulingInfoByProcessGuid", async {
            let guid = process_guid(request.into_inner().process_guid)?;
            let info = DesiredLrps(&self.ctx).scheduling_info(&guid).await?;
            Ok(api::DesiredLrpSchedulingInfoByProcessGuidResponse { desired_lrp_scheduling_info: Some(info.into()) })
        })
        .await
    }

    async fn desired_lrp_routing_infos(
        &self,
        request: Request<api::DesiredLrPsRequest>,
    ) -> GrpcResult<api::DesiredLrpRoutingInfosResponse> {
        self.observe("DesiredLRPRoutingInfos", listings::routing_infos(&self.ctx, request.into_inner())).await
    }

    async fn desire_lrp(
        &self,
        request: Request<api::DesireLrpRequest>,
    ) -> GrpcResult<api::DesiredLrpLifecycleResponse> {
        self.observe("DesireLRP", async {
            let lrp = request.into_inner().desired_lrp.ok_or_else(|| invalid("desired_lrp", "is required"))?;
            let lrp = DesiredLrp::try_from(lrp).map_err(|e| e.within("desired_lrp"))?;
            DesiredLrps(&self.ctx).desire(lrp).await?;
            Ok(api::DesiredLrpLifecycleResponse {})
        })
        .await
    }

    async fn desire_lr_ps(&self, request: Request<api::DesireLrPsRequest>) -> GrpcResult<api::BatchResponse> {
        self.observe("DesireLRPs", async {
            let _turn = self.batch_turn().await;
            batch::desire_lrps(&self.ctx, request.into_inner()).await
        })
        .await
    }

    async fn update_desired_lrp(
        &self,
        request: Request<api::UpdateDesiredLrpRequest>,
    ) -> GrpcResult<api::DesiredLrpLifecycleResponse> {
        self.observe("UpdateDesiredLRP", async {
            let request = request.into_inner();
            let guid = process_guid(request.process_guid)?;
            let update = request.update.ok_or_else(|| invalid("update", "is required"))?;
            let update = DesiredLrpUpdate::try_from(update).map_err(|e| e.within("update"))?;
            DesiredLrps(&self.ctx).update(&guid, &update).await?;
            Ok(api::DesiredLrpLifecycleResponse {})
        })
        .await
    }

    async fn remove_desired_lrp(
        &self,
        request: Request<api::RemoveDesiredLrpRequest>,
    ) -> GrpcResult<api::DesiredLrpLifecycleResponse> {
        self.observe("RemoveDesiredLRP", async {
            let guid = process_guid(request.into_inner().process_guid)?;
            DesiredLrps(&self.ctx).remove(&guid).await?;
            Ok(api::DesiredLrpLifecycleResponse {})
        })
        .await
    }

    async fn tasks(&self, request: Request<api::TasksRequest>) -> GrpcResult<api::TasksResponse> {
        // A cell lists only its own cell's tasks.
        require_own_cell(&Peer::of(&request), &request.get_ref().cell_id)?;
        self.observe("Tasks", listings::tasks(&self.ctx, request.into_inner())).await
    }

    async fn task_by_guid(&self, request: Request<api::TaskByGuidRequest>) -> GrpcResult<api::TaskResponse> {
        self.observe("TaskByGuid", async {
            let guid = task_guid(request.into_inner().task_guid)?;
            let task = Tasks(&self.ctx).get(&guid).await?;
            Ok(api::TaskResponse { task: Some(task.into()) })
        })
        .await
    }

    async fn desire_task(&self, request: Request<api::DesireTaskRequest>) -> GrpcResult<api::TaskLifecycleResponse> {
        self.observe("DesireTask", async {
            let request = request.into_inner();
            let guid = task_guid(request.task_guid)?;
            let domain = DomainName::parse(request.domain)?;
            let definition = request.task_definition.ok_or_else(|| invalid("task_definition", "is required"))?;
            let definition = TaskDefinition::try_from(definition).map_err(|e| e.within("task_definition"))?;
            Tasks(&self.ctx).desire(&guid, &domain, &definition).await?;
            Ok(api::TaskLifecycleResponse {})
        })
        .await
    }

    async fn start_task(&self, request: Request<api::StartTaskRequest>) -> GrpcResult<api::StartTaskResponse> {
        require_own_cell(&Peer::of(&request), &request.get_ref().cell_id)?;
        self.observe("StartTask", async {
            let request = request.into_inner();
            let guid = task_guid(request.task_guid)?;
            let cell = cell_id(request.cell_id)?;
            let should_start = Tasks(&self.ctx).start(&guid, &cell).await?;
            Ok(api::StartTaskResponse { should_start })
        })
        .await
    }

    async fn cancel_task(&self, request: Request<api::TaskGuidRequest>) -> GrpcResult<api::TaskLifecycleResponse> {
        self.observe("CancelTask", async {
            let guid = task_guid(request.into_inner().task_guid)?;
            Tasks(&self.ctx).cancel(&guid).await?;
            Ok(api::TaskLifecycleResponse {})
        })
        .await
    }

    async fn reject_task(&self, request: Request<api::RejectTaskRequest>) -> GrpcResult<api::TaskLifecycleResponse> {
        // The request names no cell: a cell may reject only a task stored as running on it.
        let peer = Peer::of(&request);
        if peer.identity().is_some_and(|identity| identity.role() == Role::Cell) {
            let guid = task_guid(request.get_ref().task_guid.clone())?;
            let task = Tasks(&self.ctx).get(&guid).await?;
            require_own_cell(&peer, task.cell_id.as_ref().map_or("", |cell| cell.as_str()))?;
        }
        self.observe("RejectTask", async {
            let request = request.into_inner();
            let guid = task_guid(request.task_guid)?;
            Tasks(&self.ctx).reject(&guid, &request.rejection_reason).await?;
            Ok(api::TaskLifecycleResponse {})
        })
        .await
    }

    async fn complete_task(
        &self,
        request: Request<api::CompleteTaskRequest>,
    ) -> GrpcResult<api::TaskLifecycleResponse> {
        require_own_cell(&Peer::of(&request), &request.get_ref().cell_id)?;
        self.observe("CompleteTask", async {
            let request = request.into_inner();
            let guid = task_guid(request.task_guid)?;
            let cell = cell_id(request.cell_id)?;
            Tasks(&self.ctx).complete(&guid, &cell, request.failed, &request.failure_reason, &request.result).await?;
            Ok(api::TaskLifecycleResponse {})
        })
        .await
    }

    async fn resolving_task(&self, request: Request<api::TaskGuidRequest>) -> GrpcResult<api::TaskLifecycleResponse> {
        self.observe("ResolvingTask", async {
            let guid = task_guid(request.into_inner().task_guid)?;
            Tasks(&self.ctx).resolving(&guid).await?;
            Ok(api::TaskLifecycleResponse {})
        })
        .await
    }

    async fn delete_task(&self, request: Request<api::TaskGuidRequest>) -> GrpcResult<api::TaskLifecycleResponse> {
        self.observe("DeleteTask", async {
            let guid = task_guid(request.into_inner().task_guid)?;
            Tasks(&self.ctx).delete(&guid).await?;
            Ok(api::TaskLifecycleResponse {})
        })
        .await
    }

    type SubscribeToInstanceEventsStream = EventStream<pb::InstanceEvent>;

    async fn subscribe_to_instance_events(
        &self,
        request: Request<api::SubscribeToInstanceEventsRequest>,
    ) -> GrpcResult<Self::SubscribeToInstanceEventsStream> {
        // Streams need the leader: only it publishes. The slot of the caller's identity is
        // held as long as the stream.
        let slot = self.ctx.events.admit_identity(&Peer::of(&request))?;
        self.observe("SubscribeToInstanceEvents", async {
            self.ctx.writer()?;
            self.ctx.events.admit()?;
            let stream = self.ctx.events.subscribe_instances(request.into_inner().cell_id);
            Ok(Box::pin(stream.map(move |event| {
                let _slot = &slot;
                event
            })) as EventStream<pb::InstanceEvent>)
        })
        .await
    }

    type SubscribeToTaskEventsStream = EventStream<pb::TaskEvent>;

    async fn subscribe_to_task_events(
        &self,
        request: Request<api::SubscribeToTaskEventsRequest>,
    ) -> GrpcResult<Self::SubscribeToTaskEventsStream> {
        let slot = self.ctx.events.admit_identity(&Peer::of(&request))?;
        self.observe("SubscribeToTaskEvents", async {
            self.ctx.writer()?;
            self.ctx.events.admit()?;
            Ok(Box::pin(self.ctx.events.subscribe_tasks().map(move |event| {
                let _slot = &slot;
                event
            })) as EventStream<pb::TaskEvent>)
        })
        .await
    }
}
