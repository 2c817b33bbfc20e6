//! Executor behaviour over the sim runtime, under paused time: accounting, reservation expiry,
//! the lifecycle events, stop and delete, the reaper, health and readiness rules.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::{
    AllocationRequest, ContainerEvent, ContainerState, Executor, ExecutorConfig, ExecutorError, ReserveError,
    Resources, RunRequest,
};
use cell_rep::resources::ResourceKind;
use cell_rep::runtime::sim::{SimConfig, SimHandle, SimRuntime};
use cell_rep::testing::{lrp_workload, task_workload};
use tokio::sync::broadcast;

const PATIENCE: Duration = Duration::from_secs(300);

fn executor_with(sim: SimConfig, tune: impl FnOnce(&mut ExecutorConfig)) -> (Executor, SimHandle) {
    let runtime = SimRuntime::new(sim);
    let handle = runtime.handle();
    let mut config =
        ExecutorConfig::new(Resources::new(1024, 4096, 3), std::env::temp_dir().join("cell-rep-executor-tests"));
    config.healthcheck_interval = Duration::from_millis(100);
    config.graceful_stop = Duration::from_secs(1);
    tune(&mut config);
    (Executor::new(config, Arc::new(runtime)), handle)
}

fn executor() -> (Executor, SimHandle) {
    executor_with(SimConfig::default(), |_| {})
}

fn lrp(memory_mb: i32) -> AllocationRequest {
    AllocationRequest { memory_mb, disk_mb: 100, workload: lrp_workload("pg-1", 0, "ig-1") }
}

fn app() -> RunRequest {
    RunRequest {
        action: build::run("/bin/app", &[]),
        ports: vec![8080],
        log_source: "APP/PROC/WEB".into(),
        ..RunRequest::default()
    }
}

/// The next event for `guid` that `pick` accepts.
async fn wait_for(
    events: &mut broadcast::Receiver<ContainerEvent>,
    guid: &str,
    pick: impl Fn(&ContainerEvent) -> bool,
) -> ContainerEvent {
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
    .expect("the expected event never arrived; the lifecycle task probably hung")
}

fn is_running(e: &ContainerEvent) -> bool {
    matches!(e, ContainerEvent::Running(_))
}

fn is_completed(e: &ContainerEvent) -> bool {
    matches!(e, ContainerEvent::Completed(_))
}

fn failure_reason(event: &ContainerEvent) -> String {
    event.container().and_then(|c| c.result.clone()).map(|r| r.failure_reason).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn reservations_are_accounted_and_refused_when_they_do_not_fit() {
    let (executor, _) = executor();
    assert_eq!(executor.total(), Resources::new(1024, 4096, 3));
    executor.reserve("a", lrp(512)).expect("fits");
    assert_eq!(executor.available(), Resources::new(512, 3996, 2));

    let err = executor.reserve("a", lrp(1)).expect_err("duplicate");
    assert_eq!(err, ReserveError::GuidNotAvailable { guid: "a".into() });
    assert_eq!(err.to_string(), "container guid not available: a");

    match executor.reserve("b", lrp(1024)).expect_err("too big") {
        ReserveError::InsufficientResources { shortfall, .. } => assert_eq!(shortfall.kind, ResourceKind::Memory),
        other => panic!("unexpected {other:?}"),
    }
    let disk = AllocationRequest { memory_mb: 1, disk_mb: 5000, workload: lrp_workload("pg-1", 0, "ig-1") };
    assert!(matches!(executor.reserve("b", disk), Err(ReserveError::InsufficientResources { .. })));
    executor.reserve("b", lrp(1)).expect("fits");
    executor.reserve("c", lrp(1)).expect("fits");
    match executor.reserve("d", lrp(1)).expect_err("no slot") {
        ReserveError::InsufficientResources { shortfall, .. } => assert_eq!(shortfall.kind, ResourceKind::Containers),
        other => panic!("unexpected {other:?}"),
    }
    for bad in ["", "../x", "a b"] {
        assert!(matches!(executor.reserve(bad, lrp(1)), Err(ReserveError::InvalidRequest { .. })), "{bad:?}");
    }
    assert!(matches!(executor.reserve("neg", lrp(-1)), Err(ReserveError::InvalidRequest { .. })));

    executor.delete("a").await.expect("delete");
    assert_eq!(executor.available(), Resources::new(1022, 3896, 1));
    assert!(matches!(executor.delete("a").await, Err(ExecutorError::NotFound { .. })));
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_reservation_not_run_in_time_expires_and_frees_its_resources() {
    let (executor, _) = executor_with(SimConfig::default(), |c| c.reservation_timeout = Duration::from_secs(60));
    let mut events = executor.subscribe();
    executor.reserve("r1", lrp(256)).expect("reserve");
    assert!(matches!(events.recv().await, Ok(ContainerEvent::Reserved(_))));
    let completed = wait_for(&mut events, "r1", is_completed).await;
    assert_eq!(failure_reason(&completed), "expired container");
    assert!(matches!(wait_for(&mut events, "r1", |_| true).await, ContainerEvent::Deleted(_)));
    assert_eq!(executor.available(), executor.total());
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_without_checks_runs_once_its_process_starts_and_stops_when_asked() {
    let (executor, _) = executor();
    let mut events = executor.subscribe();
    executor.reserve("g1", lrp(128)).expect("reserve");
    executor.run("g1", app()).expect("run");
    let created = wait_for(&mut events, "g1", |e| matches!(e, ContainerEvent::Created(_))).await;
    let created = created.container().expect("container").clone();
    assert_eq!(created.state, ContainerState::Created);
    assert_eq!(created.address, "127.0.0.1");
    assert_eq!(created.ports.len(), 1);
    assert_eq!(created.ports[0].container_port, 8080);

    let running = wait_for(&mut events, "g1", is_running).await;
    assert!(running.container().expect("container").routable);
    assert!(matches!(executor.run("g1", app()), Err(ExecutorError::InvalidState { .. })));

    executor.stop("g1").await.expect("stop");
    let result = executor.get("g1").and_then(|c| c.result).expect("completed");
    assert!(result.stopped);
    assert_eq!(executor.get("g1").map(|c| c.state), Some(ContainerState::Completed));
    executor.delete("g1").await.expect("delete");
    assert!(matches!(
        wait_for(&mut events, "g1", |e| matches!(e, ContainerEvent::Deleted(_))).await,
        ContainerEvent::Deleted(_)
    ));
    assert!(executor.get("g1").is_none());
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn stopping_a_reserved_container_completes_it_as_stopped_before_running() {
    let (executor, _) = executor();
    executor.reserve("r", lrp(1)).expect("reserve");
    executor.stop("r").await.expect("stop");
    let result = executor.get("r").and_then(|c| c.result).expect("result");
    assert!(result.stopped);
    assert_eq!(result.failure_reason, "stopped-before-running");
    assert!(matches!(executor.run("r", app()), Err(ExecutorError::InvalidState { .. })));
    assert!(matches!(executor.run("missing", app()), Err(ExecutorError::NotFound { .. })));
    executor.stop("r").await.expect("idempotent");
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_completes_the_container_with_the_exit_status() {
    let (executor, sim) = executor();
    let mut events = executor.subscribe();
    executor.reserve("c1", lrp(1)).expect("reserve");
    executor.run("c1", app()).expect("run");
    wait_for(&mut events, "c1", is_running).await;
    assert!(sim.crash("c1", 3));
    let completed = wait_for(&mut events, "c1", is_completed).await;
    let result = completed.container().and_then(|c| c.result.clone()).expect("result");
    assert!(result.failed);
    assert!(!result.stopped);
    assert_eq!(result.failure_reason, "APP/PROC/WEB: Exited with status 3");
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn the_reaper_completes_containers_the_runtime_lost() {
    let (executor, sim) = executor();
    let mut events = executor.subscribe();
    executor.reserve("lost", lrp(1)).expect("reserve");
    executor.run("lost", app()).expect("run");
    wait_for(&mut events, "lost", is_running).await;
    assert!(sim.lose("lost"));
    executor.reap().await;
    let completed = wait_for(&mut events, "lost", is_completed).await;
    assert_eq!(failure_reason(&completed), "container missing");
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn startup_checks_gate_running_and_a_liveness_failure_crashes_with_the_check_named() {
    let (executor, sim) =
        executor_with(SimConfig { healthy_after: Duration::from_secs(5), ..SimConfig::default() }, |_| {});
    let mut events = executor.subscribe();
    executor.reserve("h1", lrp(1)).expect("reserve");
    let request =
        RunRequest { checks: vec![build::tcp_check(8080, 1000, 0)], start_timeout: Duration::from_secs(60), ..app() };
    executor.run("h1", request).expect("run");
    wait_for(&mut events, "h1", |e| matches!(e, ContainerEvent::Created(_))).await;
    assert_eq!(executor.get("h1").map(|c| c.state), Some(ContainerState::Created));
    wait_for(&mut events, "h1", is_running).await;
    assert!(sim.set_healthy("h1", false));
    let completed = wait_for(&mut events, "h1", is_completed).await;
    assert_eq!(
        failure_reason(&completed),
        "Instance became unhealthy: Failed to make TCP connection to port 8080: connection refused"
    );
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_never_healthy_within_its_start_timeout_crashes() {
    let (executor, _) =
        executor_with(SimConfig { healthy_after: Duration::from_secs(3600), ..SimConfig::default() }, |_| {});
    let mut events = executor.subscribe();
    executor.reserve("n1", lrp(1)).expect("reserve");
    let request = RunRequest {
        checks: vec![build::http_check(8080, "/health", 0, 0)],
        start_timeout: Duration::from_secs(60),
        ..app()
    };
    executor.run("n1", request).expect("run");
    let completed = wait_for(&mut events, "n1", is_completed).await;
    assert_eq!(
        failure_reason(&completed),
        "Instance never healthy after 60s: Failed to make HTTP request to '/health' on port 8080: connection refused"
    );
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn readiness_toggles_routable_and_never_crashes() {
    let (executor, sim) = executor();
    let mut events = executor.subscribe();
    executor.reserve("rd", lrp(1)).expect("reserve");
    let request = RunRequest { readiness_checks: vec![build::tcp_check(8080, 500, 0)], ..app() };
    executor.run("rd", request).expect("run");
    // Running but not routable until readiness passes.
    let first = wait_for(&mut events, "rd", |e| is_running(e) || matches!(e, ContainerEvent::Readiness(_))).await;
    if is_running(&first) {
        assert!(!first.container().expect("container").routable);
        let ready = wait_for(&mut events, "rd", |e| matches!(e, ContainerEvent::Readiness(_))).await;
        assert!(ready.container().expect("container").routable);
    }
    sim.set_healthy("rd", false);
    let unready = wait_for(&mut events, "rd", |e| matches!(e, ContainerEvent::Readiness(_))).await;
    assert!(!unready.container().expect("container").routable);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(executor.get("rd").map(|c| c.state), Some(ContainerState::Running));
    sim.set_healthy("rd", true);
    let ready = wait_for(&mut events, "rd", |e| matches!(e, ContainerEvent::Readiness(_))).await;
    assert!(ready.container().expect("container").routable);
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_monitor_action_gates_running_and_its_failure_crashes() {
    let (executor, sim) =
        executor_with(SimConfig { healthy_after: Duration::from_secs(2), ..SimConfig::default() }, |c| {
            c.healthy_interval = Duration::from_secs(5);
        });
    let mut events = executor.subscribe();
    executor.reserve("m1", lrp(1)).expect("reserve");
    let request = RunRequest { monitor: Some(build::run("/bin/healthcheck", &["-port", "8080"])), ..app() };
    executor.run("m1", request).expect("run");
    wait_for(&mut events, "m1", is_running).await;
    sim.set_healthy("m1", false);
    let completed = wait_for(&mut events, "m1", is_completed).await;
    assert_eq!(failure_reason(&completed), "Instance became unhealthy: HEALTH: Exited with status 1");
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_completes_successfully_when_its_process_exits_zero() {
    let (executor, _) = executor();
    let mut events = executor.subscribe();
    executor
        .reserve("t1", AllocationRequest { memory_mb: 1, disk_mb: 1, workload: task_workload("t1") })
        .expect("reserve");
    let request =
        RunRequest { action: build::run("/bin/task", &[]), result_file: "/tmp/result".into(), ..RunRequest::default() };
    executor.run("t1", request).expect("run");
    let completed = wait_for(&mut events, "t1", is_completed).await;
    let result = completed.container().and_then(|c| c.result.clone()).expect("result");
    assert!(!result.failed, "{result:?}");
    assert!(!result.stopped);
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_setup_completes_the_container_without_running_the_action() {
    let (executor, _) = executor();
    let mut events = executor.subscribe();
    executor.reserve("s1", lrp(1)).expect("reserve");
    let request = RunRequest { setup: Some(build::download("ftp://nowhere/x", "/tmp/x", None)), ..app() };
    executor.run("s1", request).expect("run");
    let completed = wait_for(&mut events, "s1", |e| is_completed(e) || is_running(e)).await;
    assert!(is_completed(&completed));
    assert!(
        failure_reason(&completed).contains("only http:// and file:// are supported"),
        "{}",
        failure_reason(&completed)
    );
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_deletes_collapse_and_free_resources_once() {
    let (executor, _) = executor();
    executor.reserve("d1", lrp(100)).expect("reserve");
    executor.run("d1", app()).expect("run");
    let (a, b) = tokio::join!(executor.delete("d1"), executor.delete("d1"));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(executor.available(), executor.total());
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_work() {
    let (executor, _) = executor();
    executor.shutdown();
    assert_eq!(executor.reserve("x", lrp(1)), Err(ReserveError::ShuttingDown));
}

#[tokio::test(start_paused = true)]
async fn containers_left_in_the_runtime_by_a_previous_rep_are_destroyed_at_startup() {
    use cell_rep::runtime::{ContainerRuntime, ContainerSpec};
    let runtime = SimRuntime::new(SimConfig::default());
    let handle = runtime.handle();
    runtime.create(ContainerSpec { guid: "leftover".into(), ..ContainerSpec::default() }).await.expect("create");
    let config =
        ExecutorConfig::new(Resources::new(1024, 1024, 3), std::env::temp_dir().join("cell-rep-executor-tests"));
    let executor = Executor::new(config, Arc::new(runtime));
    tokio::time::timeout(PATIENCE, async {
        while !handle.containers().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the startup reap destroys the leftover container");
    executor.shutdown_and_wait().await;
}
