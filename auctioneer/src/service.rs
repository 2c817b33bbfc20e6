//! The `Auctioneer` gRPC service (reference §1.2): `RequestLRPAuctions` and
//! `RequestTaskAuctions` validate the requests, turn them into placement work, add it to the
//! batch and return at once; the auction runs later.
//!
//! Differences from Diego's HTTP handlers: a request with an invalid entry is refused as a
//! whole with INVALID_ARGUMENT naming the entry (Diego logs and drops it), so the caller sees
//! the mistake; and a standby answers UNAVAILABLE instead of not listening at all.

use std::sync::Arc;

use proto::error::ErrorCode;
use proto::pb::auctioneer::v1 as pb;
use tonic::{Request, Response, Status};

use crate::batch::{AuctionBatch, BatchFull, footprint};
use crate::lock::LockStatus;
use crate::placement::{LrpWork, TaskWork};
use crate::wire::{constraint_from_pb, resource_from_pb};

/// The `Auctioneer` service over a batch, answering only while `lock` is held.
#[derive(Debug, Clone)]
pub struct AuctioneerService {
    batch: Arc<AuctionBatch>,
    lock: LockStatus,
}

impl AuctioneerService {
    /// A service adding to `batch`, serving while `lock` says held.
    pub fn new(batch: Arc<AuctionBatch>, lock: LockStatus) -> Self {
        Self { batch, lock }
    }

    fn check_lock(&self) -> Result<(), Status> {
        if self.lock.is_held() {
            Ok(())
        } else {
            Err(ErrorCode::Unavailable
                .to_status("this auctioneer is standing by: it does not hold the auctioneer lock"))
        }
    }
}

/// RESOURCE_EXHAUSTED for a request the batch has no room for; the BBS's convergence asks
/// again later.
fn full(err: BatchFull) -> Status {
    metrics::counter!("auctioneer_requests_refused_full_total").increment(1);
    Status::resource_exhausted(err.to_string())
}

/// How many work items the requests become, and their [`footprint`] in bytes, computed
/// before anything is expanded: a small request can name many indices, each of which gets its
/// own copy of the placement constraint. The service checks it against the batch's room first.
pub fn lrp_expansion(requests: &[pb::LrpStartRequest]) -> (usize, usize) {
    let (mut items, mut bytes) = (0_usize, 0_usize);
    for r in requests {
        let each = footprint(&r.process_guid, &r.domain, &constraint_from_pb(r.placement_constraint.as_ref()));
        items = items.saturating_add(r.indices.len());
        bytes = bytes.saturating_add(each.saturating_mul(r.indices.len()));
    }
    (items, bytes)
}

/// [`lrp_expansion`] for task start requests: one item each.
pub fn task_expansion(requests: &[pb::TaskStartRequest]) -> (usize, usize) {
    let bytes = requests
        .iter()
        .map(|r| footprint(&r.task_guid, &r.domain, &constraint_from_pb(r.placement_constraint.as_ref())))
        .sum();
    (requests.len(), bytes)
}

/// The LRP instances of the requests, or the first invalid entry.
pub fn lrp_work(requests: Vec<pb::LrpStartRequest>) -> Result<Vec<LrpWork>, Status> {
    let mut work = Vec::new();
    for (position, request) in requests.into_iter().enumerate() {
        if request.process_guid.trim().is_empty() {
            return Err(ErrorCode::InvalidRequest
                .to_status(format!("lrp start request {position}: process_guid must not be empty")));
        }
        if let Some(index) = request.indices.iter().find(|i| **i < 0) {
            return Err(ErrorCode::InvalidRequest.to_status(format!(
                "lrp start request {position} ({}): index {index} must be >= 0",
                request.process_guid
            )));
        }
        let resource = resource_from_pb(request.resource.as_ref());
        let constraint = constraint_from_pb(request.placement_constraint.as_ref());
        work.extend(request.indices.iter().map(|&index| LrpWork {
            process_guid: request.process_guid.clone(),
            index,
            domain: request.domain.clone(),
            resource,
            constraint: constraint.clone(),
        }));
    }
    Ok(work)
}

/// The tasks of the requests, or the first invalid entry.
pub fn task_work(requests: Vec<pb::TaskStartRequest>) -> Result<Vec<TaskWork>, Status> {
    let mut work = Vec::with_capacity(requests.len());
    for (position, request) in requests.into_iter().enumerate() {
        if request.task_guid.trim().is_empty() {
            return Err(ErrorCode::InvalidRequest
                .to_status(format!("task start request {position}: task_guid must not be empty")));
        }
        work.push(TaskWork {
            resource: resource_from_pb(request.resource.as_ref()),
            constraint: constraint_from_pb(request.placement_constraint.as_ref()),
            task_guid: request.task_guid,
            domain: request.domain,
        });
    }
    Ok(work)
}

#[tonic::async_trait]
impl pb::auctioneer_server::Auctioneer for AuctioneerService {
    async fn request_lrp_auctions(
        &self,
        request: Request<pb::RequestLrpAuctionsRequest>,
    ) -> Result<Response<pb::RequestLrpAuctionsResponse>, Status> {
        self.check_lock()?;
        let requests = request.into_inner().lrp_start_requests;
        let (incoming, incoming_bytes) = lrp_expansion(&requests);
        self.batch.check_room(incoming, incoming_bytes).map_err(full)?;
        let work = lrp_work(requests)?;
        for lrp in &work {
            tracing::debug!(process_guid = %lrp.process_guid, index = lrp.index, "lrp instance queued for auction");
        }
        let requested = work.len();
        let added = self.batch.try_add_lrps(work).map_err(full)?;
        tracing::debug!(requested, added, "lrp auctions requested");
        Ok(Response::new(pb::RequestLrpAuctionsResponse {}))
    }

    async fn request_task_auctions(
        &self,
        request: Request<pb::RequestTaskAuctionsRequest>,
    ) -> Result<Response<pb::RequestTaskAuctionsResponse>, Status> {
        self.check_lock()?;
        let requests = request.into_inner().task_start_requests;
        let (incoming, incoming_bytes) = task_expansion(&requests);
        self.batch.check_room(incoming, incoming_bytes).map_err(full)?;
        let work = task_work(requests)?;
        for task in &work {
            tracing::debug!(task_guid = %task.task_guid, "task queued for auction");
        }
        let requested = work.len();
        let added = self.batch.try_add_tasks(work).map_err(full)?;
        tracing::debug!(requested, added, "task auctions requested");
        Ok(Response::new(pb::RequestTaskAuctionsResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use pb::auctioneer_server::Auctioneer;
    use proto::pb::models::v1 as models_pb;

    use super::*;

    fn lrp_request(guid: &str, indices: &[i32]) -> pb::LrpStartRequest {
        pb::LrpStartRequest {
            process_guid: guid.into(),
            domain: "d".into(),
            indices: indices.to_vec(),
            resource: Some(models_pb::Resource { memory_mb: 128, disk_mb: 256, max_pids: 0 }),
            placement_constraint: Some(models_pb::PlacementConstraint {
                rootfs: "preloaded:busybox".into(),
                placement_tags: vec![],
                volume_drivers: vec![],
            }),
        }
    }

    fn service(held: bool) -> AuctioneerService {
        let lock = LockStatus::new();
        lock.set_held(held);
        AuctioneerService::new(Arc::new(AuctionBatch::new()), lock)
    }

    #[tokio::test]
    async fn a_request_the_batch_has_no_room_for_is_resource_exhausted_and_adds_nothing() {
        let lock = LockStatus::new();
        lock.set_held(true);
        let batch = Arc::new(AuctionBatch::with_capacity(4));
        let service = AuctioneerService::new(batch.clone(), lock);
        let request = |indices: Vec<i32>| {
            Request::new(pb::RequestLrpAuctionsRequest { lrp_start_requests: vec![lrp_request("pg", &indices)] })
        };
        service.request_lrp_auctions(request(vec![0, 1, 2])).await.expect("fits");
        let status = service.request_lrp_auctions(request((10..1000).collect())).await.expect_err("too many");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("capacity 4"), "{}", status.message());
        assert_eq!(batch.counts(), (3, 0));
        let tasks = Request::new(pb::RequestTaskAuctionsRequest {
            task_start_requests: vec![pb::TaskStartRequest { task_guid: "t".into(), ..Default::default() }; 2],
        });
        assert_eq!(
            service.request_task_auctions(tasks).await.expect_err("full").code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(batch.counts(), (3, 0));
    }

    /// Found by fuzzing (fuzz/regressions/requests/oom-auctioneer-lrp-work-amplification): a
    /// 100 KB request of one LRP with 60 000 indices and 40 KB of volume drivers asked for 2.4 GB
    /// once each index got its own copy of the constraint. It is refused before expanding.
    #[tokio::test]
    async fn a_request_that_would_expand_past_the_memory_capacity_is_refused_before_expanding() {
        let service = service(true);
        let mut request = lrp_request("web", &(0..60_000).map(|i| i % 100).collect::<Vec<_>>());
        request.placement_constraint.as_mut().unwrap().volume_drivers = vec!["d".repeat(4000); 10];
        let status = service
            .request_lrp_auctions(Request::new(pb::RequestLrpAuctionsRequest { lrp_start_requests: vec![request] }))
            .await
            .expect_err("too much memory");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("bytes) requested"), "{}", status.message());
        assert!(service.batch.is_empty());
    }

    #[test]
    fn each_index_becomes_one_instance() {
        let work = lrp_work(vec![lrp_request("pg", &[0, 1, 2])]).expect("valid");
        assert_eq!(work.len(), 3);
        assert_eq!(work[2].index, 2);
        assert_eq!(work[2].resource.memory_mb, 128);
        assert_eq!(work[2].constraint.rootfs, "preloaded:busybox");
        assert_eq!(work[2].domain, "d");
    }

    #[test]
    fn invalid_entries_are_refused_naming_the_entry() {
        let err = lrp_work(vec![lrp_request("ok", &[0]), lrp_request("", &[0])]).expect_err("empty guid");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("lrp start request 1"), "{}", err.message());
        let err = lrp_work(vec![lrp_request("pg", &[0, -1])]).expect_err("negative index");
        assert!(err.message().contains("index -1"), "{}", err.message());
        let err = task_work(vec![pb::TaskStartRequest::default()]).expect_err("empty task guid");
        assert!(err.message().contains("task_guid"), "{}", err.message());
        assert_eq!(ErrorCode::from_status(&err), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn missing_resource_and_constraint_are_zero() {
        let work =
            task_work(vec![pb::TaskStartRequest { task_guid: "t".into(), ..Default::default() }]).expect("valid");
        assert_eq!(work[0].resource.memory_mb, 0);
        assert!(work[0].constraint.rootfs.is_empty());
    }

    #[tokio::test]
    async fn a_standby_answers_unavailable_and_queues_nothing() {
        let service = service(false);
        let err = service
            .request_lrp_auctions(Request::new(pb::RequestLrpAuctionsRequest {
                lrp_start_requests: vec![lrp_request("pg", &[0])],
            }))
            .await
            .expect_err("standby");
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(ErrorCode::from_status(&err), Some(ErrorCode::Unavailable));
        assert!(service.batch.is_empty());
    }

    #[tokio::test]
    async fn the_holder_queues_requests_and_returns_at_once() {
        let service = service(true);
        service
            .request_lrp_auctions(Request::new(pb::RequestLrpAuctionsRequest {
                lrp_start_requests: vec![lrp_request("pg", &[0, 1]), lrp_request("pg", &[1])],
            }))
            .await
            .expect("queued");
        service
            .request_task_auctions(Request::new(pb::RequestTaskAuctionsRequest {
                task_start_requests: vec![pb::TaskStartRequest { task_guid: "t".into(), ..Default::default() }],
            }))
            .await
            .expect("queued");
        assert_eq!(service.batch.counts(), (2, 1));
    }
}
