//! Values the database itself refuses, and a database that lost part of its schema.
//!
//! A request's values must never make the store report `Unrecoverable`, which makes the BBS step
//! down: a value the database refuses (a NUL in PostgreSQL text, a string longer than its
//! column, a packet over MySQL's limit, ...) is InvalidRequest naming the record, and nothing is
//! written. SQLite and MySQL store a NUL; the proto validation layer refuses it at the edge, the
//! store only must not call it fatal. Only a lost table or column is Unrecoverable.

use std::time::Duration;

use db::sql::leases::LeaseType;
use db::testing::TestDb;
use db::{Backend, Error, Fence};
use proto::error::ErrorCode;
use proto::models::{DomainName, TaskGuid};

use super::NOW_NS;

macro_rules! values_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            values,
            [
                a_nul_in_a_read_is_never_unrecoverable,
                a_nul_in_a_write_is_invalid_or_stored_and_never_unrecoverable,
                an_over_long_string_is_invalid_request_and_writes_nothing,
                a_value_over_the_packet_limit_is_never_unrecoverable,
                a_dropped_table_or_column_is_unrecoverable,
            ]
        );
    };
}

const TTL: Duration = Duration::from_secs(15);

/// Whether this backend refuses a NUL in text (PostgreSQL: SQLSTATE 22021).
fn refuses_nul(db: &TestDb) -> bool {
    db.backend() == Backend::Postgres
}

/// `err` is InvalidRequest with a message that names `record`.
fn assert_invalid_naming(err: &Error, record: &str) {
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    assert!(!err.is_unrecoverable(), "{err}");
    assert!(err.to_string().contains(record), "{err} does not name {record}");
}

/// Reading by a key with a NUL: not found, or InvalidRequest where the database refuses it;
/// never Unrecoverable (it used to make every BBS on PostgreSQL step down).
pub async fn a_nul_in_a_read_is_never_unrecoverable(db: &TestDb) {
    let err = db.store.fetch_lease("cell\0one").await.unwrap_err();
    if refuses_nul(db) {
        assert_invalid_naming(&err, "lease");
    } else {
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }
    // The store still works afterwards.
    db.store.acquire_lease("cell-1", "rep-1", "{}", LeaseType::Presence, TTL).await.unwrap();
    assert_eq!(db.store.fetch_lease("cell-1").await.unwrap().owner, "rep-1");
}

/// Writing a NUL, inside a write transaction: stored where the database takes it, else
/// InvalidRequest with nothing written; never Unrecoverable.
pub async fn a_nul_in_a_write_is_invalid_or_stored_and_never_unrecoverable(db: &TestDb) {
    // A lease.
    let result = db.store.acquire_lease("cell-1", "rep\0x", "{\"a\":\"\0\"}", LeaseType::Presence, TTL).await;
    match result {
        Err(err) if refuses_nul(db) => {
            assert_invalid_naming(&err, "lease cell-1");
            assert!(db.store.fetch_leases(LeaseType::Presence).await.unwrap().is_empty());
        }
        Ok(lease) if !refuses_nul(db) => assert_eq!(db.store.fetch_lease("cell-1").await.unwrap(), lease),
        other => panic!("unexpected outcome on {:?}: {other:?}", db.backend()),
    }

    // A task's failure reason, in an update of an existing row: the row stays as it was.
    let guid = TaskGuid::parse("task-nul").unwrap();
    let domain = DomainName::parse("apps").unwrap();
    db.store.desire_task(&guid, &domain, &super::tasks::definition(), NOW_NS).await.unwrap();
    let before = db.store.task(&guid).await.unwrap();
    match db.store.fail_task(&guid, "bad\0reason", NOW_NS + 1).await {
        Err(err) if refuses_nul(db) => {
            assert_invalid_naming(&err, "task");
            assert_eq!(db.store.task(&guid).await.unwrap(), before);
        }
        Ok(_) if !refuses_nul(db) => {}
        other => panic!("unexpected outcome on {:?}: {other:?}", db.backend()),
    }

    // A domain name, where the model still lets one through (the edge refuses NULs).
    if let Ok(domain) = DomainName::parse("apps\0x") {
        match db.store.upsert_domain(&domain, TTL, NOW_NS).await {
            Err(err) if refuses_nul(db) => {
                assert_invalid_naming(&err, "domain");
                assert!(db.store.fresh_domains(NOW_NS).await.unwrap().is_empty());
            }
            Ok(()) if !refuses_nul(db) => {}
            other => panic!("unexpected outcome on {:?}: {other:?}", db.backend()),
        }
    }
}

/// A string longer than its column (`lease_key VARCHAR(255)`): InvalidRequest naming the record
/// on PostgreSQL and MySQL / MariaDB (strict mode), nothing written. SQLite does not enforce
/// VARCHAR lengths and stores it.
pub async fn an_over_long_string_is_invalid_request_and_writes_nothing(db: &TestDb) {
    let key = "k".repeat(300);
    let owner = "o".repeat(300);
    for (key, owner) in [(key.as_str(), "rep-1"), ("cell-1", owner.as_str())] {
        match db.store.acquire_lease(key, owner, "{}", LeaseType::Presence, TTL).await {
            Err(err) if db.backend() != Backend::Sqlite => {
                assert_invalid_naming(&err, "lease");
                assert!(err.to_string().contains("has a value the database refuses"), "{err}");
            }
            Ok(_) if db.backend() == Backend::Sqlite => {
                db.store.release_lease(key, owner).await.unwrap();
            }
            other => panic!("unexpected outcome on {:?}: {other:?}", db.backend()),
        }
    }
    assert!(db.store.fetch_leases(LeaseType::Presence).await.unwrap().is_empty());
    // Nothing is broken: the next write goes through.
    db.store.acquire_lease("cell-1", "rep-1", "{}", LeaseType::Presence, TTL).await.unwrap();
}

/// A value bigger than MySQL's `max_allowed_packet` (16 MiB by default on MariaDB): where the
/// database refuses it (MySQL error 1153) it is InvalidRequest naming the record, nothing is
/// written, and the store keeps working. PostgreSQL and SQLite store it.
pub async fn a_value_over_the_packet_limit_is_never_unrecoverable(db: &TestDb) {
    let value = "v".repeat(17 * 1024 * 1024);
    match db.store.acquire_lease("cell-big", "rep-1", &value, LeaseType::Presence, TTL).await {
        Ok(lease) => assert_eq!(lease.value.len(), value.len()),
        Err(err) => {
            assert_invalid_naming(&err, "lease cell-big");
            assert!(matches!(db.store.fetch_lease("cell-big").await, Err(Error::NotFound { .. })));
        }
    }
    db.store.acquire_lease("cell-1", "rep-1", "{}", LeaseType::Presence, TTL).await.unwrap();
}

/// A lost table or column is Unrecoverable, for reads, writes and the fence check alike.
pub async fn a_dropped_table_or_column_is_unrecoverable(db: &TestDb) {
    let exec = |sql: &'static str| async move {
        sqlx::raw_sql(sql).execute(db.store.pool()).await.unwrap();
    };
    let lease = db.store.acquire_lease("bbs", "bbs-a", "addr", LeaseType::Lock, TTL).await.unwrap();
    let fenced = db.store.fenced(Fence { key: lease.key.clone(), owner: lease.owner.clone(), term: lease.term });
    let domain = DomainName::parse("apps").unwrap();
    fenced.upsert_domain(&domain, TTL, NOW_NS).await.unwrap();

    exec("DROP TABLE domains").await;
    let err = db.store.fresh_domains(NOW_NS).await.unwrap_err();
    assert!(err.is_unrecoverable(), "{err}");
    assert_eq!(err.code(), ErrorCode::Unrecoverable);
    let err = fenced.upsert_domain(&domain, TTL, NOW_NS).await.unwrap_err();
    assert!(err.is_unrecoverable(), "{err}");

    exec("ALTER TABLE leases DROP COLUMN value").await;
    let err = db.store.fetch_lease("bbs").await.unwrap_err();
    assert!(err.is_unrecoverable(), "{err}");
    let err = db.store.acquire_lease("bbs", "bbs-a", "addr", LeaseType::Lock, TTL).await.unwrap_err();
    assert!(err.is_unrecoverable(), "{err}");

    exec("DROP TABLE leases").await;
    // The fence check inside every fenced write reads the leases table.
    let guid = TaskGuid::parse("task-1").unwrap();
    let err = fenced.desire_task(&guid, &domain, &super::tasks::definition(), NOW_NS).await.unwrap_err();
    assert!(err.is_unrecoverable(), "{err}");
}
