//! End to end, on every backend: desired LRPs through their lifecycle on whole in-process clusters
//! (BBS, auctioneer, cell reps running busybox programs): they run, serve HTTP and tell their story
//! (A1), scale and retire (B12, B15), are placed by resources, tags and the auction's order (A2, A6,
//! A8, A10), see their environment (B16), and can be deleted before they run (B13).
//!
//! Timings are shortened by config (convergence every 1 s, stale unclaimed after 2 s, crash backoff
//! from 1 s, presence TTL 3 s); each test names the checklist items of docs/reference/auction-rep.md §5
//! it covers.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep_pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::steps::{self, PATIENCE, desire, desire_task, http_get, instance, scale, state_of, wait_running};
use tests::{fixtures, probe};

tests::on_every_backend!(
    b12_b15_scale_up_down_to_zero_and_back_and_retire_restarts_an_instance,
    a6_unplaceable_lrps_say_why,
    a8_placement_tags_pick_the_cell,
    b16_the_instance_environment_matches_the_actual_lrp,
    a2_scarce_memory_places_index_0_then_tasks_then_larger_higher_indices,
    a10_at_most_m_containers_start_at_once_and_the_rest_wait,
    b13_deleting_a_claimed_instance_before_it_runs_removes_it,
    a1_instances_run_serve_and_tell_their_story,
);

async fn running(
    client: &mut proto::pb::bbs::v1::bbs_client::BbsClient<tonic::transport::Channel>,
    guid: &str,
) -> Vec<pb::ActualLrp> {
    client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: guid.into(), ..Default::default() })
        .await
        .map(|r| r.into_inner().actual_lrps)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32)
        .collect()
}

async fn a1_instances_run_serve_and_tell_their_story(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    let mut client = cluster.bbs();
    let mut events = client
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(fixtures::http_lrp("web", 3)) }).await.unwrap();
    let instances = eventually("3 RUNNING instances of web", PATIENCE, || {
        let mut c = client.clone();
        async move {
            let r = running(&mut c, "web").await;
            (r.len() == 3).then_some(r)
        }
    })
    .await;
    // Each answers HTTP on its host port with its own index.
    for instance in &instances {
        let net = instance.actual_lrp_net_info.as_ref().expect("running instances have net info");
        let port = net.ports.iter().find(|p| p.container_port == 8080).expect("port 8080 is mapped").host_port;
        let body = http_get(&format!("{}:{port}", net.address)).await.expect("the instance answers HTTP");
        let index = instance.actual_lrp_key.as_ref().unwrap().index;
        assert!(body.contains(&format!("instance {index}")), "{body}");
    }
    // The stream: desired created, then for index 0: created, changed (claimed), changed (running).
    let mut seen = Vec::new();
    while seen.len() < 1 + 3 * 3 {
        let event =
            tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("events").unwrap().unwrap();
        use pb::instance_event::Event;
        let (kind, index, state) = match &event.event {
            Some(Event::DesiredLrpCreated(_)) => ("desired_created", -1, 0),
            Some(Event::ActualLrpInstanceCreated(e)) => {
                ("created", e.actual_lrp.as_ref().unwrap().actual_lrp_key.as_ref().unwrap().index, 0)
            }
            Some(Event::ActualLrpInstanceChanged(e)) => {
                ("changed", e.actual_lrp_key.as_ref().unwrap().index, e.after.as_ref().unwrap().state)
            }
            _ => ("other", -1, 0),
        };
        seen.push((kind, index, state));
    }
    assert_eq!(seen[0].0, "desired_created");
    let of_index_0: Vec<_> = seen.iter().filter(|(_, i, _)| *i == 0).collect();
    assert_eq!(
        of_index_0.iter().map(|(k, _, s)| (*k, *s)).collect::<Vec<_>>(),
        [
            ("created", 0),
            ("changed", pb::ActualLrpState::Claimed as i32),
            ("changed", pb::ActualLrpState::Running as i32)
        ]
    );
    // Removal stops everything.
    client.remove_desired_lrp(api::RemoveDesiredLrpRequest { process_guid: "web".into() }).await.unwrap();
    eventually("web's instances to be gone", PATIENCE, || {
        let mut c = client.clone();
        async move {
            let all = c
                .actual_lr_ps(api::ActualLrPsRequest { process_guid: "web".into(), ..Default::default() })
                .await
                .ok()?;
            all.into_inner().actual_lrps.is_empty().then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
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

async fn a8_placement_tags_pick_the_cell(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Sim, |spec| {
        spec.rep = Arc::new(|config| {
            if config.cell_id == "cell-1" {
                config.placement_tags = vec!["gpu".into()];
            }
        });
    })
    .await
    else {
        return;
    };
    let mut tagged = fixtures::http_lrp("trainer", 2);
    tagged.placement_tags = vec!["gpu".into()];
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(tagged) }).await.unwrap();
    let client = cluster.bbs();
    let running = eventually("2 tagged instances RUNNING", PATIENCE, || {
        let client = client.clone();
        async move {
            let r = probe::running(&client, "trainer").await;
            (r.len() == 2).then_some(r)
        }
    })
    .await;
    assert!(running.iter().all(|a| probe::cell(a) == "cell-1"), "tagged work runs on the tagged cell: {running:?}");
    let mut untaggable = fixtures::http_lrp("tpu-job", 1);
    untaggable.placement_tags = vec!["tpu".into()];
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(untaggable) }).await.unwrap();
    let error = eventually("a placement error for the tpu job", PATIENCE, || {
        let client = client.clone();
        async move {
            probe::instances(&client, "tpu-job")
                .await
                .into_iter()
                .find(|a| !a.placement_error.is_empty())
                .map(|a| a.placement_error)
        }
    })
    .await;
    assert!(error.contains("found no compatible cell"), "{error}");
    cluster.shutdown().await;
}

async fn b16_the_instance_environment_matches_the_actual_lrp(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut lrp = fixtures::http_lrp("envy", 2);
    lrp.environment_variables = vec![pb::EnvironmentVariable { name: "GREETING".into(), value: "hello".into() }];
    let script = "mkdir -p www && echo \"index=$INSTANCE_INDEX guid=$INSTANCE_GUID port=$CF_INSTANCE_PORT addr=$CF_INSTANCE_ADDR greeting=$GREETING\" > www/index.html && exec /bin/busybox httpd -f -p $PORT -h www";
    lrp.action = Some(fixtures::shell(script));
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.unwrap();
    let client = cluster.bbs();
    let running = eventually("2 RUNNING instances of envy", PATIENCE, || {
        let client = client.clone();
        async move {
            let r = probe::running(&client, "envy").await;
            (r.len() == 2).then_some(r)
        }
    })
    .await;
    for instance in running {
        let net = instance.actual_lrp_net_info.clone().unwrap();
        let port = net.ports[0].host_port;
        let body = http_get(&format!("{}:{port}", net.address)).await.expect("it answers");
        let index = instance.actual_lrp_key.as_ref().unwrap().index;
        let expected = format!(
            "index={index} guid={} port={port} addr={}:{port} greeting=hello",
            probe::instance_guid(&instance),
            net.address
        );
        assert!(body.contains(&expected), "expected {expected:?} in {body:?}");
    }
    cluster.shutdown().await;
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
async fn starting_containers(cluster: &Cluster, addresses: &[String]) -> i32 {
    let mut total = 0;
    for address in addresses {
        if let Some(mut client) = steps::rep_client(cluster, address).await
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
        let starting = starting_containers(&cluster, &addresses).await;
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
        let (address, cluster) = (address.clone(), &cluster);
        async move {
            let mut client = steps::rep_client(cluster, &address).await?;
            let state = client.state(rep_pb::StateRequest {}).await.ok()?.into_inner();
            state.lrps.is_empty().then_some(())
        }
    })
    .await;
    cluster.shutdown().await;
}
