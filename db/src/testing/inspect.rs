//! Reading what a test database holds, byte for byte, to check that secrets never reach it in
//! the clear (encryption at rest): the SQLite file and its log, or every column of every row of
//! the tables with sealed blobs on the servers.

use super::TestDb;
use crate::Backend;

/// Lower-case hex of `s`, as PostgreSQL prints bytea and MySQL's `HEX()` (lower-cased) does.
pub fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Everything the database holds for the tables with blobs, lower-cased: SQLite's file and
/// write-ahead log (before and after a checkpoint), or every column of every row on the servers.
pub async fn dump(db: &TestDb) -> String {
    let tables = ["desired_lrps", "actual_lrps", "tasks"];
    let store = &db.store;
    let mut out = Vec::<u8>::new();
    match db.backend() {
        Backend::Sqlite => {
            let path = crate::backend::sqlite_path(&db.url).unwrap();
            let files = |out: &mut Vec<u8>| {
                for suffix in ["", "-wal"] {
                    if let Ok(bytes) = std::fs::read(format!("{}{suffix}", path.display())) {
                        out.extend_from_slice(&bytes);
                    }
                }
            };
            files(&mut out);
            sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.pool()).await.unwrap();
            files(&mut out);
        }
        Backend::Postgres => {
            for table in tables {
                let sql = format!("SELECT CAST(t AS TEXT) FROM {table} t");
                let rows: Vec<String> = store.backend().query_scalar(&sql).fetch_all(store.pool()).await.unwrap();
                assert!(!rows.is_empty() || table == "actual_lrps", "{table} has rows");
                out.extend(rows.concat().into_bytes());
            }
        }
        Backend::Mysql => {
            for table in tables {
                let columns: Vec<String> = store
                    .backend()
                    .query_scalar(
                        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
                         WHERE table_schema = DATABASE() AND table_name = ?",
                    )
                    .bind(table)
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
                assert!(columns.len() > 5, "{table} has columns: {columns:?}");
                let sql = format!("SELECT CAST(HEX(CONCAT_WS('|', {})) AS CHAR) FROM {table}", columns.join(", "));
                let rows: Vec<String> = store.backend().query_scalar(&sql).fetch_all(store.pool()).await.unwrap();
                out.extend(rows.concat().into_bytes());
            }
        }
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

/// Whether `dump` holds `marker` as bytes or as hex.
pub fn holds(dump: &str, marker: &str) -> bool {
    dump.contains(marker) || dump.contains(&hex(marker))
}
