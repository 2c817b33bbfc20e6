//! End to end, on every backend: crashing and unhealthy instances. Crashes restart at once twice
//! then back off (C21, C22); without a monitor every exit is a crash (C23); the monitor, not the
//! action's exit, decides health (C24); a startup check that never passes crashes (C25).
//!
//! Timings are shortened by config (convergence every 1 s, stale unclaimed after 2 s, crash backoff
//! from 1 s, presence TTL 3 s); each test names the checklist items of docs/reference/auction-rep.md §5
//! it covers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::fixtures::plain_lrp;
use tests::scratch::{Scratch, process_gone};
use tests::steps::{PATIENCE, desire, instance, state_of};
use tests::{fixtures, probe};

tests::on_every_backend!(
    c22_crashes_restart_at_once_twice_then_back_off,
    c25_a_startup_check_that_never_passes_crashes_with_the_reason,
    c21_a_flapping_app_backs_off_after_3_crashes_on_every_index,
    c23_without_a_monitor_every_exit_is_a_crash_but_a_parallel_sibling_is_not,
    c24_the_monitor_decides_health_not_the_action_s_exit,
);

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

async fn c21_a_flapping_app_backs_off_after_3_crashes_on_every_index(backend: Backend) {
    // Backoff base 4 s (Diego: 30 s), so the 4th start waits at least 4 s after the 3rd crash.
    const BASE: Duration = Duration::from_secs(4);
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |spec| {
        spec.bbs = Box::new(|c| c.crash_backoff_base = BASE);
    })
    .await
    else {
        return;
    };
    desire(&cluster, plain_lrp("flapper", 2, fixtures::shell("sleep 1; exit 1"))).await;
    // Per index: `since` of the row when first seen CRASHED with 3 crashes, and with 4.
    let mut third: BTreeMap<i32, i64> = BTreeMap::new();
    let mut fourth: BTreeMap<i32, i64> = BTreeMap::new();
    let client = cluster.bbs();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while fourth.len() < 2 {
        for a in probe::instances(&client, "flapper").await {
            let index = a.actual_lrp_key.as_ref().map_or(-1, |k| k.index);
            if state_of(&a) != pb::ActualLrpState::Crashed {
                continue;
            }
            // Crashes 1 and 2 restart at once: the row never rests CRASHED below 3.
            assert!(a.crash_count >= 3, "index {index} CRASHED after {} crashes: {a:?}", a.crash_count);
            assert!(a.crash_reason.contains("Exited with status 1"), "{}", a.crash_reason);
            match a.crash_count {
                3 => {
                    third.entry(index).or_insert(a.since);
                }
                4 => {
                    fourth.entry(index).or_insert(a.since);
                }
                _ => {}
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up: 3rd crashes {third:?}, 4th crashes {fourth:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for index in [0, 1] {
        let (Some(t3), Some(t4)) = (third.get(&index), fourth.get(&index)) else {
            panic!("index {index}: saw 3rd crash {third:?} and 4th crash {fourth:?}");
        };
        let waited = Duration::from_nanos(u64::try_from(t4 - t3).unwrap_or(0));
        assert!(waited >= BASE, "index {index} restarted {waited:?} after its 3rd crash, before the {BASE:?} backoff");
    }
    cluster.shutdown().await;
}

fn parallel(actions: Vec<pb::Action>) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::ParallelAction(pb::ParallelAction { actions, log_source: String::new() })),
    }
}

fn codependent(actions: Vec<pb::Action>) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::CodependentAction(pb::CodependentAction {
            actions,
            log_source: String::new(),
        })),
    }
}

async fn c23_without_a_monitor_every_exit_is_a_crash_but_a_parallel_sibling_is_not(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let scratch = Scratch::new();
    desire(&cluster, plain_lrp("steady", 1, fixtures::shell("exec sleep 1000"))).await;
    desire(&cluster, plain_lrp("exits-0", 1, fixtures::shell("sleep 1; exit 0"))).await;
    desire(&cluster, plain_lrp("exits-1", 1, fixtures::shell("sleep 1; exit 1"))).await;
    let codependent_lrp = codependent(vec![fixtures::shell("exec sleep 1000"), fixtures::shell("sleep 1; exit 0")]);
    desire(&cluster, plain_lrp("codependent", 1, codependent_lrp)).await;
    let parallel_lrp = parallel(vec![
        fixtures::shell("exec sleep 1000"),
        fixtures::shell("touch \"$SCRATCH/sibling-$INSTANCE_GUID\"; exit 0"),
    ]);
    let mut parallel_desired = plain_lrp("parallel", 1, parallel_lrp);
    parallel_desired.environment_variables = scratch.env();
    desire(&cluster, parallel_desired).await;

    // RUNNING as soon as the process starts (no check to pass).
    eventually("steady RUNNING", PATIENCE, || async {
        instance(&cluster, "steady", 0).await.filter(|a| state_of(a) == pb::ActualLrpState::Running)
    })
    .await;
    // Exit 0 and exit 1 are both crashes, restarted at once (two crashes without resting CRASHED).
    for guid in ["exits-0", "exits-1", "codependent"] {
        let cluster_ref = &cluster;
        let crashed = eventually(&format!("{guid} to crash twice"), PATIENCE, || async move {
            instance(cluster_ref, guid, 0).await.filter(|a| a.crash_count >= 2)
        })
        .await;
        assert!(
            crashed.crash_count >= 3 || state_of(&crashed) != pb::ActualLrpState::Crashed,
            "{guid}: restarted at once after crash {}: {crashed:?}",
            crashed.crash_count
        );
    }
    let exits_1 = instance(&cluster, "exits-1", 0).await.expect("row");
    assert!(exits_1.crash_reason.contains("Exited with status 1"), "{}", exits_1.crash_reason);
    // A parallel sibling that exits ends nothing.
    let running = eventually("the parallel instance RUNNING with its sibling done", PATIENCE, || async {
        let row = instance(&cluster, "parallel", 0).await.filter(|a| state_of(a) == pb::ActualLrpState::Running)?;
        scratch.path(&format!("sibling-{}", probe::instance_guid(&row))).exists().then_some(row)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = instance(&cluster, "parallel", 0).await.expect("row");
    assert_eq!(state_of(&later), pb::ActualLrpState::Running, "{later:?}");
    assert_eq!(later.crash_count, 0, "{later:?}");
    assert_eq!(probe::instance_guid(&later), probe::instance_guid(&running), "the same instance runs on");
    let steady = instance(&cluster, "steady", 0).await.expect("row");
    assert_eq!((state_of(&steady), steady.crash_count), (pb::ActualLrpState::Running, 0));
    cluster.shutdown().await;
}

/// An LRP whose health is the legacy `monitor` action `monitor`.
fn monitored(guid: &str, action: &str, monitor: &str, scratch: &Scratch) -> pb::DesiredLrp {
    let mut lrp = plain_lrp(guid, 1, fixtures::shell(action));
    lrp.monitor = Some(fixtures::shell(monitor));
    lrp.environment_variables = scratch.env();
    lrp
}

async fn c24_the_monitor_decides_health_not_the_action_s_exit(backend: Backend) {
    // The monitor of a healthy instance runs every second (Diego: 30 s).
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |spec| {
        spec.rep = Arc::new(|c| c.healthy_monitoring_interval = Duration::from_secs(1));
    })
    .await
    else {
        return;
    };
    let scratch = Scratch::new();
    // Daemonized: the action leaves a process behind and exits 0; the monitor keeps passing.
    let daemon = "sleep 1000 & echo $! > \"$SCRATCH/daemon.pid\"; touch \"$SCRATCH/daemon.healthy\"; exit 0";
    desire(&cluster, monitored("daemon", daemon, "test -f \"$SCRATCH/daemon.healthy\"", &scratch)).await;
    let passing = "test -f \"$SCRATCH/exit1.healthy\"";
    desire(&cluster, monitored("exit1", "touch \"$SCRATCH/exit1.healthy\"; sleep 2; exit 1", passing, &scratch)).await;
    // The monitor never passes.
    desire(&cluster, monitored("never-sleeps", "exec sleep 1000", "exit 1", &scratch)).await;
    desire(&cluster, monitored("never-exits-0", "exit 0", "exit 1", &scratch)).await;
    desire(&cluster, monitored("never-exits-1", "sleep 1; exit 1", "exit 1", &scratch)).await;
    let mut timed = monitored("never-timeout", "exec sleep 1000", "exit 1", &scratch);
    timed.start_timeout_ms = 2_000;
    desire(&cluster, timed).await;

    // Exit 0 while the monitor passes is not a crash.
    let running = eventually("the daemonized instance RUNNING", PATIENCE, || async {
        instance(&cluster, "daemon", 0).await.filter(|a| state_of(a) == pb::ActualLrpState::Running)
    })
    .await;
    // Exit 1 is a crash even while the monitor passes.
    let crashed = eventually("exit1 to crash", PATIENCE, || async {
        instance(&cluster, "exit1", 0).await.filter(|a| a.crash_count >= 1)
    })
    .await;
    assert!(crashed.crash_reason.contains("Exited with status 1"), "{}", crashed.crash_reason);
    let crashed = eventually("never-exits-1 to crash", PATIENCE, || async {
        instance(&cluster, "never-exits-1", 0).await.filter(|a| a.crash_count >= 1)
    })
    .await;
    assert!(crashed.crash_reason.contains("Exited with status 1"), "{}", crashed.crash_reason);
    // With a start timeout, a monitor that never passes crashes the instance after it.
    let timed_out = eventually("never-timeout to crash", PATIENCE, || async {
        instance(&cluster, "never-timeout", 0).await.filter(|a| a.crash_count >= 1)
    })
    .await;
    assert!(timed_out.crash_reason.contains("Instance never healthy after 2s"), "{}", timed_out.crash_reason);
    // Without one, it stays CLAIMED whatever the action does, as long as it does not fail.
    for guid in ["never-sleeps", "never-exits-0"] {
        let cluster_ref = &cluster;
        eventually(&format!("{guid} CLAIMED"), PATIENCE, || async move {
            instance(cluster_ref, guid, 0).await.filter(|a| state_of(a) == pb::ActualLrpState::Claimed)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for guid in ["never-sleeps", "never-exits-0"] {
        let row = instance(&cluster, guid, 0).await.expect("row");
        assert_eq!((state_of(&row), row.crash_count), (pb::ActualLrpState::Claimed, 0), "{guid}: {row:?}");
    }
    let daemon_row = instance(&cluster, "daemon", 0).await.expect("row");
    assert_eq!((state_of(&daemon_row), daemon_row.crash_count), (pb::ActualLrpState::Running, 0), "{daemon_row:?}");
    assert_eq!(probe::instance_guid(&daemon_row), probe::instance_guid(&running));

    // A later monitor failure crashes the instance and reaps its container.
    let pid: u32 =
        std::fs::read_to_string(scratch.path("daemon.pid")).expect("pid file").trim().parse().expect("a pid");
    assert!(!process_gone(pid), "the daemonized process runs");
    std::fs::remove_file(scratch.path("daemon.healthy")).expect("turn unhealthy");
    let unhealthy = eventually("the daemon to crash on its monitor", PATIENCE, || async {
        instance(&cluster, "daemon", 0).await.filter(|a| a.crash_count >= 1)
    })
    .await;
    assert!(unhealthy.crash_reason.contains("Instance became unhealthy"), "{}", unhealthy.crash_reason);
    eventually("the daemonized process to be killed", PATIENCE, || async { process_gone(pid).then_some(()) }).await;
    cluster.shutdown().await;
}
