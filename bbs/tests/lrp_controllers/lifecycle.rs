//! Listing, claiming and starting instances, fenced by the instance key; a standby refuses writes.

use super::*;

on_every_backend!(
    list_filters_rows_of_every_presence,
    claim_then_start_are_changes,
    claim_is_fenced_by_the_instance_key,
    start_accepts_any_key_until_running,
    standby_refuses_every_write_and_still_lists,
);

// ----------------------------------------------------------------------------------------------
// ActualLrps

async fn list_filters_rows_of_every_presence(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app-a", 2, UpdateStrategy::Rolling).await;
    desire(&h, "app-b", 1, UpdateStrategy::Rolling).await;
    let a0 = instance("a0", "cell-1");
    run_instance(&h, "app-a", 0, &a0).await;
    Evacuation(&h.ctx).evacuate_running(&lrp_key("app-a", 0), &a0, &start_info("10.0.0.1")).await.unwrap();

    let lrps = ActualLrps(&h.ctx);
    assert_eq!(lrps.list(&ActualLrpFilter::default()).await.unwrap().len(), 4);
    let by_guid =
        lrps.list(&ActualLrpFilter { process_guid: Some(guid("app-a")), ..Default::default() }).await.unwrap();
    let shape: Vec<(i32, Presence)> = by_guid.iter().map(|l| (l.key.index, l.presence)).collect();
    assert_eq!(shape, [(0, Presence::Ordinary), (0, Presence::Evacuating), (1, Presence::Ordinary)]);
    let by_cell = lrps
        .list(&ActualLrpFilter { cell_id: Some(CellId::parse("cell-1").unwrap()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_cell.len(), 1);
    assert_eq!(by_cell[0].presence, Presence::Evacuating);
    let by_index = lrps
        .list(&ActualLrpFilter { process_guid: Some(guid("app-a")), index: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_index.len(), 1);
}

async fn claim_then_start_are_changes(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(1));
    lrps.claim(&guid("app"), 0, &key).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let claimed = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!(claimed.state, ActualLrpState::Claimed);
    assert_eq!(claimed.instance_key.as_ref(), Some(&key));
    assert_eq!(claimed.since, h.ctx.now_ns());

    // Claiming again with the same key is a no-op.
    lrps.claim(&guid("app"), 0, &key).await.unwrap();
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap(), claimed);

    lrps.start(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let running = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!(running.state, ActualLrpState::Running);
    assert_eq!(running.net_info.as_ref().map(|n| n.address.as_str()), Some("10.0.0.1"));
    assert!(running.routable);
    assert_eq!(running.internal_routes, ["app.apps.internal"]);

    // The rep's periodic re-assert writes nothing and publishes nothing.
    lrps.start(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap();
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap(), running);
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn claim_is_fenced_by_the_instance_key(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (mine, theirs) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    lrps.claim(&guid("app"), 0, &mine).await.unwrap();
    let mut events = subscribe(&h);

    assert_eq!(code(lrps.claim(&guid("app"), 0, &theirs).await), ErrorCode::ActualLrpCannotBeClaimed);
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap().instance_key.as_ref(), Some(&mine));
    assert_eq!(code(lrps.claim(&guid("app"), 7, &mine).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(lrps.claim(&guid("nope"), 0, &mine).await), ErrorCode::ResourceNotFound);

    // A CRASHED row cannot be claimed.
    let victim = instance("ig-3", "cell-3");
    for _ in 0..3 {
        run_instance(&h, "app", 1, &victim).await;
        lrps.crash(&lrp_key("app", 1), &victim, "boom").await.unwrap();
    }
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Crashed);
    let mut after_crash = subscribe(&h);
    assert_eq!(code(lrps.claim(&guid("app"), 1, &victim).await), ErrorCode::ActualLrpCannotBeClaimed);
    assert!(kinds(&mut after_crash).await.is_empty());
}

async fn start_accepts_any_key_until_running(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (first, second) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    lrps.claim(&guid("app"), 0, &first).await.unwrap();

    // CLAIMED -> RUNNING does not check the key (bbs.md 3.1).
    let mut events = subscribe(&h);
    lrps.start(&lrp_key("app", 0), &second, &start_info("10.0.0.2")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let row = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!((row.state, row.instance_key.as_ref()), (ActualLrpState::Running, Some(&second)));

    // RUNNING by another key is refused.
    let result = lrps.start(&lrp_key("app", 0), &first, &start_info("10.0.0.1")).await;
    assert_eq!(code(result), ErrorCode::ActualLrpCannotBeStarted);
    assert!(kinds(&mut events).await.is_empty());

    // A start with no row recreates it RUNNING.
    let lost = instance("ig-9", "cell-9");
    lrps.start(&lrp_key("lost", 3), &lost, &start_info("10.0.0.9")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["created"]);
    let row = ordinary(&h, "lost", 3).await.unwrap();
    assert_eq!((row.state, row.instance_key.as_ref()), (ActualLrpState::Running, Some(&lost)));

    // An empty address is an invalid request.
    let result = lrps.start(&lrp_key("app", 0), &second, &start_info("")).await;
    assert_eq!(code(result), ErrorCode::InvalidRequest);
}

async fn standby_refuses_every_write_and_still_lists(backend: Backend) {
    let Some(h) = Harness::standby(backend).await else { return };
    let domain = DomainName::parse(DOMAIN).unwrap();
    h.db.store.create_unclaimed_actual_lrps(&guid("app"), &domain, &[0], h.ctx.now_ns()).await.unwrap();
    let (lrps, evac) = (ActualLrps(&h.ctx), Evacuation(&h.ctx));
    let (key, ikey, start) = (lrp_key("app", 0), instance("ig-1", "cell-1"), start_info("10.0.0.1"));
    let mut events = subscribe(&h);

    assert_eq!(lrps.list(&ActualLrpFilter::default()).await.unwrap().len(), 1);
    let err = lrps.claim(&guid("app"), 0, &ikey).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert!(err.to_string().contains("10.0.0.9:8889"), "names the leader: {err}");
    assert_eq!(code(lrps.start(&key, &ikey, &start).await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.crash(&key, &ikey, "x").await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.fail(&key, "x").await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.remove(&guid("app"), 0, None).await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.retire(&key).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_claimed(&key, &ikey).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_running(&key, &ikey, &start).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_stopped(&key, &ikey).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_crashed(&key, &ikey, "x").await), ErrorCode::Unavailable);
    assert_eq!(code(evac.remove_evacuating(&key, &ikey).await), ErrorCode::Unavailable);

    assert!(kinds(&mut events).await.is_empty());
    let row = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!((row.state, row.placement_error.as_str()), (ActualLrpState::Unclaimed, ""));
}
