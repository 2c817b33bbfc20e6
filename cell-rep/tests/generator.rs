//! Container events → BBS calls (reference 2.5) on a sim cell with a fake BBS: claim then run,
//! start when healthy with net info, readiness flips, crash, stop, task completion, task
//! rejection.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cell_rep::executor::ContainerState;
use cell_rep::runtime::sim::SimConfig;
use cell_rep::testing::{
    BbsCall, FakeBbs, TestCell, TestCellOptions, desired_lrp, desired_lrp_with, eventually, lrp_work, task, task_work,
};
use proto::models::{ActualLrpState, Presence, TaskState};
use proto::pb::models::v1 as pb;
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

/// Performs one instance of `desired` and waits until the BBS has it RUNNING; returns the
/// instance guid.
async fn run_instance(cell: &TestCell, desired: &proto::models::DesiredLrp) -> String {
    let response = cell.perform(vec![lrp_work(desired, 0)], Vec::new());
    assert!(response.failed_lrps.is_empty());
    let guid = desired.scheduling.process_guid.to_string();
    timeout(
        PATIENCE,
        eventually(|| {
            cell.bbs.actual_lrp(&guid, 0, Presence::Ordinary).is_some_and(|l| l.state == ActualLrpState::Running)
        }),
    )
    .await
    .expect("instance never ran");
    cell.bbs
        .actual_lrp(&guid, 0, Presence::Ordinary)
        .and_then(|l| l.instance_key)
        .expect("running instance has an instance key")
        .instance_guid
        .to_string()
}

#[tokio::test]
async fn a_reserved_instance_is_claimed_run_and_started_with_net_info() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 128);
    bbs.desire_lrp(desired.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    let instance_guid = run_instance(&cell, &desired).await;

    let names: Vec<&str> = bbs.calls().iter().map(|c| c.name()).collect();
    let position = |name: &str| names.iter().position(|n| *n == name).unwrap_or(usize::MAX);
    assert!(position("ClaimActualLRP") < position("DesiredLRPByProcessGuid"), "{names:?}");
    assert!(position("DesiredLRPByProcessGuid") < position("StartActualLRP"), "{names:?}");

    let record = bbs.actual_lrp("web", 0, Presence::Ordinary).expect("record");
    let instance = record.instance_key.expect("instance key");
    assert_eq!(instance.cell_id.as_str(), "cell-1");
    let container = cell.executor.get(&instance_guid).expect("container");
    assert_eq!(container.state, ContainerState::Running);
    let lrp = container.workload.as_lrp().expect("an lrp container");
    assert_eq!(Some(lrp.key.process_guid.as_str()), Some("web"));
    assert_eq!(Some(lrp.key.index.to_string().as_str()), Some("0"));
    assert_eq!(Some(lrp.instance_guid.as_str()), Some(instance_guid.as_str()));
    let net = record.net_info.expect("net info");
    assert_eq!(net.address, container.address);
    assert_eq!(net.ports.len(), 1);
    assert_eq!(net.ports[0].container_port, 8080);
    assert_eq!(net.ports[0].host_port, container.ports[0].host_port);
    assert!(record.routable, "no readiness checks: routable at once");
    assert_eq!(record.availability_zone, "z1");
}

#[tokio::test]
async fn readiness_flips_are_reported_with_start() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp_with("ready", 1, 64, |d| {
        d.check_definition = Some(pb::CheckDefinition {
            checks: Vec::new(),
            log_source: String::new(),
            readiness_checks: vec![pb::Check {
                tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 100, interval_ms: 20 }),
                http_check: None,
            }],
        });
    });
    bbs.desire_lrp(desired.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    let response = cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
    assert!(response.failed_lrps.is_empty());
    let routable = |b: &FakeBbs| {
        b.actual_lrp("ready", 0, Presence::Ordinary).filter(|l| l.state == ActualLrpState::Running).map(|l| l.routable)
    };
    timeout(PATIENCE, eventually(|| routable(&bbs) == Some(true))).await.expect("never routable");
    let guid = cell.containers()[0].guid.clone();

    cell.sim().set_healthy(&guid, false);
    timeout(PATIENCE, eventually(|| routable(&bbs) == Some(false))).await.expect("readiness loss not reported");
    assert_eq!(cell.executor.get(&guid).map(|c| c.state), Some(ContainerState::Running), "readiness never crashes");
    cell.sim().set_healthy(&guid, true);
    timeout(PATIENCE, eventually(|| routable(&bbs) == Some(true))).await.expect("readiness regain not reported");
    let starts: Vec<bool> = bbs
        .calls()
        .iter()
        .filter_map(|c| match c {
            BbsCall::Start { routable, .. } => Some(*routable),
            _ => None,
        })
        .collect();
    assert!(starts.windows(2).any(|w| w == [true, false]), "{starts:?}");
}

#[tokio::test]
async fn a_crash_is_reported_with_its_reason_and_the_container_deleted() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    let guid = run_instance(&cell, &desired).await;

    assert!(cell.sim().crash(&guid, 3));
    timeout(PATIENCE, eventually(|| cell.executor.get(&guid).is_none())).await.expect("crashed container kept");
    let crash = bbs.calls().into_iter().find_map(|c| match c {
        BbsCall::Crash { lrp, reason } => Some((lrp, reason)),
        _ => None,
    });
    let (lrp, reason) = crash.expect("crash reported");
    assert_eq!(lrp.instance_guid, guid);
    assert!(reason.contains('3'), "the reason names the exit status: {reason}");
    let record = bbs.actual_lrp("web", 0, Presence::Ordinary).expect("record kept");
    assert_eq!(record.crash_count, 1);
    assert_eq!(record.state, ActualLrpState::Unclaimed, "first crash restarts at once");
    assert!(!bbs.calls().iter().any(|c| matches!(c, BbsCall::Remove(_))));
}

#[tokio::test]
async fn a_stopped_instance_is_removed_and_its_container_deleted() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    let guid = run_instance(&cell, &desired).await;

    cell.executor.stop(&guid).await.expect("stop");
    timeout(PATIENCE, eventually(|| cell.executor.get(&guid).is_none())).await.expect("stopped container kept");
    assert!(bbs.actual_lrp("web", 0, Presence::Ordinary).is_none(), "the record is removed");
    assert!(bbs.calls().iter().any(|c| matches!(c, BbsCall::Remove(lrp) if lrp.instance_guid == guid)));
    assert!(!bbs.calls().iter().any(|c| matches!(c, BbsCall::Crash { .. })));
    assert_eq!(cell.executor.available(), cell.executor.total());
}

#[tokio::test]
async fn a_finished_task_is_completed_and_its_container_deleted() {
    let bbs = Arc::new(FakeBbs::new());
    let t = task("job-1", 64);
    bbs.desire_task(t.clone());
    let cell = TestCell::start("cell-1", bbs.clone());
    let response = cell.perform(Vec::new(), vec![task_work(&t)]);
    assert!(response.failed_tasks.is_empty());

    timeout(PATIENCE, eventually(|| bbs.task("job-1").is_some_and(|t| t.state == TaskState::Completed)))
        .await
        .expect("task never completed");
    let done = bbs.task("job-1").expect("task");
    assert!(!done.failed, "{}", done.failure_reason);
    let names: Vec<&str> = bbs.calls().iter().map(|c| c.name()).collect();
    // Started once in the BBS (later passes only re-check), fetched and run once.
    assert_eq!(names.first(), Some(&"StartTask"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "TaskByGuid").count(), 1, "{names:?}");
    assert_eq!(names.last(), Some(&"CompleteTask"), "{names:?}");
    timeout(PATIENCE, eventually(|| cell.containers().is_empty())).await.expect("task container kept");
}

#[tokio::test]
async fn a_task_the_bbs_will_not_start_is_dropped() {
    let bbs = Arc::new(FakeBbs::new());
    let t = task("gone", 64);
    // Not desired in the BBS: StartTask answers not found.
    let cell = TestCell::start("cell-1", bbs.clone());
    cell.perform(Vec::new(), vec![task_work(&t)]);
    timeout(
        PATIENCE,
        eventually(|| cell.containers().is_empty() && bbs.calls().iter().any(|c| matches!(c, BbsCall::StartTask(..)))),
    )
    .await
    .expect("container for an unknown task kept");
    assert!(!bbs.calls().iter().any(|c| matches!(c, BbsCall::TaskByGuid(_))));
}

#[tokio::test]
async fn a_task_whose_container_cannot_be_created_is_rejected() {
    let bbs = Arc::new(FakeBbs::new());
    let t = task("job-2", 64);
    bbs.desire_task(t.clone());
    // The cell advertises busybox but the executor only knows another rootfs: running fails.
    let options = TestCellOptions {
        executor_rootfs: BTreeMap::from([("other".to_owned(), PathBuf::from("/nonexistent"))]),
        sim: SimConfig { healthy_after: Duration::from_millis(10), ..SimConfig::default() },
        ..TestCellOptions::default()
    };
    let cell = TestCell::start_with("cell-1", bbs.clone(), options);
    cell.perform(Vec::new(), vec![task_work(&t)]);
    timeout(PATIENCE, eventually(|| bbs.task("job-2").is_some_and(|t| t.rejection_count == 1)))
        .await
        .expect("task never rejected");
    let task = bbs.task("job-2").expect("task");
    assert_eq!(task.state, TaskState::Pending, "rejected tasks go back to the auction");
    assert!(task.rejection_reason.contains("rootfs"), "{}", task.rejection_reason);
    timeout(PATIENCE, eventually(|| cell.containers().is_empty())).await.expect("container kept");
}

#[tokio::test]
async fn a_failed_lrp_run_gives_the_instance_up() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    let options = TestCellOptions {
        executor_rootfs: BTreeMap::from([("other".to_owned(), PathBuf::from("/nonexistent"))]),
        ..TestCellOptions::default()
    };
    let cell = TestCell::start_with("cell-1", bbs.clone(), options);
    cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
    timeout(
        PATIENCE,
        eventually(|| cell.containers().is_empty() && bbs.calls().iter().any(|c| matches!(c, BbsCall::Remove(_)))),
    )
    .await
    .expect("failed run not given up");
    assert!(bbs.actual_lrp("web", 0, Presence::Ordinary).is_none());
}

#[tokio::test]
async fn a_real_process_is_started_health_checked_reported_and_stopped() {
    use cell_rep::runtime::process::ProcessRuntime;
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp_with("httpd", 1, 64, |d| {
        d.action = Some(cell_rep::testing::run_action("/bin/sh", &["-c", "exec busybox httpd -f -p $PORT"]));
        d.check_definition = Some(pb::CheckDefinition {
            checks: vec![pb::Check {
                tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 200, interval_ms: 100 }),
                http_check: None,
            }],
            ..Default::default()
        });
        d.start_timeout_ms = 10_000;
    });
    bbs.desire_lrp(desired.clone());
    let data_dir = std::env::temp_dir().join(format!("cell-rep-process-{}", uuid::Uuid::new_v4()));
    let runtime = Arc::new(ProcessRuntime::new(&data_dir));
    let cell = TestCell::start_on("cell-1", bbs.clone(), TestCellOptions::default(), runtime, None);
    let guid = run_instance(&cell, &desired).await;

    let record = bbs.actual_lrp("httpd", 0, Presence::Ordinary).expect("record");
    let net = record.net_info.expect("net info");
    let host_port = net.ports[0].host_port;
    assert_eq!(net.ports[0].container_port, 8080);
    let port = u16::try_from(host_port).expect("port");
    tokio::net::TcpStream::connect((net.address.as_str(), port)).await.expect("the app listens on its host port");

    cell.executor.stop(&guid).await.expect("stop");
    timeout(PATIENCE, eventually(|| cell.executor.get(&guid).is_none())).await.expect("stopped container kept");
    assert!(bbs.actual_lrp("httpd", 0, Presence::Ordinary).is_none());
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test]
async fn operations_on_one_container_run_one_at_a_time_and_coalesce() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    // Claims fail as if the BBS were down, so the container stays reserved and every operation
    // on it makes exactly one claim call.
    bbs.fail("ClaimActualLRP", proto::error::ErrorCode::Unavailable);
    let cell = TestCell::start("cell-1", bbs.clone());
    cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
    let claims = |b: &FakeBbs| b.calls().iter().filter(|c| matches!(c, BbsCall::Claim(_))).count();
    timeout(PATIENCE, bbs.wait_until(|b| claims(b) >= 1)).await.expect("no claim");
    let guid = cell.containers()[0].guid.clone();

    bbs.clear_calls();
    // Ten requests without yielding: at most the one already running and one waiting run.
    let done: Vec<_> = (0..10).map(|_| cell.generator.enqueue(&guid)).collect();
    timeout(PATIENCE, futures::future::join_all(done)).await.expect("operations never finished");
    let made = claims(&bbs);
    assert!((1..=2).contains(&made), "{made} claims for ten coalesced requests");
    // And a later request runs again.
    timeout(PATIENCE, cell.generator.enqueue(&guid)).await.expect("operation never finished");
    assert_eq!(claims(&bbs), made + 1);
}
