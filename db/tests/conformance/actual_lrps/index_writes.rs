//! Writing one index's rows: only the differences, rollback on errors, and concurrent callers.

use super::*;

/// Unchanged rows are not written; changed ones get index + 1; new ones a fresh epoch.
pub async fn modify_index_writes_only_differences(db: &TestDb) {
    running(db, "web", "i-1", "cell-1", NOW_NS).await;
    let noop = db.store.modify_index("test noop", &guid("web"), 0, |_| Ok(42)).await.unwrap();
    assert_eq!(noop.value, 42);
    assert_eq!(noop.before, noop.after);
    let original = noop.before.ordinary.clone().unwrap();
    let change = db
        .store
        .modify_index("test change", &guid("web"), 0, |rows| {
            let ordinary = rows.ordinary.as_mut().unwrap();
            ordinary.availability_zone = "z2".into();
            let copy = ordinary.clone();
            rows.evacuating = Some(ActualLrp { modification_tag: ModificationTag::default(), ..copy });
            Ok(())
        })
        .await
        .unwrap();
    let ordinary_after = change.after.ordinary.clone().unwrap();
    assert_eq!(ordinary_after.availability_zone, "z2");
    assert_eq!(ordinary_after.modification_tag, original.modification_tag.incremented());
    let evacuating = change.after.evacuating.clone().unwrap();
    assert_eq!(evacuating.presence, Presence::Evacuating, "the slot sets the presence");
    assert_eq!(evacuating.modification_tag.index, 0);
    assert_ne!(evacuating.modification_tag.epoch, original.modification_tag.epoch);
    assert_eq!(rows(db, "web", 0).await, change.after);
    // Touching only the evacuating row leaves the ordinary row's tag alone.
    let change = db
        .store
        .modify_index("test evacuating only", &guid("web"), 0, |rows| {
            rows.evacuating.as_mut().unwrap().availability_zone = "z3".into();
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(change.after.ordinary, change.before.ordinary);
    assert_eq!(change.after.evacuating.unwrap().modification_tag.index, 1);
}

/// Callback errors are returned as they are and roll back; invalid rows are refused.
pub async fn modify_index_rolls_back_on_errors_and_refuses_bad_rows(db: &TestDb) {
    create(db, "web", &[0]).await;
    let before = rows(db, "web", 0).await;
    let err = db
        .store
        .modify_index("test error", &guid("web"), 0, |rows| -> db::Result<()> {
            rows.ordinary = None;
            Err(Error::refused(ErrorCode::ResourceConflict, "changed my mind"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Refused { code: ErrorCode::ResourceConflict, message } if message == "changed my mind")
    );
    assert_eq!(rows(db, "web", 0).await, before);
    // An UNCLAIMED suspect cannot exist (bbs.md 2.2).
    let err = db
        .store
        .modify_index("test bad presence", &guid("web"), 0, |rows| {
            rows.suspect = rows.ordinary.clone();
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    // A row must stay in its index.
    let err = db
        .store
        .modify_index("test bad key", &guid("web"), 0, |rows| {
            rows.ordinary.as_mut().unwrap().key.index = 1;
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(rows(db, "web", 0).await, before);
    assert!(rows(db, "web", 1).await.is_empty());
}

/// Eight concurrent FailActualLRP on one row: every write lands (no lost update).
pub async fn concurrent_fails_on_one_row_lose_no_update(db: &TestDb) {
    create(db, "web", &[0]).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(
                async move { store.fail_actual_lrp(&key("web", 0), &format!("attempt {i}"), NOW_NS + i).await },
            )
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.modification_tag.index, 8);
    assert!(row.placement_error.starts_with("attempt "));
}

/// Eight concurrent claims with different keys: exactly one wins, the rest are refused.
pub async fn concurrent_claims_with_different_keys_let_exactly_one_win(db: &TestDb) {
    create(db, "web", &[0]).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let k = ikey(&format!("i-{i}"), &format!("cell-{i}"));
                (k.clone(), store.claim_actual_lrp(&guid("web"), 0, &k, NOW_NS).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (k, outcome) = task.await.unwrap();
        match outcome {
            Ok(_) => winners.push(k),
            Err(err) => assert_eq!(err.code(), ErrorCode::ActualLrpCannotBeClaimed, "{err}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.instance_key.as_ref(), winners.first());
    assert_eq!(row.modification_tag.index, 1);
}

/// Concurrent starts that each create the missing row: one insert wins, the others retry and
/// find it (no lock covers a row that does not exist yet).
pub async fn concurrent_starts_of_a_missing_row_create_it_once(db: &TestDb) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store.start_actual_lrp(&key("web", 0), &ikey("i-1", "cell-1"), &start_info("10.0.0.1"), NOW_NS).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let row = ordinary(db, "web", 0).await;
    assert_eq!(row.state, ActualLrpState::Running);
    assert_eq!(row.modification_tag.index, 0);
    assert_eq!(count_rows(db).await, 1);
}
