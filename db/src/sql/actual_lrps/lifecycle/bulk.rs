//! StartActualLRPs' store side: a cell's many starts, each refused on its own, in one read and
//! at most one write transaction.
//!
//! 1. one `SELECT` of the rows of 500 indices (process guid, instance index) per statement
//!    ([`Backend::select_by_keys`](crate::Backend::select_by_keys)) reads every row of every
//!    index of the batch, without locks and outside any transaction, on the store's read path
//!    (the native driver's rows where the store has a native read pool);
//! 2. each start, in request order, runs the same pure [`apply_start`] the single start runs, on
//!    its index's rows as the earlier starts of the batch left them (in memory);
//! 3. a start that changes nothing writes nothing, and its answer stands: it is what the start
//!    did at the moment of that read, like any read. Most starts of a cell's bulk loop are such
//!    re-asserts of RUNNING instances: a batch of them all ends here, with no transaction, no
//!    fence check and no row lock (locking their rows made the database write every one of
//!    them, and the fence check's shared lock on the lease row was one more write per batch);
//! 4. otherwise one write transaction (one `BEGIN`, one fence check, one `COMMIT`): a changed
//!    index is planned by the same [`plan_index`] the single start uses (modification tags,
//!    validation), still in memory, so an invalid index is refused alone before any statement
//!    of the batch writes; then the indices some start changes are locked (`FOR UPDATE`),
//!    reading only their rows' versions (key and modification tag). When those are what step 1
//!    read, the plan stands; otherwise another writer came in between: their rows are read
//!    again, locked, and steps 2 and 3 run again for their starts only;
//! 5. the net change of every index (its rows as locked against its rows after the batch's last
//!    start of it) is written with multi-row statements of at most 200 rows
//!    ([`write_rows`]): the deletes, then one UPDATE per 200 changed rows (the rows joined to
//!    the new values on the primary key), then the inserts. A statement that touches another
//!    number of rows than it names fails the whole call.
//!
//! So a batch of 250 starts of UNCLAIMED rows is six statements (read, begin, lock, update,
//! the fence check, commit), not 250, and a batch of 250 re-asserts is one read.
//!
//! A refused start (another instance's RUNNING row, an invalid row) writes nothing and its
//! neighbours go on. An error of step 5 (the database refusing a value the validation let
//! through, a lost connection) fails the whole call and nothing is written. A row another
//! writer inserted after step 4 makes the insert fail on the primary key: the transaction is
//! then re-run, as on a deadlock, from the plan of step 3, and its lock sees the row.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use proto::lifecycle::actual_lrp::{IndexRows, StartInfo, apply_start};
use proto::models::{ActualLrpInstanceKey, ActualLrpKey};

use super::super::index::{
    IndexChange, RowWrites, Slot, plan_index, read_indices, read_indices_unlocked, select_indices,
};
use super::super::multi_row::write_rows;
use super::super::row::Reader;
use crate::{Error, Result, Store, Tx};

/// One start of a batch: what [`Store::start_actual_lrp`] takes.
pub type StartItem = (ActualLrpKey, ActualLrpInstanceKey, StartInfo);

/// What the store did with one start of [`Store::start_actual_lrps`]: the rows of its index
/// before and after (as stored), or `None` for a start that changed nothing (a re-assert: nothing
/// was written, and its rows are not copied out; most starts of a cell's bulk loop are such).
pub type StartOutcome = Result<Option<IndexChange<()>>>;

impl Store {
    /// StartActualLRP for each of `starts`, in one read and at most one write transaction, with
    /// the rule and the effects of [`Store::start_actual_lrp`] (a start that changes nothing
    /// writes nothing and its outcome is `Ok(None)`; starts of the same index apply in order).
    /// One outcome per start, in order; a refusal
    /// ([`ErrorCode::ActualLrpCannotBeStarted`](proto::error::ErrorCode), [`Error::Invalid`])
    /// concerns its start only. `Err` for the whole call (the database down;
    /// fenced out, when some start writes) means nothing was written. A batch that writes
    /// nothing is a read and is answered without the fence check, like any read.
    pub async fn start_actual_lrps(&self, starts: &[StartItem], now_ns: i64) -> Result<Vec<StartOutcome>> {
        let op = "start actual lrps";
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        // Steps 1 to 3, outside any transaction: a batch of re-asserts only ends here.
        let mut pairs: Vec<(&str, i32)> = starts.iter().map(slot_of).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let read = read_indices_unlocked(self, op, &pairs).await?;
        let (mut outcomes, changed) = plan_starts(&read, starts, now_ns);
        if changed.is_empty() {
            return Ok(outcomes);
        }
        // Steps 4 and 5, in a write transaction; each attempt starts again from the plan.
        let expected = versions(&read, changed.keys());
        let plan = Arc::new(Plan { starts: starts.into(), read, changed, expected });
        let replanned = self
            .write(op, move |tx| {
                let plan = Arc::clone(&plan);
                Box::pin(async move { write_plan(tx, op, &plan, now_ns).await })
            })
            .await?;
        for (i, outcome) in replanned {
            outcomes[i] = outcome;
        }
        Ok(outcomes)
    }
}

/// What steps 1 to 3 decided, for the write transaction of steps 4 and 5.
struct Plan {
    starts: Arc<[StartItem]>,
    /// Every index's rows as step 1 read them.
    read: HashMap<Slot, IndexRows>,
    /// The rows, as they are to be stored, of every index some start changes.
    changed: BTreeMap<Slot, IndexRows>,
    /// The versions of the changed indices' rows as step 1 read them.
    expected: BTreeSet<Version>,
}

/// The transaction body (steps 4 and 5 of the module docs). Returns the outcomes of the starts
/// planned again on the rows as locked (by their position in the batch).
async fn write_plan(tx: &mut Tx, op: &'static str, plan: &Plan, now_ns: i64) -> Result<Vec<(usize, StartOutcome)>> {
    let starts = &plan.starts[..];
    // Sorted by index (the map's order), so concurrent batches lock rows in the same order.
    let pairs: Vec<(&str, i32)> = plan.changed.keys().map(|(guid, index)| (guid.as_str(), *index)).collect();
    let mut outcomes = Vec::new();
    let relocked;
    let (locked, current) = if lock_versions(tx, op, &pairs).await? == plan.expected {
        // Nobody wrote these indices since the read: the plan made on it stands.
        (&plan.read, std::borrow::Cow::Borrowed(&plan.changed))
    } else {
        relocked = read_indices(tx, op, &pairs).await?;
        let again: Vec<usize> =
            (0..starts.len()).filter(|&i| pairs.binary_search(&slot_of(&starts[i])).is_ok()).collect();
        let (replanned, current) = plan_starts(&relocked, again.iter().map(|&i| &starts[i]), now_ns);
        outcomes.extend(again.into_iter().zip(replanned));
        (&relocked, std::borrow::Cow::Owned(current))
    };
    // Sorted by index, so concurrent batches write (and insert) rows in the same order.
    let (mut writes, none) = (RowWrites::default(), IndexRows::default());
    for (slot, after) in current.iter() {
        writes.add_diff(&slot.0, slot.1, locked.get(slot).unwrap_or(&none), after);
    }
    write_rows(tx, op, &writes).await?;
    Ok(outcomes)
}

/// A row's version: its primary key and modification tag. Every write of a row gives it the
/// next tag ([`plan_index`]), and a row inserted anew has a fresh epoch, so two reads of an
/// index that give the same versions read the same rows.
type Version = (String, i64, i64, String, i64);

/// The versions of the rows of the indices `slots` in `rows`.
fn versions<'s>(rows: &HashMap<Slot, IndexRows>, slots: impl Iterator<Item = &'s Slot>) -> BTreeSet<Version> {
    let mut out = BTreeSet::new();
    for slot in slots {
        let Some(index_rows) = rows.get(slot) else {
            continue;
        };
        for lrp in [&index_rows.ordinary, &index_rows.evacuating, &index_rows.suspect].into_iter().flatten() {
            let tag = &lrp.modification_tag;
            let (guid, index, presence) =
                (slot.0.as_str().to_owned(), i64::from(slot.1), i64::from(lrp.presence.as_i32()));
            out.insert((guid, index, presence, tag.epoch.clone(), i64::from(tag.index)));
        }
    }
    out
}

/// Locks the rows of every index of `pairs` (sorted, unique) and reads their versions only.
async fn lock_versions(tx: &mut Tx, op: &'static str, pairs: &[(&str, i32)]) -> Result<BTreeSet<Version>> {
    let columns = "process_guid, instance_index, presence, modification_tag_epoch, modification_tag_index";
    let mut out = BTreeSet::new();
    for row in &select_indices(tx, op, columns, pairs).await? {
        let at = Reader::new(row, &"batch");
        out.insert((at.text(0)?.to_owned(), at.int(1)?, at.int(2)?, at.text(3)?.to_owned(), at.int(4)?));
    }
    Ok(out)
}

/// The index a start names.
fn slot_of((key, _, _): &StartItem) -> (&str, i32) {
    (key.process_guid.as_str(), key.index)
}

/// Steps 2 and 3 of the module docs, without the database: applies each start, in order, to
/// its index's rows as `rows` and the earlier starts left them, and plans its write. Returns
/// the outcome of every start and the rows, as they are to be stored, of every index some start
/// changed.
fn plan_starts<'s>(
    rows: &HashMap<Slot, IndexRows>,
    starts: impl IntoIterator<Item = &'s StartItem>,
    now_ns: i64,
) -> (Vec<StartOutcome>, BTreeMap<Slot, IndexRows>) {
    let mut current: BTreeMap<Slot, IndexRows> = BTreeMap::new();
    let starts = starts.into_iter();
    let mut outcomes = Vec::with_capacity(starts.size_hint().0);
    for (key, instance_key, start) in starts {
        let slot = (key.process_guid.clone(), key.index);
        let before = current.get(&slot).or_else(|| rows.get(&slot));
        let mut after = before.cloned().unwrap_or_default();
        if let Err(refusal) = apply_start(&mut after, key, instance_key, start, now_ns) {
            outcomes.push(Err(Error::from(refusal)));
            continue;
        }
        if before.map_or(after == IndexRows::default(), |before| *before == after) {
            outcomes.push(Ok(None));
            continue;
        }
        let before = before.cloned().unwrap_or_default();
        // An invalid index is refused alone, before anything of the batch is written.
        match plan_index(&key.process_guid, key.index, &before, after) {
            Ok(stored) => {
                current.insert(slot, stored.clone());
                outcomes.push(Ok(Some(IndexChange { value: (), before, after: stored })));
            }
            Err(invalid) => outcomes.push(Err(invalid)),
        }
    }
    (outcomes, current)
}
