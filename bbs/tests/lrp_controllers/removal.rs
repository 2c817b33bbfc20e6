//! Removing and retiring instances: fenced removal, and retirement with or without a live cell.

use super::*;

on_every_backend!(
    remove_is_fenced_by_the_instance_key,
    retire_deletes_rows_without_a_container,
    retire_stops_an_instance_on_a_live_cell,
    retire_deletes_an_instance_whose_cell_is_gone,
);

async fn remove_is_fenced_by_the_instance_key(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (key, other) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    run_instance(&h, "app", 0, &key).await;
    let mut events = subscribe(&h);

    assert_eq!(code(lrps.remove(&guid("app"), 0, Some(&other)).await), ErrorCode::ActualLrpCannotBeRemoved);
    assert_eq!(code(lrps.remove(&guid("app"), 1, Some(&key)).await), ErrorCode::ActualLrpCannotBeRemoved);
    assert!(kinds(&mut events).await.is_empty());

    lrps.remove(&guid("app"), 0, Some(&key)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 0).await.is_none());
    assert_eq!(code(lrps.remove(&guid("app"), 0, Some(&key)).await), ErrorCode::ResourceNotFound);

    // Without a key, whatever the state.
    lrps.remove(&guid("app"), 1, None).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 1).await.is_none());
}

async fn retire_deletes_rows_without_a_container(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");
    for _ in 0..3 {
        run_instance(&h, "app", 1, &key).await;
        lrps.crash(&lrp_key("app", 1), &key, "boom").await.unwrap();
    }
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Crashed);
    let mut events = subscribe(&h);

    lrps.retire(&lrp_key("app", 0)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 0).await.is_none());
    lrps.retire(&lrp_key("app", 1)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 1).await.is_none());

    assert_eq!(code(lrps.retire(&lrp_key("app", 0)).await), ErrorCode::ResourceNotFound);
    // The desired LRP stays: convergence refills the index.
    assert!(h.db.store.scheduling_info(&guid("app")).await.is_ok());
    settle().await;
    assert!(h.reps.calls().is_empty());
}

async fn retire_stops_an_instance_on_a_live_cell(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    live_cell(&h, "cell-1", "10.0.1.1:1801").await;
    let lrps = ActualLrps(&h.ctx);
    let (running, claimed) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-1"));
    run_instance(&h, "app", 0, &running).await;
    lrps.claim(&guid("app"), 1, &claimed).await.unwrap();
    let before = (ordinary(&h, "app", 0).await, ordinary(&h, "app", 1).await);
    let mut events = subscribe(&h);

    lrps.retire(&lrp_key("app", 0)).await.unwrap();
    lrps.retire(&lrp_key("app", 1)).await.unwrap();
    let mut calls = h.reps.wait_calls(2).await;
    calls.sort_by_key(|c| match c {
        RepCall::Stop { index, .. } => *index,
        _ => -1,
    });
    assert_eq!(
        calls,
        [
            RepCall::Stop {
                address: "10.0.1.1:1801".into(),
                process_guid: "app".into(),
                instance_guid: "ig-1".into(),
                index: 0
            },
            RepCall::Stop {
                address: "10.0.1.1:1801".into(),
                process_guid: "app".into(),
                instance_guid: "ig-2".into(),
                index: 1
            },
        ]
    );
    // The rep removes the rows once it stopped the instances.
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!((ordinary(&h, "app", 0).await, ordinary(&h, "app", 1).await), before);
}

async fn retire_deletes_an_instance_whose_cell_is_gone(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    live_cell(&h, "cell-live", "10.0.1.1:1801").await;
    let key = instance("ig-1", "cell-gone");
    run_instance(&h, "app", 0, &key).await;
    let mut events = subscribe(&h);

    ActualLrps(&h.ctx).retire(&lrp_key("app", 0)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 0).await.is_none());
    settle().await;
    assert!(h.reps.calls().is_empty());
}
