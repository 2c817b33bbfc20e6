//! Two real `bbs` processes on one PostgreSQL database (issue acceptance): exactly one leads; the
//! standby serves reads and refuses writes naming the leader; after the leader is killed with
//! SIGKILL the standby takes over once the lease lapses, and no committed write is lost.
//! Runs when `DIEGO_TEST_POSTGRES_URL` is set (required under `DIEGO_TEST_REQUIRE_BACKENDS`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use db::Backend;
use db::testing::TestDb;
use proto::error::LEADER_METADATA_KEY;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tokio::time::Instant;

/// Lease settings of the test processes.
const TTL: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(500);

struct Bbs {
    child: Child,
    address: String,
    _dir: TempDir,
}

impl Drop for Bbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spawn_bbs(url: &str, name: &str) -> Bbs {
    let dir = std::env::temp_dir().join(format!("diego-failover-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bbs.toml");
    std::fs::write(
        &config,
        format!("lock_ttl = \"{}ms\"\nlock_retry_interval = \"{}ms\"\n", TTL.as_millis(), RETRY.as_millis()),
    )
    .unwrap();
    let address = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let admin = format!("127.0.0.1:{}", svc::ports::free_port().unwrap());
    let tls = svc::pki::Pki::for_tests().test_tls(svc::identity::Role::Bbs, "");
    let path = |p: &std::path::Path| p.display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_bbs"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--database-url",
            url,
            "--listen-address",
            &address,
            "--admin-address",
            &admin,
        ])
        .args(["--tls-ca", &path(&tls.ca), "--tls-cert", &path(&tls.cert), "--tls-key", &path(&tls.key)])
        // Both servers of one database share its keys.
        .env("DIEGO_ENCRYPTION_KEYS", format!("failover={}", "ab".repeat(32)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bbs");
    Bbs { child, address, _dir: TempDir(dir) }
}

async fn client(address: &str) -> BbsClient<tonic::transport::Channel> {
    let operator = svc::pki::Pki::for_tests().test_tls(svc::identity::Role::Operator, "operator");
    let options = svc::connect::ChannelOptions::new(Duration::from_secs(5), operator.security().unwrap());
    for _ in 0..200 {
        if let Ok(channel) = svc::connect::connect(address, &options).await {
            return BbsClient::new(channel);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bbs at {address} never accepted connections");
}

/// Whether the server at `address` accepts a write now (it leads).
async fn accepts_writes(client: &mut BbsClient<tonic::transport::Channel>) -> Result<bool, tonic::Status> {
    match client.upsert_domain(api::UpsertDomainRequest { domain: "probe".into(), ttl: 0 }).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::Unavailable => Ok(false),
        Err(status) => Err(status),
    }
}

fn desired(guid: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 1,
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/true".into(),
                user: "root".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_after_the_leader_is_killed_and_nothing_committed_is_lost() {
    let Some(db) = TestDb::create(Backend::Postgres).await else { return };
    let mut first = spawn_bbs(&db.url, "a");
    let mut second = spawn_bbs(&db.url, "b");
    let mut a = client(&first.address).await;
    let mut b = client(&second.address).await;

    // Exactly one leads.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a_leads, b_leads) = loop {
        let (a_leads, b_leads) = (accepts_writes(&mut a).await.unwrap(), accepts_writes(&mut b).await.unwrap());
        if a_leads || b_leads {
            break (a_leads, b_leads);
        }
        assert!(Instant::now() < deadline, "no bbs became the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(a_leads != b_leads, "exactly one bbs may lead (a: {a_leads}, b: {b_leads})");
    if b_leads {
        std::mem::swap(&mut first, &mut second);
        std::mem::swap(&mut a, &mut b);
    }
    let (mut leader, mut standby) = (a, b);

    // Committed writes on the leader.
    for i in 0..20 {
        leader.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired(&format!("app-{i}"))) }).await.unwrap();
    }
    // The standby serves reads and refuses writes naming the leader.
    let listed = standby.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.desired_lrps.len(), 20);
    let refused =
        standby.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("refused")) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(refused.metadata().get(LEADER_METADATA_KEY).and_then(|v| v.to_str().ok()), Some(first.address.as_str()));

    // Kill the leader without letting it release its lease.
    first.child.kill().expect("SIGKILL the leader");
    let killed_at = Instant::now();
    let _ = first.child.wait();
    loop {
        if accepts_writes(&mut standby).await.unwrap() {
            break;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(60), "the standby never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = killed_at.elapsed();
    eprintln!(
        "takeover after SIGKILL: {takeover:?} (lease ttl {TTL:?} + renew interval {RETRY:?} = {:?})",
        TTL + RETRY
    );
    // The lease lapses at most TTL after the leader's last renewal, and the standby retries every
    // RETRY: takeover is bounded by TTL + RETRY, plus scheduling slack on a shared machine.
    assert!(takeover <= TTL + RETRY + Duration::from_secs(3), "takeover took {takeover:?}");

    // Nothing committed was lost, and the new leader writes.
    let listed = standby.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    let mut guids: Vec<String> = listed.desired_lrps.into_iter().map(|d| d.process_guid).collect();
    guids.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("app-{i}")).collect();
    expected.sort();
    assert_eq!(guids, expected);
    standby.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("after-failover")) }).await.unwrap();
    let actual = standby.actual_lr_ps(api::ActualLrPsRequest::default()).await.unwrap().into_inner().actual_lrps;
    assert_eq!(actual.len(), 21, "every desired lrp keeps its instance row");
    drop(second);
}
