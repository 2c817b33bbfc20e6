//! End to end with a real BBS (in-process, SQLite) and three fake cells serving the `Rep` gRPC
//! API: desired LRPs go BBS → auctioneer → Perform on the cells, and what cannot be placed comes
//! back to the BBS as an UNCLAIMED instance with a placement error a person can act on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auctioneer::config::AuctioneerConfig;
use bbs::config::BbsConfig;
use db::Backend;
use db::testing::TestDb;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// A cell that advertises 1 GiB of memory and accepts every Perform, recording it.
struct FakeCell {
    cell_id: String,
    zone: String,
    performed: Arc<Mutex<Vec<rep::Lrp>>>,
}

#[tonic::async_trait]
impl rep::rep_server::Rep for FakeCell {
    async fn state(&self, _: Request<rep::StateRequest>) -> Result<Response<rep::CellState>, Status> {
        let used: i32 =
            self.performed.lock().unwrap().iter().map(|l| l.resource.as_ref().map_or(0, |r| r.memory_mb)).sum();
        let count = self.performed.lock().unwrap().len() as i32;
        Ok(Response::new(rep::CellState {
            cell_id: self.cell_id.clone(),
            zone: self.zone.clone(),
            rootfs_providers: vec![pb::Provider { name: "preloaded".into(), properties: vec!["busybox".into()] }],
            total_resources: Some(rep::Resources { memory_mb: 1024, disk_mb: 8192, containers: 50 }),
            available_resources: Some(rep::Resources { memory_mb: 1024 - used, disk_mb: 8192, containers: 50 - count }),
            lrps: self.performed.lock().unwrap().clone(),
            ..Default::default()
        }))
    }
    async fn perform(&self, request: Request<rep::Work>) -> Result<Response<rep::PerformResponse>, Status> {
        self.performed.lock().unwrap().extend(request.into_inner().lrps);
        Ok(Response::new(rep::PerformResponse::default()))
    }
    async fn stop_lrp_instance(
        &self,
        _: Request<rep::StopLrpInstanceRequest>,
    ) -> Result<Response<rep::StopLrpInstanceResponse>, Status> {
        Ok(Response::new(rep::StopLrpInstanceResponse {}))
    }
    async fn cancel_task(
        &self,
        _: Request<rep::CancelTaskRequest>,
    ) -> Result<Response<rep::CancelTaskResponse>, Status> {
        Ok(Response::new(rep::CancelTaskResponse {}))
    }
    async fn update_lrp_instance(
        &self,
        _: Request<rep::UpdateLrpInstanceRequest>,
    ) -> Result<Response<rep::UpdateLrpInstanceResponse>, Status> {
        Ok(Response::new(rep::UpdateLrpInstanceResponse {}))
    }
    async fn evacuate(&self, _: Request<rep::EvacuateRequest>) -> Result<Response<rep::EvacuateResponse>, Status> {
        Ok(Response::new(rep::EvacuateResponse {}))
    }
    async fn ping(&self, _: Request<rep::PingRequest>) -> Result<Response<rep::PingResponse>, Status> {
        Ok(Response::new(rep::PingResponse { available: true }))
    }
}

fn desired(guid: &str, instances: i32, memory_mb: i32, rootfs: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: rootfs.into(),
        instances,
        memory_mb,
        disk_mb: 64,
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/app".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

async fn placement_error(client: &mut BbsClient<tonic::transport::Channel>, guid: &str) -> String {
    for _ in 0..200 {
        let lrps = client
            .actual_lr_ps(api::ActualLrPsRequest { process_guid: guid.into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .actual_lrps;
        if let Some(lrp) = lrps.iter().find(|l| !l.placement_error.is_empty()) {
            assert_eq!(lrp.state, pb::ActualLrpState::Unclaimed as i32);
            return lrp.placement_error.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{guid} never got a placement error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_lrps_are_placed_on_cells_and_unplaceable_ones_say_why() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let shutdown = CancellationToken::new();

    // The BBS.
    let bbs_grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bbs_admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bbs_address = bbs_grpc.local_addr().unwrap().to_string();
    let bbs_config = BbsConfig {
        encryption_keys_file: db::testing::test_key_file(),
        database_url: db.url.clone(),
        lock_retry_interval: Duration::from_millis(200),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..BbsConfig::default()
    };
    tokio::spawn(bbs::run(
        bbs_config,
        bbs::Listeners { grpc: bbs_grpc, admin: bbs_admin },
        bbs::Overrides::default(),
        shutdown.clone(),
    ));

    // Three cells in two zones, each with a presence in the BBS's Locket.
    let channel = tonic::transport::Channel::from_shared(format!("http://{bbs_address}")).unwrap().connect_lazy();
    let mut locket_client = locket::locket_client::LocketClient::new(channel.clone());
    let mut cells = Vec::new();
    for (i, zone) in ["z1", "z2", "z1"].iter().enumerate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let performed = Arc::new(Mutex::new(Vec::new()));
        let cell = FakeCell { cell_id: format!("cell-{i}"), zone: zone.to_string(), performed: performed.clone() };
        let stop = shutdown.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(rep::rep_server::RepServer::new(cell))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                ),
        );
        let presence = serde_json::json!({
            "cell_id": format!("cell-{i}"), "rep_address": address, "zone": zone,
            "capacity": {"memory_mb": 1024, "disk_mb": 8192, "containers": 50},
            "rootfs_providers": [{"name": "preloaded", "properties": ["busybox"]}],
        });
        let resource = locket::Resource {
            key: format!("cell-{i}"),
            owner: format!("rep-{i}"),
            value: presence.to_string(),
            type_code: locket::TypeCode::Presence as i32,
        };
        let mut locked = false;
        for _ in 0..200 {
            if locket_client
                .lock(locket::LockRequest { resource: Some(resource.clone()), ttl_in_seconds: 60 })
                .await
                .is_ok()
            {
                locked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(locked, "cell-{i} could not register its presence");
        cells.push(performed);
    }

    // The auctioneer, finding the BBS by address; the BBS finds it through its lock.
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auctioneer_address = grpc.local_addr().unwrap().to_string();
    let config = AuctioneerConfig {
        bbs_address: bbs_address.clone(),
        lock_retry_interval: Duration::from_millis(200),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..AuctioneerConfig::default()
    };
    tokio::spawn(auctioneer::run(config, auctioneer::Listeners { grpc, admin }, shutdown.clone()));

    let mut client = BbsClient::new(channel);
    // Wait until both lead: the BBS accepts writes and the auctioneer holds its lock.
    for _ in 0..400 {
        let bbs_leads = client.upsert_domain(api::UpsertDomainRequest { domain: "apps".into(), ttl: 0 }).await.is_ok();
        // The auctioneer serves once it holds its lock (an empty request then succeeds).
        let auctioneer_locked = match proto::pb::auctioneer::v1::auctioneer_client::AuctioneerClient::connect(format!(
            "http://{auctioneer_address}"
        ))
        .await
        {
            Ok(mut a) => {
                a.request_lrp_auctions(proto::pb::auctioneer::v1::RequestLrpAuctionsRequest::default()).await.is_ok()
            }
            Err(_) => false,
        };
        if bbs_leads && auctioneer_locked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("web", 10, 64, "preloaded:busybox")) })
        .await
        .unwrap();
    let mut per_cell = Vec::new();
    for _ in 0..400 {
        per_cell = cells
            .iter()
            .map(|c| {
                c.lock().unwrap().iter().filter(|l| l.actual_lrp_key.as_ref().unwrap().process_guid == "web").count()
            })
            .collect();
        if per_cell.iter().sum::<usize>() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(per_cell.iter().sum::<usize>(), 10, "all 10 instances are performed on cells: {per_cell:?}");
    assert!(per_cell.iter().all(|&n| n > 0), "the instances spread over the 3 cells: {per_cell:?}");
    let mut indices: BTreeMap<i32, usize> = BTreeMap::new();
    for cell in &cells {
        for lrp in cell.lock().unwrap().iter() {
            *indices.entry(lrp.actual_lrp_key.as_ref().unwrap().index).or_default() += 1;
        }
    }
    assert_eq!(indices.len(), 10, "each index placed exactly once: {indices:?}");
    assert!(indices.values().all(|&n| n == 1));

    client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("huge", 1, 4096, "preloaded:busybox")) })
        .await
        .unwrap();
    let error = placement_error(&mut client, "huge").await;
    assert!(error.contains("insufficient resources"), "{error}");

    client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("alien", 1, 64, "preloaded:nonexistent")) })
        .await
        .unwrap();
    let error = placement_error(&mut client, "alien").await;
    assert!(error.contains("found no compatible cell"), "{error}");
    shutdown.cancel();
}
