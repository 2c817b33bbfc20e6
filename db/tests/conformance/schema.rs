//! Schema and migration behaviour.

use db::testing::TestDb;
use db::{Error, Store, StoreOptions};

macro_rules! schema_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            schema,
            [
                migrations_are_idempotent,
                the_latest_migration_runs_again_after_another_starter_applied_it,
                actual_lrps_have_no_index_on_state_or_since,
                a_newer_schema_is_refused,
                the_database_clock_is_close_to_the_host_clock,
                statistics_refresh,
                a_per_cell_page_is_planned_on_the_cell_index_in_key_order,
                a_list_of_keys_is_looked_up_in_the_primary_key,
                a_desired_lrp_row_of_a_few_kilobytes_stays_whole,
            ]
        );
    };
}

/// Connecting twice to a migrated database migrates nothing and keeps the version.
pub async fn migrations_are_idempotent(db: &TestDb) {
    let again = Store::connect(&db.url, StoreOptions::default()).await.expect("reconnect");
    let version = db::migrate::current_version(again.pool(), again.backend()).await.unwrap();
    assert_eq!(version, db::migrate::latest_version());
}

/// Two servers starting at once may both run the newest migration before either records it: the
/// second run of its statements succeeds (on MySQL, dropping an index that is gone already fails
/// with an error the migration takes as done) and the version is recorded once.
pub async fn the_latest_migration_runs_again_after_another_starter_applied_it(db: &TestDb) {
    let latest = db::migrate::latest_version();
    let backend = db.store.backend();
    backend
        .query("DELETE FROM diego_schema_migrations WHERE version = ?")
        .bind(latest)
        .execute(db.store.pool())
        .await
        .unwrap();
    let again = Store::connect(&db.url, StoreOptions::default()).await.expect("the migration runs again");
    let version = db::migrate::current_version(again.pool(), backend).await.unwrap();
    again.close().await;
    assert_eq!(version, latest);
}

/// No statement reads actual LRPs by `state` or `since` alone, so no index on them is written
/// on every change of state (migration 5).
pub async fn actual_lrps_have_no_index_on_state_or_since(db: &TestDb) {
    let sql = match db.store.backend() {
        db::Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'actual_lrps'",
        db::Backend::Postgres => "SELECT indexname::text FROM pg_indexes WHERE tablename = 'actual_lrps'",
        db::Backend::Mysql => {
            "SELECT DISTINCT CAST(index_name AS CHAR) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'actual_lrps'"
        }
    };
    let indexes: Vec<String> = sqlx::query_scalar(sql).fetch_all(db.store.pool()).await.unwrap();
    assert!(indexes.len() >= 3, "the key, cell and domain indexes are there: {indexes:?}");
    let unused: Vec<&String> =
        indexes.iter().filter(|name| name.ends_with("_state") || name.ends_with("_since")).collect();
    assert!(unused.is_empty(), "{unused:?} of {indexes:?}");
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

/// Refreshing the planner's statistics works on every backend; on PostgreSQL the LRP tables are
/// analyzed afterwards.
pub async fn statistics_refresh(db: &TestDb) {
    db.store.refresh_statistics().await.expect("refresh statistics");
    if db.backend() != db::Backend::Postgres {
        return;
    }
    let analyzed: i64 = db
        .store
        .backend()
        .query_scalar(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('desired_lrps', 'actual_lrps', 'tasks') \
             AND last_analyze IS NOT NULL",
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(analyzed, 3);
}

/// PostgreSQL only: the per-cell page (the rep's bulk fetch), planned generically as a prepared
/// statement is after five executions, on an analyzed table of 4,000 rows over 40 cells, reads
/// the cell's rows through the cell index in key order: no walk of the primary key filtering
/// `cell_id`, no sort (docs/performance.md, "The database's plans").
pub async fn a_per_cell_page_is_planned_on_the_cell_index_in_key_order(db: &TestDb) {
    if db.backend() != db::Backend::Postgres {
        return;
    }
    let mut conn = db.store.pool().acquire().await.unwrap();
    let run = |sql: &'static str| sqlx::raw_sql(sql);
    run("INSERT INTO actual_lrps SELECT 'guid-' || (i / 4), i % 4, 0, 'd', 'RUNNING', 'ig-' || i, \
         'cell-' || (i % 40), '', 0, '', 0, ''::bytea, ''::bytea, ''::bytea, 1, 'z', 'e', 0 \
         FROM generate_series(0, 3999) AS i")
    .execute(&mut *conn)
    .await
    .unwrap();
    db.store.refresh_statistics().await.unwrap();
    run("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.unwrap();
    run("PREPARE per_cell (text, text, bigint, bigint, bigint) AS SELECT * FROM actual_lrps \
         WHERE cell_id = $1 AND (process_guid, instance_index, presence) > ($2, $3, $4) \
         ORDER BY process_guid, instance_index, presence LIMIT $5")
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN EXECUTE per_cell('cell-7', '', 0, 0, 5000)").fetch_all(&mut *conn).await.unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("actual_lrps_cell_key"), "{plan}");
    assert!(!plan.contains("Sort") && !plan.contains("actual_lrps_pkey"), "{plan}");
}

/// A list of 300 actual LRP keys ([`db::Backend::keys_in`], as the batch of starts and
/// convergence's deletes name their rows) is a search of the primary key per key, not a scan of
/// the table, and on PostgreSQL not a `BitmapOr` of one index scan per key (planning that grows
/// with the square of the list). On PostgreSQL, a read of the rows of a list of keys
/// ([`db::Backend::select_by_keys`]) searches the primary key per key however small the table.
pub async fn a_list_of_keys_is_looked_up_in_the_primary_key(db: &TestDb) {
    let backend = db.store.backend();
    let domain = proto::models::DomainName::parse("d").unwrap();
    let indices: Vec<i32> = (0..10).collect();
    for g in 0..200 {
        let guid = proto::models::ProcessGuid::parse(format!("guid-{g}")).unwrap();
        db.store.create_unclaimed_actual_lrps(&guid, &domain, &indices, 1).await.unwrap();
    }
    db.store.refresh_statistics().await.unwrap();
    let keys = backend.keys_in(&["process_guid", "instance_index", "presence"], 300);
    let explain = match backend {
        db::Backend::Sqlite => "EXPLAIN QUERY PLAN",
        db::Backend::Postgres | db::Backend::Mysql => "EXPLAIN",
    };
    let sql = format!("{explain} SELECT process_guid FROM actual_lrps WHERE {keys}");
    let mut query = backend.list_query(&sql);
    for i in 0..300_i64 {
        query = query.bind(format!("guid-{i}")).bind(i % 3).bind(0_i64);
    }
    let rows = query.fetch_all(db.store.pool()).await.unwrap();
    use sqlx::Row;
    let plan: Vec<String> = rows
        .iter()
        .map(|row| match backend {
            // id, parent, notused, detail
            db::Backend::Sqlite => row.try_get::<String, _>(3).unwrap(),
            db::Backend::Postgres => row.try_get::<String, _>(0).unwrap(),
            // id, select_type, table, type, possible_keys, key, ...
            db::Backend::Mysql => {
                format!("{} {}", row.try_get::<String, _>(3).unwrap(), row.try_get::<String, _>(5).unwrap_or_default())
            }
        })
        .collect();
    let plan = plan.join("\n");
    match backend {
        db::Backend::Sqlite => {
            assert!(plan.contains("SEARCH actual_lrps") && !plan.contains("SCAN actual_lrps"), "{plan}")
        }
        db::Backend::Postgres => assert!(!plan.contains("BitmapOr"), "{plan}"),
        db::Backend::Mysql => assert!(plan.contains("range PRIMARY") || plan.contains("ref PRIMARY"), "{plan}"),
    }
    if backend != db::Backend::Postgres {
        return;
    }
    // PostgreSQL: the rows of 300 indices, read to be locked, are 300 searches of the primary
    // key, in the order given, even on a table small enough for a scan to look cheaper.
    let select = backend.select_by_keys("process_guid", "actual_lrps", &["process_guid", "instance_index"], 300, true);
    let mut query = backend.list_query(&format!("EXPLAIN {select}"));
    for i in 0..300_i64 {
        query = query.bind(format!("guid-{i}")).bind(i % 3);
    }
    let plan: Vec<String> = query.fetch_all(db.store.pool()).await.unwrap().iter().map(|row| row.get(0)).collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Nested Loop") && plan.contains("Index Scan using actual_lrps_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

/// A desired LRP row of a few KiB that does not compress (PostgreSQL would compress and move
/// such a row out of line above 2 KiB) is stored whole in its page: the table's TOAST relation
/// stays empty (migration 6). Other backends keep such rows in the page anyway.
pub async fn a_desired_lrp_row_of_a_few_kilobytes_stays_whole(db: &TestDb) {
    let mut lrp = super::desired_lrps::desired("wide", "cf-apps", 1);
    // 4,000 characters of random hex: nothing for the compressor.
    lrp.scheduling.annotation = (0..125).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect::<String>();
    db.store.desire_lrp(&lrp, super::NOW_NS).await.unwrap();
    let stored = db.store.desired_lrp(&lrp.scheduling.process_guid).await.unwrap();
    assert_eq!(stored.scheduling.annotation, lrp.scheduling.annotation);
    if db.store.backend() != db::Backend::Postgres {
        return;
    }
    let toast: i64 =
        sqlx::query_scalar("SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'desired_lrps'")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    assert_eq!(toast, 0, "the row went out of line");
}
