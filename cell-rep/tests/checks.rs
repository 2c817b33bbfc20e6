//! Health rules of reference §3.5 with real TCP / HTTP listeners that the test opens and closes
//! on the container's allocated host ports (process runtime, host networking):
//! startup with a start timeout, liveness crashes naming the failing check, readiness toggling
//! `routable` without crashing, and the daemonized-process rule.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::{
    AllocationRequest, Container, ContainerEvent, ContainerState, Executor, ExecutorConfig, Resources, RunRequest,
};
use cell_rep::runtime::process::ProcessRuntime;
use cell_rep::testing::lrp_workload;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const PATIENCE: Duration = Duration::from_secs(60);

struct Cell {
    executor: Executor,
    events: broadcast::Receiver<ContainerEvent>,
    dir: PathBuf,
}

fn cell() -> Cell {
    let dir = std::env::temp_dir().join(format!("cell-rep-checks-{}", uuid::Uuid::new_v4().simple()));
    let mut config = ExecutorConfig::new(Resources::new(1024, 1024, 10), dir.join("executor"));
    config.graceful_stop = Duration::from_millis(500);
    config.healthcheck_interval = Duration::from_millis(50);
    let executor = Executor::new(config, Arc::new(ProcessRuntime::new(&dir)));
    let events = executor.subscribe();
    Cell { executor, events, dir }
}

impl Cell {
    fn start(&self, guid: &str, request: RunRequest) {
        let workload = lrp_workload("pg", 0, guid);
        self.executor.reserve(guid, AllocationRequest { memory_mb: 1, disk_mb: 1, workload }).expect("reserve");
        self.executor.run(guid, request).expect("run");
    }

    async fn next(&mut self, guid: &str, pick: impl Fn(&ContainerEvent) -> bool) -> Container {
        let events = &mut self.events;
        tokio::time::timeout(PATIENCE, async {
            loop {
                match events.recv().await {
                    Ok(event) if event.guid() == guid && pick(&event) => {
                        return event.container().cloned().expect("container");
                    }
                    Ok(_) => {}
                    Err(error) => panic!("event stream broke: {error}"),
                }
            }
        })
        .await
        .expect("the expected event never arrived")
    }

    async fn created(&mut self, guid: &str) -> Container {
        self.next(guid, |e| matches!(e, ContainerEvent::Created(_))).await
    }

    async fn completed_reason(&mut self, guid: &str) -> String {
        let container = self.next(guid, |e| matches!(e, ContainerEvent::Completed(_))).await;
        container.result.expect("result").failure_reason
    }

    async fn finish(self) {
        self.executor.shutdown_and_wait().await;
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

fn host_port(container: &Container, container_port: u32) -> u16 {
    let mapping = container.ports.iter().find(|m| m.container_port == container_port).expect("mapped port");
    u16::try_from(mapping.host_port).expect("port fits")
}

/// Binds the container's host port. The allocator took it from the kernel's ephemeral range and
/// let it go, so a connection of a test running alongside can hold it for a moment: try again for
/// a few seconds before failing (a CI run once failed here with AddrInUse).
async fn listen(port: u16) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind the container's host port {port}: {e}"),
        }
    }
}

/// Accepts connections and drops them, so TCP checks pass.
fn accept_forever(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    })
}

fn sleeper(checks: Vec<proto::pb::models::v1::Check>, start_timeout: Duration) -> RunRequest {
    RunRequest {
        action: build::sh("exec sleep 100"),
        checks,
        ports: vec![8080, 9090],
        start_timeout,
        ..RunRequest::default()
    }
}

#[tokio::test]
async fn an_instance_never_healthy_within_its_start_timeout_crashes_naming_the_check() {
    let mut cell = cell();
    cell.start("slow", sleeper(vec![build::tcp_check(8080, 0, 0)], Duration::from_secs(1)));
    let reason = cell.completed_reason("slow").await;
    assert_eq!(
        reason,
        "Instance never healthy after 1s: Failed to make TCP connection to port 8080: connection refused"
    );
    cell.finish().await;
}

#[tokio::test]
async fn a_healthy_instance_that_stops_answering_crashes_as_unhealthy() {
    let mut cell = cell();
    cell.start("live", sleeper(vec![build::tcp_check(8080, 100, 500)], Duration::from_secs(30)));
    let created = cell.created("live").await;
    assert_eq!(created.state, ContainerState::Created);
    let server = accept_forever(listen(host_port(&created, 8080)).await);
    let running = cell.next("live", |e| matches!(e, ContainerEvent::Running(_))).await;
    assert!(running.routable);
    server.abort();
    let _ = server.await;
    let reason = cell.completed_reason("live").await;
    // A connection the kernel accepted for the listener just before it closed is reset rather
    // than refused: either is the app no longer answering, named as it happened.
    let cause = reason
        .strip_prefix("Instance became unhealthy: Failed to make TCP connection to port 8080: ")
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(["connection refused", "connection reset by peer"].contains(&cause), "{reason}");
    cell.finish().await;
}

#[tokio::test]
async fn an_http_check_crashes_naming_the_status_it_got() {
    let mut cell = cell();
    cell.start("http", sleeper(vec![build::http_check(8080, "/health", 100, 1000)], Duration::from_secs(30)));
    let created = cell.created("http").await;
    let listener = listen(host_port(&created, 8080)).await;
    let healthy_answers = Arc::new(AtomicU16::new(3));
    let answers = healthy_answers.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let left = answers.load(Ordering::SeqCst);
            let status = if left > 0 {
                answers.store(left - 1, Ordering::SeqCst);
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = socket
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        }
    });
    cell.next("http", |e| matches!(e, ContainerEvent::Running(_))).await;
    let reason = cell.completed_reason("http").await;
    assert!(
        reason.starts_with("Instance became unhealthy: Failed to make HTTP request to '/health' on port 8080: received status code 503 in "),
        "{reason}"
    );
    server.abort();
    cell.finish().await;
}

#[tokio::test]
async fn readiness_toggles_routable_without_ever_crashing() {
    let mut cell = cell();
    let request =
        RunRequest { readiness_checks: vec![build::tcp_check(9090, 100, 500)], ..sleeper(vec![], Duration::ZERO) };
    cell.start("ready", request);
    let running = cell.next("ready", |e| matches!(e, ContainerEvent::Running(_))).await;
    assert!(!running.routable, "not routable until readiness passes");

    let server = accept_forever(listen(host_port(&running, 9090)).await);
    let ready = cell.next("ready", |e| matches!(e, ContainerEvent::Readiness(_))).await;
    assert!(ready.routable);
    server.abort();
    let _ = server.await;
    let unready = cell.next("ready", |e| matches!(e, ContainerEvent::Readiness(_))).await;
    assert!(!unready.routable);

    // Many failing readiness probes later, the instance still runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let container = cell.executor.get("ready").expect("container");
    assert_eq!(container.state, ContainerState::Running);
    assert!(!container.routable);
    let server = accept_forever(listen(host_port(&running, 9090)).await);
    let ready = cell.next("ready", |e| matches!(e, ContainerEvent::Readiness(_))).await;
    assert!(ready.routable);
    server.abort();
    cell.finish().await;
}

#[tokio::test]
async fn a_zero_start_timeout_waits_for_health_forever() {
    let mut cell = cell();
    cell.start("patient", sleeper(vec![build::tcp_check(8080, 100, 200)], Duration::ZERO));
    let created = cell.created("patient").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cell.executor.get("patient").map(|c| c.state), Some(ContainerState::Created));
    let server = accept_forever(listen(host_port(&created, 8080)).await);
    cell.next("patient", |e| matches!(e, ContainerEvent::Running(_))).await;
    server.abort();
    cell.finish().await;
}

#[tokio::test]
async fn a_daemonizing_action_that_exits_cleanly_lives_while_its_checks_pass() {
    let mut cell = cell();
    let request = RunRequest {
        action: build::sh("exit 0"),
        ..sleeper(vec![build::tcp_check(8080, 100, 500)], Duration::from_secs(30))
    };
    cell.start("daemon", request);
    let created = cell.created("daemon").await;
    let server = accept_forever(listen(host_port(&created, 8080)).await);
    cell.next("daemon", |e| matches!(e, ContainerEvent::Running(_))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cell.executor.get("daemon").map(|c| c.state), Some(ContainerState::Running));
    server.abort();
    let _ = server.await;
    let reason = cell.completed_reason("daemon").await;
    assert!(reason.starts_with("Instance became unhealthy: "), "{reason}");
    cell.finish().await;
}
