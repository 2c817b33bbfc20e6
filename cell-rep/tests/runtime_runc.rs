//! The runc runtime with a busybox rootfs built by the test: a shell in a container with a 64 MB
//! memory limit serves on its host port and passes a TCP check, stops gracefully, reports exits,
//! shares `/tmp` with the rep for downloads and results, and a program that allocates past the
//! limit is reported as crashed for memory.
//!
//! Needs root, `runc` and `busybox` (Debian packages `runc` and `busybox-static`). Without runc the
//! tests print why and pass, unless `DIEGO_TEST_REQUIRE_RUNC` is set (CI sets it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::{
    AllocationRequest, ContainerEvent, ContainerState, Executor, ExecutorConfig, Resources, RunRequest, RunResult,
};
use cell_rep::runtime::ContainerRuntime;
use cell_rep::runtime::runc::{RuncConfig, RuncRuntime, runc_available};
use cell_rep::testing::{lrp_workload, workload};
use tokio::sync::broadcast;

const PATIENCE: Duration = Duration::from_secs(120);
const APPLETS: &[&str] =
    &["sh", "cat", "echo", "sleep", "httpd", "nc", "head", "tr", "env", "ls", "mkdir", "true", "false"];

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Whether the runc tests can run here; panics when they must (CI) but cannot.
fn runc_ready() -> bool {
    let required = std::env::var_os("DIEGO_TEST_REQUIRE_RUNC").is_some();
    let mut missing = Vec::new();
    if !runc_available(Path::new("runc")) {
        missing.push("the runc binary is not on PATH (apt-get install runc)");
    }
    if find_on_path("busybox").is_none() {
        missing.push("busybox is not on PATH (apt-get install busybox-static)");
    }
    if !nix::unistd::geteuid().is_root() {
        missing.push("the tests are not running as root");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(!required, "DIEGO_TEST_REQUIRE_RUNC is set but runc tests cannot run: {}", missing.join("; "));
    println!("skipping runc test: {}", missing.join("; "));
    false
}

/// A rootfs of busybox-static and its applets.
fn busybox_rootfs(root: &Path) -> PathBuf {
    let rootfs = root.join("rootfs-busybox");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("rootfs bin");
    for dir in ["proc", "dev", "sys", "tmp", "home", "etc"] {
        std::fs::create_dir_all(rootfs.join(dir)).expect("rootfs dir");
    }
    let busybox = find_on_path("busybox").expect("busybox");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
    }
    rootfs
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

struct Cell {
    executor: Executor,
    runtime: Arc<RuncRuntime>,
    events: broadcast::Receiver<ContainerEvent>,
    dir: PathBuf,
}

fn cell(graceful_stop: Duration) -> Cell {
    let dir = std::env::temp_dir().join(format!("cell-rep-runc-{}", uuid::Uuid::new_v4().simple()));
    let rootfs = busybox_rootfs(&dir);
    let runtime = Arc::new(RuncRuntime::new(RuncConfig::new(&dir)));
    let mut config = ExecutorConfig::new(Resources::new(1024, 1024, 10), dir.join("executor"));
    config.graceful_stop = graceful_stop;
    config.healthcheck_interval = Duration::from_millis(100);
    config.rootfs = BTreeMap::from([("busybox".to_owned(), rootfs)]);
    let executor = Executor::new(config, runtime.clone());
    let events = executor.subscribe();
    Cell { executor, runtime, events, dir }
}

impl Cell {
    fn start(&self, guid: &str, lifecycle: &str, memory_mb: i32, request: RunRequest) {
        let workload = workload(guid, lifecycle, "pg", 0);
        self.executor.reserve(guid, AllocationRequest { memory_mb, disk_mb: 64, workload }).expect("reserve");
        let request = RunRequest { rootfs: "preloaded:busybox".into(), max_pids: 64, cpu_weight: 50, ..request };
        self.executor.run(guid, request).expect("run");
    }

    async fn next(&mut self, guid: &str, pick: impl Fn(&ContainerEvent) -> bool) -> ContainerEvent {
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

    async fn completed(&mut self, guid: &str) -> RunResult {
        let event = self.next(guid, |e| matches!(e, ContainerEvent::Completed(_))).await;
        event.container().and_then(|c| c.result.clone()).expect("result")
    }

    async fn finish(self) {
        self.executor.shutdown_and_wait().await;
        assert!(self.runtime.list().await.expect("runc list").is_empty(), "every runc container is deleted");
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

#[tokio::test]
async fn a_busybox_server_in_a_64mb_container_passes_a_tcp_check_and_stops_gracefully() {
    if !runc_ready() {
        return;
    }
    let mut cell = cell(Duration::from_secs(10));
    let request = RunRequest {
        action: build::sh("echo hello > /tmp/index.html && exec httpd -f -p $PORT -h /tmp"),
        checks: vec![build::tcp_check(8080, 200, 1000)],
        ports: vec![8080],
        start_timeout: Duration::from_secs(60),
        log_source: "APP/PROC/WEB".into(),
        ..RunRequest::default()
    };
    cell.start("runc-web", "lrp", 64, request);
    let event = cell.next("runc-web", |e| matches!(e, ContainerEvent::Running(_) | ContainerEvent::Completed(_))).await;
    let running = event.container().cloned().expect("container");
    assert_eq!(running.state, ContainerState::Running, "{:?}", running.result);
    let port = running.ports[0].host_port;
    assert!(is_listening(port), "listening on the host port");
    assert!(cell.runtime.list().await.expect("list").contains(&"runc-web".to_owned()));

    tokio::time::timeout(Duration::from_secs(10), cell.executor.stop("runc-web"))
        .await
        .expect("stops within the graceful interval")
        .expect("stop");
    let result = cell.executor.get("runc-web").and_then(|c| c.result).expect("result");
    assert!(result.stopped);
    assert!(!is_listening(port), "the server is gone");
    cell.executor.delete("runc-web").await.expect("delete");
    assert!(!cell.runtime.list().await.expect("list").contains(&"runc-web".to_owned()));
    cell.finish().await;
}

#[tokio::test]
async fn a_process_exit_in_a_runc_container_is_reported() {
    if !runc_ready() {
        return;
    }
    let mut cell = cell(Duration::from_secs(2));
    cell.start(
        "runc-exit",
        "lrp",
        64,
        RunRequest { action: build::sh("exit 3"), log_source: "APP".into(), ..RunRequest::default() },
    );
    let result = cell.completed("runc-exit").await;
    assert!(result.failed);
    assert_eq!(result.failure_reason, "APP: Exited with status 3");
    cell.finish().await;
}

#[tokio::test]
async fn allocating_past_the_memory_limit_is_reported_as_out_of_memory() {
    if !runc_ready() {
        return;
    }
    let mut cell = cell(Duration::from_secs(2));
    let request = RunRequest {
        action: build::sh("a=x; while true; do a=$a$a; done"),
        log_source: "APP".into(),
        ..RunRequest::default()
    };
    cell.start("runc-oom", "lrp", 64, request);
    let result = cell.completed("runc-oom").await;
    assert!(result.failed);
    assert!(result.failure_reason.contains("out of memory"), "{}", result.failure_reason);
    assert_eq!(result.failure_reason, "APP: Exited with status 137 (out of memory)");
    cell.finish().await;
}

#[tokio::test]
async fn downloads_land_in_the_container_and_task_results_come_back() {
    if !runc_ready() {
        return;
    }
    let mut cell = cell(Duration::from_secs(2));
    let source = cell.dir.join("artifact.txt");
    tokio::fs::write(&source, "abc").await.expect("artifact");
    let request = RunRequest {
        setup: Some(build::download(
            &format!("file://{}", source.display()),
            "/home/vcap/artifact.txt",
            Some(("sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")),
        )),
        action: build::sh("cat /home/vcap/artifact.txt > /tmp/result; echo -n \" $INSTANCE_INDEX\" >> /tmp/result"),
        result_file: "/tmp/result".into(),
        ..RunRequest::default()
    };
    cell.start("runc-task", "task", 64, request);
    let result = cell.completed("runc-task").await;
    assert!(!result.failed, "{result:?}");
    assert_eq!(result.result, "abc ", "tasks get no instance index");
    cell.finish().await;
}

/// The OCI spec carries the container's memory limit, `max_pids` and CPU shares, and the kernel
/// holds a forking process to `max_pids`: a loop forking 30 sleepers fails, leaving at most 8
/// processes in the container's cgroup.
#[tokio::test]
async fn the_bundle_carries_the_limits_and_forks_stop_at_max_pids() {
    if !runc_ready() {
        return;
    }
    let mut cell = cell(Duration::from_secs(2));
    let workload = lrp_workload("pg", 0, "runc-pids");
    cell.executor.reserve("runc-pids", AllocationRequest { memory_mb: 64, disk_mb: 64, workload }).expect("reserve");
    let sleepers = (0..30).map(|_| "sleep 30 >/dev/null 2>&1 &").collect::<Vec<_>>().join(" ");
    let request = RunRequest {
        rootfs: "preloaded:busybox".into(),
        action: build::sh(&format!("{sleepers} echo done > /tmp/forked; wait")),
        max_pids: 8,
        cpu_weight: 25,
        log_source: "APP".into(),
        ..RunRequest::default()
    };
    cell.executor.run("runc-pids", request).expect("run");
    // busybox sh gives up at the first fork the pids limit refuses, leaving what it forked.
    let result = cell.completed("runc-pids").await;
    assert!(result.failed, "{result:?}");
    println!("the fork loop ended with: {}", result.failure_reason);
    let forked = cell.runtime.host_path("runc-pids", "/tmp/forked").expect("path").expect("a host path");
    assert!(!forked.exists(), "30 forks succeeded in a container limited to 8 processes");

    let config = std::fs::read_to_string(cell.dir.join("runc/bundles/runc-pids/config.json")).expect("config.json");
    let config: serde_json::Value = serde_json::from_str(&config).expect("json");
    let resources = &config["linux"]["resources"];
    assert_eq!(resources["memory"]["limit"], 64 * 1024 * 1024);
    assert_eq!(resources["pids"]["limit"], 8);
    assert_eq!(resources["cpu"]["shares"], 256);

    let relative = config["linux"]["cgroupsPath"].as_str().expect("cgroups path").trim_start_matches('/').to_owned();
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cgroup = if unified {
        Path::new("/sys/fs/cgroup").join(&relative)
    } else {
        Path::new("/sys/fs/cgroup/pids").join(&relative)
    };
    let read = |file: &str| {
        std::fs::read_to_string(cgroup.join(file)).unwrap_or_else(|e| panic!("{file}: {e}")).trim().to_owned()
    };
    assert_eq!(read("pids.max"), "8");
    let current: usize = read("pids.current").parse().expect("a count");
    assert!(current <= 8, "{current} processes in a container limited to 8");
    assert!(current >= 2, "the shell and its sleepers are counted ({current})");

    cell.executor.delete("runc-pids").await.expect("delete");
    cell.finish().await;
}
