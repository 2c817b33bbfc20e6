//! BBS write throughput through gRPC, next to the equivalent raw SQL on the same database.
//!
//! Starts an in-process BBS on PostgreSQL (`DIEGO_TEST_POSTGRES_URL`; SQLite when unset) and
//! drives it with `BENCH_CLIENTS` (16) concurrent gRPC clients:
//!
//! - `DesireLRP` with 1 instance, `BENCH_REQUESTS` (2,000) times, next to a single-row INSERT;
//! - `StartActualLRP` of each of those instances, next to a single-row UPDATE by primary key.
//!
//! The raw side runs the same number of statements with the same concurrency on the store's own
//! pool, in the same run. Run: `cargo bench -p bbs --bench throughput`.

#![allow(missing_docs, clippy::disallowed_types)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bbs::clients::{AuctioneerClient, ClientError, LrpStartRequest, TaskStartRequest};
use bbs::config::BbsConfig;
use db::Backend;
use db::testing::TestDb;
use db::testing::write_bench::{RawTable, drive};
use futures::future::BoxFuture;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tokio_util::sync::CancellationToken;

/// An auctioneer that accepts everything at once (the bench measures the BBS alone).
struct NoAuctioneer;

impl AuctioneerClient for NoAuctioneer {
    fn request_lrp_auctions(&self, _: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
    fn request_task_auctions(&self, _: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn desired(guid: String) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid,
        domain: "bench".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 1,
        memory_mb: 128,
        disk_mb: 128,
        ports: vec![8080],
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clients = env_usize("BENCH_CLIENTS", 16);
    let requests = env_usize("BENCH_REQUESTS", 2_000);
    let backend =
        if std::env::var_os(db::testing::POSTGRES_URL_VAR).is_some() { Backend::Postgres } else { Backend::Sqlite };
    let db = TestDb::create(backend).await.expect("test database");
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = grpc.local_addr().unwrap();
    // Plaintext: this bench compares the BBS's write path with raw SQL; benchmark-bbs
    // --compare-tls measures what TLS adds.
    // The generated key file goes to a directory of its own, not into the source tree.
    let data_dir = std::env::temp_dir().join(format!("bbs-throughput-bench-{}", std::process::id()));
    let config = BbsConfig {
        database_url: db.url.clone(),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        data_dir: data_dir.clone(),
        ..BbsConfig::default()
    };
    let shutdown = CancellationToken::new();
    let overrides = bbs::Overrides { auctioneer: Some(Arc::new(NoAuctioneer)), ..Default::default() };
    let server = tokio::spawn(bbs::run(config, bbs::Listeners { grpc, admin }, overrides, shutdown.clone()));

    let channel = tonic::transport::Channel::from_shared(format!("http://{address}")).unwrap().connect_lazy();
    let client = BbsClient::new(channel);
    // Wait for leadership.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.clone().upsert_domain(api::UpsertDomainRequest { domain: "bench".into(), ttl: 0 }).await.is_err() {
        assert!(Instant::now() < deadline, "the bbs never became the leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "bbs write throughput on {} with {clients} concurrent clients, {requests} requests per operation",
        backend.name()
    );

    let c = client.clone();
    let desire = drive(0..requests, clients, move |i| {
        let mut c = c.clone();
        async move {
            c.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired(format!("lrp-{i}"))) })
                .await
                .expect("desire");
        }
    })
    .await;

    let c = client.clone();
    let start = drive(0..requests, clients, move |i| {
        let mut c = c.clone();
        async move {
            let request = api::StartActualLrpRequest {
                actual_lrp_key: Some(pb::ActualLrpKey {
                    process_guid: format!("lrp-{i}"),
                    index: 0,
                    domain: "bench".into(),
                }),
                actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey {
                    instance_guid: format!("ig-{i}"),
                    cell_id: "cell-1".into(),
                }),
                actual_lrp_net_info: Some(pb::ActualLrpNetInfo {
                    address: "10.0.0.1".into(),
                    ports: vec![pb::PortMapping { container_port: 8080, host_port: 61000, ..Default::default() }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            c.start_actual_lrp(request).await.expect("start");
        }
    })
    .await;

    // The raw equivalents on the same database and pool, same concurrency.
    let raw = RawTable::create(&db.store).await;
    let insert = raw.insert(0..requests, clients).await;
    let update = raw.update(0..requests, clients).await;

    println!("{:<38} {:>12} {:>12} {:>7}", "operation", "bbs (op/s)", "raw (op/s)", "ratio");
    println!("{:<38} {:>12.0} {:>12.0} {:>6.2}x", "DesireLRP (1 instance) vs INSERT", desire, insert, desire / insert);
    println!("{:<38} {:>12.0} {:>12.0} {:>6.2}x", "StartActualLRP vs UPDATE by key", start, update, start / update);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
