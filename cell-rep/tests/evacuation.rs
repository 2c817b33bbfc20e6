//! Evacuation (reference 2.9) with two cells sharing one fake BBS, the test playing auctioneer:
//! every instance of the evacuating cell runs on the other cell before its old container stops.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_rep::evacuation::{EvacuationOutcome, Evacuator, TASK_EVACUATION_TIMEOUT};
use cell_rep::executor::{ContainerEvent, ContainerState};
use cell_rep::runtime::sim::{SimConfig, SimRuntime};
use cell_rep::testing::{
    BbsCall, FakeBbs, TestCell, TestCellOptions, desired_lrp, eventually, lrp_work, task, task_work,
};
use cell_rep::{Deps, Listeners, RepConfig, RuntimeKind};
use proto::error::ErrorCode;
use proto::models::{ActualLrpState, Presence, TaskState};
use proto::pb::rep::v1 as rep_pb;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

fn running_on(bbs: &FakeBbs, process_guid: &str, index: i32, cell_id: &str) -> bool {
    bbs.actual_lrp(process_guid, index, Presence::Ordinary).is_some_and(|l| {
        l.state == ActualLrpState::Running && l.instance_key.is_some_and(|k| k.cell_id.as_str() == cell_id)
    })
}

/// Records, for every LRP container of `cell` that completes, whether its index was already
/// RUNNING on `other` at that moment.
fn watch_stops(cell: &TestCell, other: &'static str) -> Arc<Mutex<Vec<(String, bool)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut events = cell.executor.subscribe();
    let bbs = Arc::clone(&cell.bbs);
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let ContainerEvent::Completed(container) = event {
                let lrp = container.workload.as_lrp();
                let pg = lrp.map(|l| l.key.process_guid.to_string()).unwrap_or_default();
                let index: i32 = lrp.map_or(-1, |l| l.key.index);
                let replaced = running_on(&bbs, &pg, index, other);
                record.lock().expect("lock").push((container.guid.clone(), replaced));
            }
        }
    });
    seen
}

#[tokio::test]
async fn every_instance_runs_on_the_other_cell_before_its_old_container_stops() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 3, 128);
    bbs.desire_lrp(desired.clone());
    let a = TestCell::start("cell-a", bbs.clone());
    let b = TestCell::start("cell-b", bbs.clone());
    assert!(a.perform((0..3).map(|i| lrp_work(&desired, i)).collect(), Vec::new()).failed_lrps.is_empty());
    timeout(PATIENCE, eventually(|| (0..3).all(|i| running_on(&bbs, "web", i, "cell-a"))))
        .await
        .expect("instances never ran on cell-a");
    let old: BTreeSet<String> = a.containers().into_iter().map(|c| c.guid).collect();
    let stops = watch_stops(&a, "cell-b");

    assert!(a.ctx.evacuation.start());
    let evacuator = Evacuator::new(Arc::clone(&a.generator), Duration::from_millis(20), Duration::from_secs(60));
    let drain = tokio::spawn(async move { evacuator.drain(CancellationToken::new()).await });
    timeout(PATIENCE, async {
        while !a.containers().is_empty() {
            // One evacuation pass on cell-a, then an auction of whatever became unclaimed.
            a.bulk_sync.tick().await.expect("tick");
            let work = bbs.unclaimed_work();
            if !work.is_empty() {
                assert!(b.perform(work, Vec::new()).failed_lrps.is_empty());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("cell-a never emptied");
    let outcome = timeout(PATIENCE, drain).await.expect("evacuator hung").expect("join");
    assert_eq!(outcome, EvacuationOutcome::Drained);

    for index in 0..3 {
        assert!(running_on(&bbs, "web", index, "cell-b"), "index {index} not running on cell-b");
        assert!(bbs.actual_lrp("web", index, Presence::Evacuating).is_none(), "evacuating copy left behind");
    }
    let stops = stops.lock().expect("lock").clone();
    let stopped: BTreeSet<String> = stops.iter().map(|(guid, _)| guid.clone()).collect();
    assert_eq!(stopped, old, "every old container stopped");
    assert!(stops.iter().all(|(_, replaced)| *replaced), "a container stopped before its replacement ran: {stops:?}");
    assert!(!bbs.calls().iter().any(|c| matches!(c, BbsCall::Crash { .. })));
    // Evacuating cells refuse work.
    assert_eq!(a.perform(vec![lrp_work(&desired, 0)], Vec::new()).failed_lrps.len(), 1);
}

#[tokio::test]
async fn a_claimed_instance_is_handed_back_and_its_container_deleted() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    bbs.fail("ClaimActualLRP", ErrorCode::Unavailable);
    let a = TestCell::start("cell-a", bbs.clone());
    a.perform(vec![lrp_work(&desired, 0)], Vec::new());
    timeout(PATIENCE, bbs.wait_until(|b| b.calls().iter().any(|c| matches!(c, BbsCall::Claim(_)))))
        .await
        .expect("no claim");
    assert_eq!(a.containers()[0].state, ContainerState::Reserved);

    a.ctx.evacuation.start();
    bbs.stop_failing("ClaimActualLRP");
    a.bulk_sync.tick().await.expect("tick");
    timeout(PATIENCE, eventually(|| a.containers().is_empty())).await.expect("reserved container kept");
    assert!(bbs.calls().iter().any(|c| matches!(c, BbsCall::EvacuateClaimed(_))));
    let record = bbs.actual_lrp("web", 0, Presence::Ordinary).expect("record");
    assert_eq!(record.state, ActualLrpState::Unclaimed, "left for another cell");
}

#[tokio::test]
async fn tasks_finish_during_evacuation() {
    let bbs = Arc::new(FakeBbs::new());
    let t = task("job", 64);
    bbs.desire_task(t.clone());
    let options = TestCellOptions {
        sim: SimConfig {
            healthy_after: Duration::from_millis(10),
            task_duration: Duration::from_millis(200),
            ..SimConfig::default()
        },
        ..TestCellOptions::default()
    };
    let a = TestCell::start_with("cell-a", bbs.clone(), options);
    a.perform(Vec::new(), vec![task_work(&t)]);
    timeout(PATIENCE, eventually(|| a.containers().iter().any(|c| c.state == ContainerState::Running)))
        .await
        .expect("task never ran");
    a.ctx.evacuation.start();
    let outcome = timeout(
        PATIENCE,
        Evacuator::new(Arc::clone(&a.generator), Duration::from_millis(20), Duration::from_secs(60))
            .drain(CancellationToken::new()),
    )
    .await
    .expect("evacuation hung");
    assert_eq!(outcome, EvacuationOutcome::Drained);
    let task = bbs.task("job").expect("task");
    assert_eq!(task.state, TaskState::Completed);
    assert!(!task.failed, "the task ran to completion: {}", task.failure_reason);
}

#[tokio::test]
async fn at_the_evacuation_timeout_what_is_left_is_stopped_and_reported() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    let t = task("forever", 64);
    bbs.desire_task(t.clone());
    let options = TestCellOptions {
        sim: SimConfig {
            healthy_after: Duration::from_millis(10),
            task_duration: Duration::from_secs(3600),
            ..SimConfig::default()
        },
        ..TestCellOptions::default()
    };
    let a = TestCell::start_with("cell-a", bbs.clone(), options);
    a.perform(vec![lrp_work(&desired, 0)], vec![task_work(&t)]);
    timeout(
        PATIENCE,
        eventually(|| {
            running_on(&bbs, "web", 0, "cell-a") && a.containers().iter().all(|c| c.state == ContainerState::Running)
        }),
    )
    .await
    .expect("work never ran");

    // Nobody places the replacement, so the instance is kept until the timeout.
    a.ctx.evacuation.start();
    a.bulk_sync.tick().await.expect("tick");
    assert!(bbs.actual_lrp("web", 0, Presence::Evacuating).is_some());
    let outcome = timeout(
        PATIENCE,
        Evacuator::new(Arc::clone(&a.generator), Duration::from_millis(20), Duration::from_millis(100))
            .drain(CancellationToken::new()),
    )
    .await
    .expect("evacuation hung");
    assert_eq!(outcome, EvacuationOutcome::TimedOut { stranded: 2 });
    assert!(a.containers().is_empty());
    assert!(bbs.actual_lrp("web", 0, Presence::Evacuating).is_none(), "the evacuating copy is reported stopped");
    let task = bbs.task("forever").expect("task");
    assert_eq!(task.state, TaskState::Completed);
    assert!(task.failed);
    assert_eq!(task.failure_reason, TASK_EVACUATION_TIMEOUT);
}

/// Two full reps (`run_with`) on loopback sharing one fake BBS, with a test auctioneer.
#[tokio::test]
async fn two_reps_hand_over_every_instance_and_the_evacuated_rep_exits() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 4, 64);
    bbs.desire_lrp(desired.clone());
    let mut reps = Vec::new();
    let mut addresses = Vec::new();
    let mut stops = Vec::new();
    let mut data_dirs = Vec::new();
    for cell_id in ["cell-a", "cell-b"] {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let listeners = Listeners { grpc: bind().await.expect("bind"), admin: bind().await.expect("bind") };
        addresses.push(format!("http://{}", listeners.grpc.local_addr().expect("addr")));
        data_dirs.push(std::env::temp_dir().join(format!("cell-rep-evac-{}", uuid::Uuid::new_v4())));
        let config = RepConfig {
            cell_id: cell_id.into(),
            runtime: RuntimeKind::Sim,
            data_dir: data_dirs.last().cloned().unwrap_or_default(),
            polling_interval: Duration::from_millis(50),
            evacuation_polling_interval: Duration::from_millis(50),
            presence_retry_interval: Duration::from_millis(100),
            graceful_shutdown_interval: Duration::from_millis(200),
            tls: svc::config::tls::TlsConfig::insecure_plaintext(),
            ..RepConfig::default()
        };
        let deps = Deps {
            bbs: bbs.clone(),
            runtime: Arc::new(SimRuntime::new(SimConfig {
                healthy_after: Duration::from_millis(10),
                ..SimConfig::default()
            })),
            stop: CancellationToken::new(),
        };
        stops.push(deps.stop.clone());
        reps.push(tokio::spawn(cell_rep::run_with(config, listeners, deps, CancellationToken::new())));
    }
    let connect =
        |address: String| async move { rep_pb::rep_client::RepClient::connect(address).await.expect("connect") };
    let mut rep_a = connect(addresses[0].clone()).await;
    let rep_b = connect(addresses[1].clone()).await;

    let work: Vec<_> = (0..4).map(|i| lrp_work(&desired, i)).collect();
    let placed = rep_a.perform(rep_pb::Work { lrps: work, tasks: Vec::new() }).await.expect("perform").into_inner();
    assert!(placed.failed_lrps.is_empty());
    timeout(PATIENCE, eventually(|| (0..4).all(|i| running_on(&bbs, "web", i, "cell-a"))))
        .await
        .expect("instances never ran on cell-a");
    let old_instances: BTreeSet<String> =
        bbs.actual_lrps().into_iter().filter_map(|l| l.instance_key.map(|k| k.instance_guid.to_string())).collect();

    // The test auctioneer: every unclaimed instance goes to cell-b.
    let auctioneer = tokio::spawn({
        let (bbs, mut rep_b) = (bbs.clone(), rep_b.clone());
        async move {
            loop {
                let work = bbs.unclaimed_work();
                if !work.is_empty() {
                    let _ = rep_b.perform(rep_pb::Work { lrps: work, tasks: Vec::new() }).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    rep_a.evacuate(rep_pb::EvacuateRequest {}).await.expect("evacuate");
    assert!(rep_a.state(rep_pb::StateRequest {}).await.expect("state").into_inner().evacuating);

    let rep_a_task = reps.remove(0);
    timeout(PATIENCE, rep_a_task).await.expect("evacuated rep never exited").expect("join").expect("rep a failed");
    auctioneer.abort();
    for index in 0..4 {
        assert!(running_on(&bbs, "web", index, "cell-b"), "index {index} not on cell-b");
    }
    assert!(bbs.presence("cell-a").is_none(), "the evacuated rep released its presence");

    // Each old instance was told to go (keep_container = false) only after its index's
    // replacement reported RUNNING from cell-b.
    let calls = bbs.calls();
    for old in &old_instances {
        let released = calls
            .iter()
            .position(|c| matches!(c, BbsCall::EvacuateRunning { lrp, keep: false } if &lrp.instance_guid == old))
            .expect("every old instance was released");
        let BbsCall::EvacuateRunning { lrp, .. } = &calls[released] else { unreachable!() };
        let replaced = calls[..released].iter().flat_map(BbsCall::started).any(|started| {
            started.index == lrp.index
                && started.process_guid == lrp.process_guid
                && !old_instances.contains(&started.instance_guid)
        });
        assert!(replaced, "instance {old} released before its replacement ran");
    }
    assert!(!calls.iter().any(|c| matches!(c, BbsCall::Crash { .. })));

    for stop in stops {
        stop.cancel();
    }
    drop(rep_b);
    timeout(PATIENCE, reps.remove(0)).await.expect("rep b did not stop").expect("join").expect("rep b failed");
    for dir in data_dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}
