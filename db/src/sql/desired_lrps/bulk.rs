//! DesireLRPs' store side: many desired LRPs stored in one transaction, each refused on its own.
//!
//! One write transaction (one `BEGIN`, one fence check, one `COMMIT`) for the whole batch:
//!
//! 1. every item is turned into its row outside the transaction ([`NewDesired`], the rule the
//!    single [`Store::desire_lrp`] uses); a guid repeated earlier in the same batch is refused
//!    with [`Error::Exists`] without touching the database;
//! 2. one read of the batch's guids in `desired_lrps` (per [`KEYS_PER_STATEMENT`] guids) finds
//!    the guids already stored: those items are [`Error::Exists`];
//! 3. multi-row `INSERT`s of the new `desired_lrps` rows, chunked by row count and bytes;
//! 4. one read of the ordinary actual LRP rows at the indices the new LRPs ask for (rows a
//!    removed LRP of the same guid left behind are kept, as the single desire keeps them), then
//!    multi-row `INSERT`s of the UNCLAIMED actual LRPs of every missing index.
//!
//! Both reads look every key up on its own ([`Backend::select_by_keys`](crate::Backend::select_by_keys)),
//! by the whole key of `desired_lrps` and by the (guid, index) prefix of the key of
//! `actual_lrps`. A list condition `process_guid IN (...)` on `actual_lrps`, where the guid
//! alone is not unique, is estimated by PostgreSQL without the table's statistics (a table that
//! grows as fast as while seeding has none yet) at half a percent of the rows per guid, so 500
//! guids "match" every row: every batch scanned the whole table (a 250,000-LRP seeding made 500
//! scans reading 62 million rows; docs/performance.md, thirteenth round).
//!
//! A refused item writes nothing; its neighbours are stored. A concurrent single desire of the
//! same guid that commits between steps 2 and 3 makes the insert fail on the primary key: the
//! whole body is then re-run (as on a deadlock) and step 2 sees the row.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proto::models::{ActualLrp, ActualLrpKey, DesiredLrp, Presence, ProcessGuid};

use super::{NewDesired, insert_desired_sql};
use crate::sql::actual_lrps::insert_rows;
use crate::{Error, Result, Store, Tx};

/// Keys looked up by one statement.
const KEYS_PER_STATEMENT: usize = 500;

/// Most rows of one multi-row `INSERT INTO desired_lrps`: 200 × 18 = 3,600 placeholders, far
/// under every backend's bind-parameter limit (SQLite 32,766, PostgreSQL and MySQL 65,535).
const DESIRED_ROWS_PER_INSERT: usize = 200;

/// Most bytes (run info, routes, annotation, about) of one multi-row `INSERT INTO desired_lrps`:
/// well under MySQL's smallest usual `max_allowed_packet` (4 MiB in MySQL 5.7, 16 MiB in
/// MariaDB).
const DESIRED_BYTES_PER_INSERT: usize = 1024 * 1024;

/// What the store did with one item of [`Store::desire_lrps`]: the item back (as stored, with
/// its fresh modification tag and `created_at`, unless it was refused before that) with its new
/// UNCLAIMED instances, or with why it was refused.
pub type DesireOutcome = (DesiredLrp, Result<Vec<ActualLrp>>);

impl Store {
    /// Stores each of `lrps` as [`Store::desire_lrp`] would (a fresh modification tag, the run
    /// info's `created_at` set to `now_ns`, UNCLAIMED instances for the indices that have no
    /// ordinary row yet), all in one transaction, and gives back every item, in order, with its
    /// outcome. An item whose guid is stored already, or was repeated earlier in `lrps`, is
    /// [`Error::Exists`], which does not stop the others. `Err` for the whole call (fenced out,
    /// database down) means nothing was written. The items are taken by value: a batch is
    /// stored without a copy of any of them.
    pub async fn desire_lrps(&self, lrps: Vec<DesiredLrp>, now_ns: i64) -> Result<Vec<DesireOutcome>> {
        let op = "desire lrps";
        // Each item is either fresh (a row to insert, at its position) or refused already.
        let mut refused: Vec<Option<DesireOutcome>> = Vec::with_capacity(lrps.len());
        let mut fresh: Vec<(usize, NewDesired)> = Vec::with_capacity(lrps.len());
        let mut seen: HashSet<ProcessGuid> = HashSet::with_capacity(lrps.len());
        for (i, lrp) in lrps.into_iter().enumerate() {
            if seen.insert(lrp.scheduling.process_guid.clone()) {
                fresh.push((i, NewDesired::new(self, lrp, now_ns)));
                refused.push(None);
            } else {
                let key = format!("{} (repeated earlier in the same request)", lrp.scheduling.process_guid);
                refused.push(Some((lrp, Err(Error::Exists { what: "desired lrp", key }))));
            }
        }
        let fresh = Arc::new(fresh);
        let shared = Arc::clone(&fresh);
        let written = self
            .write(op, move |tx| {
                let fresh = Arc::clone(&shared);
                Box::pin(async move { store_batch(tx, op, &fresh, now_ns).await })
            })
            .await?;
        // The body's last clone of the rows went with the transaction: this takes them back
        // without a copy.
        let mut stored = Arc::unwrap_or_clone(fresh).into_iter().zip(written);
        let mut outcomes = Vec::with_capacity(refused.len());
        for item in refused {
            match item {
                Some(outcome) => outcomes.push(outcome),
                None => {
                    let ((_, row), created) = stored.next().ok_or_else(|| {
                        Error::refused(proto::error::ErrorCode::Unknown, "the batch left an item unanswered")
                    })?;
                    outcomes.push((row.stored, created));
                }
            }
        }
        Ok(outcomes)
    }
}

/// The transaction body: steps 2 to 4 of the module docs. One entry per item of `fresh`: its
/// created instances, or [`Error::Exists`].
async fn store_batch(
    tx: &mut Tx,
    op: &'static str,
    fresh: &[(usize, NewDesired)],
    now_ns: i64,
) -> Result<Vec<Result<Vec<ActualLrp>>>> {
    let guids: Vec<(&str, Option<i32>)> =
        fresh.iter().map(|(_, row)| (row.stored.scheduling.process_guid.as_str(), None)).collect();
    let existing: HashSet<String> =
        select_keys(tx, op, &DESIRED_KEYS, &guids).await?.into_iter().map(|(guid, _)| guid).collect();
    let new: Vec<&NewDesired> = fresh
        .iter()
        .map(|(_, row)| row)
        .filter(|row| !existing.contains(row.stored.scheduling.process_guid.as_str()))
        .collect();
    insert_desired(tx, op, &new).await?;

    // Ordinary rows left behind by a removed LRP of the same guid are kept, not duplicated.
    let indices: Vec<(&str, Option<i32>)> = new
        .iter()
        .flat_map(|row| {
            let s = &row.stored.scheduling;
            (0..s.instances.max(0)).map(|index| (s.process_guid.as_str(), Some(index)))
        })
        .collect();
    let mut leftovers: HashMap<String, HashSet<i64>> = HashMap::new();
    for (guid, index) in select_keys(tx, op, &ACTUAL_KEYS, &indices).await? {
        leftovers.entry(guid).or_default().insert(index);
    }
    let mut created: HashMap<&str, Vec<ActualLrp>> = HashMap::with_capacity(new.len());
    let mut all = Vec::new();
    for row in &new {
        let s = &row.stored.scheduling;
        let left = leftovers.get(s.process_guid.as_str());
        let rows: Vec<ActualLrp> = (0..s.instances.max(0))
            .filter(|i| !left.is_some_and(|left| left.contains(&i64::from(*i))))
            .map(|index| {
                let key = ActualLrpKey { process_guid: s.process_guid.clone(), index, domain: s.domain.clone() };
                ActualLrp::new_unclaimed(key, uuid::Uuid::new_v4().to_string(), now_ns)
            })
            .collect();
        all.extend(rows.iter().cloned());
        created.insert(s.process_guid.as_str(), rows);
    }
    insert_rows(tx, op, &all).await.map_err(|e| concurrent(op, e))?;
    Ok(fresh
        .iter()
        .map(|(_, row)| {
            let guid = row.stored.scheduling.process_guid.as_str();
            match created.remove(guid) {
                Some(rows) => Ok(rows),
                None => Err(Error::Exists { what: "desired lrp", key: guid.to_owned() }),
            }
        })
        .collect())
}

/// A table whose keys [`select_keys`] looks up: the columns it reads and the key they are
/// looked up by.
struct Lookup {
    table: &'static str,
    columns: &'static str,
    key: &'static [&'static str],
}

/// `desired_lrps` by guid (its whole key).
const DESIRED_KEYS: Lookup = Lookup { table: "desired_lrps", columns: "process_guid", key: &["process_guid"] };

/// `actual_lrps` by guid and index (the key without the presence).
const ACTUAL_KEYS: Lookup = Lookup {
    table: "actual_lrps",
    columns: "process_guid, instance_index, presence",
    key: &["process_guid", "instance_index"],
};

/// The keys of `keys` stored in `lookup`'s table, looked up key by key, [`KEYS_PER_STATEMENT`]
/// at a time: in [`DESIRED_KEYS`] by guid alone (`None`), each stored guid with 0; in
/// [`ACTUAL_KEYS`] by guid and index (`Some`), each index that has an ordinary row.
async fn select_keys(
    tx: &mut Tx,
    op: &'static str,
    lookup: &Lookup,
    keys: &[(&str, Option<i32>)],
) -> Result<Vec<(String, i64)>> {
    use sqlx::Row;
    let err = |key: &str, e| Error::from_sqlx(op, "desired lrp", key, e);
    let mut out = Vec::new();
    for chunk in keys.chunks(KEYS_PER_STATEMENT) {
        let sql = tx.backend.select_by_keys(lookup.columns, lookup.table, lookup.key, chunk.len(), false);
        let mut query = tx.backend.query(&sql);
        for (guid, index) in chunk {
            query = query.bind((*guid).to_owned());
            if let Some(index) = index {
                query = query.bind(i64::from(*index));
            }
        }
        for row in query.fetch_all(tx.conn()).await.map_err(|e| err("batch", e))? {
            let guid: String = row.try_get(0).map_err(|e| err("batch", e))?;
            if lookup.key.len() == 1 {
                out.push((guid, 0));
                continue;
            }
            let index: i64 = row.try_get(1).map_err(|e| err(&guid, e))?;
            let presence: i64 = row.try_get(2).map_err(|e| err(&guid, e))?;
            if presence == i64::from(Presence::Ordinary.as_i32()) {
                out.push((guid, index));
            }
        }
    }
    Ok(out)
}

/// Multi-row inserts of `rows`, at most [`DESIRED_ROWS_PER_INSERT`] rows and about
/// [`DESIRED_BYTES_PER_INSERT`] bytes per statement (always at least one row).
async fn insert_desired(tx: &mut Tx, op: &'static str, rows: &[&NewDesired]) -> Result<()> {
    let mut start = 0;
    while start < rows.len() {
        let mut end = start + 1;
        let mut bytes = rows[start].payload_bytes();
        while end < rows.len() && end - start < DESIRED_ROWS_PER_INSERT {
            bytes += rows[end].payload_bytes();
            if bytes > DESIRED_BYTES_PER_INSERT {
                break;
            }
            end += 1;
        }
        let chunk = &rows[start..end];
        let mut stmt = tx.backend.query(&insert_desired_sql(chunk.len()));
        for row in chunk {
            stmt = row.bind(stmt);
        }
        let key = chunk[0].stored.scheduling.process_guid.as_str();
        stmt.execute(tx.conn()).await.map_err(|e| concurrent(op, Error::from_sqlx(op, "desired lrp", key, e)))?;
        start = end;
    }
    Ok(())
}

/// A duplicate key on a row the batch's read did not see: a concurrent writer inserted it
/// first. Re-raised as retryable, so the body re-runs and reads it.
fn concurrent(op: &'static str, e: Error) -> Error {
    match e {
        Error::Exists { what, key } => Error::Deadlock {
            op,
            attempts: 1,
            source: sqlx::Error::Protocol(format!("{what} {key} was inserted concurrently")),
        },
        other => other,
    }
}
