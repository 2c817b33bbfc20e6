//! The index mechanism every lifecycle call uses (bbs.md 4.4): in one write transaction, lock
//! every row of (process guid, index), apply the change to an in-memory copy, then write only the
//! differences. The caller gets the rows before and after, from which the BBS computes events.

use std::collections::HashMap;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use proto::error::ErrorCode;
pub use proto::lifecycle::actual_lrp::IndexRows;
use proto::models::validation::validate_actual_lrp;
use proto::models::{ActualLrp, ModificationTag, Presence, ProcessGuid, ValidationError};

use super::row::{COLUMNS, SET_MUTABLE, WHAT, bind_mutable, bind_pk, decode, row_key};
use super::{Shape, cached_query, cached_sql, insert_rows};
use crate::store::reads::{Bind, Reach};
use crate::{Error, Result, Store, Tx};

/// What [`Store::modify_index`] did: the callback's value and the rows of the index before and
/// after (as stored, modification tags included). `before == after` means nothing was written.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexChange<T> {
    /// What the callback returned.
    pub value: T,
    /// The rows before the transaction.
    pub before: IndexRows,
    /// The rows after it.
    pub after: IndexRows,
}

impl<T> IndexChange<T> {
    /// Whether the call changed any row.
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// A request from the transaction body to run the callback on these rows, and where to answer.
pub(super) type Apply = (IndexRows, oneshot::Sender<Result<IndexRows>>);

impl Store {
    /// Changes the rows of one index in one write transaction: locks them (`SELECT ... FOR
    /// UPDATE`), runs `f` on a copy, then writes only the differences:
    ///
    /// - a row that appeared is INSERTed;
    /// - a row that changed is UPDATEd;
    /// - a row that vanished is DELETEd;
    /// - an unchanged row is not written.
    ///
    /// `f` sets the fields of the rows but not their modification tags, presence or key:
    /// - every written row gets modification-tag index + 1, or a fresh epoch at index 0 when
    ///   `f` left its epoch empty (give a new record an empty epoch);
    /// - a row's presence is its slot's, so moving a row between slots changes its presence;
    /// - a row whose process guid or index differs from the index's is refused with
    ///   [`Error::Invalid`], as is a row that breaks the invariants of bbs.md 2.2.
    ///
    /// An error from `f` is returned as it is, and nothing of this call is written. `f` must
    /// be repeatable: it runs again when the transaction is retried after a deadlock, on the
    /// rows as they are then. Two calls that both create a row of the same slot cannot both
    /// succeed; the loser is retried and sees the winner's row.
    ///
    /// With group commit on ([`crate::StoreOptions::group_commit_lanes`]), concurrent calls
    /// share one transaction and their writes go out in multi-row statements (see the
    /// `coalesce` module); each is still decided, validated and refused on its own.
    pub async fn modify_index<T: Send>(
        &self,
        op: &'static str,
        process_guid: &ProcessGuid,
        index: i32,
        mut f: impl FnMut(&mut IndexRows) -> Result<T> + Send,
    ) -> Result<IndexChange<T>> {
        let Some(lane) = &self.group.index_lane else {
            // No coalescing here: the savepoint batches (or, with group commit off, a
            // transaction of its own).
            return self.modify_index_alone(true, op, process_guid, index, f).await;
        };
        // Coalesced with the concurrent writes of other indices ([`super::coalesce`]): the
        // batch runs on a task of its own and hands this call its index's rows through `ask`;
        // `f` runs here, on this task, and may borrow from the caller.
        let (ask, mut asked) = mpsc::unbounded::<Apply>();
        let finished = crate::coalesce::submit(self, lane, op, (process_guid.clone(), index, ask));
        tokio::pin!(finished);
        let mut value = None;
        let done = loop {
            tokio::select! {
                biased;
                Some(asked) = asked.next() => answer(asked, &mut f, &mut value),
                done = &mut finished => break done,
            }
        };
        match done {
            crate::coalesce::Done::Written(outcome) => {
                let (before, after) = (*outcome)?;
                let value = value.ok_or_else(|| callback_gone(op))?;
                Ok(IndexChange { value, before, after })
            }
            // The batch failed as a whole for a reason that may be one member's: each member
            // runs again in a transaction of its own, so that it fails alone.
            crate::coalesce::Done::Alone => self.modify_index_alone(false, op, process_guid, index, f).await,
        }
    }

    /// [`Store::modify_index`] without coalescing: in the savepoint batches when `grouped`
    /// (where index writes are not coalesced; [`crate::group_commit`]), else in a transaction of
    /// its own (for a write whose coalesced batch failed as a whole).
    async fn modify_index_alone<T: Send>(
        &self,
        grouped: bool,
        op: &'static str,
        process_guid: &ProcessGuid,
        index: i32,
        mut f: impl FnMut(&mut IndexRows) -> Result<T> + Send,
    ) -> Result<IndexChange<T>> {
        // The transaction body must not borrow from this call (the store's write helper takes a
        // body whose futures outlive any borrow). So `f` stays here and the body hands it the
        // rows through channels; the body and the loop below run joined on this task.
        let (ask, mut asked) = mpsc::unbounded::<Apply>();
        let guid = process_guid.clone();
        let transaction = self.write_grouped_if(grouped, op, move |tx| {
            let (ask, guid) = (ask.clone(), guid.clone());
            Box::pin(async move {
                let before = lock_index(tx, op, &guid, index).await?;
                let (reply, answer) = oneshot::channel();
                ask.unbounded_send((before.clone(), reply)).map_err(|_| callback_gone(op))?;
                let after = answer.await.map_err(|_| callback_gone(op))??;
                let after = write_changes(tx, op, &guid, index, &before, after).await?;
                Ok((before, after))
            })
        });
        let mut value = None;
        let apply = async {
            // Ends when the transaction is done and its body (holding the sender) is dropped.
            while let Some(asked) = asked.next().await {
                answer(asked, &mut f, &mut value);
            }
        };
        let (outcome, ()) = futures::join!(transaction, apply);
        let (before, after) = outcome?;
        let value = value.ok_or_else(|| callback_gone(op))?;
        Ok(IndexChange { value, before, after })
    }
}

/// Runs the caller's callback on the rows a transaction hands over and sends back the rows it
/// leaves, keeping its value for the caller. The transaction waits for this answer; its receiver
/// is gone only if the transaction was dropped, and then nobody needs the answer.
fn answer<T>((rows, reply): Apply, f: &mut impl FnMut(&mut IndexRows) -> Result<T>, value: &mut Option<T>) {
    let mut after = rows;
    let outcome = f(&mut after).map(|v| {
        *value = Some(v);
        after
    });
    let _ = reply.send(outcome);
}

/// An internal fault, not a broken database: the call fails, the server goes on (only a lost
/// schema is Unrecoverable).
pub(super) fn callback_gone(op: &'static str) -> Error {
    Error::refused(ErrorCode::Unknown, format!("{op}: the index callback went away mid-transaction"))
}

/// Collects decoded rows into their slots; any undecodable row is [`Error::Corrupt`].
fn collect(rows: &[sqlx::any::AnyRow]) -> Result<IndexRows> {
    let mut out = IndexRows::default();
    for row in rows {
        let lrp = decode(row)?;
        let presence = lrp.presence;
        *out.slot_mut(presence) = Some(lrp);
    }
    Ok(out)
}

fn index_sql(backend: crate::Backend, lock: bool) -> std::sync::Arc<str> {
    cached_sql(backend, Shape::Index { lock }, || {
        let suffix = if lock { backend.for_update() } else { "" };
        format!("SELECT {COLUMNS} FROM actual_lrps WHERE process_guid = ? AND instance_index = ?{suffix}")
    })
}

/// The rows of an index, read on the pool without locks.
pub(super) async fn read_index(store: &Store, process_guid: &ProcessGuid, index: i32) -> Result<IndexRows> {
    let rows = cached_query(&index_sql(store.backend, false))
        .bind(process_guid.as_str().to_owned())
        .bind(i64::from(index))
        .fetch_all(&store.pool)
        .await
        .map_err(|e| {
            Error::from_sqlx(
                "read actual lrp index",
                WHAT,
                &row_key(process_guid.as_str(), index, Presence::Ordinary),
                e,
            )
        })?;
    collect(&rows)
}

/// The rows of an index, locked until `tx` ends.
pub(crate) async fn lock_index(
    tx: &mut Tx,
    op: &'static str,
    process_guid: &ProcessGuid,
    index: i32,
) -> Result<IndexRows> {
    let rows = cached_query(&index_sql(tx.backend, true))
        .bind(process_guid.as_str().to_owned())
        .bind(i64::from(index))
        .fetch_all(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, WHAT, &row_key(process_guid.as_str(), index, Presence::Ordinary), e))?;
    collect(&rows)
}

/// The rows one write leaves to delete, update and insert, each already tagged and validated
/// by [`plan_index`]: what [`write_changes`] runs one statement per row and the batch of starts
/// runs with multi-row statements.
#[derive(Debug, Default)]
pub(crate) struct RowWrites {
    /// The primary keys of rows to delete.
    pub(crate) deletes: Vec<(ProcessGuid, i32, Presence)>,
    /// Rows that exist and change, as they are to be stored.
    pub(crate) updates: Vec<ActualLrp>,
    /// Rows that do not exist yet.
    pub(crate) inserts: Vec<ActualLrp>,
}

impl RowWrites {
    /// Adds the writes that take the rows of one index from `stored_before` (as in the database)
    /// to `stored_after` (as [`plan_index`] returned it): a row that vanished is deleted, a row
    /// that appeared inserted, a row that differs updated, slot by slot.
    pub(crate) fn add_diff(
        &mut self,
        process_guid: &ProcessGuid,
        index: i32,
        stored_before: &IndexRows,
        stored_after: &IndexRows,
    ) {
        for presence in Presence::ALL {
            match (stored_before.get(presence), stored_after.get(presence)) {
                (Some(_), None) => self.deletes.push((process_guid.clone(), index, presence)),
                (None, Some(new)) => self.inserts.push(new.clone()),
                (Some(old), Some(new)) if old != new => self.updates.push(new.clone()),
                _ => {}
            }
        }
    }
}

/// Plans the write of one index, without touching the database: every row of `after` (as the
/// callback left it) gets its slot's presence; a row that differs from its slot in `before`
/// gets its next modification tag (a fresh epoch at index 0 when its epoch is empty) and is
/// validated. Returns `after` as it is to be stored; [`RowWrites::add_diff`] of `before` and
/// that gives the statements.
///
/// A row moved to another process guid or index, or one that breaks the invariants of bbs.md
/// 2.2, is [`Error::Invalid`]: the whole index is refused before any of its rows is written.
pub(crate) fn plan_index(
    process_guid: &ProcessGuid,
    index: i32,
    before: &IndexRows,
    mut after: IndexRows,
) -> Result<IndexRows> {
    for presence in Presence::ALL {
        // Named only in a refusal: a start of a thousand instances formats none.
        let key = || row_key(process_guid.as_str(), index, presence);
        let Some(new) = after.slot_mut(presence).as_mut() else {
            continue;
        };
        if new.key.process_guid != *process_guid || new.key.index != index {
            return Err(Error::Invalid(ValidationError::new(
                "actual_lrp_key",
                format!("must stay {}, not {}", key(), row_key(new.key.process_guid.as_str(), new.key.index, presence)),
            )));
        }
        new.presence = presence;
        if before.get(presence) == Some(&*new) {
            continue;
        }
        new.modification_tag = if new.modification_tag.epoch.is_empty() {
            ModificationTag::new(uuid::Uuid::new_v4().to_string())
        } else {
            new.modification_tag.incremented()
        };
        validate_actual_lrp(new).map_err(|e| Error::Invalid(e.within(&key())))?;
    }
    Ok(after)
}

/// Writes the differences between `before` (as locked) and `after` (as the callback left it),
/// planned by [`plan_index`], one statement per row, and returns `after` as stored.
pub(crate) async fn write_changes(
    tx: &mut Tx,
    op: &'static str,
    process_guid: &ProcessGuid,
    index: i32,
    before: &IndexRows,
    after: IndexRows,
) -> Result<IndexRows> {
    let stored = plan_index(process_guid, index, before, after)?;
    let mut writes = RowWrites::default();
    writes.add_diff(process_guid, index, before, &stored);
    for (guid, index, presence) in &writes.deletes {
        delete_row(tx, op, guid, *index, *presence).await?;
    }
    for lrp in &writes.updates {
        update_row(tx, op, lrp).await?;
    }
    for lrp in &writes.inserts {
        insert_row(tx, op, lrp).await?;
    }
    Ok(stored)
}

async fn delete_row(
    tx: &mut Tx,
    op: &'static str,
    process_guid: &ProcessGuid,
    index: i32,
    presence: Presence,
) -> Result<()> {
    let sql = cached_sql(tx.backend, Shape::Delete, || {
        "DELETE FROM actual_lrps WHERE process_guid = ? AND instance_index = ? AND presence = ?".to_owned()
    });
    bind_pk(cached_query(&sql), process_guid, index, presence)
        .execute(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, WHAT, &row_key(process_guid.as_str(), index, presence), e))?;
    Ok(())
}

async fn update_row(tx: &mut Tx, op: &'static str, lrp: &ActualLrp) -> Result<()> {
    let sql = cached_sql(tx.backend, Shape::Update, || {
        format!("UPDATE actual_lrps SET {SET_MUTABLE} WHERE process_guid = ? AND instance_index = ? AND presence = ?")
    });
    let stmt = bind_mutable(cached_query(&sql), lrp);
    bind_pk(stmt, &lrp.key.process_guid, lrp.key.index, lrp.presence).execute(tx.conn()).await.map_err(|e| {
        Error::from_sqlx(op, WHAT, &row_key(lrp.key.process_guid.as_str(), lrp.key.index, lrp.presence), e)
    })?;
    Ok(())
}

/// Inserts a row the locked read did not see (see [`inserted_concurrently`]).
async fn insert_row(tx: &mut Tx, op: &'static str, lrp: &ActualLrp) -> Result<()> {
    insert_rows(tx, op, std::slice::from_ref(lrp)).await.map_err(|e| inserted_concurrently(op, e))
}

/// A row the locked read did not see can still exist when written: no row lock covers a row
/// that does not exist yet, so a concurrent transaction may have inserted it first. Its
/// [`Error::Exists`] becomes a retryable error, so the body is run again and re-reads the
/// index; any other error is returned as it is.
pub(crate) fn inserted_concurrently(op: &'static str, error: Error) -> Error {
    match error {
        // Keep a driver error as the source for the final report.
        Error::Exists { key, .. } => Error::Deadlock {
            op,
            attempts: 1,
            source: sqlx::Error::Protocol(format!("{key} was inserted concurrently")),
        },
        other => other,
    }
}

/// (process guid, index) pairs bound in one keyed read: 1,000 placeholders.
const PAIRS_PER_STATEMENT: usize = 500;

/// An index: (process guid, instance index).
pub(super) type Slot = (ProcessGuid, i32);

/// Reads and locks (`FOR UPDATE`) the rows of every index of `pairs` (sorted, unique), grouped
/// by index.
pub(super) async fn read_indices(
    tx: &mut Tx,
    op: &'static str,
    pairs: &[(&str, i32)],
) -> Result<HashMap<Slot, IndexRows>> {
    let mut out: HashMap<Slot, IndexRows> = HashMap::with_capacity(pairs.len());
    for row in &select_indices(tx, op, COLUMNS, pairs).await? {
        keep_row(&mut out, decode(row)?);
    }
    Ok(out)
}

/// The rows of every index of `pairs` as [`read_indices`] reads them, but outside any
/// transaction and without locks, on the store's read path
/// ([`Store::read_rows`]: the native driver's rows where the store has a native pool), so a
/// read that decides nothing needs to be written costs one statement and no transaction.
pub(super) async fn read_indices_unlocked(
    store: &Store,
    op: &'static str,
    pairs: &[(&str, i32)],
) -> Result<HashMap<Slot, IndexRows>> {
    let mut out: HashMap<Slot, IndexRows> = HashMap::with_capacity(pairs.len());
    for chunk in pairs.chunks(PAIRS_PER_STATEMENT) {
        let sql = store.backend().select_by_keys(COLUMNS, "actual_lrps", &KEY, chunk.len(), false);
        let binds =
            chunk.iter().flat_map(|(guid, index)| [Bind::Text((*guid).to_owned()), Bind::Int(i64::from(*index))]);
        let mut corrupt = None;
        store
            .read_rows(&sql, false, Reach::Keyed, binds.collect(), |row| {
                // The first undecodable row fails the read, as in `read_indices`.
                if corrupt.is_none() {
                    match decode(row) {
                        Ok(lrp) => keep_row(&mut out, lrp),
                        Err(e) => corrupt = Some(e),
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| Error::from_sqlx(op, WHAT, "batch", e))?;
        if let Some(e) = corrupt {
            return Err(e);
        }
    }
    Ok(out)
}

/// Puts a row read by [`read_indices`] into its index's slot.
fn keep_row(out: &mut HashMap<Slot, IndexRows>, lrp: ActualLrp) {
    let slot = (lrp.key.process_guid.clone(), lrp.key.index);
    let presence = lrp.presence;
    *out.entry(slot).or_default().slot_mut(presence) = Some(lrp);
}

/// The primary key of an index's rows, as [`select_indices`] looks them up.
const KEY: [&str; 2] = ["process_guid", "instance_index"];

/// `SELECT {columns} ... FOR UPDATE` of the rows of every index of `pairs` (sorted, unique), in
/// statements of [`PAIRS_PER_STATEMENT`] indices.
pub(super) async fn select_indices(
    tx: &mut Tx,
    op: &'static str,
    columns: &str,
    pairs: &[(&str, i32)],
) -> Result<Vec<sqlx::any::AnyRow>> {
    let mut out = Vec::new();
    for chunk in pairs.chunks(PAIRS_PER_STATEMENT) {
        let sql = tx.backend.select_by_keys(columns, "actual_lrps", &KEY, chunk.len(), true);
        let mut query = tx.backend.query(&sql);
        for (guid, index) in chunk {
            query = query.bind((*guid).to_owned()).bind(i64::from(*index));
        }
        out.extend(query.fetch_all(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, "batch", e))?);
    }
    Ok(out)
}
