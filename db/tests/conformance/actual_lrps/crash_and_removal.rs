//! Crashes (bbs.md 3.2), failed placements, removal, unclaiming and deleting one presence.

use super::*;

/// bbs.md 3.2 through the store: 1st and 2nd crash restart at once, the 3rd leaves CRASHED.
pub async fn crash_restarts_twice_then_leaves_the_row_crashed(db: &TestDb) {
    let policy = CrashPolicy::default();
    let k = ikey("i-1", "cell-1");
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let first = db.store.crash_actual_lrp(&key("web", 0), &k, "exit 1", &policy, NOW_NS + SEC).await.unwrap();
    assert!(first.value.restart_now);
    assert_eq!(first.value.crash_count, 1);
    let row = first.after.ordinary.unwrap();
    assert_eq!(row.state, ActualLrpState::Unclaimed);
    assert_eq!(row.instance_key, None);
    assert_eq!(row.net_info, None);
    assert_eq!(row.crash_count, 1);
    assert_eq!(row.crash_reason, "exit 1");
    assert_eq!(row.since, NOW_NS + SEC);

    running(db, "web", "i-2", "cell-1", NOW_NS + 2 * SEC).await;
    let second = db
        .store
        .crash_actual_lrp(&key("web", 0), &ikey("i-2", "cell-1"), "exit 2", &policy, NOW_NS + 3 * SEC)
        .await
        .unwrap();
    assert!(second.value.restart_now);
    assert_eq!(second.value.crash_count, 2);
    assert_eq!(second.after.ordinary.unwrap().state, ActualLrpState::Unclaimed);

    running(db, "web", "i-3", "cell-1", NOW_NS + 4 * SEC).await;
    let third = db
        .store
        .crash_actual_lrp(&key("web", 0), &ikey("i-3", "cell-1"), "exit 3", &policy, NOW_NS + 5 * SEC)
        .await
        .unwrap();
    assert!(!third.value.restart_now);
    assert_eq!(third.value.crash_count, 3);
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.state, ActualLrpState::Crashed);
    assert_eq!(row.crash_count, 3);
    assert_eq!(row.crash_reason, "exit 3");
    assert_eq!(row.instance_key, None);
    // A CRASHED row refuses claims (it has no key to match).
    let err = db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-4", "cell-1"), NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeClaimed, &["CRASHED"]);
}

/// A crash after more than 5 minutes RUNNING counts from 1 again.
pub async fn crash_after_five_minutes_running_resets_the_count(db: &TestDb) {
    let policy = CrashPolicy::default();
    for (i, at) in [NOW_NS, NOW_NS + 2 * SEC, NOW_NS + 4 * SEC].into_iter().enumerate() {
        let instance = format!("i-{i}");
        running(db, "web", &instance, "cell-1", at).await;
        db.store.crash_actual_lrp(&key("web", 0), &ikey(&instance, "cell-1"), "boom", &policy, at + SEC).await.unwrap();
    }
    assert_eq!(ordinary(db, "web", 0).await.crash_count, 3);
    // Convergence restarts the CRASHED row; it runs for 5 minutes and a bit, then crashes.
    db.store.unclaim_actual_lrp(&key("web", 0), NOW_NS + 60 * SEC).await.unwrap();
    let started = NOW_NS + 61 * SEC;
    running(db, "web", "i-9", "cell-1", started).await;
    let crash = db
        .store
        .crash_actual_lrp(&key("web", 0), &ikey("i-9", "cell-1"), "late", &policy, started + 5 * 60 * SEC + 1)
        .await
        .unwrap();
    assert_eq!(crash.value.crash_count, 1);
    assert!(crash.value.restart_now);
    assert_eq!(ordinary(db, "web", 0).await.state, ActualLrpState::Unclaimed);
}

/// Fencing on crash: another key, or a row without a key, refuses.
pub async fn crash_by_another_key_or_of_an_unclaimed_row_is_refused(db: &TestDb) {
    let policy = CrashPolicy::default();
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let before = ordinary(db, "web", 0).await;
    let err =
        db.store.crash_actual_lrp(&key("web", 0), &ikey("i-2", "cell-1"), "x", &policy, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeCrashed, &["web", "index 0", "RUNNING", "i-1", "i-2"]);
    assert_eq!(ordinary(db, "web", 0).await, before);
    create(db, "idle", &[0]).await;
    let err =
        db.store.crash_actual_lrp(&key("idle", 0), &ikey("i-1", "cell-1"), "x", &policy, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeCrashed, &["UNCLAIMED"]);
}

/// Reasons longer than 1024 characters are cut with a "(truncated)" suffix.
pub async fn crash_reasons_and_placement_errors_are_truncated(db: &TestDb) {
    let long = "é".repeat(3000);
    create(db, "pending", &[0]).await;
    db.store.fail_actual_lrp(&key("pending", 0), &long, NOW_NS).await.unwrap();
    let error = ordinary(db, "pending", 0).await.placement_error;
    assert_eq!(error.chars().count(), 1024);
    assert!(error.ends_with("(truncated)"));
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store
        .crash_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &long, &CrashPolicy::default(), NOW_NS)
        .await
        .unwrap();
    let reason = ordinary(db, "web", 0).await.crash_reason;
    assert_eq!(reason.chars().count(), 1024);
    assert!(reason.ends_with("(truncated)"));
}

/// FailActualLRP: UNCLAIMED only; stores the error and bumps since.
pub async fn fail_applies_only_to_unclaimed_rows(db: &TestDb) {
    create(db, "web", &[0]).await;
    let change = db.store.fail_actual_lrp(&key("web", 0), "insufficient resources", NOW_NS + 7).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert_eq!(after.state, ActualLrpState::Unclaimed);
    assert_eq!(after.placement_error, "insufficient resources");
    assert_eq!(after.since, NOW_NS + 7);
    assert_eq!(after.modification_tag.index, 1);
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-1", "cell-1"), NOW_NS).await.unwrap();
    let err = db.store.fail_actual_lrp(&key("web", 0), "late", NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeFailed, &["web", "index 0", "CLAIMED"]);
}

/// RemoveActualLRP fences on the instance key when one is given.
pub async fn remove_checks_the_instance_key_when_given(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let err = db.store.remove_actual_lrp(&guid("web"), 0, Some(&ikey("i-2", "cell-1"))).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeRemoved, &["web", "index 0", "RUNNING"]);
    let change = db.store.remove_actual_lrp(&guid("web"), 0, Some(&ikey("i-1", "cell-1"))).await.unwrap();
    assert!(change.before.ordinary.is_some());
    assert!(change.after.is_empty());
    assert!(rows(db, "web", 0).await.is_empty());

    create(db, "idle", &[0]).await;
    let err = db.store.remove_actual_lrp(&guid("idle"), 0, Some(&ikey("i-1", "cell-1"))).await.unwrap_err();
    assert_refused(&err, ErrorCode::ActualLrpCannotBeRemoved, &["UNCLAIMED"]);
    db.store.remove_actual_lrp(&guid("idle"), 0, None).await.unwrap();
    assert_eq!(count_rows(db).await, 0);
}

/// Internal unclaim: back to UNCLAIMED without key or net info; the crash count stays.
pub async fn unclaim_clears_the_instance_and_keeps_the_crash_count(db: &TestDb) {
    let policy = CrashPolicy::default();
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store.crash_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), "x", &policy, NOW_NS).await.unwrap();
    running(db, "web", "i-2", "cell-1", NOW_NS).await;
    let before = ordinary(db, "web", 0).await;
    let change = db.store.unclaim_actual_lrp(&key("web", 0), NOW_NS + SEC).await.unwrap();
    let after = change.after.ordinary.unwrap();
    assert_eq!(after.state, ActualLrpState::Unclaimed);
    assert_eq!(after.instance_key, None);
    assert_eq!(after.net_info, None);
    assert_eq!(after.crash_count, 1);
    assert_eq!(after.since, NOW_NS + SEC);
    assert_eq!(after.modification_tag, before.modification_tag.incremented());
    let again = db.store.unclaim_actual_lrp(&key("web", 0), NOW_NS + 2 * SEC).await.unwrap();
    assert!(!again.changed(), "an UNCLAIMED row is left as it is");
}

/// delete_actual_lrp removes exactly the named presence.
pub async fn delete_removes_one_presence(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    add_evacuating(db, "web").await;
    let change = db.store.delete_actual_lrp(&guid("web"), 0, Presence::Evacuating).await.unwrap();
    assert!(change.before.evacuating.is_some());
    assert_eq!(change.after.evacuating, None);
    assert_eq!(change.after.ordinary, change.before.ordinary);
    let err = db.store.delete_actual_lrp(&guid("web"), 0, Presence::Evacuating).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { key, .. } if key.contains("evacuating")), "{err:?}");
    db.store.delete_actual_lrp(&guid("web"), 0, Presence::Ordinary).await.unwrap();
    assert_eq!(count_rows(db).await, 0);
}
