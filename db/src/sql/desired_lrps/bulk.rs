//! DesireLRPs' store side: many desired LRPs stored in one transaction, each refused on its own.
//!
//! One write transaction (one `BEGIN`, one fence check, one `COMMIT`) for the whole batch:
//!
//! 1. every item is turned into its row outside the transaction ([`NewDesired`], the rule the
//!    single [`Store::desire_lrp`] uses); a guid repeated earlier in the same batch is refused
//!    with [`Error::Exists`] without touching the database;
//! 2. one `SELECT process_guid ... WHERE process_guid IN (...)` (per [`GUIDS_PER_STATEMENT`]
//!    guids) finds the guids already stored: those items are [`Error::Exists`];
//! 3. multi-row `INSERT`s of the new `desired_lrps` rows, chunked by row count and bytes;
//! 4. one `SELECT` of the ordinary actual LRP rows those guids already have (rows a removed LRP
//!    of the same guid left behind are kept, as the single desire keeps them), then multi-row
//!    `INSERT`s of the UNCLAIMED actual LRPs of every missing index.
//!
//! A refused item writes nothing; its neighbours are stored. A concurrent single desire of the
//! same guid that commits between steps 2 and 3 makes the insert fail on the primary key: the
//! whole body is then re-run (as on a deadlock) and step 2 sees the row.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proto::models::{ActualLrp, ActualLrpKey, DesiredLrp, Presence, ProcessGuid};

use super::{NewDesired, insert_desired_sql};
use crate::backend::placeholders;
use crate::sql::actual_lrps::insert_rows;
use crate::{Error, Result, Store, Tx};

/// Guids bound in one `IN (...)` list.
const GUIDS_PER_STATEMENT: usize = 500;

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
    let guids: Vec<&str> = fresh.iter().map(|(_, row)| row.stored.scheduling.process_guid.as_str()).collect();
    let existing: HashSet<String> = select_guids(tx, op, "SELECT process_guid FROM desired_lrps WHERE", "", &guids)
        .await?
        .into_iter()
        .map(|(guid, _)| guid)
        .collect();
    let new: Vec<&NewDesired> = fresh
        .iter()
        .map(|(_, row)| row)
        .filter(|row| !existing.contains(row.stored.scheduling.process_guid.as_str()))
        .collect();
    insert_desired(tx, op, &new).await?;

    // Ordinary rows left behind by a removed LRP of the same guid are kept, not duplicated.
    let new_guids: Vec<&str> = new.iter().map(|row| row.stored.scheduling.process_guid.as_str()).collect();
    let mut leftovers: HashMap<String, HashSet<i64>> = HashMap::new();
    let presence = format!(" AND presence = {}", Presence::Ordinary.as_i32());
    for (guid, index) in
        select_guids(tx, op, "SELECT process_guid, instance_index FROM actual_lrps WHERE", &presence, &new_guids)
            .await?
    {
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

/// `{select} process_guid IN (...){suffix}` over `guids`, [`GUIDS_PER_STATEMENT`] at a time:
/// each row's guid and its second column (0 when it selects only the guid).
async fn select_guids(
    tx: &mut Tx,
    op: &'static str,
    select: &str,
    suffix: &str,
    guids: &[&str],
) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    let two_columns = select.contains(',');
    for chunk in guids.chunks(GUIDS_PER_STATEMENT) {
        let sql = format!("{select} process_guid IN ({}){suffix}", placeholders(chunk.len()));
        let mut query = tx.backend.list_query(&sql);
        for guid in chunk {
            query = query.bind((*guid).to_owned());
        }
        let rows = query.fetch_all(tx.conn()).await.map_err(|e| Error::from_sqlx(op, "desired lrp", "batch", e))?;
        for row in rows {
            use sqlx::Row;
            let guid: String = row.try_get(0).map_err(|e| Error::from_sqlx(op, "desired lrp", "batch", e))?;
            let second: i64 = if two_columns {
                row.try_get(1).map_err(|e| Error::from_sqlx(op, "desired lrp", &guid, e))?
            } else {
                0
            };
            out.push((guid, second));
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
