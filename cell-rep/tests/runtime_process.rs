//! The process runtime with real programs: a busybox HTTP server passes TCP and HTTP checks, exits
//! are reported, stops are graceful (SIGTERM, then SIGKILL), the §3.3 environment is set, files
//! are downloaded with checksums, task results are read, and the action tree composes.
//!
//! Needs `busybox` on `PATH` (Debian package `busybox-static`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::{
    AllocationRequest, ContainerEvent, ContainerState, Executor, ExecutorConfig, Resources, RunRequest, RunResult,
};
use cell_rep::runtime::ContainerRuntime;
use cell_rep::runtime::process::ProcessRuntime;
use cell_rep::testing::workload;
use tokio::sync::broadcast;

const PATIENCE: Duration = Duration::from_secs(60);

struct Cell {
    executor: Executor,
    runtime: Arc<ProcessRuntime>,
    events: broadcast::Receiver<ContainerEvent>,
    dir: PathBuf,
}

fn cell(graceful_stop: Duration) -> Cell {
    let dir = std::env::temp_dir().join(format!("cell-rep-process-{}", uuid::Uuid::new_v4().simple()));
    let runtime = Arc::new(ProcessRuntime::new(&dir));
    let mut config = ExecutorConfig::new(Resources::new(4096, 4096, 20), dir.join("executor"));
    config.graceful_stop = graceful_stop;
    config.healthcheck_interval = Duration::from_millis(100);
    config.healthy_interval = Duration::from_millis(200);
    let executor = Executor::new(config, runtime.clone());
    let events = executor.subscribe();
    Cell { executor, runtime, events, dir }
}

impl Cell {
    async fn start(&mut self, guid: &str, lifecycle: &str, request: RunRequest) {
        let workload = workload(guid, lifecycle, "pg", 2);
        self.executor.reserve(guid, AllocationRequest { memory_mb: 64, disk_mb: 64, workload }).expect("reserve");
        self.executor.run(guid, request).expect("run");
    }

    async fn until(&mut self, guid: &str, pick: impl Fn(&ContainerEvent) -> bool) -> ContainerEvent {
        let events = &mut self.events;
        tokio::time::timeout(PATIENCE, async {
            loop {
                match events.recv().await {
                    Ok(event) if event.guid() == guid && pick(&event) => return event,
                    Ok(_) => {}
                    Err(error) => panic!("event stream broke: {error}"),
                }
            }
        })
        .await
        .expect("the expected event never arrived")
    }

    async fn running(&mut self, guid: &str) -> cell_rep::executor::Container {
        let event = self.until(guid, |e| matches!(e, ContainerEvent::Running(_) | ContainerEvent::Completed(_))).await;
        let container = event.container().cloned().expect("container");
        assert_eq!(container.state, ContainerState::Running, "completed instead: {:?}", container.result);
        container
    }

    async fn completed(&mut self, guid: &str) -> RunResult {
        let event = self.until(guid, |e| matches!(e, ContainerEvent::Completed(_))).await;
        event.container().and_then(|c| c.result.clone()).expect("result")
    }

    async fn finish(self) {
        self.executor.shutdown_and_wait().await;
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

/// Whether anything listens on `port` (from `/proc/net/tcp*`; a connect could self-connect to an
/// ephemeral port nobody listens on).
fn is_listening(port: u32) -> bool {
    let needle = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).unwrap_or_default().lines().any(|line| {
            line.split_whitespace().nth(1).is_some_and(|local| format!("{local} ").ends_with(&needle))
                && line.split_whitespace().nth(3) == Some("0A")
        })
    })
}

fn httpd() -> RunRequest {
    RunRequest {
        action: build::sh("mkdir -p www && echo ok > www/index.html && exec busybox httpd -f -p $PORT -h www"),
        ports: vec![8080],
        start_timeout: Duration::from_secs(30),
        log_source: "APP/PROC/WEB".into(),
        ..RunRequest::default()
    }
}

#[tokio::test]
async fn a_real_server_passes_tcp_and_http_checks_and_stops_gracefully() {
    let mut cell = cell(Duration::from_secs(10));
    let request = RunRequest {
        checks: vec![build::tcp_check(8080, 200, 1000), build::http_check(8080, "/index.html", 200, 1000)],
        ..httpd()
    };
    cell.start("web", "lrp", request).await;
    let running = cell.running("web").await;
    assert_eq!(running.ports[0].container_port, 8080);
    let host_port = running.ports[0].host_port;
    assert!(is_listening(host_port));

    // httpd exits on SIGTERM, so the stop finishes well inside the graceful interval.
    tokio::time::timeout(Duration::from_secs(10), cell.executor.stop("web"))
        .await
        .expect("stops within the graceful interval")
        .expect("stop");
    let result = cell.executor.get("web").and_then(|c| c.result).expect("result");
    assert!(result.stopped);
    assert!(!is_listening(host_port), "the server is gone");
    cell.executor.delete("web").await.expect("delete");
    assert!(!cell.runtime.container_dir("web").exists());
    cell.finish().await;
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_graceful_interval() {
    let mut cell = cell(Duration::from_millis(500));
    let request = RunRequest {
        action: build::sh("trap '' TERM; echo $$ > pid; while true; do sleep 1; done"),
        ..RunRequest::default()
    };
    cell.start("stubborn", "lrp", request).await;
    cell.running("stubborn").await;
    let pid_file = cell.runtime.container_dir("stubborn").join("pid");
    let pid = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(text) = tokio::fs::read_to_string(&pid_file).await
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the shell wrote its pid");
    tokio::time::timeout(Duration::from_secs(5), cell.executor.stop("stubborn"))
        .await
        .expect("sigkill ends it")
        .expect("stop");
    assert!(!PathBuf::from(format!("/proc/{pid}")).exists(), "the process is gone");
    assert!(cell.executor.get("stubborn").and_then(|c| c.result).expect("result").stopped);
    cell.finish().await;
}

#[tokio::test]
async fn exits_are_reported_with_their_status() {
    let mut cell = cell(Duration::from_secs(1));
    let request =
        RunRequest { action: build::sh("exit 7"), log_source: "APP/PROC/WEB".into(), ..RunRequest::default() };
    cell.start("crasher", "lrp", request).await;
    let result = cell.completed("crasher").await;
    assert!(result.failed);
    assert_eq!(result.failure_reason, "APP/PROC/WEB: Exited with status 7");

    let request = RunRequest { action: build::sh("exit 0"), ..RunRequest::default() };
    cell.start("clean", "lrp", request).await;
    let result = cell.completed("clean").await;
    assert!(!result.failed, "a clean exit is not a failure: {result:?}");
    assert!(!result.stopped);
    cell.finish().await;
}

#[tokio::test]
async fn processes_get_the_instance_and_networking_environment() {
    let mut cell = cell(Duration::from_secs(1));
    let request = RunRequest {
        env: vec![("FROM_REQUEST".into(), "r".into()), ("PORT".into(), "8080".into())],
        action: build::run_with("/bin/sh", &["-c", "env > tmp/env; exec sleep 100"], &[("FROM_ACTION", "a")], "APP"),
        ports: vec![8080, 2222],
        ..RunRequest::default()
    };
    cell.start("env", "lrp", request).await;
    let running = cell.running("env").await;
    let env_file = cell.runtime.host_path("env", "/tmp/env").expect("path").expect("process runtime has files");
    let text = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(text) = tokio::fs::read_to_string(&env_file).await
                && text.contains("CF_INSTANCE_PORTS")
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the process wrote its environment");
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let (web, ssh) = (running.ports[0].host_port, running.ports[1].host_port);
    assert_eq!(env.get("INSTANCE_INDEX"), Some(&"2"));
    assert_eq!(env.get("CF_INSTANCE_INDEX"), Some(&"2"));
    assert_eq!(env.get("INSTANCE_GUID"), Some(&"env"));
    assert_eq!(env.get("CF_INSTANCE_GUID"), Some(&"env"));
    assert_eq!(env.get("FROM_REQUEST"), Some(&"r"));
    assert_eq!(env.get("FROM_ACTION"), Some(&"a"));
    assert_eq!(env.get("PORT").copied(), Some(web.to_string().as_str()), "PORT is the first host port");
    assert_eq!(env.get("CF_INSTANCE_PORT").copied(), Some(web.to_string().as_str()));
    assert_eq!(env.get("CF_INSTANCE_IP"), Some(&"127.0.0.1"));
    assert_eq!(env.get("CF_INSTANCE_INTERNAL_IP"), Some(&"127.0.0.1"));
    assert_eq!(env.get("CF_INSTANCE_ADDR").copied(), Some(format!("127.0.0.1:{web}").as_str()));
    let ports = format!(r#"[{{"external":{web},"internal":8080}},{{"external":{ssh},"internal":2222}}]"#);
    assert_eq!(env.get("CF_INSTANCE_PORTS").copied(), Some(ports.as_str()));
    cell.finish().await;
}

#[tokio::test]
async fn downloads_are_verified_and_task_results_are_read() {
    let mut cell = cell(Duration::from_secs(1));
    let source = cell.dir.join("artifact.txt");
    tokio::fs::create_dir_all(&cell.dir).await.expect("dir");
    tokio::fs::write(&source, "abc").await.expect("write");
    let sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let from = format!("file://{}", source.display());

    let request = RunRequest {
        setup: Some(build::download(&from, "/home/vcap/app/artifact.txt", Some(("sha256", sha256)))),
        action: build::sh("cat home/vcap/app/artifact.txt > tmp/result"),
        result_file: "/tmp/result".into(),
        ..RunRequest::default()
    };
    cell.start("task-ok", "task", request).await;
    let result = cell.completed("task-ok").await;
    assert!(!result.failed, "{result:?}");
    assert_eq!(result.result, "abc");

    let request = RunRequest {
        setup: Some(build::download(&from, "/home/vcap/app/artifact.txt", Some(("sha256", &"0".repeat(64))))),
        action: build::sh("true"),
        ..RunRequest::default()
    };
    cell.start("task-bad-sum", "task", request).await;
    let result = cell.completed("task-bad-sum").await;
    assert!(result.failed);
    assert!(
        result.failure_reason.starts_with("checksum verification failed: expected sha256 000"),
        "{}",
        result.failure_reason
    );

    let request = RunRequest {
        action: build::sh("head -c 20000 /dev/zero | tr '\\0' x > tmp/result"),
        result_file: "/tmp/result".into(),
        ..RunRequest::default()
    };
    cell.start("task-big", "task", request).await;
    let result = cell.completed("task-big").await;
    assert!(result.failed);
    assert_eq!(result.failure_reason, "failed to fetch result");
    cell.finish().await;
}

#[tokio::test]
async fn the_action_tree_composes_timeouts_tries_and_codependents() {
    let mut cell = cell(Duration::from_millis(500));
    let request = RunRequest { action: build::timeout(build::sh("exec sleep 30"), 300), ..RunRequest::default() };
    cell.start("timeout", "task", request).await;
    assert_eq!(cell.completed("timeout").await.failure_reason, "exceeded 300ms timeout");

    let request = RunRequest {
        action: build::serial(vec![
            build::try_(build::sh("exit 3")),
            build::emit_progress(build::sh("echo step > tmp/result"), "starting", "done", "failed"),
        ]),
        result_file: "/tmp/result".into(),
        ..RunRequest::default()
    };
    cell.start("serial", "task", request).await;
    let result = cell.completed("serial").await;
    assert!(!result.failed, "{result:?}");
    assert_eq!(result.result, "step\n");

    let request =
        RunRequest { action: build::parallel(vec![build::sh("exit 0"), build::sh("exit 4")]), ..RunRequest::default() };
    cell.start("parallel", "task", request).await;
    assert_eq!(cell.completed("parallel").await.failure_reason, "Exited with status 4");

    // The first exit ends the sleeping sibling; its cancellation is not a failure.
    let request = RunRequest {
        action: build::codependent(vec![build::sh("exec sleep 30"), build::sh("exit 5")]),
        ..RunRequest::default()
    };
    cell.start("codependent", "task", request).await;
    assert_eq!(cell.completed("codependent").await.failure_reason, "Exited with status 5");
    cell.finish().await;
}

#[tokio::test]
async fn the_reaper_notices_a_container_deleted_behind_the_executors_back() {
    let mut cell = cell(Duration::from_millis(500));
    let request = RunRequest { action: build::sh("exec sleep 100"), ..RunRequest::default() };
    cell.start("victim", "lrp", request).await;
    cell.running("victim").await;
    // Its directory vanishes from the runtime while its process still runs.
    let moved = cell.dir.join("moved-victim");
    tokio::fs::rename(cell.runtime.container_dir("victim"), &moved).await.expect("move it away behind its back");
    cell.executor.reap().await;
    let result = cell.completed("victim").await;
    assert_eq!(result.failure_reason, "container missing");

    // A container the registry does not know is destroyed.
    let orphan = cell_rep::runtime::ContainerSpec { guid: "orphan".into(), ..Default::default() };
    cell.runtime.create(orphan).await.expect("create");
    cell.executor.reap().await;
    assert!(!cell.runtime.list().await.expect("list").contains(&"orphan".to_owned()));
    cell.finish().await;
}
