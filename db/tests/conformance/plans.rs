//! Conformance tests of how the batch reads and writes are planned: a list of guids or keys is
//! looked up key by key through the primary key, on every backend and whatever the planner's
//! statistics say, and the statements with lists are not kept prepared where a kept plan would
//! ignore the values. Each test runs on one backend (others return at once) and counts what the
//! store's one connection did.

use db::sql::actual_lrps::ActualLrpFilter;
use db::testing::TestDb;

use super::NOW_NS;
use super::actual_lrps::{ikey, start_info};
use super::batches::key;
use super::desired_lrps::desired;

macro_rules! plans_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            plans,
            [
                guid_lists_are_not_kept_prepared_on_postgres,
                desire_lrps_scans_no_table_before_its_statistics_exist,
                desire_lrps_scans_no_table_on_mysql,
                start_actual_lrps_locks_no_table_on_mysql,
            ]
        );
    };
}

/// On PostgreSQL a statement with a list of guids is planned for its values at each call, not
/// kept prepared: a kept one gets a generic plan after five calls, and for a long list that plan
/// may test every row of the table against every guid (`Backend::keeps_prepared`). Every
/// other statement stays prepared. Runs the batch desire and the filtered reads more than five
/// times on one connection, then lists what that connection keeps.
pub async fn guid_lists_are_not_kept_prepared_on_postgres(db: &TestDb) {
    if db.store.backend() != db::Backend::Postgres {
        return;
    }
    let store = db.store.dedicated(1, std::time::Duration::from_secs(30)).await.unwrap();
    let mut guids = Vec::new();
    for round in 0..7 {
        let lrps: Vec<_> = (0..3).map(|i| desired(&format!("list-{round}-{i}"), "cf-apps", 1)).collect();
        guids.extend(lrps.iter().map(|lrp| lrp.scheduling.process_guid.clone()));
        store.desire_lrps(lrps, NOW_NS).await.unwrap();
        let filter = ActualLrpFilter { process_guids: guids.clone(), ..Default::default() };
        assert_eq!(store.actual_lrps(&filter).await.unwrap().len(), guids.len());
        let filter = db::sql::desired_lrps::DesiredLrpFilter { process_guids: guids.clone(), ..Default::default() };
        assert_eq!(store.desired_lrps(&filter).await.unwrap().len(), guids.len());
    }
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT statement FROM pg_prepared_statements").fetch_all(store.pool()).await.unwrap();
    store.close().await;
    assert!(
        kept.iter().any(|sql| sql.contains("INSERT INTO desired_lrps")),
        "other statements stay prepared: {kept:#?}"
    );
    let lists: Vec<&String> = kept.iter().filter(|sql| sql.contains(" IN ($")).collect();
    assert!(lists.is_empty(), "statements with a list of guids were kept prepared: {lists:#?}");
}

/// PostgreSQL: a batch desire finds stored guids and left-behind instances key by key, without
/// scanning a table, also while the tables have no statistics yet (as while a fresh database is
/// seeded). A list condition on the guid of `actual_lrps`, where the guid alone is not unique,
/// was estimated without statistics to match every row for 200 guids and more, and each batch
/// scanned the whole table. Counts the scans of the store's one connection.
pub async fn desire_lrps_scans_no_table_before_its_statistics_exist(db: &TestDb) {
    if db.store.backend() != db::Backend::Postgres {
        return;
    }
    let store = db.store.dedicated(1, std::time::Duration::from_secs(30)).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO actual_lrps SELECT 'old-' || (i / 4), i % 4, 0, 'cf-apps', 'UNCLAIMED', '', '', '', 0, '', 0, \
         ''::bytea, ''::bytea, ''::bytea, 0, '', 'e', 0 FROM generate_series(0, 3999) AS i",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let statistics: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stats WHERE tablename = 'actual_lrps'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(statistics, 0, "the table has statistics already");
    // The counters of this connection, flushed to the shared statistics before they are read.
    let scans = || async {
        sqlx::raw_sql("SELECT pg_stat_force_next_flush()").execute(store.pool()).await.unwrap();
        let sql = "SELECT relname::text, seq_scan FROM pg_stat_user_tables \
                   WHERE relname IN ('actual_lrps', 'desired_lrps') ORDER BY relname";
        sqlx::query_as::<_, (String, i64)>(sql).fetch_all(store.pool()).await.unwrap()
    };
    let before = scans().await;
    let batch: Vec<_> = (0..500).map(|i| desired(&format!("new-{i:03}"), "cf-apps", 2)).collect();
    let outcomes = store.desire_lrps(batch, NOW_NS).await.unwrap();
    assert!(outcomes.iter().all(|(_, o)| o.as_ref().is_ok_and(|created| created.len() == 2)));
    let after = scans().await;
    store.close().await;
    assert_eq!(after, before, "scans of each table before and after the batch");
}

/// MySQL: 10,000 UNCLAIMED ordinary instances (`BENCHMARK-BBS-GUID-000000` to `-009999`, index
/// 0), with the statistics InnoDB had of `actual_lrps` during a seeding: the rows counted, no
/// distinct keys on record (written into its statistics tables and loaded by `FLUSH TABLES`, and
/// kept so). Each key then looks like the whole table to the optimizer.
async fn mysql_rows_under_stale_statistics(store: &db::Store) {
    let digit = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 \
                 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let insert = format!(
        "INSERT INTO actual_lrps SELECT CONCAT('BENCHMARK-BBS-GUID-', LPAD(n, 6, '0')), 0, 0, 'cf-apps', \
         'UNCLAIMED', '', '', '', 0, '', 0, '', '', '', 0, '', 'e', 0 FROM (SELECT a.d + 10 * b.d + 100 * c.d \
         + 1000 * e.d AS n FROM {digit} AS a, {digit} AS b, {digit} AS c, {digit} AS e) AS numbers"
    );
    let statistics = "WHERE database_name = DATABASE() AND table_name = 'actual_lrps'";
    for sql in [
        "ALTER TABLE actual_lrps STATS_AUTO_RECALC = 0".to_owned(),
        insert,
        format!("UPDATE mysql.innodb_table_stats SET n_rows = 10000 {statistics}"),
        format!("UPDATE mysql.innodb_index_stats SET stat_value = 0 {statistics} AND stat_name LIKE 'n_diff%'"),
        "FLUSH TABLES actual_lrps".to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await.unwrap();
    }
}

/// MySQL: the rows the store's one connection reads through the index or the table
/// (`Handler_read_%`, per session) in `work`, less what reading the counters costs.
async fn mysql_rows_read<F: std::future::Future>(store: &db::Store, work: F) -> (F::Output, i64) {
    let counters = || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SHOW SESSION STATUS LIKE 'Handler_read%'").fetch_all(store.pool()).await.unwrap();
        rows.iter().map(|(_, v)| v.parse::<i64>().unwrap()).sum::<i64>()
    };
    let first = counters().await;
    let own = counters().await - first;
    let before = counters().await;
    let out = work.await;
    (out, counters().await - before - own)
}

/// MySQL: a batch desire looks its keys up in the primary key also while the statistics are
/// stale: with them each batch read the whole of `actual_lrps` (a 100,000-LRP seeding read
/// 9.7 million rows; docs/performance.md, fifteenth round).
pub async fn desire_lrps_scans_no_table_on_mysql(db: &TestDb) {
    if db.store.backend() != db::Backend::Mysql {
        return;
    }
    let store = db.store.dedicated(1, std::time::Duration::from_secs(30)).await.unwrap();
    mysql_rows_under_stale_statistics(&store).await;
    let batch: Vec<_> = (10000..10500).map(|i| desired(&format!("BENCHMARK-BBS-GUID-{i:06}"), "cf-apps", 1)).collect();
    let (outcomes, read) = mysql_rows_read(&store, store.desire_lrps(batch, NOW_NS)).await;
    store.close().await;
    assert!(outcomes.unwrap().iter().all(|(_, o)| o.as_ref().is_ok_and(|created| created.len() == 1)));
    // 500 guids looked up in each table and the fence: about 1,000 index reads. A scan of
    // `actual_lrps` alone reads 10,000 rows.
    assert!(read < 5000, "the batch read {read} rows");
}

/// MySQL: a cell's StartActualLRPs of 300 instances locks its rows through the primary key also
/// while the statistics are stale: with them it read, and so locked, every row of `actual_lrps`.
pub async fn start_actual_lrps_locks_no_table_on_mysql(db: &TestDb) {
    if db.store.backend() != db::Backend::Mysql {
        return;
    }
    let store = db.store.dedicated(1, std::time::Duration::from_secs(30)).await.unwrap();
    mysql_rows_under_stale_statistics(&store).await;
    let starts: Vec<_> = (0..300)
        .map(|n| {
            (key(&format!("BENCHMARK-BBS-GUID-{n:06}"), 0), ikey(&format!("i-{n}"), "cell-1"), start_info("10.0.0.1"))
        })
        .collect();
    let (outcomes, read) = mysql_rows_read(&store, store.start_actual_lrps(&starts, NOW_NS + 10)).await;
    store.close().await;
    let outcomes = outcomes.unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{:?}", outcomes.iter().find(|o| o.is_err()));
    // The locked read of 300 rows, their update (through a derived table of the new rows) and
    // the fence: about 2,500 reads. A scan of `actual_lrps` alone reads 10,000 rows.
    assert!(read < 5000, "the batch read {read} rows");
}
