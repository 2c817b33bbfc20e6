//! The whole auctioneer (`run_with`) on 127.0.0.1:0 with fake BBS, reps and Locket: it takes
//! the lock advertising its gRPC address, places requested work, serves `/healthz` and
//! `/metrics`, and releases the lock on shutdown.

use std::sync::Arc;
use std::time::Duration;

use auctioneer::testing::{FakeBbs, FakeLocker, FakeReps, cell};
use auctioneer::{AuctioneerConfig, Clients, Listeners};
use proto::pb::auctioneer::v1 as pb;
use proto::pb::auctioneer::v1::auctioneer_client::AuctioneerClient;
use proto::pb::models::v1 as models_pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read response");
    response
}

#[tokio::test]
async fn run_places_requested_work_while_holding_the_lock_and_releases_it_on_shutdown() {
    let bbs = Arc::new(FakeBbs::new());
    let reps = Arc::new(FakeReps::new());
    let locker = Arc::new(FakeLocker::new(true));
    for (id, zone) in [("cell-a", "z1"), ("cell-b", "z2")] {
        let address = format!("rep-{id}:1801");
        bbs.add_cell(id, &address);
        reps.add_cell(&address, cell(id, zone, 4096, 4096, 100));
    }
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let grpc_address = grpc.local_addr().expect("grpc address");
    let admin_address = admin.local_addr().expect("admin address");
    let config = AuctioneerConfig {
        lock_retry_interval: Duration::from_millis(100),
        lock_ttl: Duration::from_secs(1),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..AuctioneerConfig::default()
    };
    let clients = Clients { bbs: bbs.clone(), reps: reps.clone(), locker: locker.clone() };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(auctioneer::run_with(config, Listeners { grpc, admin }, clients, shutdown.clone()));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_address}"))
        .expect("valid endpoint")
        .connect_lazy();
    let mut client = AuctioneerClient::new(channel);
    let request = pb::RequestLrpAuctionsRequest {
        lrp_start_requests: vec![pb::LrpStartRequest {
            process_guid: "app".into(),
            domain: "d".into(),
            indices: vec![0, 1],
            resource: Some(models_pb::Resource { memory_mb: 64, disk_mb: 1, max_pids: 0 }),
            placement_constraint: Some(models_pb::PlacementConstraint {
                rootfs: auctioneer::testing::ROOTFS.into(),
                ..Default::default()
            }),
        }],
    };
    // Until the lock is taken the auctioneer answers UNAVAILABLE; keep asking.
    tokio::time::timeout(PATIENCE, async {
        while client.request_lrp_auctions(request.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the auctioneer should take the lock and accept the request");
    tokio::time::timeout(PATIENCE, reps.wait_for_performs(2)).await.expect("both instances should be performed");
    let performs = reps.performs();
    let placed: usize = performs.iter().map(|(_, w)| w.lrps.len()).sum();
    assert_eq!(placed, 2);
    assert_eq!(performs.len(), 2, "the two instances go to the two zones");

    let lock = locker.last_lock().expect("a lock call");
    assert_eq!(lock.key, "auctioneer");
    assert_eq!(lock.value, grpc_address.to_string());

    let healthz =
        tokio::time::timeout(PATIENCE, http_get(admin_address, "/healthz")).await.expect("healthz should answer");
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(healthz.contains("auctioning"), "{healthz}");
    let metrics =
        tokio::time::timeout(PATIENCE, http_get(admin_address, "/metrics")).await.expect("metrics should answer");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("auctioneer_auctions_started_total"), "{metrics}");
    let missing = tokio::time::timeout(PATIENCE, http_get(admin_address, "/nope")).await.expect("admin should answer");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    shutdown.cancel();
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run should stop on shutdown")
        .expect("run should not panic")
        .expect("run should stop cleanly");
    assert_eq!(locker.releases().len(), 1, "the lock is released on shutdown");
}

#[tokio::test]
async fn run_refuses_an_invalid_configuration() {
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let config = AuctioneerConfig {
        bbs_address: String::new(),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..AuctioneerConfig::default()
    };
    let result =
        tokio::time::timeout(PATIENCE, auctioneer::run(config, Listeners { grpc, admin }, CancellationToken::new()))
            .await
            .expect("run should return at once");
    let err = result.expect_err("an empty bbs address is invalid");
    assert!(err.to_string().contains("bbs_address"), "{err}");
}
