//! The evacuation controller (bbs.md 4.2 "Evacuation"): running, claimed, stopped and crashed
//! instances of an evacuating cell, and the evacuating copy's removal.

use super::*;

on_every_backend!(
    evacuate_running_dances_until_the_replacement_runs,
    evacuate_running_drops_the_copy_once_the_desired_lrp_is_gone,
    evacuate_running_keeps_one_evacuating_copy_per_index,
    evacuate_running_turns_a_suspect_into_the_evacuating_copy,
    evacuate_running_recreate_replaces_one_instance_at_a_time,
    evacuate_claimed_unclaims_and_auctions,
    evacuate_stopped_removes_the_instance_row,
    evacuate_crashed_crashes_without_an_auction,
    remove_evacuating_needs_an_evacuating_row,
);

// ----------------------------------------------------------------------------------------------
// Evacuation

async fn evacuate_running_dances_until_the_replacement_runs(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let (lrps, evac) = (ActualLrps(&h.ctx), Evacuation(&h.ctx));
    let (old, new) = (instance("ig-old", "cell-draining"), instance("ig-new", "cell-2"));
    run_instance(&h, "app", 0, &old).await;
    let running = ordinary(&h, "app", 0).await.unwrap();
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(10));
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["changed", "created"]);
    let rows = index_rows(&h, "app", 0).await;
    let copy = rows.evacuating.clone().expect("an evacuating copy");
    assert_eq!((copy.state, copy.instance_key.as_ref()), (ActualLrpState::Running, Some(&old)));
    assert_eq!(copy.net_info, running.net_info);
    assert!(copy.routable);
    let replacement = rows.ordinary.clone().unwrap();
    assert_eq!((replacement.state, replacement.instance_key.as_ref()), (ActualLrpState::Unclaimed, None));
    assert_eq!(replacement.since, h.ctx.now_ns());
    let calls = h.auctioneer.wait_lrp_calls(1).await;
    assert_eq!((calls[0][0].process_guid.as_str(), calls[0][0].indices.as_slice()), ("app", &[0][..]));

    // Asking again while the replacement is pending: keep, nothing written, no new auction.
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(index_rows(&h, "app", 0).await, rows);

    lrps.claim(&guid("app"), 0, &new).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());

    // The replacement starts: the evacuating copy goes.
    lrps.start(&lrp_key("app", 0), &new, &start_info("10.0.0.2")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed", "removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.unwrap().instance_key.as_ref(), Some(&new));

    // Now the old container may go.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    settle().await;
    assert_eq!(h.auctioneer.lrp_calls().len(), 1);

    // No rows at all: drop the container.
    assert!(!evac.evacuate_running(&lrp_key("app", 4), &old, &start_info("10.0.0.1")).await.unwrap());
}

async fn evacuate_running_drops_the_copy_once_the_desired_lrp_is_gone(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (a, b) = (instance("ig-a", "cell-draining"), instance("ig-b", "cell-draining"));
    run_instance(&h, "app", 0, &a).await;
    run_instance(&h, "app", 1, &b).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    assert!(evac.evacuate_running(&lrp_key("app", 1), &b, &start_info("10.0.0.1")).await.unwrap());
    h.ctx.writer().unwrap().remove_desired_lrp(&guid("app")).await.unwrap();
    let mut events = subscribe(&h);

    // Desired LRP gone, ordinary row still there: the copy goes, the container too.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));

    // The ordinary row was deleted by the desired LRP's removal.
    ActualLrps(&h.ctx).remove(&guid("app"), 1, None).await.unwrap();
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_running(&lrp_key("app", 1), &b, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(index_rows(&h, "app", 1).await.is_empty());
}

async fn evacuate_running_keeps_one_evacuating_copy_per_index(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (stray, other, claimer) =
        (instance("ig-stray", "cell-draining"), instance("ig-other", "cell-draining-2"), instance("ig-new", "cell-2"));
    ActualLrps(&h.ctx).claim(&guid("app"), 0, &claimer).await.unwrap();
    let mut events = subscribe(&h);

    // An instance with no row gets an evacuating row while the ordinary is not running yet.
    assert!(evac.evacuate_running(&lrp_key("app", 0), &stray, &start_info("10.0.0.7")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["created"]);
    let copy = index_rows(&h, "app", 0).await.evacuating.unwrap();
    assert_eq!(copy.instance_key.as_ref(), Some(&stray));
    assert_eq!(copy.net_info.as_ref().map(|n| n.address.as_str()), Some("10.0.0.7"));

    // A report with new net info refreshes it.
    h.clock.advance(Duration::from_secs(10));
    assert!(evac.evacuate_running(&lrp_key("app", 0), &stray, &start_info("10.0.0.8")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let refreshed = index_rows(&h, "app", 0).await.evacuating.unwrap();
    assert_eq!(refreshed.net_info.as_ref().map(|n| n.address.as_str()), Some("10.0.0.8"));
    assert_eq!(refreshed.modification_tag.epoch, copy.modification_tag.epoch);
    assert_eq!(refreshed.modification_tag.index, copy.modification_tag.index + 1);

    // A second instance cannot take the slot.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &other, &start_info("10.0.0.9")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(index_rows(&h, "app", 0).await.evacuating.unwrap(), refreshed);
}

async fn evacuate_running_turns_a_suspect_into_the_evacuating_copy(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "app", 0, &key).await;
    h.ctx.writer().unwrap().suspect_and_replace(&guid("app"), 0, h.ctx.now_ns()).await.unwrap();
    let before = index_rows(&h, "app", 0).await;
    let mut events = subscribe(&h);

    assert!(Evacuation(&h.ctx).evacuate_running(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let after = index_rows(&h, "app", 0).await;
    assert!(after.suspect.is_none());
    let copy = after.evacuating.unwrap();
    assert_eq!((copy.state, copy.instance_key.as_ref()), (ActualLrpState::Running, Some(&key)));
    assert_eq!(after.ordinary, before.ordinary, "the replacement already exists");
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn evacuate_running_recreate_replaces_one_instance_at_a_time(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Recreate).await;
    let evac = Evacuation(&h.ctx);
    let (a0, a1, b0) =
        (instance("ig-a0", "cell-draining"), instance("ig-a1", "cell-draining"), instance("ig-b0", "cell-2"));
    run_instance(&h, "app", 0, &a0).await;
    run_instance(&h, "app", 1, &a1).await;
    let mut events = subscribe(&h);

    // Every instance runs: index 0 is unclaimed and auctioned, no evacuating copy is kept.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &a0, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed", "created"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));
    let calls = h.auctioneer.wait_lrp_calls(1).await;
    assert_eq!(calls[0][0].indices, [0]);

    // Index 0 is not running: index 1 must wait.
    assert!(evac.evacuate_running(&lrp_key("app", 1), &a1, &start_info("10.0.0.1")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Running);

    run_instance(&h, "app", 0, &b0).await;
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_running(&lrp_key("app", 1), &a1, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed", "created"]);
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Unclaimed);
    assert_eq!(h.auctioneer.wait_lrp_calls(2).await[1][0].indices, [1]);

    // A suspect is deleted rather than kept as an evacuating copy.
    desire(&h, "sus", 1, UpdateStrategy::Recreate).await;
    let s = instance("ig-s", "cell-draining");
    run_instance(&h, "sus", 0, &s).await;
    h.ctx.writer().unwrap().suspect_and_replace(&guid("sus"), 0, h.ctx.now_ns()).await.unwrap();
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_running(&lrp_key("sus", 0), &s, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "sus", 0).await;
    assert!(rows.suspect.is_none() && rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));
}

async fn evacuate_claimed_unclaims_and_auctions(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (claimed, old) = (instance("ig-1", "cell-draining"), instance("ig-old", "cell-draining"));
    ActualLrps(&h.ctx).claim(&guid("app"), 1, &claimed).await.unwrap();
    let mut events = subscribe(&h);

    assert!(!evac.evacuate_claimed(&lrp_key("app", 1), &claimed).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed", "created"]);
    let row = ordinary(&h, "app", 1).await.unwrap();
    assert_eq!((row.state, row.instance_key), (ActualLrpState::Unclaimed, None));
    let calls = h.auctioneer.wait_lrp_calls(1).await;
    assert_eq!(calls[0][0].indices, [1]);

    // No row carries the key.
    assert_eq!(code(evac.evacuate_claimed(&lrp_key("app", 1), &claimed).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(evac.evacuate_claimed(&lrp_key("app", 9), &claimed).await), ErrorCode::ResourceNotFound);

    // An evacuating copy is deleted, the ordinary row left alone, nothing auctioned.
    run_instance(&h, "app", 0, &old).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    h.auctioneer.wait_lrp_calls(2).await;
    let replacement = ordinary(&h, "app", 0).await;
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_claimed(&lrp_key("app", 0), &old).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary, replacement);
    settle().await;
    assert_eq!(h.auctioneer.lrp_calls().len(), 2);
}

async fn evacuate_stopped_removes_the_instance_row(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (a, b) = (instance("ig-a", "cell-draining"), instance("ig-b", "cell-draining"));
    run_instance(&h, "app", 0, &a).await;
    run_instance(&h, "app", 1, &b).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    let mut events = subscribe(&h);

    // The evacuating copy.
    assert!(!evac.evacuate_stopped(&lrp_key("app", 0), &a).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));

    // The ordinary row.
    assert!(!evac.evacuate_stopped(&lrp_key("app", 1), &b).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(index_rows(&h, "app", 1).await.is_empty());

    assert_eq!(code(evac.evacuate_stopped(&lrp_key("app", 1), &b).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(evac.evacuate_stopped(&lrp_key("app", 0), &b).await), ErrorCode::ResourceNotFound);
}

async fn evacuate_crashed_crashes_without_an_auction(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (a, b) = (instance("ig-a", "cell-draining"), instance("ig-b", "cell-draining"));
    run_instance(&h, "app", 0, &a).await;
    run_instance(&h, "app", 1, &b).await;
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(3));
    assert!(!evac.evacuate_crashed(&lrp_key("app", 1), &b, "exit status 137").await.unwrap());
    assert_eq!(kinds(&mut events).await, ["crashed", "removed", "created"]);
    let row = ordinary(&h, "app", 1).await.unwrap();
    assert_eq!((row.state, row.crash_count), (ActualLrpState::Unclaimed, 1));
    assert_eq!((row.crash_reason.as_str(), row.since), ("exit status 137", h.ctx.now_ns()));
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty(), "convergence re-auctions it");

    // The evacuating copy is deleted, whatever the reason.
    assert!(evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_crashed(&lrp_key("app", 0), &a, "exit status 1").await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.crash_count), Some(0));

    assert_eq!(code(evac.evacuate_crashed(&lrp_key("app", 0), &a, "x").await), ErrorCode::ResourceNotFound);
}

async fn remove_evacuating_needs_an_evacuating_row(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (old, new) = (instance("ig-old", "cell-draining"), instance("ig-new", "cell-2"));
    run_instance(&h, "app", 0, &old).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    ActualLrps(&h.ctx).claim(&guid("app"), 0, &new).await.unwrap();
    let mut events = subscribe(&h);

    // The ordinary row's key is not an evacuating row.
    assert_eq!(code(evac.remove_evacuating(&lrp_key("app", 0), &new).await), ErrorCode::ResourceNotFound);
    assert!(kinds(&mut events).await.is_empty());

    evac.remove_evacuating(&lrp_key("app", 0), &old).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.and_then(|o| o.instance_key), Some(new));

    assert_eq!(code(evac.remove_evacuating(&lrp_key("app", 0), &old).await), ErrorCode::ResourceNotFound);
}
