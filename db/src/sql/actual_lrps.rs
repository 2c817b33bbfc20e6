//! The `actual_lrps` table (bbs.md 2.2, 3.1–3.4, 5.4): one row per (process guid, index,
//! presence).
//!
//! - Reads: [`Store::actual_lrps`] with an [`ActualLrpFilter`] (every presence, sorted by process
//!   guid, index and presence; the per-cell fetch, the rep's hot path, uses the `cell_id` index),
//!   and [`Store::actual_lrp_index`] for the rows of one index.
//! - Creation: `insert_unclaimed` (crate-internal, set-based, inside a caller's transaction: desire and
//!   scale-up) and its own-transaction wrapper [`Store::create_unclaimed_actual_lrps`].
//! - The index mechanism ([`Store::modify_index`], in the `index` submodule): Diego's "read every row of the
//!   index before the write, apply the change in memory, diff". Every lifecycle call is built on
//!   it and returns an [`IndexChange`] whose `before` and `after` the BBS diffs into events
//!   (bbs.md 4.4).
//! - Lifecycle calls (the `lifecycle` submodule): claim, start, crash, fail, remove, unclaim,
//!   delete, and the convergence presence moves (suspect-and-replace, promote). Each is one pure
//!   `apply_*` function of [`proto::lifecycle::actual_lrp`] run by [`Store::modify_index`]; this
//!   module only locks, writes and maps a refusal to an [`Error`].
//!
//! Not here: the evacuation endpoints (EvacuateClaimed / Running / Stopped / Crashed,
//! RemoveEvacuating). The BBS runs their `apply_evacuate_*` functions through
//! [`Store::modify_index`] itself, under its own lock stripes. Convergence's bulk reads and
//! deletes are in [`crate::sql::convergence`].
//!
//! Statements whose text depends only on the shape of a request (which filters are set, how many
//! rows a chunk has) are built once per backend and shape and kept, already rewritten for the
//! backend, so the hot paths neither rebuild nor rewrite SQL and the drivers' prepared-statement
//! caches hit.

pub(crate) mod coalesce;
mod index;
mod lifecycle;
mod multi_row;
mod page;
pub(crate) mod row;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use futures::TryStreamExt;
use proto::models::{ActualLrp, ActualLrpKey, CellId, DomainName, ProcessGuid, ValidationError};
use sqlx::AssertSqlSafe;

pub use self::index::{IndexChange, IndexRows};
pub use self::lifecycle::StartOutcome;
pub use self::page::MAX_PAGED_GUIDS;
use self::row::{COLUMNS, WHAT, bind_row, decode, row_placeholders};
use crate::backend::placeholders;
use crate::{Backend, Error, Result, Store, Tx};
pub use proto::lifecycle::actual_lrp::{CrashOutcome, StartInfo};

/// Which actual LRPs [`Store::actual_lrps`] returns: the AND of the filters that are set. An
/// empty `process_guids` list does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActualLrpFilter {
    /// Only rows of this domain.
    pub domain: Option<DomainName>,
    /// Only rows on this cell (uses the `cell_id` index).
    pub cell_id: Option<CellId>,
    /// Only rows of this desired LRP.
    pub process_guid: Option<ProcessGuid>,
    /// Only rows with this instance index.
    pub index: Option<i32>,
    /// Only rows of one of these desired LRPs (when not empty).
    pub process_guids: Vec<ProcessGuid>,
}

/// The per-cell read (the rep's hot path) as [`Store::actual_lrps`] runs it for a filter with
/// only `cell_id` set, with `?` placeholders; for benchmarks that compare against raw SQL.
pub const SELECT_BY_CELL_SQL: &str = concat!("SELECT ", row::columns!(), " FROM actual_lrps WHERE cell_id = ?");

/// Rows per multi-row INSERT: 500 × 18 = 9,000 placeholders, well under SQLite's 32,766 and
/// PostgreSQL's 65,535.
const INSERT_CHUNK: usize = 500;

/// Process guids per `IN (...)` list of a filtered read.
const GUIDS_PER_QUERY: usize = 512;

/// What a cached statement is, with the numbers that shape its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    /// A filtered read: which filters are set (bit flags) and how many guid placeholders.
    Filter { flags: u8, guid_slots: usize },
    /// A multi-row INSERT of this many rows.
    Insert { rows: usize },
    /// The rows of one index, locked or not.
    Index { lock: bool },
    /// An UPDATE of one row's mutable columns.
    Update,
    /// A DELETE of one row.
    Delete,
    /// A multi-row UPDATE of this many rows (the batch of starts).
    UpdateMany { rows: usize },
    /// A multi-row DELETE of this many rows (the batch of starts).
    DeleteMany { rows: usize },
}

/// Statements already built, per backend and shape.
type StatementCache = Mutex<HashMap<(Backend, Shape), Arc<str>>>;

/// The statement of `shape` on `backend`, built by `build` (with `?` placeholders) the first
/// time and kept, rewritten for the backend, for the life of the process.
pub(crate) fn cached_sql(backend: Backend, shape: Shape, build: impl FnOnce() -> String) -> Arc<str> {
    static CACHE: OnceLock<StatementCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // A panic while holding the lock cannot leave a half-inserted entry: keep using the map.
    let mut map = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry((backend, shape)).or_insert_with(|| Arc::from(backend.sql(&build()))).clone()
}

/// A query over a statement from [`cached_sql`].
pub(crate) fn cached_query(sql: &Arc<str>) -> row::Stmt {
    sqlx::query(AssertSqlSafe(Arc::clone(sql)))
}

impl Store {
    /// Every actual LRP (all presences) matching `filter`, sorted by process guid, index and
    /// presence. Rows that cannot be decoded are skipped with a warning.
    pub async fn actual_lrps(&self, filter: &ActualLrpFilter) -> Result<Vec<ActualLrp>> {
        let op = "list actual lrps";
        let mut guids: Vec<&ProcessGuid> = filter.process_guids.iter().collect();
        guids.sort_unstable();
        guids.dedup();
        let chunks: Vec<&[&ProcessGuid]> =
            if guids.is_empty() { vec![&[]] } else { guids.chunks(GUIDS_PER_QUERY).collect() };
        let mut out = Vec::new();
        for chunk in chunks {
            // Pad the list to a power of two with its last guid, so a handful of statement
            // shapes serve every list length.
            let guid_slots = if chunk.is_empty() { 0 } else { chunk.len().next_power_of_two() };
            let sql = filter_sql(self.backend, filter, guid_slots);
            let mut stmt = cached_query(&sql).persistent(self.backend.keeps_prepared(guid_slots > 0));
            if let Some(domain) = &filter.domain {
                stmt = stmt.bind(domain.as_str().to_owned());
            }
            if let Some(cell_id) = &filter.cell_id {
                stmt = stmt.bind(cell_id.as_str().to_owned());
            }
            if let Some(guid) = &filter.process_guid {
                stmt = stmt.bind(guid.as_str().to_owned());
            }
            if let Some(index) = filter.index {
                stmt = stmt.bind(i64::from(index));
            }
            for i in 0..guid_slots {
                if let Some(guid) = chunk.get(i).or(chunk.last()) {
                    stmt = stmt.bind(guid.as_str().to_owned());
                }
            }
            let mut rows = stmt.fetch(&self.pool);
            while let Some(row) = rows.try_next().await.map_err(|e| Error::from_sqlx(op, WHAT, "filter", e))? {
                match decode(&row) {
                    Ok(lrp) => out.push(lrp),
                    Err(e) => tracing::warn!(error = %e, "skipping undecodable actual lrp"),
                }
            }
        }
        // Stable sort: already sorted input (binary collations, clustered scans) costs one pass.
        out.sort_by(|a, b| {
            (a.key.process_guid.as_str(), a.key.index, a.presence).cmp(&(
                b.key.process_guid.as_str(),
                b.key.index,
                b.presence,
            ))
        });
        Ok(out)
    }

    /// The rows of one index (ordinary, evacuating, suspect), read without locking. An index
    /// with no rows gives empty [`IndexRows`]; an undecodable row is [`Error::Corrupt`].
    pub async fn actual_lrp_index(&self, process_guid: &ProcessGuid, index: i32) -> Result<IndexRows> {
        index::read_index(self, process_guid, index).await
    }

    /// Creates one UNCLAIMED ordinary actual LRP per index of `indices` in one transaction and
    /// returns them: each with a fresh modification-tag epoch, `routable` false and
    /// `since = now_ns`, written with multi-row INSERTs of 500 rows. A row that already exists
    /// (or an index listed twice) fails the whole call with [`Error::Exists`]; a negative index
    /// with [`Error::Invalid`].
    pub async fn create_unclaimed_actual_lrps(
        &self,
        process_guid: &ProcessGuid,
        domain: &DomainName,
        indices: &[i32],
        now_ns: i64,
    ) -> Result<Vec<ActualLrp>> {
        let (guid, domain, indices) = (process_guid.clone(), domain.clone(), indices.to_vec());
        self.write("create unclaimed actual lrps", move |tx| {
            let (guid, domain, indices) = (guid.clone(), domain.clone(), indices.clone());
            Box::pin(async move { insert_unclaimed(tx, &guid, &domain, &indices, now_ns).await })
        })
        .await
    }
}

/// Inserts one new UNCLAIMED ordinary actual LRP per index of `indices` inside `tx`: each with a
/// fresh modification-tag epoch, `routable` false and `since = now_ns`. Set-based: one
/// multi-row INSERT per chunk of 500 rows. A row that already exists (or an index listed twice)
/// fails the whole call with [`Error::Exists`]; a negative index with [`Error::Invalid`].
pub(crate) async fn insert_unclaimed(
    tx: &mut Tx,
    process_guid: &ProcessGuid,
    domain: &DomainName,
    indices: &[i32],
    now_ns: i64,
) -> Result<Vec<ActualLrp>> {
    if indices.iter().any(|&i| i < 0) {
        return Err(Error::Invalid(ValidationError::new("index", "must be >= 0")));
    }
    let rows: Vec<ActualLrp> = indices
        .iter()
        .map(|&index| {
            let key = ActualLrpKey { process_guid: process_guid.clone(), index, domain: domain.clone() };
            ActualLrp::new_unclaimed(key, uuid::Uuid::new_v4().to_string(), now_ns)
        })
        .collect();
    insert_rows(tx, "insert unclaimed actual lrps", &rows).await?;
    Ok(rows)
}

/// Inserts `rows` as they are (modification tags included), in chunks of multi-row INSERTs.
/// A duplicate primary key is [`Error::Exists`].
pub(crate) async fn insert_rows(tx: &mut Tx, op: &'static str, rows: &[ActualLrp]) -> Result<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let sql = cached_sql(tx.backend, Shape::Insert { rows: chunk.len() }, || {
            let values = vec![row_placeholders(); chunk.len()].join(", ");
            format!("INSERT INTO actual_lrps ({COLUMNS}) VALUES {values}")
        });
        let mut stmt = cached_query(&sql);
        for lrp in chunk {
            stmt = bind_row(stmt, lrp);
        }
        stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, &chunk_key(chunk), e))?;
    }
    Ok(())
}

/// How errors name a chunk of new rows: `pg index 3`, or `pg indices 0..499 (500 rows)`.
fn chunk_key(chunk: &[ActualLrp]) -> String {
    match chunk {
        [] => String::new(),
        [one] => row::row_key(one.key.process_guid.as_str(), one.key.index, one.presence),
        [first, .., last] => {
            format!("{} indices {}..{} ({} rows)", first.key.process_guid, first.key.index, last.key.index, chunk.len())
        }
    }
}

/// The filtered read for `filter`'s shape with `guid_slots` guid placeholders.
fn filter_sql(backend: Backend, filter: &ActualLrpFilter, guid_slots: usize) -> Arc<str> {
    let flags = u8::from(filter.domain.is_some())
        | u8::from(filter.cell_id.is_some()) << 1
        | u8::from(filter.process_guid.is_some()) << 2
        | u8::from(filter.index.is_some()) << 3;
    cached_sql(backend, Shape::Filter { flags, guid_slots }, || {
        let mut clauses: Vec<String> = Vec::new();
        if flags & 1 != 0 {
            clauses.push("domain = ?".into());
        }
        if flags & 2 != 0 {
            clauses.push("cell_id = ?".into());
        }
        if flags & 4 != 0 {
            clauses.push("process_guid = ?".into());
        }
        if flags & 8 != 0 {
            clauses.push("instance_index = ?".into());
        }
        if guid_slots > 0 {
            clauses.push(format!("process_guid IN ({})", placeholders(guid_slots)));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM actual_lrps");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_cell_read_is_the_published_statement() {
        let filter = ActualLrpFilter { cell_id: Some(CellId::parse("cell-1").unwrap()), ..Default::default() };
        assert_eq!(&*filter_sql(Backend::Sqlite, &filter, 0), SELECT_BY_CELL_SQL);
        assert!(filter_sql(Backend::Postgres, &filter, 0).ends_with("WHERE cell_id = $1"));
    }

    #[test]
    fn filter_statements_are_built_once_per_shape() {
        let filter =
            ActualLrpFilter { domain: Some(DomainName::parse("d").unwrap()), index: Some(3), ..Default::default() };
        let first = filter_sql(Backend::Postgres, &filter, 4);
        let again = filter_sql(Backend::Postgres, &filter, 4);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(
            first.ends_with("WHERE domain = $1 AND instance_index = $2 AND process_guid IN ($3, $4, $5, $6)"),
            "{first}"
        );
        assert!(!Arc::ptr_eq(&first, &filter_sql(Backend::Mysql, &filter, 4)));
    }
}
