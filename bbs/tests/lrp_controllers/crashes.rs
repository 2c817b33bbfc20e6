//! Crashes (restart at once, then back off; the suspect copy) and failed placements.

use super::*;

on_every_backend!(
    crash_restarts_twice_at_once_then_backs_off,
    crash_is_refused_without_a_live_instance,
    crash_restart_without_a_desired_lrp_requests_no_auction,
    suspect_claim_and_start_are_ignored_and_its_crash_deletes_it,
    fail_records_the_placement_error_and_tolerates_missing_rows,
);

async fn crash_restarts_twice_at_once_then_backs_off(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");

    for crash in 1..=2 {
        run_instance(&h, "app", 1, &key).await;
        let mut events = subscribe(&h);
        h.clock.advance(Duration::from_secs(5));
        lrps.crash(&lrp_key("app", 1), &key, "exit status 1").await.unwrap();
        assert_eq!(kinds(&mut events).await, ["crashed", "removed", "created"], "crash {crash}");
        let row = ordinary(&h, "app", 1).await.unwrap();
        assert_eq!(row.state, ActualLrpState::Unclaimed, "crash {crash}");
        assert_eq!(row.crash_count, crash);
        assert_eq!(row.crash_reason, "exit status 1");
        assert_eq!(row.instance_key, None);
        assert_eq!(row.since, h.ctx.now_ns());
        let calls = h.auctioneer.wait_lrp_calls(crash as usize).await;
        let request = &calls[crash as usize - 1][0];
        assert_eq!((request.process_guid.as_str(), request.indices.as_slice()), ("app", &[1][..]));
        assert_eq!((request.memory_mb, request.disk_mb), (256, 1024));
        assert_eq!(request.placement_tags, ["zone-a"]);
    }

    run_instance(&h, "app", 1, &key).await;
    let mut events = subscribe(&h);
    lrps.crash(&lrp_key("app", 1), &key, "exit status 2").await.unwrap();
    assert_eq!(kinds(&mut events).await, ["crashed", "changed"]);
    let row = ordinary(&h, "app", 1).await.unwrap();
    assert_eq!((row.state, row.crash_count), (ActualLrpState::Crashed, 3));
    settle().await;
    assert_eq!(h.auctioneer.lrp_calls().len(), 2, "the third crash waits for convergence");
}

async fn crash_is_refused_without_a_live_instance(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (key, other) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    let mut events = subscribe(&h);

    assert_eq!(code(lrps.crash(&lrp_key("app", 0), &key, "x").await), ErrorCode::ActualLrpCannotBeCrashed);
    run_instance(&h, "app", 0, &key).await;
    let _ = kinds(&mut events).await;
    assert_eq!(code(lrps.crash(&lrp_key("app", 0), &other, "x").await), ErrorCode::ActualLrpCannotBeCrashed);
    assert_eq!(code(lrps.crash(&lrp_key("app", 5), &key, "x").await), ErrorCode::ResourceNotFound);
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap().state, ActualLrpState::Running);
}

async fn crash_restart_without_a_desired_lrp_requests_no_auction(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let store = h.ctx.writer().unwrap();
    let domain = DomainName::parse(DOMAIN).unwrap();
    store.create_unclaimed_actual_lrps(&guid("orphan"), &domain, &[0], h.ctx.now_ns()).await.unwrap();
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "orphan", 0, &key).await;

    ActualLrps(&h.ctx).crash(&lrp_key("orphan", 0), &key, "oom").await.unwrap();
    let row = ordinary(&h, "orphan", 0).await.unwrap();
    assert_eq!((row.state, row.crash_count), (ActualLrpState::Unclaimed, 1));
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn suspect_claim_and_start_are_ignored_and_its_crash_deletes_it(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "app", 0, &key).await;
    h.ctx.writer().unwrap().suspect_and_replace(&guid("app"), 0, h.ctx.now_ns()).await.unwrap();
    let before = index_rows(&h, "app", 0).await;
    assert_eq!(before.suspect.as_ref().map(|s| s.state), Some(ActualLrpState::Running));
    let mut events = subscribe(&h);

    lrps.claim(&guid("app"), 0, &key).await.unwrap();
    lrps.start(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap();
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(index_rows(&h, "app", 0).await, before);

    lrps.crash(&lrp_key("app", 0), &key, "gone").await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let after = index_rows(&h, "app", 0).await;
    assert!(after.suspect.is_none());
    assert_eq!(after.ordinary, before.ordinary, "the replacement is untouched");
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn fail_records_the_placement_error_and_tolerates_missing_rows(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(30));
    lrps.fail(&lrp_key("app", 0), "insufficient resources: memory").await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let row = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!(row.placement_error, "insufficient resources: memory");
    assert_eq!((row.state, row.since), (ActualLrpState::Unclaimed, h.ctx.now_ns()));

    lrps.fail(&lrp_key("app", 9), "whatever").await.unwrap();
    lrps.fail(&lrp_key("gone", 0), "whatever").await.unwrap();
    assert!(kinds(&mut events).await.is_empty());

    lrps.claim(&guid("app"), 1, &instance("ig-1", "cell-1")).await.unwrap();
    let _ = kinds(&mut events).await;
    assert_eq!(code(lrps.fail(&lrp_key("app", 1), "late").await), ErrorCode::ActualLrpCannotBeFailed);
    assert!(kinds(&mut events).await.is_empty());
}
