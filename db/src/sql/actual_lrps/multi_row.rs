//! Many rows' writes in few statements, for the batch of starts: [`write_rows`] runs planned
//! [`RowWrites`] with multi-row DELETEs, UPDATEs and INSERTs of at most [`ROWS_PER_STATEMENT`]
//! rows each, inside the caller's transaction.
//!
//! The multi-row UPDATE joins the table to the new rows, bound as a derived table of every
//! column (in [`COLUMNS`] order, as [`bind_row`] binds them), on the primary key:
//!
//! - PostgreSQL: `UPDATE actual_lrps AS t SET col = v.col, ... FROM (VALUES (...), ...) AS
//!   v (cols) WHERE <key of t = key of v>` (the driver types every parameter, so the VALUES
//!   columns are text, int8 and bytea without casts);
//! - MySQL / MariaDB: not a join but `INSERT INTO actual_lrps (cols) VALUES (...), ... ON
//!   DUPLICATE KEY UPDATE col = VALUES(col), ...`, every row a duplicate of its locked row. The
//!   join form (`UPDATE ... JOIN (SELECT ? AS col, ... UNION ALL ...)`) materialized its rows in
//!   a temporary table, which for the blob columns MariaDB keeps in its disk engine: 9–15 ms
//!   for 125 rows against 5.2–5.7 ms (docs/performance.md, fifteenth round). MySQL counts 2
//!   affected rows for each row it updates and 1 for each it inserts
//!   ([`reported_per_updated_row`]); every row of a plan's update differs from its stored row
//!   (its modification tag moved), so a row that was not there shows in the count;
//! - SQLite: `UPDATE actual_lrps AS t SET col = v.col, ... FROM (SELECT ... UNION ALL ...) AS v
//!   WHERE <key>`.
//!
//! The rows written were locked by the caller's read (`FOR UPDATE`), so every DELETE and UPDATE
//! must touch exactly as many rows as it names; any other count is an internal error that fails
//! the call (the transaction rolls back), never a silent partial write.

use proto::error::ErrorCode;
use proto::models::ActualLrp;

use super::index::{RowWrites, inserted_concurrently};
use super::row::{COLUMNS, WHAT, bind_pk, bind_row, row_placeholders};
use super::{Shape, cached_query, cached_sql, insert_rows};
use crate::backend::placeholders;
use crate::{Backend, Error, Result, Tx};

/// Rows per multi-row DELETE or UPDATE: 200 × 18 = 3,600 placeholders (well under the 32,766 of
/// SQLite and the 65,535 of PostgreSQL and MySQL) and a statement of about 20 KiB.
pub(crate) const ROWS_PER_STATEMENT: usize = 200;

/// Runs `writes` inside `tx`: the deletes, then the updates, then the inserts, each in
/// statements of at most [`ROWS_PER_STATEMENT`] rows (inserts in [`insert_rows`]' chunks). An
/// insert that finds its row already there is retried like a deadlock (the body re-reads).
pub(crate) async fn write_rows(tx: &mut Tx, op: &'static str, writes: &RowWrites) -> Result<()> {
    for chunk in writes.deletes.chunks(ROWS_PER_STATEMENT) {
        let backend = tx.backend;
        let sql = cached_sql(backend, Shape::DeleteMany { rows: chunk.len() }, || delete_sql(backend, chunk.len()));
        let mut stmt = cached_query(&sql).persistent(backend.keeps_prepared(true));
        for (guid, index, presence) in chunk {
            stmt = bind_pk(stmt, guid, *index, *presence);
        }
        let done = stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, "batch delete", e))?;
        expect_rows(op, "deleted", done.rows_affected(), chunk.len())?;
    }
    for chunk in writes.updates.chunks(ROWS_PER_STATEMENT) {
        let backend = tx.backend;
        let sql = cached_sql(backend, Shape::UpdateMany { rows: chunk.len() }, || update_sql(backend, chunk.len()));
        let mut stmt = cached_query(&sql);
        for lrp in chunk {
            stmt = bind_row(stmt, lrp);
        }
        let done = stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, &chunk_name(chunk), e))?;
        expect_rows(op, "updated", done.rows_affected(), chunk.len() * reported_per_updated_row(backend))?;
    }
    insert_rows(tx, op, &writes.inserts).await.map_err(|e| inserted_concurrently(op, e))
}

/// Refuses a statement that touched another number of rows than it named.
fn expect_rows(op: &'static str, verb: &str, affected: u64, named: usize) -> Result<()> {
    if usize::try_from(affected).ok() == Some(named) {
        return Ok(());
    }
    Err(Error::refused(
        ErrorCode::Unknown,
        format!("{op}: {verb} {affected} rows of the {named} locked ones a statement named"),
    ))
}

/// How errors name a chunk of updated rows: its first row's key and its size.
fn chunk_name(chunk: &[ActualLrp]) -> String {
    match chunk.first() {
        Some(first) => format!(
            "{} and {} more",
            super::row::row_key(first.key.process_guid.as_str(), first.key.index, first.presence),
            chunk.len() - 1
        ),
        None => String::new(),
    }
}

/// `DELETE ... WHERE <primary key> IN <rows keys>` ([`Backend::delete_by_keys`]), bound by
/// [`bind_pk`].
fn delete_sql(backend: Backend, rows: usize) -> String {
    backend.delete_by_keys("actual_lrps", &["process_guid", "instance_index", "presence"], rows)
}

/// The names of [`COLUMNS`], in order.
fn column_names() -> impl Iterator<Item = &'static str> {
    COLUMNS.split(',').map(str::trim)
}

/// The columns outside the primary key (the first three of [`COLUMNS`]).
fn mutable_names() -> impl Iterator<Item = &'static str> {
    column_names().skip(3)
}

/// The multi-row UPDATE of `rows` rows on `backend` (module docs), bound by [`bind_row`] row
/// after row.
fn update_sql(backend: Backend, rows: usize) -> String {
    let on = "t.process_guid = v.process_guid AND t.instance_index = v.instance_index AND t.presence = v.presence";
    match backend {
        Backend::Postgres => {
            let set: Vec<String> = mutable_names().map(|c| format!("{c} = v.{c}")).collect();
            let values = vec![row_placeholders(); rows].join(", ");
            format!("UPDATE actual_lrps AS t SET {} FROM (VALUES {values}) AS v ({COLUMNS}) WHERE {on}", set.join(", "))
        }
        Backend::Mysql => {
            let set: Vec<String> = mutable_names().map(|c| format!("{c} = VALUES({c})")).collect();
            let values = vec![row_placeholders(); rows].join(", ");
            format!("INSERT INTO actual_lrps ({COLUMNS}) VALUES {values} ON DUPLICATE KEY UPDATE {}", set.join(", "))
        }
        Backend::Sqlite => {
            let set: Vec<String> = mutable_names().map(|c| format!("{c} = v.{c}")).collect();
            format!("UPDATE actual_lrps AS t SET {} FROM ({}) AS v WHERE {on}", set.join(", "), union_rows(rows))
        }
    }
}

/// The affected rows `backend` reports for each row a multi-row UPDATE ([`update_sql`]) changes:
/// MySQL's `ON DUPLICATE KEY UPDATE` counts an updated row twice (and an inserted one once).
fn reported_per_updated_row(backend: Backend) -> usize {
    match backend {
        Backend::Mysql => 2,
        Backend::Postgres | Backend::Sqlite => 1,
    }
}

/// `SELECT ? AS process_guid, ... UNION ALL SELECT ?, ... ...`: `rows` rows of every column.
fn union_rows(rows: usize) -> String {
    let first: Vec<String> = column_names().map(|c| format!("? AS {c}")).collect();
    let mut out = format!("SELECT {}", first.join(", "));
    let rest = format!(" UNION ALL SELECT {}", placeholders(column_names().count()));
    for _ in 1..rows {
        out.push_str(&rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::actual_lrps::row::COLUMN_COUNT;

    #[test]
    fn every_column_is_bound_once_per_row() {
        assert_eq!(column_names().count(), COLUMN_COUNT);
        assert_eq!(mutable_names().next(), Some("domain"));
        for backend in Backend::ALL {
            let sql = update_sql(backend, 3);
            let bound = sql.matches('?').count();
            assert_eq!(bound, 3 * COLUMN_COUNT, "{backend:?}: {sql}");
            let set = match backend {
                Backend::Mysql => "modification_tag_index = VALUES(modification_tag_index)",
                Backend::Postgres | Backend::Sqlite => "modification_tag_index = v.modification_tag_index",
            };
            assert!(sql.contains(set), "{sql}");
            assert!(!sql.contains("process_guid = v.process_guid,"), "the key is not set: {sql}");
            assert!(!sql.contains("process_guid = VALUES(process_guid)"), "the key is not set: {sql}");
        }
        for backend in Backend::ALL {
            assert_eq!(delete_sql(backend, 2).matches('?').count(), 6);
        }
    }

    /// A multi-row update that names a row the table does not hold fails the transaction and
    /// writes nothing, on every backend: on MySQL, where the update is an insert that updates
    /// on duplicates, the missing row would otherwise have been inserted.
    #[cfg(feature = "testing")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_of_a_missing_row_fails_and_writes_nothing() {
        use proto::models::{ActualLrpKey, DomainName, ProcessGuid};

        use crate::sql::actual_lrps::ActualLrpFilter;
        for backend in Backend::ALL {
            let Some(db) = crate::testing::TestDb::create(backend).await else { continue };
            let domain = DomainName::parse("d").unwrap();
            let guid = ProcessGuid::parse("guid-1").unwrap();
            db.store.create_unclaimed_actual_lrps(&guid, &domain, &[0, 1], 1).await.unwrap();
            let stored = db.store.actual_lrps(&ActualLrpFilter::default()).await.unwrap();
            let mut updates: Vec<ActualLrp> = stored
                .iter()
                .map(|lrp| ActualLrp { since: 2, modification_tag: lrp.modification_tag.incremented(), ..lrp.clone() })
                .collect();
            let missing = ActualLrpKey { process_guid: guid.clone(), index: 2, domain: domain.clone() };
            updates.push(ActualLrp::new_unclaimed(missing, "e", 2));
            let writes = std::sync::Arc::new(RowWrites { updates, ..Default::default() });
            let result = db
                .store
                .write("test update", move |tx| {
                    let writes = std::sync::Arc::clone(&writes);
                    Box::pin(async move { write_rows(tx, "test update", &writes).await })
                })
                .await;
            let err = result.expect_err(&format!("{backend:?}: the update of a missing row succeeded"));
            assert!(err.to_string().contains("locked ones"), "{backend:?}: {err}");
            let after = db.store.actual_lrps(&ActualLrpFilter::default()).await.unwrap();
            assert_eq!(after, stored, "{backend:?}: the failed update wrote rows");
        }
    }

    #[test]
    fn postgres_numbers_the_placeholders_of_every_row() {
        let sql = Backend::Postgres.sql(&update_sql(Backend::Postgres, ROWS_PER_STATEMENT));
        let last = ROWS_PER_STATEMENT * COLUMN_COUNT;
        assert!(sql.contains(&format!("${last})")), "ends at ${last}");
        assert!(!sql.contains(&format!("${}", last + 1)));
        assert!(sql.len() < 64 * 1024, "{} bytes", sql.len());
    }
}
