//! Scaling down and removing desired LRPs (issue 17 item 1): the extra instances without a
//! container go in batches, one removal event each; those on a cell get a rep stop; and the
//! retirement finishes even when the request that started it is dropped half-way.

use bbs::controllers::desired_lrps::DesiredLrps;
use proto::models::DesiredLrpUpdate;

use super::*;

on_every_backend!(
    a_scale_down_deletes_the_extras_and_stops_the_placed_ones,
    a_removal_deletes_every_instance_without_a_container_and_stops_the_rest,
    a_scale_down_finishes_after_its_request_is_dropped,
    a_removal_finishes_after_its_request_is_dropped,
);

/// How long a dropped request's retirement may take to finish in these tests.
const FINISH: Duration = Duration::from_secs(60);

/// (index, presence, state) of every row of `process_guid`.
async fn rows(h: &Harness, process_guid: &str) -> Vec<(i32, Presence, ActualLrpState)> {
    let filter = ActualLrpFilter { process_guid: Some(guid(process_guid)), ..Default::default() };
    h.db.store.actual_lrps(&filter).await.unwrap().into_iter().map(|l| (l.key.index, l.presence, l.state)).collect()
}

/// The instance indices of the removal events published so far, and how many other events.
async fn removed_indices(events: &mut Events) -> (Vec<i32>, usize) {
    let (mut removed, mut other) = (Vec::new(), 0);
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
        match item.expect("the event stream stays open").event {
            Some(pb::instance_event::Event::ActualLrpInstanceRemoved(e)) => {
                let lrp = e.actual_lrp.expect("the removed instance");
                assert_eq!(lrp.presence, pb::Presence::Ordinary as i32);
                assert!(lrp.actual_lrp_instance_key.is_none(), "only rows without a container are deleted");
                removed.push(lrp.actual_lrp_key.expect("its key").index);
            }
            _ => other += 1,
        }
    }
    // Each index's removal is published under its own stripe: different indices' events come
    // in no fixed order (docs/architecture.md), so compare them sorted; a repeat still shows.
    removed.sort_unstable();
    (removed, other)
}

fn instances(n: i32) -> DesiredLrpUpdate {
    DesiredLrpUpdate { instances: Some(n), ..Default::default() }
}

/// Polls until `process_guid` has exactly `expected` rows, for at most [`FINISH`].
async fn wait_rows(h: &Harness, process_guid: &str, expected: &[(i32, Presence, ActualLrpState)]) {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let now = rows(h, process_guid).await;
        if now == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} rows left of {process_guid}, not {expected:?}", now.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_scale_down_deletes_the_extras_and_stops_the_placed_ones(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 600, UpdateStrategy::Rolling).await;
    live_cell(&h, "cell-1", "10.0.1.1:1801").await;
    run_instance(&h, "app", 1, &instance("ig-1", "cell-1")).await;
    run_instance(&h, "app", 500, &instance("ig-500", "cell-1")).await;
    let mut events = subscribe(&h);

    DesiredLrps(&h.ctx).update(&guid("app"), &instances(5)).await.unwrap();
    use ActualLrpState::{Running, Unclaimed};
    let kept = [0, 2, 3, 4].map(|i| (i, Presence::Ordinary, Unclaimed));
    let mut expected = vec![kept[0], (1, Presence::Ordinary, Running)];
    expected.extend(&kept[1..]);
    expected.push((500, Presence::Ordinary, Running));
    wait_rows(&h, "app", &expected).await;
    let calls = h.reps.wait_calls(1).await;
    assert_eq!(
        calls,
        [RepCall::Stop {
            address: "10.0.1.1:1801".into(),
            process_guid: "app".into(),
            instance_guid: "ig-500".into(),
            index: 500
        }]
    );
    let (removed, other) = removed_indices(&mut events).await;
    assert_eq!(other, 1, "the desired LRP changed");
    assert_eq!(removed, (5..600).filter(|&i| i != 500).collect::<Vec<_>>(), "one removal per deleted instance");
}

async fn a_removal_deletes_every_instance_without_a_container_and_stops_the_rest(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 600, UpdateStrategy::Rolling).await;
    live_cell(&h, "cell-1", "10.0.1.1:1801").await;
    run_instance(&h, "app", 3, &instance("ig-3", "cell-1")).await;
    let mut events = subscribe(&h);

    DesiredLrps(&h.ctx).remove(&guid("app")).await.unwrap();
    wait_rows(&h, "app", &[(3, Presence::Ordinary, ActualLrpState::Running)]).await;
    let calls = h.reps.wait_calls(1).await;
    assert!(matches!(&calls[..], [RepCall::Stop { index: 3, .. }]), "{calls:?}");
    let (removed, other) = removed_indices(&mut events).await;
    assert_eq!(other, 1, "the desired LRP was removed");
    assert_eq!(removed, (0..600).filter(|&i| i != 3).collect::<Vec<_>>());
}

/// Runs `call` in a task and aborts it as soon as the desired LRP shows `committed` (the
/// request's own write is done and its instances are being retired).
async fn drop_after<F>(h: &Harness, call: F, committed: impl Fn(Option<i32>) -> bool)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let request = tokio::spawn(call);
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let instances = h.db.store.scheduling_info(&guid("big")).await.ok().map(|s| s.instances);
        if committed(instances) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the request never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    request.abort();
    // The client is gone; the BBS still owes the clean-up.
    let _ = request.await;
}

async fn a_scale_down_finishes_after_its_request_is_dropped(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "big", 3_000, UpdateStrategy::Rolling).await;
    let ctx = h.ctx.clone();
    let call = async move {
        let _ = DesiredLrps(&ctx).update(&guid("big"), &instances(5)).await;
    };
    drop_after(&h, call, |instances| instances == Some(5)).await;
    let kept: Vec<_> = (0..5).map(|i| (i, Presence::Ordinary, ActualLrpState::Unclaimed)).collect();
    wait_rows(&h, "big", &kept).await;
}

async fn a_removal_finishes_after_its_request_is_dropped(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "big", 3_000, UpdateStrategy::Rolling).await;
    let ctx = h.ctx.clone();
    let call = async move {
        let _ = DesiredLrps(&ctx).remove(&guid("big")).await;
    };
    drop_after(&h, call, |instances| instances.is_none()).await;
    wait_rows(&h, "big", &[]).await;
}
