//! Group commit: concurrent single-record writes share one transaction.
//!
//! A write through [`Store::write_grouped`] joins the batch that is open at that moment (or
//! opens one: `BEGIN` and the fence check, once for the whole batch), runs its body inside a
//! savepoint of the batch's transaction, and is answered after the batch commits. So N
//! concurrent writes cost one `BEGIN`, one fence check, one `COMMIT` (one WAL flush) and one
//! connection checkout between them, instead of N of each (docs/performance.md).
//!
//! The actual LRP index writes and the task writes are coalesced instead on PostgreSQL and
//! SQLite ([`crate::coalesce`]: one read and multi-row writes for the whole batch, no savepoint
//! per write); these batches carry the other single writes, and every write on MySQL.
//!
//! The rules:
//! - **Lanes.** A store keeps [`crate::StoreOptions::group_commit_lanes`] batches open at once; a
//!   write joins the lane with the fewest writers. One lane would run every writer's round trips
//!   one after another; several keep them in parallel and still share each commit.
//! - **One member at a time per lane.** A lane's batch lives in a slot behind an async mutex; a
//!   member holds it for its body only, on its own task, so bodies may borrow from their callers
//!   and talk to them (as [`Store::modify_index`] does).
//! - **One bad write never fails its neighbours.** A body that fails is rolled back to its
//!   savepoint and returns its error; the others commit. A failure that breaks the transaction
//!   itself (a deadlock, which MySQL answers by rolling back the whole transaction; a lost
//!   connection; a failed rollback to the savepoint) poisons the batch: it is rolled back and
//!   every member re-runs its body in a later batch, as a deadlock retry does.
//! - **Who commits.** A member that finished its body commits the batch when no other member is
//!   queued for the slot or running; otherwise it waits for the batch's outcome, taking the slot
//!   again whenever it is free, so the batch commits even when the member that was to commit it
//!   went away. A batch also commits when it has [`MAX_MEMBERS`] members or when a member with
//!   another fence arrives.
//! - **Cancellation.** A member dropped in the middle of its body (its request was cancelled)
//!   leaves its statements half done: it poisons the batch, so none of them is committed (a task
//!   rolls the batch back at once if no other member does). A
//!   member dropped after its body is committed with the batch, like a request cancelled after
//!   its commit.
//! - **Bounded.** At most [`MAX_MEMBERS`] members per batch: each savepoint that writes is a
//!   PostgreSQL subtransaction, and more than 64 in one transaction overflow its subtransaction
//!   cache, which slows every session's snapshots.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::{Mutex, Notify, watch};

use crate::error::{SqlClass, classify};
use crate::sql::actual_lrps::coalesce::IndexWrites;
use crate::sql::tasks::coalesce::TaskWrites;
use crate::store::{Fence, Tx};
use crate::{Error, Result, Store};

/// Most members of one batch.
pub const MAX_MEMBERS: usize = 32;

/// The savepoint each member's body runs under.
const SAVEPOINT: &str = "SAVEPOINT diego_member";
/// Ends the previous member's savepoint and starts this one's, in one round trip.
const NEXT_SAVEPOINT: &str = "RELEASE SAVEPOINT diego_member; SAVEPOINT diego_member";
const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT diego_member";

/// The group-commit state of a store and its clones (not of a [`Store::dedicated`] one): its
/// lanes, each with at most one open batch.
pub(crate) struct GroupCommit {
    lanes: Vec<Arc<Lane>>,
    next: AtomicUsize,
    /// The lane of the coalesced index writes ([`crate::coalesce`]).
    pub(crate) index_lane: Option<Arc<crate::coalesce::Lane<IndexWrites>>>,
    /// The lane of the coalesced task writes.
    pub(crate) task_lane: Option<Arc<crate::coalesce::Lane<TaskWrites>>>,
}

impl GroupCommit {
    /// `lanes` lanes (at least one) of savepoint batches, and the coalesced writes' lanes
    /// ([`crate::coalesce::lane`]: none when `lanes` is zero, nor on MySQL).
    pub(crate) fn new(backend: crate::Backend, lanes: usize) -> Self {
        Self {
            lanes: (0..lanes.max(1)).map(|_| Arc::default()).collect(),
            next: AtomicUsize::new(0),
            index_lane: crate::coalesce::lane(backend, lanes),
            task_lane: crate::coalesce::lane(backend, lanes),
        }
    }

    /// The lane with the fewest active members, looking from the next lane in turn.
    fn pick(&self) -> &Arc<Lane> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.lanes.len();
        (0..n)
            .map(|k| &self.lanes[(start + k) % n])
            .min_by_key(|lane| lane.active.load(Ordering::Relaxed))
            .expect("at least one lane")
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("lanes", &self.lanes.len()).finish_non_exhaustive()
    }
}

/// One lane: a slot for its open batch and the members using it.
#[derive(Default)]
struct Lane {
    slot: Mutex<Option<Batch>>,
    /// Members queued for the slot or running their body.
    active: AtomicUsize,
    /// Notified when `active` drops to zero: members waiting for their batch's outcome then
    /// look whether they must commit it.
    idle: Notify,
    next_id: AtomicU64,
    /// Batches committed, and the members they held.
    committed: AtomicU64,
    committed_members: AtomicU64,
}

/// How many batches committed and how many writes they held ([`Store::group_commit_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCommitStats {
    /// Batches committed.
    pub batches: u64,
    /// Writes those batches held (succeeded or rolled back to their savepoint).
    pub members: u64,
}

/// An open batch.
struct Batch {
    id: u64,
    tx: Tx,
    fence: Option<Fence>,
    members: usize,
    /// Whether a member's savepoint is still open (released by the next member's first
    /// statement, or by the commit).
    savepoint_open: bool,
    poisoned: Arc<AtomicBool>,
    outcome: watch::Sender<Option<Outcome>>,
}

/// How a batch ended.
#[derive(Debug, Clone)]
enum Outcome {
    Committed,
    /// Rolled back, or the commit was refused as a serialization failure: run the body again.
    Retry(String),
    /// The commit failed; whether anything was committed is unknown when `unavailable`.
    Failed {
        unavailable: bool,
        message: String,
    },
}

impl Outcome {
    fn into_error(self, op: &'static str) -> Option<Error> {
        let source = |message: String| sqlx::Error::Protocol(format!("group commit: {message}"));
        match self {
            Self::Committed => None,
            Self::Retry(message) => Some(Error::Deadlock { op, attempts: 1, source: source(message) }),
            Self::Failed { unavailable: true, message } => Some(Error::Unavailable { op, source: source(message) }),
            Self::Failed { unavailable: false, message } => Some(Error::Sql { op, source: source(message) }),
        }
    }
}

/// Counts a member as active until released or dropped.
struct Active<'a>(&'a Lane, bool);

impl Active<'_> {
    fn release(&mut self) {
        if std::mem::take(&mut self.1) && self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Poisons the batch if dropped while armed (the member's body did not finish), and has the
/// poisoned batch rolled back even when no other member comes to this lane.
struct InBody(Arc<AtomicBool>, Arc<Lane>, bool);

impl Drop for InBody {
    fn drop(&mut self) {
        if !self.2 {
            return;
        }
        self.0.store(true, Ordering::SeqCst);
        let lane = Arc::clone(&self.1);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut slot = lane.slot.lock().await;
                if slot.as_ref().is_some_and(|b| b.poisoned.load(Ordering::SeqCst))
                    && let Some(batch) = slot.take()
                {
                    finish(&lane, batch).await;
                }
            });
        }
    }
}

impl Store {
    /// Batches committed so far by this store and its clones (savepoint batches and coalesced
    /// index writes), and the writes they held.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        let group = &self.group;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let coalesced = group.index_lane.iter().map(|l| (&l.committed, &l.committed_members));
        let coalesced = coalesced.chain(group.task_lane.iter().map(|l| (&l.committed, &l.committed_members)));
        let savepoints = group.lanes.iter().map(|l| (&l.committed, &l.committed_members));
        let (batches, members) = savepoints
            .chain(coalesced)
            .fold((0, 0), |(b, m), (batches, members)| (b + load(batches), m + load(members)));
        GroupCommitStats { batches, members }
    }

    /// Like [`Store::write`], for a write of one record (or a few): the body runs inside the
    /// transaction of a batch of concurrent writes and is answered after the batch commits
    /// (see [`crate::group_commit`]). The body must be short: the next writer waits for it.
    /// Falls back to [`Store::write`] when [`crate::StoreOptions::group_commit_lanes`] is zero.
    pub async fn write_grouped<T, F>(&self, op: &'static str, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        if self.options.group_commit_lanes == 0 {
            return self.write(op, body).await;
        }
        self.write_retrying(op, self.fence.as_ref(), true, body).await
    }

    /// [`Store::write_grouped`] when `grouped`, else [`Store::write`].
    pub(crate) async fn write_grouped_if<T, F>(&self, grouped: bool, op: &'static str, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        if grouped { self.write_grouped(op, body).await } else { self.write(op, body).await }
    }

    /// One attempt of a grouped write.
    pub(crate) async fn try_grouped<T, F>(&self, op: &'static str, body: &mut F) -> Result<T>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>>,
    {
        let lane = self.group.pick();
        let group = &**lane;
        group.active.fetch_add(1, Ordering::SeqCst);
        let mut active = Active(group, true);
        let mut slot = group.slot.lock().await;
        let joinable = slot.as_ref().is_some_and(|b| {
            b.fence.as_ref() == self.fence.as_ref() && !b.poisoned.load(Ordering::SeqCst) && b.members < MAX_MEMBERS
        });
        if !joinable && let Some(batch) = slot.take() {
            finish(group, batch).await;
        }
        let batch = match slot.as_mut() {
            Some(batch) => batch,
            None => {
                let tx = self.begin(op, self.fence.as_ref()).await?;
                let (outcome, _) = watch::channel(None);
                slot.insert(Batch {
                    id: group.next_id.fetch_add(1, Ordering::SeqCst),
                    tx,
                    fence: self.fence.clone(),
                    members: 0,
                    savepoint_open: false,
                    poisoned: Arc::new(AtomicBool::new(false)),
                    outcome,
                })
            }
        };
        batch.members += 1;
        let id = batch.id;
        let mut outcome = batch.outcome.subscribe();
        let mut in_body = InBody(Arc::clone(&batch.poisoned), Arc::clone(lane), true);
        let value = run_member(batch, op, body).await;
        in_body.2 = false;
        active.release();

        // Wait for the batch to end, committing it when nobody else is left to.
        let ended = loop {
            // Decided before any await: a borrow of the batch must not be held across one.
            let ours = slot.as_ref().filter(|b| b.id == id).map(|b| b.poisoned.load(Ordering::SeqCst));
            match ours {
                Some(poisoned) if poisoned || group.active.load(Ordering::SeqCst) == 0 => {
                    let batch = slot.take().expect("the batch was just seen");
                    break finish(group, batch).await;
                }
                Some(_) => {}
                // Another member ended it and sent the outcome before freeing the slot.
                None => break ended_outcome(&outcome),
            }
            // Registered before the slot is freed, so the last active member's wake-up is not
            // missed.
            let idle = group.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if group.active.load(Ordering::SeqCst) == 0 {
                continue;
            }
            drop(slot);
            tokio::select! {
                ended = outcome.wait_for(Option::is_some) => {
                    break match ended {
                        Ok(ended) => ended.clone().unwrap_or_else(unknown_outcome),
                        Err(_) => unknown_outcome(),
                    };
                }
                () = idle => {}
            }
            slot = group.slot.lock().await;
        };
        let value = value?;
        match ended.into_error(op) {
            None => Ok(value),
            Some(e) => Err(e),
        }
    }
}

/// The outcome of a batch that is no longer in the slot.
fn ended_outcome(outcome: &watch::Receiver<Option<Outcome>>) -> Outcome {
    outcome.borrow().clone().unwrap_or_else(unknown_outcome)
}

/// The member that was committing the batch went away during the commit.
fn unknown_outcome() -> Outcome {
    Outcome::Failed { unavailable: true, message: "the batch's commit was interrupted; its outcome is unknown".into() }
}

/// Runs one member's body under its savepoint; a failed body is rolled back to it, or poisons
/// the batch when the transaction itself is broken.
async fn run_member<T, F>(batch: &mut Batch, op: &'static str, body: &mut F) -> Result<T>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>>,
{
    let poison = |batch: &Batch| batch.poisoned.store(true, Ordering::SeqCst);
    let start = if batch.savepoint_open { NEXT_SAVEPOINT } else { SAVEPOINT };
    if let Err(e) = sqlx::raw_sql(start).execute(batch.tx.conn()).await {
        poison(batch);
        return Err(Error::from_sqlx(op, "transaction", op, e));
    }
    batch.savepoint_open = true;
    let outcome = body(&mut batch.tx).await;
    if let Err(e) = &outcome {
        let broken = matches!(e, Error::Deadlock { .. } | Error::Unavailable { .. } | Error::Unrecoverable { .. });
        if broken || sqlx::raw_sql(ROLLBACK_TO_SAVEPOINT).execute(batch.tx.conn()).await.is_err() {
            poison(batch);
        }
    }
    outcome
}

/// Ends `batch`: rolls a poisoned one back, commits the others, and tells its members.
async fn finish(group: &Lane, batch: Batch) -> Outcome {
    let Batch { tx, poisoned, outcome: sender, members, .. } = batch;
    let outcome = if poisoned.load(Ordering::SeqCst) {
        // Dropping the transaction rolls it back.
        drop(tx);
        Outcome::Retry("a write of the batch broke its transaction; it was rolled back".into())
    } else {
        match tx.inner.commit().await {
            Ok(()) => {
                group.committed.fetch_add(1, Ordering::Relaxed);
                group.committed_members.fetch_add(members as u64, Ordering::Relaxed);
                Outcome::Committed
            }
            Err(e) => match classify(&e) {
                SqlClass::Retryable => Outcome::Retry(e.to_string()),
                SqlClass::Connection => Outcome::Failed { unavailable: true, message: e.to_string() },
                _ => Outcome::Failed { unavailable: false, message: e.to_string() },
            },
        }
    };
    sender.send_replace(Some(outcome.clone()));
    outcome
}
