//! End to end, on every backend: nothing running is lost when the database forgets it (issue 19
//! items 1 and 2). Wiping `actual_lrps` under a running cluster, five times in a row, restarts no
//! instance: the reps re-adopt theirs, with the same instance guids and ports, and convergence
//! starts nothing meanwhile. Wiping `desired_lrps` stops no app: the desired LRPs are rebuilt
//! from what the cells report, marked recovered, and an operator's desire replaces them.
//!
//! Container starts are counted by the instances themselves: each appends its instance guid to a
//! file in a scratch directory before it serves. Timings are the suite's (convergence every 1 s,
//! rep polling every 2 s).

use std::collections::BTreeMap;
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::scratch::Scratch;
use tests::steps::{PATIENCE, desire, wait_running};
use tests::{fixtures, probe};

tests::on_every_backend!(
    wiping_actual_lrps_five_times_restarts_no_instance,
    wiping_desired_lrps_keeps_every_app_running_and_rebuilds_them_marked_recovered,
);

/// The reps' polling interval in the suite's timings: one rep sync.
const REP_SYNC: Duration = Duration::from_secs(2);

/// An HTTP server that records its start in `$SCRATCH/starts` first.
fn counted_lrp(guid: &str, instances: i32, scratch: &Scratch) -> pb::DesiredLrp {
    let mut lrp = fixtures::http_lrp(guid, instances);
    lrp.action = Some(fixtures::shell(
        "echo \"$INSTANCE_GUID\" >> \"$SCRATCH/starts\" && mkdir -p www && echo \"instance $INSTANCE_INDEX\" > \
         www/index.html && exec /bin/busybox httpd -f -p $PORT -h www",
    ));
    lrp.environment_variables = scratch.env();
    lrp.annotation = format!("{guid} as desired");
    lrp
}

fn starts(scratch: &Scratch) -> Vec<String> {
    std::fs::read_to_string(scratch.path("starts")).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Each running instance of `guids` by (guid, index): its instance guid, cell and host ports.
type Placement = BTreeMap<(String, i32), (String, String, Vec<u32>)>;

async fn placement(cluster: &Cluster, guids: &[(&str, usize)]) -> Placement {
    let mut out = Placement::new();
    for (guid, n) in guids {
        for lrp in wait_running(cluster, guid, *n).await {
            let key = lrp.actual_lrp_key.clone().unwrap_or_default();
            let ports = lrp.actual_lrp_net_info.as_ref().map(|n| n.ports.iter().map(|p| p.host_port).collect());
            out.insert(
                (key.process_guid, key.index),
                (probe::instance_guid(&lrp).to_owned(), probe::cell(&lrp).to_owned(), ports.unwrap_or_default()),
            );
        }
    }
    out
}

async fn wipe(cluster: &Cluster, table: &'static str) {
    cluster
        .db
        .store
        .write("wipe a table (test)", move |tx| {
            Box::pin(async move { tx.execute_for_test(&format!("DELETE FROM {table}")).await })
        })
        .await
        .expect("wipe");
}

async fn wiping_actual_lrps_five_times_restarts_no_instance(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    let scratch = Scratch::new();
    desire(&cluster, counted_lrp("web", 3, &scratch)).await;
    desire(&cluster, counted_lrp("api", 2, &scratch)).await;
    let apps = [("web", 3), ("api", 2)];
    let before = placement(&cluster, &apps).await;
    assert_eq!(starts(&scratch).len(), 5);

    for round in 1..=5 {
        wipe(&cluster, "actual_lrps").await;
        // Several convergence passes and rep syncs go by: every instance is back as it was.
        tokio::time::sleep(2 * REP_SYNC).await;
        let after = placement(&cluster, &apps).await;
        assert_eq!(after, before, "round {round}: the same instances, on the same cells and ports");
        assert_eq!(starts(&scratch).len(), 5, "round {round}: no container started again: {:?}", starts(&scratch));
    }
    // And a while later still none.
    tokio::time::sleep(2 * REP_SYNC).await;
    assert_eq!(starts(&scratch).len(), 5, "{:?}", starts(&scratch));
    assert_eq!(placement(&cluster, &apps).await, before);
    cluster.shutdown().await;
}

async fn wiping_desired_lrps_keeps_every_app_running_and_rebuilds_them_marked_recovered(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    let scratch = Scratch::new();
    desire(&cluster, counted_lrp("web", 3, &scratch)).await;
    desire(&cluster, counted_lrp("api", 2, &scratch)).await;
    let apps = [("web", 3), ("api", 2)];
    let before = placement(&cluster, &apps).await;
    let client = cluster.bbs();
    let mut events = client
        .clone()
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await
        .expect("subscribe")
        .into_inner();

    let wiped = tokio::time::Instant::now();
    wipe(&cluster, "desired_lrps").await;
    let recovered = eventually("both desired lrps rebuilt from the cells", PATIENCE, || {
        let mut client = client.clone();
        async move {
            let all = client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.ok()?.into_inner().desired_lrps;
            (all.len() == 2).then_some(all)
        }
    })
    .await;
    let took = wiped.elapsed();
    // One convergence pass after the wipe, well within one rep sync plus a pass.
    assert!(took <= REP_SYNC + Duration::from_secs(3), "recovered after {took:?}");
    for lrp in &recovered {
        let expected = if lrp.process_guid == "web" { 3 } else { 2 };
        assert_eq!(lrp.instances, expected, "{}: the highest index seen plus one", lrp.process_guid);
        assert_eq!(lrp.annotation, format!("[recovered] {} as desired", lrp.process_guid));
        assert_eq!(lrp.environment_variables, scratch.env(), "the run info comes back whole");
    }
    // Each rebuild is announced as a desired LRP created, marked recovered.
    let mut announced = Vec::new();
    while announced.len() < 2 {
        let event =
            tokio::time::timeout(PATIENCE, events.next()).await.expect("events").expect("stream").expect("event");
        if let Some(pb::instance_event::Event::DesiredLrpCreated(created)) = event.event {
            let lrp = created.desired_lrp.unwrap_or_default();
            assert!(lrp.annotation.starts_with("[recovered] "), "{}", lrp.annotation);
            announced.push(lrp.process_guid);
        }
    }
    announced.sort();
    assert_eq!(announced, ["api", "web"]);
    // Every app kept running throughout: same instances, no container started again.
    tokio::time::sleep(2 * REP_SYNC).await;
    assert_eq!(placement(&cluster, &apps).await, before);
    assert_eq!(starts(&scratch).len(), 5, "{:?}", starts(&scratch));

    // The operator's desire replaces the recovered record, and still restarts nothing.
    desire(&cluster, counted_lrp("web", 3, &scratch)).await;
    let mut c = client.clone();
    let web = c
        .desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: "web".into() })
        .await
        .expect("web")
        .into_inner()
        .desired_lrp
        .expect("web's record");
    assert_eq!(web.annotation, "web as desired");
    tokio::time::sleep(2 * REP_SYNC).await;
    assert_eq!(placement(&cluster, &apps).await, before);
    assert_eq!(starts(&scratch).len(), 5, "{:?}", starts(&scratch));
    cluster.shutdown().await;
}
