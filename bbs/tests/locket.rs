//! Locket over gRPC, on every configured backend: time to live bounded by type and by config,
//! the leaders' keys (`bbs`, `auctioneer`) no longer than their leaders' own TTL, refusals as
//! INVALID_ARGUMENT naming the field and the limit with nothing written, and terms that only
//! increase for a key across release and expiry.

use std::time::Duration;

use bbs::config::BbsConfig;
use bbs::locket::{LocketConfig, LocketLimits, LocketService};
use db::Backend;
use db::sql::leases::LeaseType;
use db::testing::TestDb;
use proto::error::ERROR_METADATA_KEY;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::locket::v1::locket_server::LocketServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A Locket service alone on 127.0.0.1:0 over `db`, with the limits of `config`.
async fn serve(db: &TestDb, config: &BbsConfig) -> (LocketClient<Channel>, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = LocketService::with_limits(db.store.clone(), LocketLimits::from_config(config));
    let stop = CancellationToken::new();
    tokio::spawn(
        tonic::transport::Server::builder().add_service(LocketServer::new(service)).serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.clone().cancelled_owned(),
        ),
    );
    (connect(&address.to_string()).await, stop)
}

async fn connect(address: &str) -> LocketClient<Channel> {
    for _ in 0..100 {
        if let Ok(client) = LocketClient::connect(format!("http://{address}")).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("locket at {address} never accepted connections");
}

fn resource(key: &str, owner: &str, type_code: locket::TypeCode) -> locket::Resource {
    locket::Resource {
        key: key.into(),
        owner: owner.into(),
        value: format!("value-of-{owner}"),
        type_code: type_code as i32,
    }
}

fn lock_request(key: &str, owner: &str, ttl_in_seconds: i64) -> locket::LockRequest {
    locket::LockRequest { resource: Some(resource(key, owner, locket::TypeCode::Lock)), ttl_in_seconds }
}

fn presence_request(key: &str, owner: &str, ttl_in_seconds: i64) -> locket::LockRequest {
    locket::LockRequest { resource: Some(resource(key, owner, locket::TypeCode::Presence)), ttl_in_seconds }
}

fn release_request(key: &str, owner: &str) -> locket::ReleaseRequest {
    locket::ReleaseRequest { resource: Some(resource(key, owner, locket::TypeCode::Lock)) }
}

/// `status` is INVALID_ARGUMENT / InvalidRequest and its message contains every one of `words`.
fn assert_invalid(status: &tonic::Status, words: &[&str]) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(status.metadata().get(ERROR_METADATA_KEY).unwrap(), "InvalidRequest");
    for word in words {
        assert!(status.message().contains(word), "{:?} does not name {word:?}", status.message());
    }
}

fn config() -> BbsConfig {
    BbsConfig {
        encryption_keys_file: db::testing::test_key_file(),
        lock_ttl: Duration::from_secs(5),
        lock_retry_interval: Duration::from_secs(1),
        locket: LocketConfig {
            max_lock_ttl: Duration::from_secs(30),
            max_presence_ttl: Duration::from_secs(60),
            auctioneer_lock_ttl: Duration::from_secs(10),
        },
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..BbsConfig::default()
    }
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(db::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(db::Backend::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(db::Backend::Mysql).await })*
        }
    };
}

on_every_backend!(
    ttls_are_bounded_by_type_and_config,
    the_leaders_keys_are_locks_no_longer_than_their_leaders_ttl,
    a_client_naming_the_leader_can_neither_release_nor_take_its_lease,
    terms_only_increase_across_release_and_expiry_over_grpc,
    a_running_bbs_refuses_a_day_long_lock_on_its_own_key,
);

/// A LOCK for at most `max_lock_ttl`, a PRESENCE for at most `max_presence_ttl`; a refusal
/// names the field and the limit, and writes nothing.
async fn ttls_are_bounded_by_type_and_config(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (mut client, stop) = serve(&db, &config()).await;

    let status = client.lock(lock_request("my-lock", "a", 31)).await.unwrap_err();
    assert_invalid(&status, &["ttl_in_seconds", "at most 30", "LOCK", "locket.max_lock_ttl"]);
    let status = client.lock(presence_request("cell-1", "rep-1", 61)).await.unwrap_err();
    assert_invalid(&status, &["ttl_in_seconds", "at most 60", "PRESENCE", "locket.max_presence_ttl"]);
    let status = client.lock(presence_request("cell-1", "rep-1", 86_400)).await.unwrap_err();
    assert_invalid(&status, &["ttl_in_seconds", "locket.max_presence_ttl"]);
    let status = client.lock(presence_request("cell-1", "rep-1", 0)).await.unwrap_err();
    assert_invalid(&status, &["ttl_in_seconds", "at least 1"]);
    // (The shared request codec may refuse a NUL before the service sees it.)
    let status = client.lock(presence_request("cell\0", "rep-1", 10)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("resource.key") && status.message().contains("NUL"), "{status:?}");
    let mut big = presence_request("cell-1", "rep-1", 10);
    big.resource.as_mut().unwrap().value = "x".repeat(bbs::locket::MAX_VALUE_BYTES + 1);
    let status = client.lock(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("resource.value"), "{status:?}");
    // Nothing was written.
    assert!(db.store.fetch_leases(LeaseType::Presence).await.unwrap().is_empty());
    assert!(db.store.fetch_leases(LeaseType::Lock).await.unwrap().is_empty());

    // At the limits they are granted.
    assert_eq!(client.lock(lock_request("my-lock", "a", 30)).await.unwrap().into_inner().term, 1);
    assert_eq!(client.lock(presence_request("cell-1", "rep-1", 60)).await.unwrap().into_inner().term, 1);
    let stored = db.store.fetch_lease("cell-1").await.unwrap();
    assert_eq!(stored.ttl_ms, 60_000);
    stop.cancel();
}

/// `bbs` and `auctioneer` are locks only, for at most the BBS's `lock_ttl` and the configured
/// auctioneer lock ttl.
async fn the_leaders_keys_are_locks_no_longer_than_their_leaders_ttl(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (mut client, stop) = serve(&db, &config()).await;

    let status = client.lock(lock_request("bbs", "intruder", 1)).await.unwrap_err();
    assert_invalid(&status, &["resource.key", "must not be bbs", "the BBS holds that lease itself"]);
    let status = client.lock(lock_request("auctioneer", "intruder", 11)).await.unwrap_err();
    assert_invalid(&status, &["ttl_in_seconds", "at most 10", "lock auctioneer", "locket.auctioneer_lock_ttl"]);
    let status = client.lock(presence_request("auctioneer", "intruder", 1)).await.unwrap_err();
    assert_invalid(&status, &["resource.type_code", "LOCK", "auctioneer"]);
    assert!(db.store.fetch_leases(LeaseType::Lock).await.unwrap().is_empty());
    assert!(db.store.fetch_leases(LeaseType::Presence).await.unwrap().is_empty());

    // The auctioneer's own lock, at its ttl, is granted.
    assert_eq!(client.lock(lock_request("auctioneer", "auct-1", 10)).await.unwrap().into_inner().term, 1);
    stop.cancel();
}

/// The probe that found the hole: a client that knows the leader's owner id releases the `bbs`
/// lease and locks it for itself for a day. Now it can do neither: the BBS takes that lease
/// through its database, and Locket refuses the key, so the leader keeps its lease and term.
async fn a_client_naming_the_leader_can_neither_release_nor_take_its_lease(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (mut client, stop) = serve(&db, &config()).await;
    let leader = db.store.acquire_lease("bbs", "bbs-leader", "10.0.0.1:8889", LeaseType::Lock, Duration::from_secs(5));
    let leader = leader.await.unwrap();
    assert_eq!(leader.term, 1);

    let status = client.release(release_request("bbs", "bbs-leader")).await.unwrap_err();
    assert_invalid(&status, &["resource.key", "must not be bbs"]);
    for ttl in [86_400, 1] {
        let status = client.lock(lock_request("bbs", "intruder", ttl)).await.unwrap_err();
        assert_invalid(&status, &["resource.key", "must not be bbs"]);
    }
    let held = db.store.fetch_lease("bbs").await.unwrap();
    assert_eq!((held.owner.as_str(), held.term), ("bbs-leader", 1));
    // Reading it stays open: that is how anyone finds the leader.
    let fetched = client.fetch(locket::FetchRequest { key: "bbs".into() }).await.unwrap().into_inner();
    assert_eq!(fetched.resource.unwrap().owner, "bbs-leader");
    stop.cancel();
}

/// Lock, Release, Lock again by the same owner: the term goes up; and so after an expiry.
async fn terms_only_increase_across_release_and_expiry_over_grpc(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (mut client, stop) = serve(&db, &config()).await;
    let mut terms = Vec::new();
    terms.push(client.lock(presence_request("cell-1", "rep-1", 1)).await.unwrap().into_inner().term);
    client.release(release_request("cell-1", "rep-1")).await.unwrap();
    let status = client.fetch(locket::FetchRequest { key: "cell-1".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    terms.push(client.lock(presence_request("cell-1", "rep-1", 1)).await.unwrap().into_inner().term);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // Expired, and taken by the BBS's lost-cell check.
    assert_eq!(db.store.take_expired_leases(LeaseType::Presence).await.unwrap().len(), 1);
    terms.push(client.lock(presence_request("cell-1", "rep-1", 1)).await.unwrap().into_inner().term);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // Expired, and taken over by another owner.
    terms.push(client.lock(presence_request("cell-1", "rep-2", 10)).await.unwrap().into_inner().term);
    assert_eq!(terms, [1, 2, 3, 4]);
    stop.cancel();
}

/// Through a whole `bbs::run`: the BBS's own key cannot be locked for a day, nor a presence
/// held for a day, even after releasing the leader's lease by naming its owner.
async fn a_running_bbs_refuses_a_day_long_lock_on_its_own_key(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = grpc.local_addr().unwrap().to_string();
    let config = BbsConfig {
        encryption_keys_file: db::testing::test_key_file(),
        database_url: db.url.clone(),
        instance_id: "bbs-under-test".into(),
        lock_ttl: Duration::from_secs(2),
        lock_retry_interval: Duration::from_millis(200),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..BbsConfig::default()
    };
    let shutdown = CancellationToken::new();
    // No LRP is desired here, so the auctioneer is never called.
    let overrides = bbs::Overrides::default();
    let task =
        tokio::spawn(bbs::run(config.validate().unwrap(), bbs::Listeners { grpc, admin }, overrides, shutdown.clone()));
    let mut client = connect(&address).await;
    let mut leading = false;
    for _ in 0..100 {
        if db.store.fetch_lease("bbs").await.is_ok_and(|lease| lease.owner == "bbs-under-test") {
            leading = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(leading, "the bbs never took its lease");

    // Knowing the owner id is not enough to release the lease, nor to lock it for any time.
    let status = client.release(release_request("bbs", "bbs-under-test")).await.unwrap_err();
    assert_invalid(&status, &["resource.key", "must not be bbs"]);
    for ttl in [86_400, 16, 1] {
        let status = client.lock(lock_request("bbs", "intruder", ttl)).await.unwrap_err();
        assert_invalid(&status, &["resource.key", "must not be bbs"]);
    }
    let status = client.lock(presence_request("cell-1", "rep-1", 86_400)).await.unwrap_err();
    assert_invalid(&status, &["ttl_in_seconds", "PRESENCE"]);
    // The BBS keeps leading under its first term.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lease = db.store.fetch_lease("bbs").await.unwrap();
    assert_eq!((lease.owner.as_str(), lease.term), ("bbs-under-test", 1));

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(15), task).await.expect("bbs did not shut down");
    result.expect("bbs task panicked").expect("bbs run failed");
}
