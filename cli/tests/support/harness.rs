//! Shared harness of the CLI tests: an in-process BBS (`bbs::run` on 127.0.0.1:0 over a fresh
//! SQLite test database), a tonic client for the setup no CLI command does (claiming and
//! starting instances as a rep would, cell presences), and [`diego`], which runs the real
//! binary and checks that it never panics. Everything speaks mutual TLS with the test PKI
//! (`svc::pki::Pki::for_tests`): the BBS as `diego://bbs`, the setup client as the operator or
//! the cell it acts for, and `diego` as the operator (through `DIEGO_TLS_*`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bbs::config::BbsConfig;
use db::Backend;
use db::testing::TestDb;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::models::v1 as pb;
use svc::connect::ChannelOptions;
use svc::identity::Role;
use svc::pki::Pki;
use svc::tls::Security;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The path of the `diego` binary under test.
pub const DIEGO: &str = env!("CARGO_BIN_EXE_diego");

/// One in-process BBS.
pub struct Bbs {
    /// Its gRPC address, `127.0.0.1:PORT`.
    pub address: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), bbs::RunError>>,
    _db: TestDb,
    /// The BBS's data directory (its generated encryption key file), removed on stop.
    data_dir: PathBuf,
}

impl Bbs {
    /// Starts a BBS and waits until it leads (accepts writes).
    pub async fn start() -> Bbs {
        Bbs::start_on(Backend::Sqlite).await.expect("sqlite test databases are always available")
    }

    /// Starts a BBS on a fresh database of `backend`, or `None` when the backend's test URL
    /// (`DIEGO_TEST_POSTGRES_URL`, `DIEGO_TEST_MYSQL_URL`) is not set (`db::testing::TestDb`).
    pub async fn start_on(backend: Backend) -> Option<Bbs> {
        let db = TestDb::create(backend).await?;
        let data_dir = std::env::temp_dir().join(format!("cli-test-bbs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = grpc.local_addr().unwrap().to_string();
        let config = BbsConfig {
            database_url: db.url.clone(),
            data_dir: data_dir.clone(),
            lock_ttl: Duration::from_secs(2),
            lock_retry_interval: Duration::from_millis(200),
            tls: Pki::for_tests().test_tls(Role::Bbs, ""),
            ..BbsConfig::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bbs::run(
            config.validate().unwrap(),
            bbs::Listeners { grpc, admin },
            bbs::Overrides::default(),
            shutdown.clone(),
        ));
        let server = Bbs { address, shutdown, task, _db: db, data_dir };
        server.wait_until_leading().await;
        Some(server)
    }

    async fn wait_until_leading(&self) {
        let mut client = self.client().await;
        for _ in 0..200 {
            // Cancelling a task that does not exist is a write with no effect: NotFound once this
            // BBS leads, Unavailable before.
            match client.cancel_task(api::TaskGuidRequest { task_guid: "leadership-probe".into() }).await {
                Err(status) if status.code() == tonic::Code::NotFound => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("bbs at {} never became the leader", self.address);
    }

    /// A gRPC client, as the operator.
    pub async fn client(&self) -> BbsClient<Channel> {
        BbsClient::new(self.channel_as(Role::Operator, OPERATOR).await)
    }

    /// A gRPC client as the rep of `cell` (what a cell may do: claim, start, crash, tasks).
    pub async fn cell(&self, cell: &str) -> BbsClient<Channel> {
        BbsClient::new(self.channel_as(Role::Cell, cell).await)
    }

    /// A gRPC client as the auctioneer (fail placements, reject tasks).
    pub async fn auctioneer(&self) -> BbsClient<Channel> {
        BbsClient::new(self.channel_as(Role::Auctioneer, "").await)
    }

    /// A gRPC channel as the identity of `role` named `name`.
    pub async fn channel_as(&self, role: Role, name: &str) -> Channel {
        let options = ChannelOptions::new(Duration::from_secs(5), security(role, name));
        for _ in 0..100 {
            if let Ok(channel) = svc::connect::connect(&self.address, &options).await {
                return channel;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bbs at {} never accepted connections", self.address);
    }

    /// Runs `diego --bbs-address ADDR ARGS...`.
    pub async fn diego(&self, args: &[&str]) -> Run {
        let mut full = vec!["--bbs-address", self.address.as_str()];
        full.extend_from_slice(args);
        diego(&full).await
    }

    /// Starts `diego --bbs-address ADDR ARGS...` without waiting (for `events`).
    pub fn spawn_diego(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(DIEGO)
            .arg("--bbs-address")
            .arg(&self.address)
            .args(args)
            .env_remove("DIEGO_BBS_ADDRESS")
            .envs(operator_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start diego")
    }

    /// Claims instance `index` of `guid` on `cell` as a rep would.
    pub async fn claim(&self, guid: &str, index: i32, instance: &str, cell: &str) {
        BbsClient::new(self.channel_as(Role::Cell, cell).await)
            .claim_actual_lrp(api::ClaimActualLrpRequest {
                process_guid: guid.into(),
                index,
                actual_lrp_instance_key: Some(instance_key(instance, cell)),
            })
            .await
            .expect("claim failed");
    }

    /// Claims and starts instance `index` with net info `10.0.0.1:HOST_PORT->8080`.
    pub async fn run_instance(&self, guid: &str, index: i32, instance: &str, cell: &str, host_port: u32) {
        self.claim(guid, index, instance, cell).await;
        BbsClient::new(self.channel_as(Role::Cell, cell).await)
            .start_actual_lrp(api::StartActualLrpRequest {
                actual_lrp_key: Some(lrp_key(guid, index)),
                actual_lrp_instance_key: Some(instance_key(instance, cell)),
                actual_lrp_net_info: Some(pb::ActualLrpNetInfo {
                    address: "10.0.0.1".into(),
                    ports: vec![pb::PortMapping { container_port: 8080, host_port, ..Default::default() }],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("start failed");
    }

    /// Registers a live cell through Locket, as a rep's presence loop does.
    pub async fn register_cell(&self, cell: &str, memory_mb: i32, disk_mb: i32, containers: i32) {
        let presence = serde_json::json!({
            "cell_id": cell,
            "rep_address": "127.0.0.1:1801",
            "zone": "z1",
            "capacity": { "memory_mb": memory_mb, "disk_mb": disk_mb, "containers": containers },
            "rootfs_providers": [{ "name": "preloaded", "properties": ["busybox"] }],
        });
        let mut client = LocketClient::new(self.channel_as(Role::Cell, cell).await);
        client
            .lock(locket::LockRequest {
                resource: Some(locket::Resource {
                    key: cell.into(),
                    // The cell's own identity: a lease's owner under mutual TLS.
                    owner: format!("diego://cell/{cell}#cli-test"),
                    value: presence.to_string(),
                    type_code: locket::TypeCode::Presence as i32,
                }),
                ttl_in_seconds: 120,
            })
            .await
            .expect("presence lock failed");
    }

    /// The stored desired LRP.
    pub async fn desired(&self, guid: &str) -> pb::DesiredLrp {
        let request = api::DesiredLrpByProcessGuidRequest { process_guid: guid.into() };
        self.client().await.desired_lrp_by_process_guid(request).await.unwrap().into_inner().desired_lrp.unwrap()
    }

    /// The stored actual LRPs of `guid`.
    pub async fn actual(&self, guid: &str) -> Vec<pb::ActualLrp> {
        let request = api::ActualLrPsRequest { process_guid: guid.into(), ..Default::default() };
        self.client().await.actual_lr_ps(request).await.unwrap().into_inner().actual_lrps
    }

    /// Runs `diego --bbs-address ADDR ARGS...` with `input` on its standard input.
    pub async fn diego_with_input(&self, args: &[&str], input: &str) -> Run {
        let mut command = tokio::process::Command::new(DIEGO);
        command.arg("--bbs-address").arg(&self.address).args(args).env_remove("DIEGO_BBS_ADDRESS").envs(operator_env());
        run_with(command, args, Some(input)).await
    }

    /// Stops the BBS.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("bbs did not shut down");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An instance key.
pub fn instance_key(guid: &str, cell: &str) -> pb::ActualLrpInstanceKey {
    pb::ActualLrpInstanceKey { instance_guid: guid.into(), cell_id: cell.into() }
}

/// An actual LRP key in the CLI's default domain.
pub fn lrp_key(guid: &str, index: i32) -> pb::ActualLrpKey {
    pb::ActualLrpKey { process_guid: guid.into(), index, domain: "diego".into() }
}

/// The outcome of one `diego` run.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns standard output.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "diego failed: {self:?}");
        &self.stdout
    }

    /// Standard output parsed as JSON, after asserting success.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts exit code `code` and a one-line error on standard error, and returns that line.
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        let line = self.stderr.trim_end();
        assert!(line.starts_with("error: "), "the error does not start with 'error: ': {self:?}");
        assert_eq!(line.lines().count(), 1, "the error is not one line: {self:?}");
        line
    }
}

/// The operator identity's name in the test PKI.
pub const OPERATOR: &str = "operator";

/// The transport security of the test identity of `role` named `name`.
pub fn security(role: Role, name: &str) -> Security {
    Pki::for_tests().test_tls(role, name).security().expect("the test certificate loads")
}

/// `DIEGO_TLS_CA`, `DIEGO_TLS_CERT` and `DIEGO_TLS_KEY` of the test operator: what every `diego`
/// run gets (a test's own environment replaces them).
pub fn operator_env() -> Vec<(&'static str, PathBuf)> {
    let tls = Pki::for_tests().test_tls(Role::Operator, OPERATOR);
    vec![("DIEGO_TLS_CA", tls.ca), ("DIEGO_TLS_CERT", tls.cert), ("DIEGO_TLS_KEY", tls.key)]
}

/// Runs `diego ARGS...` with `DIEGO_BBS_ADDRESS` unset, and asserts it did not panic.
pub async fn diego(args: &[&str]) -> Run {
    diego_with_env(args, &[]).await
}

/// Runs `diego ARGS...` with extra environment variables.
pub async fn diego_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(DIEGO);
    command.args(args).env_remove("DIEGO_BBS_ADDRESS").envs(operator_env());
    for (name, value) in env {
        command.env(name, value);
    }
    run(command, args).await
}

/// Runs `diego ARGS...` in `dir` with no certificate from the environment (no `DIEGO_TLS_*`,
/// no `DIEGO_BBS_ADDRESS`): what a user gets who passes none.
pub async fn diego_without_certificates(dir: &std::path::Path, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(DIEGO);
    command.args(args).current_dir(dir);
    for name in ["DIEGO_BBS_ADDRESS", "DIEGO_TLS_CA", "DIEGO_TLS_CERT", "DIEGO_TLS_KEY"] {
        command.env_remove(name);
    }
    run(command, args).await
}

async fn run(command: tokio::process::Command, args: &[&str]) -> Run {
    run_with(command, args, None).await
}

/// Runs `command` (a `diego` with `args`) to its end within 60 s, with `input` on its standard
/// input (none: no standard input), and fails the test if it panicked.
async fn run_with(mut command: tokio::process::Command, args: &[&str], input: Option<&str>) -> Run {
    use tokio::io::AsyncWriteExt as _;
    let stdin = if input.is_some() { Stdio::piped() } else { Stdio::null() };
    command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().expect("cannot start diego");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("diego {args:?} did not finish within 60 s"))
        .expect("cannot run diego");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_no_panic(&run.stderr);
    run
}

/// Fails the test when a process's standard error shows a panic.
pub fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "diego panicked: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "diego printed a backtrace hint: {stderr}");
}

/// A fresh scratch directory for files a test writes.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loopback address nothing listens on.
pub fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}
