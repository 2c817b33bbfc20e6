//! Coalesced writes: the single writes of one kind that wait at the same moment run as one
//! transaction, which reads all their rows at once, decides each write on its own in memory and
//! writes the result with multi-row statements.
//!
//! The savepoint group commit ([`crate::group_commit`]) shares a `BEGIN`, a fence check and a
//! `COMMIT` between concurrent writes, but each member still makes its own round trips (its
//! savepoint, its reads, its writes), one member after another. A write that is decided in
//! memory on rows read beforehand needs no savepoint: a [`Batch`] says how a batch of one kind
//! of write reads, decides and writes (the actual LRP index writes,
//! `sql/actual_lrps/coalesce.rs`; the task writes, `sql/tasks/coalesce.rs`), and this module
//! gathers the batches, runs them and answers every member.
//!
//! The rules:
//! - **One lane per kind.** A store and its clones have one lane of each kind when group commit
//!   is on ([`crate::StoreOptions::group_commit_lanes`] above zero), on PostgreSQL and SQLite
//!   ([`lane`] says why not on MySQL). One batch at a time
//!   gathers, reads, decides and writes; it gives the lane up before its fence check and commit,
//!   so the writes that arrived meanwhile are the next batch while it commits. (Measured: one
//!   lane per group-commit lane made the batches smaller and the writes per second fewer;
//!   docs/performance.md, tenth round.)
//! - **Who runs a batch.** A task of its own, started by the write that finds its lane idle: a
//!   caller that goes away (its request cancelled) never takes its neighbours' writes with it.
//!   A write whose caller went away before its batch started is left out.
//! - **One bad write never fails its neighbours.** A refusal or a failed validation is the
//!   write's alone (the [`Batch`] answers it so). When the batch's transaction fails as a whole
//!   for a reason that may be one member's (a statement the database refused, a row another
//!   writer inserted first), each member is told to run again in a transaction of its own
//!   ([`Done::Alone`]); a failure of the store itself (fenced out, database unreachable, schema
//!   lost) is every member's answer.
//! - **Deadlocks** re-run the whole batch, as [`Store::write`] does for any body: a batch's
//!   decisions must be repeatable.
//! - **Bounded.** At most [`MAX_WRITES`] writes per batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::OwnedMutexGuard;

use crate::{Error, Result, Store, Tx};

/// Most writes of one batch.
pub(crate) const MAX_WRITES: usize = 128;

/// One kind of coalesced write.
pub(crate) trait Batch: Send + Sync + 'static {
    /// One write, as the batch's transaction body needs it.
    type Item: Send + Sync + 'static;
    /// What one write gives back.
    type Output: Send + 'static;
    /// The op name of a batch that mixes writes of several ops.
    const MIXED_OP: &'static str;
    /// The transaction body: reads, decides and writes every item of `items`, and gives one
    /// outcome per item, in order (an `Err` there is that item's refusal). `Err` for the whole
    /// body fails the batch. Run again from the start when the transaction is retried.
    fn body<'t>(
        tx: &'t mut Tx,
        op: &'static str,
        items: &'t [Self::Item],
    ) -> BoxFuture<'t, Result<Vec<Result<Self::Output>>>>;
}

/// How a coalesced write ended.
pub(crate) enum Done<T> {
    /// Committed with its batch, or refused.
    Written(Box<Result<T>>),
    /// Its batch failed as a whole: run it again alone.
    Alone,
}

/// One lane: the writes waiting for its next batch, and who runs it.
pub(crate) struct Lane<B: Batch> {
    waiting: Mutex<Vec<Member<B>>>,
    runner: Arc<tokio::sync::Mutex<()>>,
    /// Batches committed, and the writes they held.
    pub(crate) committed: AtomicU64,
    pub(crate) committed_members: AtomicU64,
}

impl<B: Batch> Default for Lane<B> {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
            runner: Arc::default(),
            committed: AtomicU64::new(0),
            committed_members: AtomicU64::new(0),
        }
    }
}

/// The lane of a store and its clones: one when group commit is on (`lanes` above zero), on
/// PostgreSQL and SQLite. Not on MySQL: there a locking read of an index (a prefix of the
/// primary key) also locks the next row of the key order, another instance's, until the commit;
/// a batch that met a lock held by a cell's batch of starts held up every write queued behind
/// it (250,000 LRPs on MariaDB: claims 48 ms on average with the savepoint batches, 224 ms
/// coalesced; docs/performance.md, tenth round). MySQL keeps the savepoint batches.
pub(crate) fn lane<B: Batch>(backend: crate::Backend, lanes: usize) -> Option<Arc<Lane<B>>> {
    (lanes > 0 && backend != crate::Backend::Mysql).then(Arc::default)
}

/// A write waiting for (or in) a batch.
struct Member<B: Batch> {
    store: Store,
    op: &'static str,
    item: B::Item,
    done: tokio::sync::oneshot::Sender<Done<B::Output>>,
}

/// The caller went away, or the runner did (the runtime shutting down): nothing of the write
/// was committed that it was not answered for.
fn gone(op: &'static str) -> Error {
    Error::refused(proto::error::ErrorCode::Unknown, format!("{op}: the coalesced write's batch went away"))
}

/// Queues `item` of `store` in `lane`, starting the lane's runner if it is idle; resolves when
/// the write is done.
pub(crate) async fn submit<B: Batch>(
    store: &Store,
    lane: &Arc<Lane<B>>,
    op: &'static str,
    item: B::Item,
) -> Done<B::Output> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let lane = Arc::clone(lane);
    lane.waiting.lock().unwrap_or_else(PoisonError::into_inner).push(Member { store: store.clone(), op, item, done });
    if let Ok(turn) = Arc::clone(&lane.runner).try_lock_owned() {
        tokio::spawn(run_lane(lane, turn));
    }
    finished.await.unwrap_or_else(|_| Done::Written(Box::new(Err(gone(op)))))
}

/// Runs the next batch of `lane`, if writes are waiting; `turn` is the lane's runner lock.
/// The batch gives the turn up as soon as its writes are sent, before its fence check and
/// commit: the next batch then gathers and reads while this one commits.
async fn run_lane<B: Batch>(lane: Arc<Lane<B>>, turn: OwnedMutexGuard<()>) {
    let batch = take_batch(&lane);
    if batch.is_empty() {
        pass_turn(&lane, turn);
        return;
    }
    let turn = Arc::new(Mutex::new(Some(turn)));
    run_batch(&lane, batch, &turn).await;
    // Still held when the batch failed before its writes were sent.
    if let Some(turn) = turn.lock().unwrap_or_else(PoisonError::into_inner).take() {
        pass_turn(&lane, turn);
    }
}

/// Gives the lane's turn up and, when writes are waiting (they found the lane busy and
/// started no runner), starts the runner of the next batch.
fn pass_turn<B: Batch>(lane: &Arc<Lane<B>>, turn: OwnedMutexGuard<()>) {
    drop(turn);
    let waiting = !lane.waiting.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
    if waiting && let Ok(next) = Arc::clone(&lane.runner).try_lock_owned() {
        tokio::spawn(run_lane(Arc::clone(lane), next));
    }
}

/// The lane's turn, shared with the batch's transaction body, which gives it up.
type Turn = Arc<Mutex<Option<OwnedMutexGuard<()>>>>;

/// The next batch: up to [`MAX_WRITES`] waiting writes of the first one's fence, in the order
/// they arrived. Writes whose caller went away are dropped.
fn take_batch<B: Batch>(lane: &Lane<B>) -> Vec<Member<B>> {
    let mut waiting = lane.waiting.lock().unwrap_or_else(PoisonError::into_inner);
    waiting.retain(|m| !m.done.is_closed());
    let Some(fence) = waiting.first().map(|m| m.store.fence.clone()) else {
        return Vec::new();
    };
    let (mut batch, mut rest) = (Vec::new(), Vec::new());
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
async fn run_batch<B: Batch>(lane: &Arc<Lane<B>>, batch: Vec<Member<B>>, turn: &Turn) {
    let store = batch[0].store.clone();
    let op = if batch.iter().all(|m| m.op == batch[0].op) { batch[0].op } else { B::MIXED_OP };
    let mut answers = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    for member in batch {
        answers.push((member.op, member.done));
        items.push(member.item);
    }
    let items: Arc<[B::Item]> = items.into();
    let (next, turn) = (Arc::clone(lane), Arc::clone(turn));
    let outcome = store
        .write(op, move |tx| {
            let (items, next, turn) = (Arc::clone(&items), Arc::clone(&next), Arc::clone(&turn));
            Box::pin(async move {
                let results = B::body(tx, op, &items).await?;
                if let Some(turn) = turn.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    pass_turn(&next, turn);
                }
                Ok(results)
            })
        })
        .await;
    match outcome {
        Ok(results) => {
            lane.committed.fetch_add(1, Ordering::Relaxed);
            lane.committed_members.fetch_add(answers.len() as u64, Ordering::Relaxed);
            for ((_, done), result) in answers.into_iter().zip(results) {
                let _ = done.send(Done::Written(Box::new(result)));
            }
        }
        Err(e) if answers.len() == 1 => {
            let (_, done) = answers.into_iter().next().expect("one member");
            let _ = done.send(Done::Written(Box::new(Err(e))));
        }
        Err(e) => {
            let store_wide = store_wide(&e);
            for (op, done) in answers {
                let _ = done.send(match &store_wide {
                    Some(copy) => Done::Written(Box::new(Err(copy(op)))),
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
