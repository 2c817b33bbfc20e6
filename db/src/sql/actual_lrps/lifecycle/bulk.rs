//! StartActualLRPs' store side: a cell's many starts in one transaction, each refused on its own.
//!
//! One write transaction (one `BEGIN`, one fence check, one `COMMIT`):
//!
//! 1. one `SELECT ... WHERE (process_guid, instance_index) IN ((?, ?), ...) FOR UPDATE` per
//!    [`PAIRS_PER_STATEMENT`] indices locks and reads every row of every index of the batch;
//! 2. each start, in request order, runs the same pure [`apply_start`] the single start runs, on
//!    its index's rows as the earlier starts of the batch left them;
//! 3. a start that changes nothing writes nothing; a changed index is written by the same
//!    [`write_changes`] the single start uses (modification tags, validation, a row per
//!    statement inside the one transaction).
//!
//! A refused start (another instance's RUNNING row, an invalid row) writes nothing and its
//! neighbours go on. A row another writer inserted after step 1 makes the insert fail on the
//! primary key: the whole body is then re-run, as on a deadlock, and reads it.

use std::collections::HashMap;
use std::sync::Arc;

use proto::lifecycle::actual_lrp::{IndexRows, StartInfo, apply_start};
use proto::models::{ActualLrpInstanceKey, ActualLrpKey};

use super::super::index::{IndexChange, write_changes};
use super::super::row::{COLUMNS, WHAT, decode};
use crate::{Error, Result, Store, Tx};

/// (process guid, index) pairs bound in one locking read: 1,000 placeholders.
const PAIRS_PER_STATEMENT: usize = 500;

/// One start of a batch: what [`Store::start_actual_lrp`] takes.
pub type StartItem = (ActualLrpKey, ActualLrpInstanceKey, StartInfo);

/// What the store did with one start of [`Store::start_actual_lrps`].
pub type StartOutcome = Result<IndexChange<()>>;

impl Store {
    /// StartActualLRP for each of `starts`, in one transaction, with the rule and the effects of
    /// [`Store::start_actual_lrp`] (a start that changes nothing writes nothing; starts of the
    /// same index apply in order). One outcome per start, in order; a refusal
    /// ([`ErrorCode::ActualLrpCannotBeStarted`](proto::error::ErrorCode), [`Error::Invalid`])
    /// concerns its start only. `Err` for the whole call (fenced out, database down) means
    /// nothing was written.
    pub async fn start_actual_lrps(&self, starts: &[StartItem], now_ns: i64) -> Result<Vec<StartOutcome>> {
        let op = "start actual lrps";
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let starts: Arc<[StartItem]> = starts.into();
        self.write(op, move |tx| {
            let starts = Arc::clone(&starts);
            Box::pin(async move { start_batch(tx, op, &starts, now_ns).await })
        })
        .await
    }
}

/// The transaction body (steps 1 to 3 of the module docs).
async fn start_batch(tx: &mut Tx, op: &'static str, starts: &[StartItem], now_ns: i64) -> Result<Vec<StartOutcome>> {
    let mut pairs: Vec<(&str, i32)> = starts.iter().map(|(key, _, _)| (key.process_guid.as_str(), key.index)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut current = lock_indices(tx, op, &pairs).await?;
    let mut outcomes = Vec::with_capacity(starts.len());
    for (key, instance_key, start) in starts {
        let slot = (key.process_guid.as_str().to_owned(), key.index);
        let before = current.get(&slot).cloned().unwrap_or_default();
        let mut after = before.clone();
        if let Err(refusal) = apply_start(&mut after, key, instance_key, start, now_ns) {
            outcomes.push(Err(Error::from(refusal)));
            continue;
        }
        if after == before {
            outcomes.push(Ok(IndexChange { value: (), after: before.clone(), before }));
            continue;
        }
        match write_changes(tx, op, &key.process_guid, key.index, &before, after).await {
            Ok(stored) => {
                current.insert(slot, stored.clone());
                outcomes.push(Ok(IndexChange { value: (), before, after: stored }));
            }
            // Refused before any statement of this start ran.
            Err(invalid @ Error::Invalid(_)) => outcomes.push(Err(invalid)),
            Err(e) => return Err(e),
        }
    }
    Ok(outcomes)
}

/// Locks and reads the rows of every index of `pairs` (sorted, unique), grouped by index.
async fn lock_indices(
    tx: &mut Tx,
    op: &'static str,
    pairs: &[(&str, i32)],
) -> Result<HashMap<(String, i32), IndexRows>> {
    let mut out: HashMap<(String, i32), IndexRows> = HashMap::with_capacity(pairs.len());
    for chunk in pairs.chunks(PAIRS_PER_STATEMENT) {
        let list = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT {COLUMNS} FROM actual_lrps WHERE (process_guid, instance_index) IN ({list}){}",
            tx.backend.for_update()
        );
        let mut query = tx.backend.query(&sql);
        for (guid, index) in chunk {
            query = query.bind((*guid).to_owned()).bind(i64::from(*index));
        }
        let rows = query.fetch_all(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, "batch", e))?;
        for row in &rows {
            let lrp = decode(row)?;
            let slot = (lrp.key.process_guid.as_str().to_owned(), lrp.key.index);
            let presence = lrp.presence;
            *out.entry(slot).or_default().slot_mut(presence) = Some(lrp);
        }
    }
    Ok(out)
}
