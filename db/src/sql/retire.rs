//! Retiring the instances of a desired LRP past an index, for a scale-down or a removal
//! (issue 17 item 1): whatever their number, in bounded, set-based batches.
//!
//! - [`Store::retire_unplaced_actual_lrps`]: deletes the ORDINARY rows of one process guid at an
//!   index `>= from` that have no container (UNCLAIMED and CRASHED: the `state` column holds
//!   Diego's string, and only CLAIMED and RUNNING rows carry an instance key), at most
//!   [`RETIRE_BATCH`] rows per write transaction. Each batch is its own fenced [`Store::write`]:
//!   it locks its rows (`SELECT ... FOR UPDATE`, the first [`RETIRE_BATCH`] matching rows in
//!   index order), checks them again under the lock, deletes exactly those keys, commits, and
//!   hands the deleted rows to an async callback before the next batch starts. Nothing ever
//!   holds more than one batch of rows, in memory or in a transaction.
//! - [`Store::placed_actual_lrps`]: the rows of one process guid at an index `>= from` that do
//!   have a container (CLAIMED and RUNNING, every presence): the instances a rep must stop. They
//!   are bounded by the cells' capacity, not by the desired instance count.
//!
//! A batch never deletes below the desired LRP's current instance count: it reads `instances`
//! under a share lock in the same transaction (0 when the LRP is gone), so a cleanup that is still
//! running when the LRP is scaled up again, or removed and desired again, leaves the instances the
//! new count wants. The share lock orders the batch with [`Store::update_desired_lrp`], which
//! locks the desired row before it creates instances.
//!
//! Concurrent claims: a claim, like every lifecycle call, locks its row before it writes. A row a
//! batch deleted first is gone for the claim (NotFound, and the rep drops the work); a row claimed
//! first is CLAIMED when the batch locks it and is left alone. The batches only move forward in
//! index order (keyset, never OFFSET), so dead rows a batch left behind (PostgreSQL keeps them
//! until vacuum) are not walked again.

use proto::models::{ActualLrp, ActualLrpState, Presence, ProcessGuid};
use sqlx::Row;

use crate::backend::placeholders;
use crate::sql::actual_lrps::row::{COLUMNS, WHAT, decode, row_key};
use crate::{Error, Result, Store, Tx};

/// Most rows one batch of [`Store::retire_unplaced_actual_lrps`] locks and deletes.
pub const RETIRE_BATCH: usize = 1_000;

/// What [`Store::retire_unplaced_actual_lrps`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired {
    /// Rows deleted.
    pub deleted: u64,
    /// Write transactions that deleted at least one row.
    pub batches: u32,
}

/// One batch's outcome: the rows deleted, and the index of the last row the batch locked
/// (`None` when it found none, so nothing is left to do).
struct Batch {
    deleted: Vec<ActualLrp>,
    last_index: Option<i64>,
}

/// The states of a row that has no container.
const UNPLACED: [ActualLrpState; 2] = [ActualLrpState::Unclaimed, ActualLrpState::Crashed];

/// The states of a row that has a container.
const PLACED: [ActualLrpState; 2] = [ActualLrpState::Claimed, ActualLrpState::Running];

impl Store {
    /// Deletes every ORDINARY actual LRP of `process_guid` with an index `>= from` (and `>=` the
    /// desired LRP's current instance count, 0 when it is gone) that is UNCLAIMED or CRASHED, in
    /// batches of at most [`RETIRE_BATCH`] rows, each in its own fenced write transaction, until
    /// none is left. After each batch commits, `on_batch` gets the rows it deleted (as stored,
    /// sorted by index), so the caller can publish their removal without holding them all; the
    /// next batch starts when the future it returns is done (no transaction is open meanwhile).
    ///
    /// EVACUATING and SUSPECT rows, and CLAIMED or RUNNING rows, are never touched. A row that
    /// does not decode is left in place with a warning. An error (a lost fence among them) stops
    /// the retirement after the batches already committed; calling again resumes it.
    pub async fn retire_unplaced_actual_lrps<F, Fut>(
        &self,
        process_guid: &ProcessGuid,
        from: i32,
        mut on_batch: F,
    ) -> Result<Retired>
    where
        F: FnMut(Vec<ActualLrp>) -> Fut + Send,
        Fut: Future<Output = ()> + Send,
    {
        let op = "retire unplaced actual lrps";
        let mut retired = Retired::default();
        // Every batch starts after the last row the previous one locked.
        let mut next = i64::from(from.max(0));
        loop {
            let (guid, start) = (process_guid.clone(), next);
            let batch = self
                .write(op, move |tx| {
                    let guid = guid.clone();
                    Box::pin(async move { retire_batch(tx, op, &guid, start).await })
                })
                .await?;
            let Some(last) = batch.last_index else { return Ok(retired) };
            next = last + 1;
            if !batch.deleted.is_empty() {
                retired.deleted += batch.deleted.len() as u64;
                retired.batches += 1;
                on_batch(batch.deleted).await;
            }
        }
    }

    /// Every actual LRP of `process_guid` (all presences) with an index `>= from` that has a
    /// container (CLAIMED or RUNNING), sorted by index and presence. Rows that cannot be decoded
    /// are skipped with a warning.
    pub async fn placed_actual_lrps(&self, process_guid: &ProcessGuid, from: i32) -> Result<Vec<ActualLrp>> {
        let op = "list placed actual lrps";
        let sql = format!(
            "SELECT {COLUMNS} FROM actual_lrps WHERE process_guid = ? AND instance_index >= ? \
             AND state IN (?, ?) ORDER BY instance_index, presence"
        );
        let rows = self
            .backend
            .query(&sql)
            .bind(process_guid.as_str().to_owned())
            .bind(i64::from(from.max(0)))
            .bind(PLACED[0].as_str())
            .bind(PLACED[1].as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, WHAT, process_guid.as_str(), e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            match decode(row) {
                Ok(lrp) => out.push(lrp),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable actual lrp"),
            }
        }
        Ok(out)
    }
}

/// One batch inside `tx`: the desired count under a share lock, then the first
/// [`RETIRE_BATCH`] unplaced ordinary rows at an index `>= start` (and `>=` that count) locked,
/// then exactly the decodable ones deleted by key.
async fn retire_batch(tx: &mut Tx, op: &'static str, guid: &ProcessGuid, start: i64) -> Result<Batch> {
    let key = guid.as_str();
    let desired_sql = format!("SELECT instances FROM desired_lrps WHERE process_guid = ?{}", tx.backend.for_share());
    let desired: Option<i64> = tx
        .backend
        .query_scalar(&desired_sql)
        .bind(key.to_owned())
        .fetch_optional(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, "desired lrp", key, e))?;
    let floor = start.max(desired.unwrap_or(0));

    let select = format!(
        "SELECT {COLUMNS} FROM actual_lrps WHERE process_guid = ? AND presence = ? AND instance_index >= ? \
         AND state IN (?, ?) ORDER BY instance_index LIMIT ?{}",
        tx.backend.for_update()
    );
    let rows = tx
        .backend
        .query(&select)
        .bind(key.to_owned())
        .bind(i64::from(Presence::Ordinary.as_i32()))
        .bind(floor)
        .bind(UNPLACED[0].as_str())
        .bind(UNPLACED[1].as_str())
        .bind(RETIRE_BATCH as i64)
        .fetch_all(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, WHAT, key, e))?;
    let mut last_index = None;
    let mut deleted = Vec::with_capacity(rows.len());
    for row in &rows {
        last_index = Some(row.try_get::<i64, usize>(1).map_err(|e| Error::from_sqlx(op, WHAT, key, e))?);
        match decode(row) {
            // Checked again: the statement selected by state, the decoded row must agree.
            Ok(lrp) if lrp.presence == Presence::Ordinary && UNPLACED.contains(&lrp.state) => deleted.push(lrp),
            Ok(lrp) => tracing::warn!(
                row = %row_key(key, lrp.key.index, lrp.presence),
                state = lrp.state.as_str(),
                "not retiring a row the batch did not select"
            ),
            Err(e) => tracing::warn!(error = %e, "not retiring an undecodable actual lrp"),
        }
    }
    if !deleted.is_empty() {
        delete_indices(tx, op, guid, &deleted).await?;
    }
    Ok(Batch { deleted, last_index })
}

/// Deletes the ORDINARY rows of `guid` at the indices of `rows` (ascending) with one statement.
/// The index list is padded to a power of two with its last index, so a few statement shapes
/// serve every batch. The range of the batch is said too: PostgreSQL's generic plan otherwise
/// walks every row of the guid and tests each against the list (1.4 s per batch at 100,000 rows).
async fn delete_indices(tx: &mut Tx, op: &'static str, guid: &ProcessGuid, rows: &[ActualLrp]) -> Result<()> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(()) };
    let slots = rows.len().next_power_of_two();
    let sql = format!(
        "DELETE FROM actual_lrps WHERE process_guid = ? AND presence = ? AND instance_index >= ? \
         AND instance_index <= ? AND instance_index IN ({})",
        placeholders(slots)
    );
    let mut stmt = tx
        .backend
        .query(&sql)
        .bind(guid.as_str().to_owned())
        .bind(i64::from(Presence::Ordinary.as_i32()))
        .bind(i64::from(first.key.index))
        .bind(i64::from(last.key.index));
    for i in 0..slots {
        if let Some(lrp) = rows.get(i).or(rows.last()) {
            stmt = stmt.bind(i64::from(lrp.key.index));
        }
    }
    let done = stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, guid.as_str(), e))?;
    if done.rows_affected() != rows.len() as u64 {
        // The rows were locked: anything else is a broken invariant, not a race.
        return Err(Error::Corrupt {
            what: WHAT,
            key: guid.as_str().to_owned(),
            reason: format!("{op}: deleted {} of {} locked rows", done.rows_affected(), rows.len()),
        });
    }
    Ok(())
}
