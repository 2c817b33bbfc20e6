//! Encryption at rest (bbs.md 5.3): run info and task definitions reach the database sealed,
//! a key rotation re-seals every row (also across a restart halfway), and rows under a key the
//! store does not have are reported without breaking listings.

use db::sql::desired_lrps::DesiredLrpFilter;
use db::sql::encryption::SealedTable;
use db::sql::tasks::TaskFilter;
use db::testing::inspect::{dump, holds};
use db::testing::{TEST_KEY_LABEL, TestDb, test_keyring};
use db::{Backend, Error, Keyring, Store, StoreOptions};
use proto::models::{DesiredLrp, DomainName, ProcessGuid, TaskGuid};
use proto::pb::models::v1 as pb;

use super::NOW_NS;
use super::desired_lrps::desired;

macro_rules! encryption_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            encryption,
            [
                secrets_never_reach_the_database_in_the_clear,
                a_rotation_reseals_every_row_and_resumes_after_a_restart,
                rows_under_an_unknown_key_are_reported_and_do_not_break_listings,
            ]
        );
    };
}

/// A desired LRP whose environment and image password hold `secret`.
fn lrp_with_secret(guid: &str, secret: &str) -> DesiredLrp {
    let mut lrp = desired(guid, "secrets", 1);
    let mut run_info = lrp.run_info.clone().into_pb();
    run_info.environment_variables.push(pb::EnvironmentVariable { name: "DB_PASSWORD".into(), value: secret.into() });
    run_info.image_username = "user".into();
    run_info.image_password = secret.into();
    lrp.run_info = proto::convert::run_info_from_pb(run_info).unwrap();
    lrp
}

/// Desires a task whose environment and run action hold `secret`.
async fn desire_task_with_secret(store: &Store, guid: &str, secret: &str) {
    let definition = db::testing::fixtures::task_definition(|d| {
        d.environment_variables.push(pb::EnvironmentVariable { name: "API_TOKEN".into(), value: secret.into() });
        if let Some(pb::action::Action::RunAction(run)) = d.action.as_mut().and_then(|a| a.action.as_mut()) {
            run.args.push(format!("--token={secret}"));
        }
    });
    let domain = DomainName::parse("secrets").unwrap();
    store.desire_task(&TaskGuid::parse(guid).unwrap(), &domain, &definition, NOW_NS).await.unwrap();
}

/// A second store on the test database with `keys`.
async fn open(db: &TestDb, keys: Keyring) -> Store {
    Store::connect(&db.url, StoreOptions { keys, ..StoreOptions::default() }).await.unwrap()
}

/// The secret of a desired LRP (env, image password) and of a task (env, action) is nowhere in
/// the database: not in SQLite's file or log, not in any column on the servers. The same search
/// does find a marker a store without keys wrote, so it is not blind. SQLite's files are
/// readable by their owner only.
pub async fn secrets_never_reach_the_database_in_the_clear(db: &TestDb) {
    const SECRET: &str = "s3cr3tmarkerzq7wv";
    const CONTROL: &str = "controlmarkerxk4pd";
    db.store.desire_lrp(&lrp_with_secret("lrp-secret", SECRET), NOW_NS).await.unwrap();
    desire_task_with_secret(&db.store, "task-secret", SECRET).await;
    // What the store reads back is the secret itself.
    let read = db.store.desired_lrp(&ProcessGuid::parse("lrp-secret").unwrap()).await.unwrap();
    assert_eq!(read.run_info.as_pb().image_password, SECRET);
    let task = db.store.task(&TaskGuid::parse("task-secret").unwrap()).await.unwrap();
    assert_eq!(task.definition.as_pb().environment_variables[0].value, SECRET);

    let plain = open(db, Keyring::default()).await;
    plain.desire_lrp(&lrp_with_secret("lrp-control", CONTROL), NOW_NS).await.unwrap();
    desire_task_with_secret(&plain, "task-control", CONTROL).await;
    plain.close().await;

    let dump = dump(db).await;
    assert!(holds(&dump, CONTROL), "the search must see unencrypted blobs");
    assert!(holds(&dump, "lrp-secret"), "the search must see the plain columns");
    assert!(!holds(&dump, SECRET), "a secret reached the {} database in the clear", db.backend().name());

    if db.backend() == Backend::Sqlite {
        use std::os::unix::fs::PermissionsExt;
        let path = db::backend::sqlite_path(&db.url).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            if let Ok(meta) = std::fs::metadata(&file) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
            } else {
                assert!(!suffix.is_empty(), "{file} exists");
            }
        }
    }
}

/// Labels of every row of `table`, by count.
async fn labels(store: &Store, table: SealedTable) -> Vec<(String, u64)> {
    store.key_label_counts(table).await.unwrap().into_iter().collect()
}

/// Re-seals every table in batches of `batch` until a pass finds nothing; returns the rows
/// re-sealed.
async fn reseal_all(store: &Store, batch: usize) -> usize {
    let mut total = 0;
    for table in SealedTable::ALL {
        let mut after = None;
        loop {
            let done = store.reseal_batch(table, after.as_deref(), batch).await.unwrap();
            assert!(done.unreadable.is_empty(), "{:?}", done.unreadable);
            total += done.resealed;
            match done.resume_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    total
}

/// Rows written under key A (and one written before encryption) are all re-sealed under key B
/// by a store whose active key is B and which still has A, also when that store stops after one
/// batch and a new one finishes the job; afterwards a store with B alone reads everything.
pub async fn a_rotation_reseals_every_row_and_resumes_after_a_restart(db: &TestDb) {
    let under_a = open(db, test_keyring("key-a", &["key-a"])).await;
    for i in 0..7 {
        under_a.desire_lrp(&lrp_with_secret(&format!("lrp-{i}"), "a-secret"), NOW_NS).await.unwrap();
    }
    for i in 0..5 {
        desire_task_with_secret(&under_a, &format!("task-{i}"), "a-secret").await;
    }
    under_a.close().await;
    let plain = open(db, Keyring::default()).await;
    plain.desire_lrp(&lrp_with_secret("lrp-plain", "old-secret"), NOW_NS).await.unwrap();
    desire_task_with_secret(&plain, "task-plain", "old-secret").await;
    let before_lrps = plain.desired_lrps(&DesiredLrpFilter::default()).await.unwrap();
    assert_eq!(before_lrps.len(), 1, "a store without keys reads only the unencrypted row");
    plain.close().await;
    assert_eq!(labels(&db.store, SealedTable::DesiredLrps).await, [("".into(), 1), ("key-a".into(), 7)]);

    let rotating = open(db, test_keyring("key-b", &["key-a", "key-b"])).await;
    let before_lrps = rotating.desired_lrps(&DesiredLrpFilter::default()).await.unwrap();
    let before_tasks = rotating.tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!((before_lrps.len(), before_tasks.len()), (8, 6));
    assert_eq!(rotating.rows_to_reseal().await.unwrap(), 14);
    // One batch, then the process "stops".
    let first = rotating.reseal_batch(SealedTable::DesiredLrps, None, 3).await.unwrap();
    assert_eq!(first.resealed, 3);
    assert!(first.resume_after.is_some());
    assert_eq!(rotating.rows_to_reseal().await.unwrap(), 11);
    rotating.close().await;

    let restarted = open(db, test_keyring("key-b", &["key-a", "key-b"])).await;
    assert_eq!(reseal_all(&restarted, 3).await, 11);
    assert_eq!(restarted.rows_to_reseal().await.unwrap(), 0);
    assert_eq!(reseal_all(&restarted, 3).await, 0, "a second pass finds nothing");
    restarted.close().await;
    assert_eq!(labels(&db.store, SealedTable::DesiredLrps).await, [("key-b".into(), 8)]);
    assert_eq!(labels(&db.store, SealedTable::Tasks).await, [("key-b".into(), 6)]);

    let only_b = open(db, test_keyring("key-b", &["key-b"])).await;
    assert_eq!(only_b.desired_lrps(&DesiredLrpFilter::default()).await.unwrap(), before_lrps);
    assert_eq!(only_b.tasks(&TaskFilter::default()).await.unwrap(), before_tasks);
    only_b.close().await;
}

/// Rows under a key label the store does not have are skipped by the listings (whole and
/// paged), reported by the single-record reads as corrupt with the label named, and reported
/// (not re-sealed, not looped over) by the re-encryption pass; the other rows are unaffected.
pub async fn rows_under_an_unknown_key_are_reported_and_do_not_break_listings(db: &TestDb) {
    let lost = open(db, test_keyring("lost-key", &["lost-key"])).await;
    lost.desire_lrp(&lrp_with_secret("lrp-lost", "x"), NOW_NS).await.unwrap();
    desire_task_with_secret(&lost, "task-lost", "x").await;
    lost.close().await;
    db.store.desire_lrp(&lrp_with_secret("lrp-ok", "y"), NOW_NS).await.unwrap();
    desire_task_with_secret(&db.store, "task-ok", "y").await;

    let lrps = db.store.desired_lrps(&DesiredLrpFilter::default()).await.unwrap();
    assert_eq!(lrps.iter().map(|l| l.scheduling.process_guid.as_str()).collect::<Vec<_>>(), ["lrp-ok"]);
    let page = db.store.desired_lrps_page(&DesiredLrpFilter::default(), None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(db.store.scheduling_infos(&DesiredLrpFilter::default()).await.unwrap().len(), 2, "no run info read");
    let tasks = db.store.tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.iter().map(|t| t.task_guid.as_str()).collect::<Vec<_>>(), ["task-ok"]);
    assert_eq!(db.store.tasks_page(&TaskFilter::default(), None, 10).await.unwrap().items.len(), 1);

    let err = db.store.desired_lrp(&ProcessGuid::parse("lrp-lost").unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("unknown encryption key label \"lost-key\""), "{err}");
    let err = db.store.task(&TaskGuid::parse("task-lost").unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("\"lost-key\""), "{err}");

    let rotating = open(db, test_keyring("next", &[TEST_KEY_LABEL, "next"])).await;
    for table in SealedTable::ALL {
        let batch = rotating.reseal_batch(table, None, 10).await.unwrap();
        assert_eq!(batch.resealed, 1, "{table:?}");
        assert_eq!(batch.unreadable.len(), 1, "{table:?}");
        assert!(batch.unreadable[0].1.contains("\"lost-key\""), "{:?}", batch.unreadable);
        assert_eq!(batch.resume_after, None);
    }
    assert_eq!(rotating.rows_to_reseal().await.unwrap(), 2, "the lost rows are still counted");
    rotating.close().await;
}
