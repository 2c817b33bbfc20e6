//! The suspect presence (bbs.md 5.4): replacement, calls from the suspect instance, promotion.

use super::*;

/// bbs.md 3.4: the ordinary row becomes SUSPECT and a fresh UNCLAIMED row replaces it.
pub async fn suspect_and_replace_moves_the_row_and_inserts_a_replacement(db: &TestDb) {
    let original = running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let change = db.store.suspect_and_replace(&guid("web"), 0, NOW_NS + SEC).await.unwrap();
    let suspect = change.after.suspect.clone().unwrap();
    assert_eq!(suspect.presence, Presence::Suspect);
    assert_eq!(suspect.state, ActualLrpState::Running);
    assert_eq!(suspect.instance_key, original.instance_key);
    assert_eq!(suspect.net_info, original.net_info);
    assert_eq!(suspect.since, original.since);
    assert_eq!(suspect.modification_tag, original.modification_tag.incremented());
    let replacement = change.after.ordinary.clone().unwrap();
    assert_eq!(replacement.state, ActualLrpState::Unclaimed);
    assert_eq!(replacement.since, NOW_NS + SEC);
    assert_eq!(replacement.modification_tag.index, 0);
    assert_ne!(replacement.modification_tag.epoch, original.modification_tag.epoch);
    assert_eq!(rows(db, "web", 0).await, change.after);

    let err = db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::InvalidStateTransition, &["web", "index 0", "suspect"]);
    create(db, "idle", &[0]).await;
    let err = db.store.suspect_and_replace(&guid("idle"), 0, NOW_NS).await.unwrap_err();
    assert_refused(&err, ErrorCode::InvalidStateTransition, &["UNCLAIMED"]);
}

/// Claim and start from the suspect's instance are ignored; its crash deletes it.
pub async fn calls_from_the_suspect_instance_are_ignored_or_delete_it(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap();
    let before = rows(db, "web", 0).await;
    let k = ikey("i-1", "cell-1");
    let claim = db.store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS + SEC).await.unwrap();
    assert!(!claim.changed());
    let start = db.store.start_actual_lrp(&key("web", 0), &k, &start_info("10.0.0.1"), NOW_NS + SEC).await.unwrap();
    assert!(!start.changed());
    assert_eq!(rows(db, "web", 0).await, before);
    let crash = db.store.crash_actual_lrp(&key("web", 0), &k, "gone", &CrashPolicy::default(), NOW_NS).await.unwrap();
    assert!(!crash.value.restart_now);
    assert_eq!(crash.after.suspect, None);
    assert_eq!(crash.after.ordinary, before.ordinary, "the replacement is untouched");
    assert_eq!(rows(db, "web", 0).await, crash.after);
}

/// Promote: the replacement goes, the suspect row becomes ordinary with its identity.
pub async fn promote_deletes_the_replacement_and_restores_the_suspect(db: &TestDb) {
    let original = running(db, "web", "i-1", "cell-1", NOW_NS).await;
    db.store.suspect_and_replace(&guid("web"), 0, NOW_NS).await.unwrap();
    db.store.claim_actual_lrp(&guid("web"), 0, &ikey("i-2", "cell-2"), NOW_NS).await.unwrap();
    let change = db.store.promote_suspect(&guid("web"), 0, NOW_NS + SEC).await.unwrap();
    assert_eq!(change.after.suspect, None);
    let promoted = change.after.ordinary.clone().unwrap();
    assert_eq!(promoted.presence, Presence::Ordinary);
    assert_eq!(promoted.state, ActualLrpState::Running);
    assert_eq!(promoted.instance_key, original.instance_key);
    assert_eq!(promoted.since, original.since);
    assert_eq!(promoted.modification_tag.epoch, original.modification_tag.epoch);
    assert_eq!(promoted.modification_tag.index, original.modification_tag.index + 2);
    assert_eq!(rows(db, "web", 0).await, change.after);
    assert_eq!(count_rows(db).await, 1);
}
