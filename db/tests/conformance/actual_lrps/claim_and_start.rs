//! Claiming and starting (bbs.md 3.1): fencing by the instance key, the RUNNING fields, re-asserts.

use super::*;

/// UNCLAIMED → CLAIMED: key set, placement error and net info cleared, since and tag bumped.
pub async fn claim_takes_an_unclaimed_row_and_clears_placement_error(db: &TestDb) {
    create(db, "web", &[0]).await;
    db.store.fail_actual_lrp(&key("web", 0), "no cell has room", NOW_NS + SEC).await.unwrap();
    let change = db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS + 2 * SEC).await.unwrap();
    let before = change.before.ordinary.clone().unwrap();
    let after = change.after.ordinary.clone().unwrap();
    assert!(change.changed());
    assert_eq!(before.placement_error, "no cell has room");
    assert_eq!(after.state, ActualLrpState::Claimed);
    assert_eq!(after.instance_key, Some(ikey("i-1", "cell-1")));
    assert_eq!(after.placement_error, "");
    assert_eq!(after.net_info, None);
    assert_eq!(after.since, NOW_NS + 2 * SEC);
    assert_eq!(after.modification_tag, before.modification_tag.incremented());
    assert_eq!(change.after, rows(db, "web", 0).await, "after is what is stored");
}

/// Re-claiming with the same key succeeds without a write.
pub async fn claim_by_the_same_key_writes_nothing(db: &TestDb) {
    create(db, "web", &[0]).await;
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let stored = ordinary(db, "web", 0).await;
    let again = db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS + SEC).await.unwrap();
    assert!(!again.changed());
    assert_eq!(ordinary(db, "web", 0).await, stored);
    assert_eq!(stored.since, NOW_NS);
}

/// Fencing: a claim by another instance key is refused, naming the row.
pub async fn claim_by_another_key_is_refused(db: &TestDb) {
    create(db, "web", &[3]).await;
    db.store.claim_actual_lrp(&guid("web"), 3, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let err = db.store.claim_actual_lrp(&guid("web"), 3, &ikey("i-2", "cell-2"), NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeClaimed, &["web", "index 3", "CLAIMED", "i-1", "i-2"]);
    running(db, "run", "i-1", "cell-1", NOW_NS).await;
    let err = db.store.claim_actual_lrp(&guid("run"), 0, &ikey("i-9", "cell-1"), NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeClaimed, &["RUNNING"]);
    // Claim by the same key of a RUNNING row goes back to CLAIMED (bbs.md 3.1).
    let change = db.store.claim_actual_lrp(&guid("run"), 0, &ikey("i-1", "cell-1"), NOW_NS + SEC).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert_eq!(after.state, ActualLrpState::Claimed);
    assert_eq!(after.net_info, None);
}

/// Every lifecycle call on an index without the row it needs is NotFound.
pub async fn lifecycle_calls_on_a_missing_index_are_not_found(db: &TestDb) {
    let s = &db.store;
    let k = key("ghost", 2);
    let i = ikey("i-1", "cell-1");
    let errors = vec![
        s.claim_actual_lrp(&guid("ghost"), 2, &i, NOW_NS).await.unwrap_err(),
        s.crash_actual_lrp(&k, &i, "boom", &CrashPolicy::default(), NOW_NS).await.unwrap_err(),
        s.fail_actual_lrp(&k, "no room", NOW_NS).await.unwrap_err(),
        s.remove_actual_lrp(&guid("ghost"), 2, None).await.unwrap_err(),
        s.unclaim_actual_lrp(&k, NOW_NS).await.unwrap_err(),
        s.delete_actual_lrp(&guid("ghost"), 2, Presence::Ordinary).await.unwrap_err(),
        s.suspect_and_replace(&guid("ghost"), 2, NOW_NS).await.unwrap_err(),
        s.promote_suspect(&guid("ghost"), 2, NOW_NS).await.unwrap_err(),
    ];
    for err in errors {
        assert!(
            matches!(&err, Error::NotFound { what: "actual lrp", key } if key.contains("ghost index 2")),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::ResourceNotFound);
    }
    let err = s.promote_suspect(&guid("ghost"), 2, NOW_NS).await.unwrap_err();
    assert!(err.to_string().contains("suspect"), "{err}");
    assert_eq!(count_rows(db).await, 0);
}

/// CLAIMED → RUNNING stores net info, routes, tags, routable and zone; clears placement error.
pub async fn start_stores_every_running_field(db: &TestDb) {
    create(db, "web", &[0]).await;
    let k = ikey("i-1", "cell-1");
    db.store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS).await.unwrap();
    let info = start_info("10.0.0.5");
    let change = db.store.start_actual_lrp(&key("web", 0), &k, &info, NOW_NS + SEC).await.unwrap();
    let after = change.after.ordinary.clone().unwrap();
    assert_eq!(after.state, ActualLrpState::Running);
    assert_eq!(after.instance_key, Some(k));
    assert_eq!(after.net_info, Some(info.net_info.clone()));
    assert_eq!(after.internal_routes, info.internal_routes);
    assert_eq!(after.metric_tags, info.metric_tags);
    assert!(after.routable);
    assert_eq!(after.availability_zone, "z1");
    assert_eq!(after.since, NOW_NS + SEC);
    assert_eq!(after.modification_tag.index, 2);
    assert_eq!(ordinary(db, "web", 0).await, after);
    // UNCLAIMED → RUNNING directly (any key).
    create(db, "direct", &[0]).await;
    let change = db.store.start_actual_lrp(&key("direct", 0), &ikey("i-7", "cell-7"), &info, NOW_NS).await.unwrap();
    assert_eq!(change.after.ordinary.unwrap().state, ActualLrpState::Running);
}

/// bbs.md 3.1: CLAIMED → RUNNING accepts any key; RUNNING under another key refuses.
pub async fn start_by_another_key_is_allowed_on_claimed_but_refused_on_running(db: &TestDb) {
    create(db, "web", &[0]).await;
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let change = db
        .store
        .start_actual_lrp(&key("web", 0), &ikey("i-2", "cell-2"), &start_info("10.0.0.2"), NOW_NS)
        .await
        .unwrap();
    assert_eq!(change.after.ordinary.unwrap().instance_key, Some(ikey("i-2", "cell-2")));
    let err = db
        .store
        .start_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &start_info("10.0.0.1"), NOW_NS)
        .await
        .unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeStarted, &["web", "index 0", "RUNNING", "i-2", "i-1"]);
    assert_eq!(ordinary(db, "web", 0).await.instance_key, Some(ikey("i-2", "cell-2")));
}

/// With no ordinary row (purged BBS), start creates a RUNNING row with a fresh epoch.
pub async fn start_without_an_ordinary_row_creates_a_running_row(db: &TestDb) {
    let k = ikey("i-1", "cell-1");
    let change = db.store.start_actual_lrp(&key("lost", 4), &k, &start_info("10.0.0.4"), NOW_NS).await.unwrap();
    assert!(change.before.is_empty());
    let after = change.after.ordinary.clone().unwrap();
    assert_eq!(after.key, key("lost", 4));
    assert_eq!(after.state, ActualLrpState::Running);
    assert_eq!(after.instance_key, Some(k));
    assert_eq!(after.since, NOW_NS);
    assert_eq!(after.modification_tag.index, 0);
    assert!(!after.modification_tag.epoch.is_empty());
    assert_eq!(ordinary(db, "lost", 4).await, after);
}

/// The rep's re-assert writes nothing; a changed field (routable flip) is a write.
pub async fn restarting_with_equal_fields_writes_nothing_and_a_changed_field_writes(db: &TestDb) {
    let first = running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let k = ikey("i-1", "cell-1");
    let again =
        db.store.start_actual_lrp(&key("web", 0), &k, &start_info("10.0.0.1"), NOW_NS + 30 * SEC).await.unwrap();
    assert!(!again.changed());
    assert_eq!(ordinary(db, "web", 0).await, first);
    let mut flipped = start_info("10.0.0.1");
    flipped.routable = false;
    let change = db.store.start_actual_lrp(&key("web", 0), &k, &flipped, NOW_NS + 60 * SEC).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert!(!after.routable);
    assert_eq!(after.since, NOW_NS + 60 * SEC);
    assert_eq!(after.modification_tag, first.modification_tag.incremented());
}

/// When the ordinary row becomes RUNNING, the evacuating and suspect copies go, in one call.
pub async fn start_deletes_the_evacuating_and_suspect_rows_of_the_index(db: &TestDb) {
    running(db, "web", "i-old", "cell-old", NOW_NS).await;
    add_evacuating(db, "web").await;
    db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap();
    let before = rows(db, "web", 0).await;
    assert!(before.evacuating.is_some() && before.suspect.is_some());
    assert_eq!(before.ordinary.as_ref().unwrap().state, ActualLrpState::Unclaimed);
    let k = ikey("i-new", "cell-new");
    db.store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS + SEC).await.unwrap();
    let change =
        db.store.start_actual_lrp(&key("web", 0), &k, &start_info("10.0.0.9"), NOW_NS + 2 * SEC).await.unwrap();
    assert!(change.before.evacuating.is_some() && change.before.suspect.is_some());
    assert_eq!(change.after.evacuating, None);
    assert_eq!(change.after.suspect, None);
    let stored = rows(db, "web", 0).await;
    assert_eq!(stored, change.after);
    assert_eq!(stored.ordinary.unwrap().state, ActualLrpState::Running);
    assert_eq!(count_rows(db).await, 1);
}

/// RUNNING requires an address: refused as invalid, and the row is unchanged.
pub async fn start_with_an_empty_address_is_invalid_and_writes_nothing(db: &TestDb) {
    create(db, "web", &[0]).await;
    let before = ordinary(db, "web", 0).await;
    let err =
        db.store.start_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &start_info(""), NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert!(err.to_string().contains("address"), "{err}");
    assert_eq!(ordinary(db, "web", 0).await, before);
}
