//! Concurrent index writes coalesced: the lifecycle calls ([`Store::modify_index`]) that are
//! waiting at the same moment run as one transaction with multi-row statements.
//!
//! The savepoint group commit ([`crate::group_commit`]) shares a `BEGIN`, a fence check and a
//! `COMMIT` between concurrent writes, but each member still makes its own round trips (its
//! savepoint, its locking read, its update), one member after another. An index write needs
//! no savepoint: it is decided in memory on rows read beforehand. So a batch of index writes is
//!
//! 1. one locking read of the rows of every index of the batch (sorted, so concurrent batches
//!    lock in the same order; [`read_indices`]);
//! 2. each write, in the order it arrived, decided by its caller's callback on its index's rows
//!    as the batch's earlier writes left them, and planned ([`plan_index`]: modification tags,
//!    validation). A refused or invalid write changes nothing and fails alone;
//! 3. the net change of every index written with multi-row statements ([`write_rows`]);
//!
//! then the fence check and the commit, in one transaction of the store's ordinary
//! [`Store::write`] (deadlocks re-run the whole batch). A batch of claims is five statements
//! (`BEGIN`, the read, one `UPDATE` per 200 changed rows, the fence check, `COMMIT`) for any
//! number of writes, where the savepoint batch takes three per write.
//!
//! The rules:
//! - **One lane.** A store and its clones have one lane of index writes when group commit is
//!   on ([`crate::StoreOptions::group_commit_lanes`] above zero). One batch at a time gathers,
//!   locks, decides and writes; it gives the lane up before its fence check and commit, so the
//!   writes that arrived meanwhile are the next batch while it commits. (Measured: with one lane
//!   per group-commit lane, the batches were smaller and the writes per second fewer;
//!   docs/performance.md.)
//! - **Who runs a batch.** A task of its own, started by the write that finds its lane idle:
//!   a caller that goes away (its request cancelled) never takes its neighbours' writes with
//!   it. Its own write is then left out of the batch (or, when already decided, written with
//!   it, like a request cancelled after its commit).
//! - **One bad write never fails its neighbours.** A refusal or a failed validation is the
//!   write's alone. When the batch's transaction fails as a whole for a reason that may be one
//!   member's (a statement the database refused), each member runs again in a transaction of
//!   its own; a failure of the store itself (fenced out, database unreachable, schema lost) is
//!   every member's answer.
//! - **Bounded.** At most [`MAX_WRITES`] writes per batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::channel::{mpsc, oneshot};
use proto::models::ProcessGuid;
use tokio::sync::OwnedMutexGuard;

use super::index::{Apply, IndexRows, RowWrites, Slot, callback_gone, plan_index, read_indices};
use super::multi_row::write_rows;
use crate::{Error, Result, Store, Tx};

/// Most writes of one batch.
pub(crate) const MAX_WRITES: usize = 128;

/// One lane: the writes waiting for its next batch, and who runs it.
#[derive(Default)]
pub(crate) struct IndexLane {
    waiting: Mutex<Vec<Member>>,
    runner: Arc<tokio::sync::Mutex<()>>,
    /// Batches committed, and the writes they held.
    pub(crate) committed: AtomicU64,
    pub(crate) committed_members: AtomicU64,
}

/// The lane of a store and its clones: one when group commit is on (`lanes` above zero).
pub(crate) fn lane(lanes: usize) -> Option<Arc<IndexLane>> {
    (lanes > 0).then(Arc::default)
}

/// How a coalesced write ended.
pub(crate) enum Done {
    /// Committed with its batch (the rows of its index before and after it), or refused.
    Written(Box<Result<(IndexRows, IndexRows)>>),
    /// Its batch failed as a whole: run it again alone.
    Alone,
}

/// A write waiting for (or in) a batch.
struct Member {
    store: Store,
    op: &'static str,
    process_guid: ProcessGuid,
    index: i32,
    /// Hands the caller its index's rows and takes back what its callback made of them.
    ask: mpsc::UnboundedSender<Apply>,
    done: tokio::sync::oneshot::Sender<Done>,
}

/// Queues a write of index (`process_guid`, `index`) of `store` in `lane`, starting the
/// lane's runner if it is idle; resolves when the write is done. The caller answers `ask`
/// meanwhile (see [`Store::modify_index`]).
pub(crate) async fn submit(
    store: &Store,
    lane: &Arc<IndexLane>,
    op: &'static str,
    process_guid: &ProcessGuid,
    index: i32,
    ask: mpsc::UnboundedSender<Apply>,
) -> Done {
    let (done, finished) = tokio::sync::oneshot::channel();
    let lane = Arc::clone(lane);
    let member = Member { store: store.clone(), op, process_guid: process_guid.clone(), index, ask, done };
    lane.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(member);
    if let Ok(turn) = Arc::clone(&lane.runner).try_lock_owned() {
        tokio::spawn(run_lane(lane, turn));
    }
    // The runner always answers; a runner that is gone (the runtime shutting down) wrote
    // nothing of this write that it did not commit, and said nothing.
    finished.await.unwrap_or_else(|_| Done::Written(Box::new(Err(callback_gone(op)))))
}

/// Runs the next batch of `lane`, if writes are waiting; `turn` is the lane's runner lock.
/// The batch gives the turn up as soon as its writes are sent, before its fence check and
/// commit: the next batch then gathers and locks while this one commits.
async fn run_lane(lane: Arc<IndexLane>, turn: OwnedMutexGuard<()>) {
    let batch = take_batch(&lane);
    if batch.is_empty() {
        pass_turn(&lane, turn);
        return;
    }
    let turn = Arc::new(Mutex::new(Some(turn)));
    run_batch(&lane, batch, &turn).await;
    // Still held when the batch failed before its writes were sent.
    if let Some(turn) = turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
        pass_turn(&lane, turn);
    }
}

/// Gives the lane's turn up and, when writes are waiting (they found the lane busy and
/// started no runner), starts the runner of the next batch.
fn pass_turn(lane: &Arc<IndexLane>, turn: OwnedMutexGuard<()>) {
    drop(turn);
    let waiting = !lane.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty();
    if waiting && let Ok(next) = Arc::clone(&lane.runner).try_lock_owned() {
        tokio::spawn(run_lane(Arc::clone(lane), next));
    }
}

/// The lane's turn, shared with the batch's transaction body, which gives it up.
type Turn = Arc<Mutex<Option<OwnedMutexGuard<()>>>>;

/// The next batch: up to [`MAX_WRITES`] waiting writes of the first one's fence, in the order
/// they arrived. Writes whose caller went away are dropped.
fn take_batch(lane: &IndexLane) -> Vec<Member> {
    let mut waiting = lane.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    waiting.retain(|m| !m.done.is_closed());
    let Some(fence) = waiting.first().map(|m| m.store.fence.clone()) else {
        return Vec::new();
    };
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for member in waiting.drain(..) {
        if batch.len() < MAX_WRITES && member.store.fence == fence {
            batch.push(member);
        } else {
            rest.push(member);
        }
    }
    *waiting = rest;
    batch
}

/// One transaction for `batch`, and every member's answer.
async fn run_batch(lane: &Arc<IndexLane>, batch: Vec<Member>, turn: &Turn) {
    let store = batch[0].store.clone();
    let op = if batch.iter().all(|m| m.op == batch[0].op) { batch[0].op } else { "write actual lrp indices" };
    let targets: Arc<[(ProcessGuid, i32, mpsc::UnboundedSender<Apply>)]> =
        batch.iter().map(|m| (m.process_guid.clone(), m.index, m.ask.clone())).collect();
    let (next, turn) = (Arc::clone(lane), Arc::clone(turn));
    let outcome = store
        .write(op, move |tx| {
            let (targets, next, turn) = (Arc::clone(&targets), Arc::clone(&next), Arc::clone(&turn));
            Box::pin(async move {
                let results = batch_body(tx, op, &targets).await?;
                if let Some(turn) = turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                    pass_turn(&next, turn);
                }
                Ok(results)
            })
        })
        .await;
    match outcome {
        Ok(results) => {
            lane.committed.fetch_add(1, Ordering::Relaxed);
            lane.committed_members.fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (member, result) in batch.into_iter().zip(results) {
                let _ = member.done.send(Done::Written(Box::new(result)));
            }
        }
        Err(e) if batch.len() == 1 => {
            let member = batch.into_iter().next().expect("one member");
            let _ = member.done.send(Done::Written(Box::new(Err(e))));
        }
        Err(e) => {
            let store_wide = store_wide(&e);
            for member in batch {
                let _ = member.done.send(match &store_wide {
                    Some(copy) => Done::Written(Box::new(Err(copy(member.op)))),
                    None => Done::Alone,
                });
            }
        }
    }
}

/// For an error of the store itself (not of one write), how to give each member its copy.
#[allow(clippy::type_complexity)]
fn store_wide(e: &Error) -> Option<Box<dyn Fn(&'static str) -> Error + Send>> {
    let message = e.to_string();
    let source = move |m: &str| sqlx::Error::Protocol(m.to_owned());
    match e {
        Error::Fenced { key, owner, term } => {
            let (key, owner, term) = (key.clone(), owner.clone(), *term);
            Some(Box::new(move |_| Error::Fenced { key: key.clone(), owner: owner.clone(), term }))
        }
        Error::Unavailable { .. } => Some(Box::new(move |op| Error::Unavailable { op, source: source(&message) })),
        Error::Unrecoverable { .. } => Some(Box::new(move |op| Error::Unrecoverable { op, source: source(&message) })),
        _ => None,
    }
}

/// The transaction body: steps 1 to 3 of the module docs. One entry per member of `targets`.
async fn batch_body(
    tx: &mut Tx,
    op: &'static str,
    targets: &[(ProcessGuid, i32, mpsc::UnboundedSender<Apply>)],
) -> Result<Vec<Result<(IndexRows, IndexRows)>>> {
    let mut pairs: Vec<(&str, i32)> = targets.iter().map(|(guid, index, _)| (guid.as_str(), *index)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let locked = read_indices(tx, op, &pairs, true).await?;
    let none = IndexRows::default();
    // The rows of every index a write changed, as the batch's writes so far left them.
    let mut current: BTreeMap<Slot, IndexRows> = BTreeMap::new();
    let mut results = Vec::with_capacity(targets.len());
    for (process_guid, index, ask) in targets {
        let slot = (process_guid.clone(), *index);
        let before = current.get(&slot).or_else(|| locked.get(&slot)).unwrap_or(&none).clone();
        let (reply, answer) = oneshot::channel();
        // A caller that went away has no answer to give: its write is left out.
        if ask.unbounded_send((before.clone(), reply)).is_err() {
            results.push(Err(callback_gone(op)));
            continue;
        }
        let after = match answer.await {
            Ok(Ok(after)) => after,
            Ok(Err(refused)) => {
                results.push(Err(refused));
                continue;
            }
            Err(_) => {
                results.push(Err(callback_gone(op)));
                continue;
            }
        };
        match plan_index(process_guid, *index, &before, after) {
            Ok(stored) => {
                if stored != before {
                    current.insert(slot, stored.clone());
                }
                results.push(Ok((before, stored)));
            }
            Err(invalid) => results.push(Err(invalid)),
        }
    }
    // Sorted by index (the map's order), so concurrent batches write rows in the same order.
    let mut writes = RowWrites::default();
    for (slot, after) in &current {
        writes.add_diff(&slot.0, slot.1, locked.get(slot).unwrap_or(&none), after);
    }
    write_rows(tx, op, &writes).await?;
    Ok(results)
}
