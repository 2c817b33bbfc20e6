//! Route draining (issue 18): a stopped instance that is running and routable, and whose run
//! request has a drain, is reported unroutable first and stopped only `drain` later; an unrouted
//! one, or one stopped by the executor's shutdown, stops at once. Sim runtime, paused time.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::actions::build;
use cell_rep::executor::AllocationRequest;
use cell_rep::executor::{ContainerEvent, ContainerState, Executor, ExecutorConfig, Resources, RunRequest};
use cell_rep::runtime::sim::{SimConfig, SimHandle, SimRuntime};
use cell_rep::testing::lrp_workload;
use tokio::sync::broadcast;
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(300);
const DRAIN: Duration = Duration::from_secs(5);

fn executor() -> (Executor, SimHandle) {
    let runtime = SimRuntime::new(SimConfig::default());
    let handle = runtime.handle();
    let mut config =
        ExecutorConfig::new(Resources::new(1024, 4096, 3), std::env::temp_dir().join("cell-rep-drain-tests"));
    config.healthcheck_interval = Duration::from_millis(100);
    config.graceful_stop = Duration::from_secs(1);
    (Executor::new(config, Arc::new(runtime)), handle)
}

fn app(drain: Duration) -> RunRequest {
    RunRequest { action: build::run("/bin/app", &[]), ports: vec![8080], drain, ..RunRequest::default() }
}

async fn running(executor: &Executor, guid: &str, request: RunRequest) -> broadcast::Receiver<ContainerEvent> {
    let mut events = executor.subscribe();
    let workload = lrp_workload("pg-1", 0, guid);
    executor.reserve(guid, AllocationRequest { memory_mb: 64, disk_mb: 64, workload }).expect("reserve");
    executor.run(guid, request).expect("run");
    let event = next(&mut events, guid).await;
    match event {
        ContainerEvent::Running(c) if c.routable => events,
        ContainerEvent::Created(_) | ContainerEvent::Readiness(_) => loop {
            if let ContainerEvent::Running(c) | ContainerEvent::Readiness(c) = next(&mut events, guid).await
                && c.state == ContainerState::Running
                && c.routable
            {
                return events;
            }
        },
        other => panic!("unexpected first event {other:?}"),
    }
}

/// The next event about `guid` (other than `Reserved`).
async fn next(events: &mut broadcast::Receiver<ContainerEvent>, guid: &str) -> ContainerEvent {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.recv().await {
                Ok(ContainerEvent::Reserved(_)) => {}
                Ok(event) if event.guid() == guid => return event,
                Ok(_) => {}
                Err(error) => panic!("event stream broke: {error}"),
            }
        }
    })
    .await
    .expect("no event; the lifecycle task probably hung")
}

#[tokio::test(start_paused = true)]
async fn a_routed_instance_turns_unroutable_a_drain_before_it_stops() {
    let (executor, _) = executor();
    let mut events = running(&executor, "routed", app(DRAIN)).await;
    let asked = Instant::now();
    let stop = tokio::spawn({
        let executor = executor.clone();
        async move { executor.stop("routed").await }
    });

    let ContainerEvent::Readiness(unroutable) = next(&mut events, "routed").await else {
        panic!("the first event after the stop is not the readiness change");
    };
    assert!(!unroutable.routable);
    assert_eq!(unroutable.state, ContainerState::Running);
    assert_eq!(asked.elapsed(), Duration::ZERO, "reported unroutable at once");

    // Halfway through the drain it still runs, unroutable, and a second stop just waits.
    tokio::time::sleep(DRAIN / 2).await;
    let container = executor.get("routed").expect("still there");
    assert_eq!((container.state, container.routable), (ContainerState::Running, false));
    let again = tokio::spawn({
        let executor = executor.clone();
        async move { executor.stop("routed").await }
    });

    let ContainerEvent::Completed(completed) = next(&mut events, "routed").await else {
        panic!("the next event is not the completion");
    };
    assert!(asked.elapsed() >= DRAIN, "stopped {:?} after the stop, before the drain", asked.elapsed());
    assert!(completed.result.expect("result").stopped);
    stop.await.expect("joins").expect("stop");
    again.await.expect("joins").expect("second stop");
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn an_unrouted_instance_stops_at_once() {
    let (executor, _) = executor();
    let mut events = running(&executor, "plain", app(Duration::ZERO)).await;
    let asked = Instant::now();
    executor.stop("plain").await.expect("stop");
    let ContainerEvent::Completed(completed) = next(&mut events, "plain").await else {
        panic!("a stop without drain completes without a readiness change");
    };
    assert!(completed.result.expect("result").stopped);
    assert!(asked.elapsed() < DRAIN, "an unrouted stop waited {:?}", asked.elapsed());
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn readiness_does_not_route_a_draining_instance_again() {
    let (executor, sim) = executor();
    let request = RunRequest { readiness_checks: vec![build::tcp_check(8080, 500, 0)], ..app(DRAIN) };
    let mut events = running(&executor, "ready", request).await;
    let stop = tokio::spawn({
        let executor = executor.clone();
        async move { executor.stop("ready").await }
    });
    assert!(matches!(next(&mut events, "ready").await, ContainerEvent::Readiness(c) if !c.routable));
    // The readiness check fails and passes again during the drain: no event routes it.
    sim.set_healthy("ready", false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.set_healthy("ready", true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(executor.get("ready").map(|c| c.routable), Some(false));
    match next(&mut events, "ready").await {
        ContainerEvent::Completed(c) => assert!(!c.routable),
        other => panic!("a draining instance changed: {other:?}"),
    }
    stop.await.expect("joins").expect("stop");
    executor.shutdown_and_wait().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_cuts_drains_short_and_does_not_drain() {
    let (executor, _) = executor();
    let mut first = running(&executor, "a", app(DRAIN)).await;
    let mut second = running(&executor, "b", app(DRAIN)).await;
    let started = Instant::now();
    // "a" drains; the shutdown then stops both without waiting for the drain.
    let stop = tokio::spawn({
        let executor = executor.clone();
        async move { executor.stop("a").await }
    });
    assert!(matches!(next(&mut first, "a").await, ContainerEvent::Readiness(c) if !c.routable));
    executor.shutdown_and_wait().await;
    assert!(started.elapsed() < DRAIN, "the shutdown waited {:?} for a drain", started.elapsed());
    stop.await.expect("joins").expect("stop");
    loop {
        match next(&mut second, "b").await {
            ContainerEvent::Readiness(_) => panic!("a container stopped by the shutdown drained"),
            ContainerEvent::Deleted(_) => break,
            _ => {}
        }
    }
}
