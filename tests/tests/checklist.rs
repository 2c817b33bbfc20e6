//! The end-to-end checklist of auction-rep.md section 5, on whole in-process clusters (BBS,
//! auctioneer, cell reps with the `process` runtime running busybox programs), on every backend.
//! Timings are shortened by config: convergence every 1 s, stale unclaimed after 2 s, crash
//! backoff from 1 s, presence TTL 3 s. Each test names the checklist items it covers.

use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::scratch::{Scratch, process_gone};
use tests::{fixtures, probe};

const PATIENCE: Duration = Duration::from_secs(60);

tests::on_every_backend!(
    b12_b15_scale_up_down_to_zero_and_back_and_retire_restarts_an_instance,
    a6_unplaceable_lrps_say_why,
    c22_crashes_restart_at_once_twice_then_back_off,
    c25_a_startup_check_that_never_passes_crashes_with_the_reason,
    d28_d29_tasks_return_results_and_cancel_stops_them,
    d31_a_pending_task_with_no_cell_expires,
    e33_a_lost_cell_s_instances_turn_suspect_and_are_replaced,
    e35_nothing_runs_without_an_auctioneer_or_a_rep_until_it_starts,
    e36_evacuation_hands_instances_over_before_the_old_ones_stop,
);

async fn desire(cluster: &Cluster, lrp: pb::DesiredLrp) {
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.expect("desire lrp");
}

async fn scale(cluster: &Cluster, guid: &str, instances: i32) {
    let update = pb::DesiredLrpUpdate { instances: Some(instances), ..Default::default() };
    cluster
        .bbs()
        .update_desired_lrp(api::UpdateDesiredLrpRequest { process_guid: guid.into(), update: Some(update) })
        .await
        .expect("scale");
}

async fn wait_running(cluster: &Cluster, guid: &str, n: usize) -> Vec<pb::ActualLrp> {
    let client = cluster.bbs();
    eventually(&format!("{n} RUNNING instances of {guid}"), PATIENCE, || {
        let client = client.clone();
        async move {
            let all = probe::instances(&client, guid).await;
            let running: Vec<_> = all
                .iter()
                .filter(|a| {
                    a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32
                })
                .cloned()
                .collect();
            let ordinary = all.iter().filter(|a| a.presence == pb::Presence::Ordinary as i32).count();
            (running.len() == n && ordinary == n).then_some(running)
        }
    })
    .await
}

async fn b12_b15_scale_up_down_to_zero_and_back_and_retire_restarts_an_instance(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    desire(&cluster, fixtures::http_lrp("app", 2)).await;
    wait_running(&cluster, "app", 2).await;
    scale(&cluster, "app", 3).await;
    wait_running(&cluster, "app", 3).await;
    scale(&cluster, "app", 1).await;
    let one = wait_running(&cluster, "app", 1).await;
    assert_eq!(one[0].actual_lrp_key.as_ref().unwrap().index, 0, "scale-down keeps the lowest indices");
    scale(&cluster, "app", 0).await;
    wait_running(&cluster, "app", 0).await;
    scale(&cluster, "app", 2).await;
    let two = wait_running(&cluster, "app", 2).await;

    // B15: retiring an instance stops it; convergence brings up a new one.
    let old = two.iter().find(|a| a.actual_lrp_key.as_ref().unwrap().index == 1).unwrap().clone();
    cluster
        .bbs()
        .retire_actual_lrp(api::RetireActualLrpRequest { actual_lrp_key: old.actual_lrp_key.clone() })
        .await
        .expect("retire");
    let client = cluster.bbs();
    let old_guid = probe::instance_guid(&old).to_owned();
    eventually("a new instance at index 1", PATIENCE, || {
        let (client, old_guid) = (client.clone(), old_guid.clone());
        async move {
            let running = probe::running(&client, "app").await;
            running
                .iter()
                .any(|a| a.actual_lrp_key.as_ref().unwrap().index == 1 && probe::instance_guid(a) != old_guid)
                .then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
}

async fn placement_error(cluster: &Cluster, guid: &str) -> String {
    let client = cluster.bbs();
    eventually(&format!("a placement error on {guid}"), PATIENCE, || {
        let client = client.clone();
        async move {
            let all = probe::instances(&client, guid).await;
            all.into_iter()
                .find(|a| !a.placement_error.is_empty() && a.state == pb::ActualLrpState::Unclaimed as i32)
                .map(|a| a.placement_error)
        }
    })
    .await
}

async fn a6_unplaceable_lrps_say_why(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Sim, |_| {}).await else { return };
    let mut huge = fixtures::http_lrp("huge", 1);
    huge.memory_mb = 1_000_000;
    desire(&cluster, huge).await;
    assert!(placement_error(&cluster, "huge").await.contains("insufficient resources"));
    let mut alien = fixtures::http_lrp("alien", 1);
    alien.rootfs = "preloaded:no-such-stack".into();
    desire(&cluster, alien).await;
    assert!(placement_error(&cluster, "alien").await.contains("found no compatible cell"));
    cluster.shutdown().await;
}

async fn c22_crashes_restart_at_once_twice_then_back_off(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    // Runs for a moment (long enough to pass its start check), then exits 1.
    let mut flapping = fixtures::http_lrp("flap", 1);
    flapping.action = Some(fixtures::shell("(/bin/busybox nc -lk -p $PORT -e /bin/busybox true &) ; sleep 1; exit 1"));
    desire(&cluster, flapping).await;
    let client = cluster.bbs();
    // Crashes 1 and 2 restart at once; the 3rd leaves the instance CRASHED for the backoff.
    let crashed = eventually("the 3rd crash to leave the instance CRASHED", PATIENCE, || {
        let client = client.clone();
        async move {
            let all = probe::instances(&client, "flap").await;
            all.into_iter().find(|a| a.state == pb::ActualLrpState::Crashed as i32 && a.crash_count >= 3)
        }
    })
    .await;
    assert_eq!(crashed.crash_count, 3, "crashes 1 and 2 restarted immediately, the 3rd backs off");
    assert!(crashed.crash_reason.contains("Exited with status 1"), "{}", crashed.crash_reason);
    assert!(crashed.actual_lrp_instance_key.as_ref().is_none_or(|k| k.instance_guid.is_empty()));
    // After the backoff (1 s base in tests) convergence restarts it and it crashes a 4th time.
    eventually("the restart after the backoff", PATIENCE, || {
        let client = client.clone();
        async move {
            let all = probe::instances(&client, "flap").await;
            all.iter().any(|a| a.crash_count >= 4).then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
}

async fn c25_a_startup_check_that_never_passes_crashes_with_the_reason(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut never_healthy = fixtures::http_lrp("sick", 1);
    never_healthy.action = Some(fixtures::shell("sleep 1000"));
    never_healthy.start_timeout_ms = 2_000;
    desire(&cluster, never_healthy).await;
    let client = cluster.bbs();
    let reason = eventually("a crash for the failing startup check", PATIENCE, || {
        let client = client.clone();
        async move {
            let all = probe::instances(&client, "sick").await;
            all.into_iter().find(|a| a.crash_count >= 1).map(|a| a.crash_reason)
        }
    })
    .await;
    assert!(reason.contains("Instance never healthy after"), "{reason}");
    assert!(reason.contains("connection refused") || reason.contains("TCP"), "{reason}");
    cluster.shutdown().await;
}

async fn d28_d29_tasks_return_results_and_cancel_stops_them(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut client = cluster.bbs();
    let mut definition = fixtures::task("echo -n \"answer $((6*7))\" > result.txt");
    definition.result_file = "result.txt".into();
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "compute".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let done = eventually("the task to complete", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "compute").await.filter(|t| t.state == pb::task::State::Completed as i32) }
    })
    .await;
    assert!(!done.failed, "{}", done.failure_reason);
    assert_eq!(done.result, "answer 42");

    let scratch = Scratch::new();
    let mut forever = fixtures::task("echo $$ > \"$SCRATCH/pid\"; exec sleep 1000");
    forever.environment_variables = scratch.env();
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(forever),
            task_guid: "forever".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    eventually("the long task to run", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "forever").await.filter(|t| t.state == pb::task::State::Running as i32) }
    })
    .await;
    client.cancel_task(api::TaskGuidRequest { task_guid: "forever".into() }).await.unwrap();
    let cancelled = probe::task(&client, "forever").await.unwrap();
    assert_eq!(cancelled.state, pb::task::State::Completed as i32);
    assert!(cancelled.failed);
    assert_eq!(cancelled.failure_reason, "task was cancelled");
    let status = client.cancel_task(api::TaskGuidRequest { task_guid: "forever".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "cancelling a completed task errors");
    // And the process really stops.
    let pid = scratch.pid("pid").expect("the task wrote its pid");
    eventually("the cancelled task's process to stop", PATIENCE, || async move { process_gone(pid).then_some(()) })
        .await;
    cluster.shutdown().await;
}

async fn d31_a_pending_task_with_no_cell_expires(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 0, RuntimeKind::Sim, |spec| {
        spec.bbs = Box::new(|c| c.expire_pending_task = Duration::from_secs(2));
    })
    .await
    else {
        return;
    };
    let mut client = cluster.bbs();
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("true")),
            task_guid: "lonely".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let task = eventually("the pending task to fail", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "lonely").await.filter(|t| t.state == pb::task::State::Completed as i32) }
    })
    .await;
    assert!(task.failed);
    assert!(
        task.failure_reason.contains("insufficient resources")
            || task.failure_reason.contains("not started within time limit")
            || task.failure_reason.contains("unable to communicate"),
        "{}",
        task.failure_reason
    );
    cluster.shutdown().await;
}

async fn e33_a_lost_cell_s_instances_turn_suspect_and_are_replaced(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 2, RuntimeKind::Sim, |_| {}).await else { return };
    desire(&cluster, fixtures::http_lrp("svc", 4)).await;
    let before = wait_running(&cluster, "svc", 4).await;
    let victim = probe::cell(&before[0]).to_owned();
    let victim_index = cluster.reps.iter().position(|r| r.cell_id == victim).unwrap();
    let on_victim = before.iter().filter(|a| probe::cell(a) == victim).count();
    // The cell dies: no handover, and it drops out of the presence set.
    cluster.kill_rep(victim_index).await;
    let killed_at = tokio::time::Instant::now();
    let client = cluster.bbs();
    let victim_for_probe = victim.clone();
    eventually("every instance RUNNING on the surviving cell", PATIENCE, || {
        let (client, victim) = (client.clone(), victim_for_probe.clone());
        async move {
            let running = probe::running(&client, "svc").await;
            (running.len() == 4 && running.iter().all(|a| probe::cell(a) != victim)).then_some(())
        }
    })
    .await;
    eprintln!("{}: {on_victim} instance(s) replaced {:?} after the cell died", backend.name(), killed_at.elapsed());
    // The suspects are gone once their replacements run.
    let all = probe::instances(&client, "svc").await;
    assert!(all.iter().all(|a| a.presence == pb::Presence::Ordinary as i32), "suspects left: {all:?}");
    // The lost cell comes back: its old containers are reaped and nothing runs twice.
    cluster.add_rep(victim_index).await.expect("restart the rep");
    cluster.wait_for_cells(2).await.expect("the cell re-registers");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = probe::instances(&client, "svc").await;
    assert_eq!(after.len(), 4, "one row per index: {after:?}");
    cluster.shutdown().await;
}

async fn e35_nothing_runs_without_an_auctioneer_or_a_rep_until_it_starts(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 1, RuntimeKind::Sim, |spec| spec.auctioneer = false).await else {
        return;
    };
    desire(&cluster, fixtures::http_lrp("waiting", 2)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(probe::running(&cluster.bbs(), "waiting").await.is_empty(), "nothing can run without an auctioneer");
    cluster.start_auctioneer().await.expect("auctioneer");
    // Convergence re-auctions the stale UNCLAIMED instances.
    wait_running(&cluster, "waiting", 2).await;
    cluster.shutdown().await;

    // The same with no rep at all: nothing runs until a cell registers.
    let Some(mut cluster) = Cluster::start(backend, 0, RuntimeKind::Sim, |_| {}).await else { return };
    desire(&cluster, fixtures::http_lrp("homeless", 2)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(probe::running(&cluster.bbs(), "homeless").await.is_empty(), "nothing can run without a cell");
    cluster.add_rep(0).await.expect("rep");
    cluster.wait_for_cells(1).await.expect("the cell registers");
    wait_running(&cluster, "homeless", 2).await;
    cluster.shutdown().await;
}

async fn e36_evacuation_hands_instances_over_before_the_old_ones_stop(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    desire(&cluster, fixtures::http_lrp("web", 4)).await;
    let before = wait_running(&cluster, "web", 4).await;
    let leaving = probe::cell(&before[0]).to_owned();
    let index = cluster.reps.iter().position(|r| r.cell_id == leaving).unwrap();
    cluster.evacuate_rep(index).await.expect("the rep evacuates and exits cleanly");
    // Once the evacuating rep has exited, every instance runs on the other cell.
    let running = probe::running(&cluster.bbs(), "web").await;
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(running.iter().all(|a| probe::cell(a) != leaving), "{running:?}");
    let all = probe::instances(&cluster.bbs(), "web").await;
    assert!(all.iter().all(|a| a.presence == pb::Presence::Ordinary as i32), "no evacuating rows remain: {all:?}");
    cluster.shutdown().await;
}
