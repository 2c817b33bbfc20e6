//! The cell presence: a Locket lease with the CellPresence JSON, renewed, surviving an
//! unreachable BBS without touching containers, released on the way out.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::bbs_client::BbsClient;
use cell_rep::executor::ContainerState;
use cell_rep::presence::{CellAdvert, Presence};
use cell_rep::testing::{BbsCall, FakeBbs, TestCell, desired_lrp, eventually, lrp_work};
use proto::models::{CellCapacity, CellId, CellPresence};
use proto::pb::locket::v1 as locket_pb;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(10);

fn advert() -> CellAdvert {
    CellAdvert {
        cell_id: CellId::parse("cell-1").expect("cell id"),
        rep_address: "10.0.0.7:1801".into(),
        zone: "z2".into(),
        capacity: CellCapacity { memory_mb: 2048, disk_mb: 4096, containers: 10 },
        rootfs_names: vec!["busybox".into()],
        placement_tags: vec!["gpu".into()],
        optional_placement_tags: vec!["ssd".into()],
    }
}

fn presence(bbs: &Arc<FakeBbs>, retry: Duration) -> Presence {
    let client: Arc<dyn BbsClient> = bbs.clone();
    Presence::new(client, &advert(), "owner-1", Duration::from_secs(15), retry)
}

#[tokio::test]
async fn the_presence_holds_the_cell_presence_json_and_renews_it() {
    let bbs = Arc::new(FakeBbs::new());
    let mut presence = presence(&bbs, Duration::from_secs(5));
    assert!(presence.tick().await);
    assert!(presence.tick().await);
    let held = bbs.presence("cell-1").expect("held");
    assert_eq!(held.owner, "owner-1");
    assert_eq!(held.ttl, Duration::from_secs(15));
    assert_eq!(held.renewals, 2);
    let value: CellPresence = serde_json::from_str(&held.value).expect("CellPresence json");
    assert_eq!(value.cell_id.as_str(), "cell-1");
    assert_eq!(value.rep_address, "10.0.0.7:1801");
    assert_eq!(value.zone, "z2");
    assert_eq!(value.capacity.memory_mb, 2048);
    assert_eq!(value.rootfs_providers[0].name, "preloaded");
    assert_eq!(value.rootfs_providers[0].properties, vec!["busybox".to_owned()]);
    assert_eq!(value.placement_tags, vec!["gpu".to_owned()]);
    assert_eq!(value.optional_placement_tags, vec!["ssd".to_owned()]);
}

#[tokio::test]
async fn another_owner_keeps_the_presence_until_it_goes() {
    let bbs = Arc::new(FakeBbs::new());
    let mut older = presence(&bbs, Duration::from_secs(5));
    assert!(older.tick().await);
    let client: Arc<dyn BbsClient> = bbs.clone();
    let mut newer = Presence::new(client, &advert(), "owner-2", Duration::from_secs(15), Duration::from_secs(5));
    assert!(!newer.tick().await, "a restarted rep collides until the old presence expires");
    bbs.expire_presence("cell-1");
    assert!(newer.tick().await);
    assert_eq!(bbs.presence("cell-1").expect("held").owner, "owner-2");
}

#[tokio::test]
async fn the_presence_survives_an_unreachable_bbs_and_never_stops_containers() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
    timeout(PATIENCE, eventually(|| cell.containers().iter().any(|c| c.state == ContainerState::Running)))
        .await
        .expect("container never ran");

    let presence = presence(&bbs, Duration::from_millis(20));
    let status = presence.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(presence.run(shutdown.clone()));
    timeout(PATIENCE, status.wait_until(true)).await.expect("presence never held");
    let locks = |b: &FakeBbs| b.calls().iter().filter(|c| matches!(c, BbsCall::Lock(_))).count();
    timeout(PATIENCE, bbs.wait_until(|b| locks(b) >= 3)).await.expect("presence never renewed");

    bbs.set_unreachable(true);
    timeout(PATIENCE, status.wait_until(false)).await.expect("an unreachable bbs went unnoticed");
    let failed_so_far = locks(&bbs);
    timeout(PATIENCE, bbs.wait_until(|b| locks(b) >= failed_so_far + 3)).await.expect("the presence stopped retrying");
    assert!(!task.is_finished(), "the presence loop never gives up");
    assert_eq!(cell.containers().len(), 1);
    assert_eq!(cell.containers()[0].state, ContainerState::Running, "containers keep running");

    bbs.set_unreachable(false);
    timeout(PATIENCE, status.wait_until(true)).await.expect("presence not re-acquired");
    shutdown.cancel();
    timeout(PATIENCE, task).await.expect("presence loop did not stop").expect("join");
    assert!(bbs.presence("cell-1").is_none(), "released on shutdown");
}

/// A Locket that refuses as a standby (naming `leader`) or accepts as the leader, counting
/// the locks it took.
struct TestLocket {
    leader: Option<String>,
    locks: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl locket_pb::locket_server::Locket for TestLocket {
    async fn lock(
        &self,
        request: tonic::Request<locket_pb::LockRequest>,
    ) -> Result<tonic::Response<locket_pb::LockResponse>, tonic::Status> {
        if let Some(leader) = &self.leader {
            let mut status = proto::error::ErrorCode::Unavailable.to_status("not the leader");
            status.metadata_mut().insert(proto::error::LEADER_METADATA_KEY, leader.parse().expect("metadata value"));
            return Err(status);
        }
        let resource = request.into_inner().resource.expect("resource");
        assert_eq!(resource.type_code, locket_pb::TypeCode::Presence as i32);
        assert_eq!(resource.key, "cell-1");
        self.locks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(tonic::Response::new(locket_pb::LockResponse { term: 1 }))
    }
    async fn release(
        &self,
        _: tonic::Request<locket_pb::ReleaseRequest>,
    ) -> Result<tonic::Response<locket_pb::ReleaseResponse>, tonic::Status> {
        Ok(tonic::Response::new(locket_pb::ReleaseResponse {}))
    }
    async fn fetch(
        &self,
        _: tonic::Request<locket_pb::FetchRequest>,
    ) -> Result<tonic::Response<locket_pb::FetchResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fetch"))
    }
    async fn fetch_all(
        &self,
        _: tonic::Request<locket_pb::FetchAllRequest>,
    ) -> Result<tonic::Response<locket_pb::FetchAllResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fetch all"))
    }
}

async fn serve_locket(locket: TestLocket) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(locket_pb::locket_server::LocketServer::new(locket))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    address
}

#[tokio::test]
async fn the_grpc_client_follows_a_standby_to_the_leader() {
    let locks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let leader = serve_locket(TestLocket { leader: None, locks: Arc::clone(&locks) }).await;
    let standby = serve_locket(TestLocket { leader: Some(leader.to_string()), locks: Arc::clone(&locks) }).await;
    let client: Arc<dyn BbsClient> = Arc::new(
        cell_rep::GrpcBbsClient::new(standby.to_string(), Duration::from_secs(5), svc::tls::Security::Plaintext)
            .expect("client"),
    );
    let mut presence = Presence::new(client, &advert(), "owner-1", Duration::from_secs(15), Duration::from_secs(5));
    assert!(timeout(PATIENCE, presence.tick()).await.expect("lock hung"));
    assert_eq!(locks.load(std::sync::atomic::Ordering::SeqCst), 1);
}
