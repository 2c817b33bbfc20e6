//! The real tonic server on 127.0.0.1:0 with a fake lock holder, called through a tonic
//! client: the holder queues start requests, a standby answers UNAVAILABLE, invalid requests
//! are INVALID_ARGUMENT, and health follows the lock.

use std::sync::Arc;
use std::time::Duration;

use auctioneer::lock::LockStatus;
use auctioneer::service::AuctioneerService;
use auctioneer::{AuctionBatch, server};
use proto::error::ErrorCode;
use proto::pb::auctioneer::v1 as pb;
use proto::pb::auctioneer::v1::auctioneer_client::AuctioneerClient;
use proto::pb::models::v1 as models_pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    batch: Arc<AuctionBatch>,
    lock: LockStatus,
    channel: Channel,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start(held: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    let batch = Arc::new(AuctionBatch::new());
    let lock = LockStatus::new();
    lock.set_held(held);
    let shutdown = CancellationToken::new();
    let service = AuctioneerService::new(batch.clone(), lock.clone());
    let task = tokio::spawn(server::serve(
        listener,
        service,
        lock.clone(),
        &svc::tls::Security::Plaintext,
        svc::server::DEFAULT_MAX_REQUEST_BYTES,
        shutdown.clone(),
    ));
    let channel = tokio::time::timeout(
        PATIENCE,
        tonic::transport::Endpoint::from_shared(format!("http://{address}")).expect("valid endpoint").connect(),
    )
    .await
    .expect("connecting should not hang")
    .expect("connect to the server");
    Server { batch, lock, channel, shutdown, task }
}

async fn stop(server: Server) {
    server.shutdown.cancel();
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("the server should stop on shutdown")
        .expect("the server task should not panic")
        .expect("the server should stop cleanly");
}

fn lrp_request(guid: &str, indices: &[i32]) -> pb::LrpStartRequest {
    pb::LrpStartRequest {
        process_guid: guid.into(),
        domain: "d".into(),
        indices: indices.to_vec(),
        resource: Some(models_pb::Resource { memory_mb: 64, disk_mb: 64, max_pids: 0 }),
        placement_constraint: Some(models_pb::PlacementConstraint {
            rootfs: "preloaded:busybox".into(),
            ..Default::default()
        }),
    }
}

async fn health(channel: &Channel) -> ServingStatus {
    let response = tokio::time::timeout(
        PATIENCE,
        HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest { service: "diego.auctioneer.v1.Auctioneer".into() }),
    )
    .await
    .expect("health check should not hang")
    .expect("health check");
    ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown)
}

#[tokio::test]
async fn the_lock_holder_queues_start_requests() {
    let server = start(true).await;
    let mut client = AuctioneerClient::new(server.channel.clone());
    tokio::time::timeout(
        PATIENCE,
        client.request_lrp_auctions(pb::RequestLrpAuctionsRequest {
            lrp_start_requests: vec![lrp_request("app", &[0, 1, 2])],
        }),
    )
    .await
    .expect("the call should not hang")
    .expect("queued");
    tokio::time::timeout(
        PATIENCE,
        client.request_task_auctions(pb::RequestTaskAuctionsRequest {
            task_start_requests: vec![pb::TaskStartRequest {
                task_guid: "t1".into(),
                domain: "d".into(),
                ..Default::default()
            }],
        }),
    )
    .await
    .expect("the call should not hang")
    .expect("queued");
    assert_eq!(server.batch.counts(), (3, 1));
    assert_eq!(health(&server.channel).await, ServingStatus::Serving);
    stop(server).await;
}

#[tokio::test]
async fn a_standby_answers_unavailable() {
    let server = start(false).await;
    let mut client = AuctioneerClient::new(server.channel.clone());
    let status = tokio::time::timeout(
        PATIENCE,
        client
            .request_lrp_auctions(pb::RequestLrpAuctionsRequest { lrp_start_requests: vec![lrp_request("app", &[0])] }),
    )
    .await
    .expect("the call should not hang")
    .expect_err("a standby refuses");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(ErrorCode::from_status(&status), Some(ErrorCode::Unavailable));
    let status =
        tokio::time::timeout(PATIENCE, client.request_task_auctions(pb::RequestTaskAuctionsRequest::default()))
            .await
            .expect("the call should not hang")
            .expect_err("a standby refuses");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(server.batch.is_empty());
    assert_eq!(health(&server.channel).await, ServingStatus::NotServing);

    // Acquiring the lock turns it into the active auctioneer.
    server.lock.set_held(true);
    tokio::time::timeout(PATIENCE, async {
        while health(&server.channel).await != ServingStatus::Serving {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("health should follow the lock");
    tokio::time::timeout(
        PATIENCE,
        client
            .request_lrp_auctions(pb::RequestLrpAuctionsRequest { lrp_start_requests: vec![lrp_request("app", &[0])] }),
    )
    .await
    .expect("the call should not hang")
    .expect("queued once the lock is held");
    stop(server).await;
}

#[tokio::test]
async fn an_invalid_request_is_invalid_argument_and_queues_nothing() {
    let server = start(true).await;
    let mut client = AuctioneerClient::new(server.channel.clone());
    let status = tokio::time::timeout(
        PATIENCE,
        client.request_lrp_auctions(pb::RequestLrpAuctionsRequest {
            lrp_start_requests: vec![lrp_request("app", &[0]), lrp_request("bad", &[-1])],
        }),
    )
    .await
    .expect("the call should not hang")
    .expect_err("a negative index is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(ErrorCode::from_status(&status), Some(ErrorCode::InvalidRequest));
    // The request limits name the entry by its place in the request.
    assert!(status.message().contains("lrp_start_requests[1]"), "{}", status.message());
    assert!(server.batch.is_empty());
    stop(server).await;
}
