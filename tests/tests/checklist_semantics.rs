//! The rest of the auction-rep.md section 5 checklist end to end, on every backend: A2 (the
//! auction's ordering when memory is scarce), A10 (the in-flight start limit), B13 (deleting a
//! claimed instance before it runs), C21 (a flapping app's crash counts and backoff on two
//! indices), C23 (no monitor: exits are crashes; codependent vs parallel siblings), C24 (the
//! legacy monitor: daemonized processes, monitor failures, start timeouts) and D32 (CRUD rules
//! through a whole cluster).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep_pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::scratch::{Scratch, process_gone};
use tests::{fixtures, probe};

const PATIENCE: Duration = Duration::from_secs(60);

tests::on_every_backend!(
    a2_scarce_memory_places_index_0_then_tasks_then_larger_higher_indices,
    a10_at_most_m_containers_start_at_once_and_the_rest_wait,
    b13_deleting_a_claimed_instance_before_it_runs_removes_it,
    c21_a_flapping_app_backs_off_after_3_crashes_on_every_index,
    c23_without_a_monitor_every_exit_is_a_crash_but_a_parallel_sibling_is_not,
    c24_the_monitor_decides_health_not_the_action_s_exit,
    d32_crud_rules_hold_through_a_whole_cluster,
);

async fn desire(cluster: &Cluster, lrp: pb::DesiredLrp) {
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.expect("desire lrp");
}

async fn desire_task(cluster: &Cluster, guid: &str, domain: &str, definition: pb::TaskDefinition) {
    cluster
        .bbs()
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: guid.into(),
            domain: domain.into(),
        })
        .await
        .expect("desire task");
}

/// The instance of `guid` at `index` (its ordinary row), if any.
async fn instance(cluster: &Cluster, guid: &str, index: i32) -> Option<pb::ActualLrp> {
    probe::instances(&cluster.bbs(), guid).await.into_iter().find(|a| {
        a.presence == pb::Presence::Ordinary as i32 && a.actual_lrp_key.as_ref().is_some_and(|k| k.index == index)
    })
}

fn state_of(lrp: &pb::ActualLrp) -> pb::ActualLrpState {
    pb::ActualLrpState::try_from(lrp.state).unwrap_or(pb::ActualLrpState::Unclaimed)
}

/// A long-running LRP of `script` with no ports, checks or monitor.
fn plain_lrp(guid: &str, instances: i32, action: pb::Action) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances,
        memory_mb: 32,
        disk_mb: 32,
        action: Some(action),
        ..Default::default()
    }
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

async fn a2_scarce_memory_places_index_0_then_tasks_then_larger_higher_indices(backend: Backend) {
    // One cell of 384 MB; one auction sees the whole burst (a 3 s batch window).
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |spec| {
        spec.cell_memory_mb = 384;
        spec.auctioneer_config = Arc::new(|c| c.batch_window = Duration::from_secs(3));
    })
    .await
    else {
        return;
    };
    let mut alpha = fixtures::http_lrp("alpha", 3);
    alpha.memory_mb = 64;
    let mut beta = fixtures::http_lrp("beta", 3);
    beta.memory_mb = 96;
    desire(&cluster, alpha).await;
    desire(&cluster, beta).await;
    let mut job = fixtures::task("sleep 1000");
    job.memory_mb = 128;
    desire_task(&cluster, "job", "d", job).await;

    // Diego's order: index 0 of every app (beta0 96 + alpha0 64 = 160), then tasks (job 128:
    // 288), then higher indices larger first (beta1 96: 384, full). Had higher indices gone
    // before the task, beta1 + beta2 would have left no room for it; had they gone in arrival
    // order, alpha1 would have taken the room beta1 got.
    let client = cluster.bbs();
    eventually("alpha0, beta0, beta1 RUNNING and the task RUNNING", PATIENCE, || {
        let client = client.clone();
        async move {
            let alpha = probe::running(&client, "alpha").await;
            let beta = probe::running(&client, "beta").await;
            let task = probe::task(&client, "job").await?;
            (alpha.len() == 1 && beta.len() == 2 && task.state == pb::task::State::Running as i32).then_some(())
        }
    })
    .await;
    let index = |a: &pb::ActualLrp| a.actual_lrp_key.as_ref().map_or(-1, |k| k.index);
    let mut beta_indices: Vec<i32> = probe::running(&client, "beta").await.iter().map(index).collect();
    beta_indices.sort_unstable();
    assert_eq!(beta_indices, vec![0, 1]);
    assert_eq!(probe::running(&client, "alpha").await.iter().map(index).collect::<Vec<_>>(), vec![0]);
    // The rest wait with the placement reason, and stay unplaced through later re-auctions.
    for (guid, i) in [("alpha", 1), ("alpha", 2), ("beta", 2)] {
        let cluster_ref = &cluster;
        let error = eventually(&format!("{guid}/{i} to carry a placement error"), PATIENCE, || async move {
            instance(cluster_ref, guid, i).await.map(|a| a.placement_error).filter(|e| !e.is_empty())
        })
        .await;
        assert!(error.contains("insufficient resources"), "{guid}/{i}: {error}");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (guid, i) in [("alpha", 1), ("alpha", 2), ("beta", 2)] {
        let row = instance(&cluster, guid, i).await.expect("row");
        assert_eq!(state_of(&row), pb::ActualLrpState::Unclaimed, "{guid}/{i} never fits: {row:?}");
    }
    cluster.shutdown().await;
}

/// Sum of `starting_container_count` over every rep of the cluster, as the auctioneer sees it.
async fn starting_containers(addresses: &[String]) -> i32 {
    let mut total = 0;
    for address in addresses {
        if let Ok(mut client) = rep_pb::rep_client::RepClient::connect(format!("http://{address}")).await
            && let Ok(state) = client.state(rep_pb::StateRequest {}).await
        {
            total += state.into_inner().starting_container_count;
        }
    }
    total
}

async fn a10_at_most_m_containers_start_at_once_and_the_rest_wait(backend: Backend) {
    // Containers take 3 s to turn healthy; at most 2 may be starting at once.
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Sim, |spec| {
        spec.rep = Arc::new(|c| c.sim_start_delay = Duration::from_secs(3));
        spec.auctioneer_config = Arc::new(|c| c.starting_container_count_maximum = 2);
    })
    .await
    else {
        return;
    };
    desire(&cluster, fixtures::http_lrp("surge", 6)).await;
    let addresses: Vec<String> = cluster.reps.iter().map(|r| r.address.clone()).collect();
    let client = cluster.bbs();
    let mut most_starting = 0;
    let mut limit_error = None;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let starting = starting_containers(&addresses).await;
        assert!(starting <= 2, "{starting} containers starting at once with a limit of 2");
        most_starting = most_starting.max(starting);
        let all = probe::instances(&client, "surge").await;
        if limit_error.is_none() {
            limit_error = all.iter().map(|a| a.placement_error.clone()).find(|e| !e.is_empty());
        }
        let running = all.iter().filter(|a| a.state == pb::ActualLrpState::Running as i32).count();
        if running == 6 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for 6 RUNNING instances: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most_starting, 2, "the limit was reached");
    let error = limit_error.expect("instances over the limit carried a placement error");
    assert!(error.contains("reached in-flight start limit of 2"), "{error}");
    cluster.shutdown().await;
}

async fn b13_deleting_a_claimed_instance_before_it_runs_removes_it(backend: Backend) {
    // The sim container takes a minute to turn healthy, so the instance stays CLAIMED.
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Sim, |spec| {
        spec.rep = Arc::new(|c| c.sim_start_delay = Duration::from_secs(60));
    })
    .await
    else {
        return;
    };
    desire(&cluster, fixtures::http_lrp("doomed", 1)).await;
    let claimed = eventually("the instance to be CLAIMED", PATIENCE, || async {
        instance(&cluster, "doomed", 0).await.filter(|a| state_of(a) == pb::ActualLrpState::Claimed)
    })
    .await;
    let cell = probe::cell(&claimed).to_owned();
    cluster
        .bbs()
        .remove_desired_lrp(api::RemoveDesiredLrpRequest { process_guid: "doomed".into() })
        .await
        .expect("remove");
    eventually("the actual LRP to be removed", PATIENCE, || async {
        probe::instances(&cluster.bbs(), "doomed").await.is_empty().then_some(())
    })
    .await;
    // And the cell no longer holds its container.
    let address = cluster.reps.iter().find(|r| r.cell_id == cell).map(|r| r.address.clone()).expect("rep");
    eventually("the container to be gone from the cell", PATIENCE, || {
        let address = address.clone();
        async move {
            let mut client = rep_pb::rep_client::RepClient::connect(format!("http://{address}")).await.ok()?;
            let state = client.state(rep_pb::StateRequest {}).await.ok()?.into_inner();
            state.lrps.is_empty().then_some(())
        }
    })
    .await;
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

fn diego_error(status: &tonic::Status) -> String {
    status.metadata().get("x-diego-error").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn d32_crud_rules_hold_through_a_whole_cluster(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut client = cluster.bbs();
    // Duplicate guids are refused, for LRPs and tasks.
    desire(&cluster, plain_lrp("unique", 1, fixtures::shell("exec sleep 1000"))).await;
    let status = client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(plain_lrp("unique", 1, fixtures::shell("true"))) })
        .await
        .expect_err("duplicate lrp");
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    desire_task(&cluster, "long", "d1", fixtures::task("exec sleep 1000")).await;
    let status = client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("true")),
            task_guid: "long".into(),
            domain: "d1".into(),
        })
        .await
        .expect_err("duplicate task");
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    // Malformed guids are refused and nothing is written.
    let status = client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(plain_lrp("bad guid/x", 1, fixtures::shell("true"))) })
        .await
        .expect_err("malformed lrp guid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("true")),
            task_guid: String::new(),
            domain: "d1".into(),
        })
        .await
        .expect_err("empty task guid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let lrps = client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner().desired_lrps;
    assert_eq!(lrps.iter().map(|d| d.process_guid.as_str()).collect::<Vec<_>>(), vec!["unique"]);

    // A task is deleted only once completed and resolving.
    desire_task(&cluster, "quick", "d2", fixtures::task("true")).await;
    let running = eventually("the long task RUNNING", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "long").await.filter(|t| t.state == pb::task::State::Running as i32) }
    })
    .await;
    assert_eq!(running.domain, "d1");
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "long".into() }).await.expect_err("running");
    assert_eq!(diego_error(&status), "InvalidStateTransition", "{status:?}");
    eventually("the quick task COMPLETED", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "quick").await.filter(|t| t.state == pb::task::State::Completed as i32) }
    })
    .await;
    // Tasks list by domain.
    for (domain, guid) in [("d1", "long"), ("d2", "quick")] {
        let tasks =
            client.tasks(api::TasksRequest { domain: domain.into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(tasks.tasks.iter().map(|t| t.task_guid.as_str()).collect::<Vec<_>>(), vec![guid], "{domain}");
    }
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect_err("completed");
    assert_eq!(diego_error(&status), "InvalidStateTransition", "{status:?}");
    client.resolving_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect("resolving");
    client.delete_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect("delete");
    assert!(probe::task(&client, "quick").await.is_none());
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect_err("gone");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // A domain is fresh for its TTL, then drops out of the list.
    client.upsert_domain(api::UpsertDomainRequest { domain: "fleeting".into(), ttl: 1 }).await.expect("upsert");
    client.upsert_domain(api::UpsertDomainRequest { domain: "lasting".into(), ttl: 0 }).await.expect("upsert");
    let domains = client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.contains(&"fleeting".to_owned()) && domains.contains(&"lasting".to_owned()), "{domains:?}");
    eventually("the 1 s domain to expire", PATIENCE, || {
        let mut client = client.clone();
        async move {
            let domains = client.domains(api::DomainsRequest {}).await.ok()?.into_inner().domains;
            (!domains.contains(&"fleeting".to_owned())).then_some(domains)
        }
    })
    .await;
    let domains = client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.contains(&"lasting".to_owned()), "a TTL of 0 never expires: {domains:?}");
    cluster.shutdown().await;
}
