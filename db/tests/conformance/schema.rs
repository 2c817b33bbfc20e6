//! Schema and migration behaviour.

use db::testing::TestDb;
use db::{Error, Store, StoreOptions};

macro_rules! schema_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            schema,
            [migrations_are_idempotent, a_newer_schema_is_refused, the_database_clock_is_close_to_the_host_clock,]
        );
    };
}

/// Connecting twice to a migrated database migrates nothing and keeps the version.
pub async fn migrations_are_idempotent(db: &TestDb) {
    let again = Store::connect(&db.url, StoreOptions::default()).await.expect("reconnect");
    let version = db::migrate::current_version(again.pool(), again.backend()).await.unwrap();
    assert_eq!(version, db::migrate::latest_version());
}

/// A database migrated by a newer build is refused with a clear error.
pub async fn a_newer_schema_is_refused(db: &TestDb) {
    let future = db::migrate::latest_version() + 1;
    db.store
        .backend()
        .query("INSERT INTO diego_schema_migrations (version, description, applied_at_ms) VALUES (?, 'future', 0)")
        .bind(future)
        .execute(db.store.pool())
        .await
        .unwrap();
    let err = Store::connect(&db.url, StoreOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { found, .. } if found == future), "{err}");
    assert!(err.to_string().contains("newer than this build knows"), "{err}");
}

/// Lease expiry uses the database clock; it must be a sane epoch-milliseconds value.
pub async fn the_database_clock_is_close_to_the_host_clock(db: &TestDb) {
    let db_ms = db.store.now_ms().await.unwrap();
    #[allow(clippy::disallowed_methods)] // comparing against the host clock is the point
    let host_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((db_ms - host_ms).abs() < 60_000, "db clock {db_ms} vs host {host_ms}");
}
