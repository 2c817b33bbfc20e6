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
//!   ([`lane`] says why not on MySQL). One batch at a time holds the lane's turn while it
//!   gathers, reads, decides and writes; it gives the turn up before its fence check and
//!   commit, so the writes that arrived meanwhile are the next batch while it commits.
//!   (Measured: one lane per group-commit lane made the batches smaller and the writes per
//!   second fewer; docs/performance.md, tenth round.)
//! - **Who runs a batch.** A task of its own (a runner), started by a write when no runner is
//!   on its way to a batch: a caller that goes away (its request cancelled) never takes its
//!   neighbours' writes with it. A write whose caller went away before its batch was taken is
//!   left out. On PostgreSQL the runner begins its transaction before it waits for the turn, so
//!   a batch's `BEGIN` is not a round trip the lane waits for; it waits so for a quarter of the
//!   idle-transaction timeout at most ([`run_lane`]).
//! - **One bad write never fails its neighbours.** A refusal or a failed validation is the
//!   write's alone (the [`Batch`] answers it so). When the batch's transaction fails as a whole
//!   for a reason that may be one member's (a statement the database refused, a row another
//!   writer inserted first), each member is told to run again in a transaction of its own
//!   ([`Done::Alone`]); a failure of the store itself (fenced out, database unreachable, schema
//!   lost) is every member's answer.
//! - **Deadlocks** re-run the whole batch, as [`Store::write`] does for any body: a batch's
//!   decisions must be repeatable.
//! - **Bounded.** At most [`MAX_WRITES`] writes per batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::OwnedMutexGuard;

use crate::{Backend, Error, Result, Store, Tx};

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
    /// Held by the batch that gathers, reads, decides and writes.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Whether a runner is on its way to its batch (beginning its transaction, or waiting for
    /// the turn) and has not taken it yet: at most one is.
    starting: AtomicBool,
    /// Batches committed, and the writes they held.
    pub(crate) committed: AtomicU64,
    pub(crate) committed_members: AtomicU64,
}

impl<B: Batch> Default for Lane<B> {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
            turn: Arc::default(),
            starting: AtomicBool::new(false),
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

/// Queues `item` of `store` in `lane`, starting a runner for it unless one is on its way;
/// resolves when the write is done.
pub(crate) async fn submit<B: Batch>(
    store: &Store,
    lane: &Arc<Lane<B>>,
    op: &'static str,
    item: B::Item,
) -> Done<B::Output> {
    let (done, finished) = tokio::sync::oneshot::channel();
    lane.waiting.lock().unwrap_or_else(PoisonError::into_inner).push(Member { store: store.clone(), op, item, done });
    start_runner(lane, store);
    finished.await.unwrap_or_else(|_| Done::Written(Box::new(Err(gone(op)))))
}

/// Starts the runner of the lane's next batch, with `store`'s fence, unless one is on its way.
fn start_runner<B: Batch>(lane: &Arc<Lane<B>>, store: &Store) {
    if lane.starting.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        tokio::spawn(run_lane(Arc::clone(lane), store.clone()));
    }
}

/// The next batch of `lane`: up to [`MAX_WRITES`] waiting writes of `fence`, in the order they
/// arrived (writes whose caller went away are dropped). Then the runner of the batch after it
/// may start: at once if writes are still waiting, else with the next write.
fn take_batch<B: Batch>(lane: &Arc<Lane<B>>, fence: &Option<crate::Fence>) -> Vec<Member<B>> {
    let (batch, next) = {
        let mut waiting = lane.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.retain(|m| !m.done.is_closed());
        let (mut batch, mut rest) = (Vec::new(), Vec::new());
        for member in waiting.drain(..) {
            if batch.len() < MAX_WRITES && member.store.fence == *fence {
                batch.push(member);
            } else {
                rest.push(member);
            }
        }
        *waiting = rest;
        (batch, waiting.first().map(|m| m.store.clone()))
    };
    lane.starting.store(false, Ordering::SeqCst);
    // A write that came after the batch was taken and found `starting` still set started no
    // runner: this one starts it.
    let next =
        next.or_else(|| lane.waiting.lock().unwrap_or_else(PoisonError::into_inner).first().map(|m| m.store.clone()));
    if let Some(store) = next {
        start_runner(lane, &store);
    }
    batch
}

/// A runner's batch, shared with its transaction body (which takes it, on its first attempt).
struct Run<B: Batch> {
    /// The lane's turn, while this runner holds it.
    turn: Option<OwnedMutexGuard<()>>,
    /// Whether the runner gave up its open transaction because the turn was long in coming.
    gave_up_waiting: bool,
    /// Whether the batch is taken, its items, and each member's op and answer.
    taken: bool,
    items: Arc<[B::Item]>,
    answers: Vec<(&'static str, tokio::sync::oneshot::Sender<Done<B::Output>>)>,
}

/// Runs one batch of `lane`, of the writes of `store`'s fence, in one transaction.
///
/// On a server database the runner begins its transaction before it waits for the turn, so
/// the batch holding the turn does not wait for this `BEGIN`: the next batch is gathered while
/// it begins, and taken the moment the turn is passed. It waits so for a while only
/// ([`turn_wait`]); after that it gives its transaction up and begins again once it holds the
/// turn. On SQLite, whose write transaction
/// excludes every other writer, the turn comes first: a runner that held the database waiting
/// for the turn would lock out the turn's holder when that one has to begin again (a retry).
/// The batch gives the turn up as soon as its writes are sent, before its fence check and
/// commit: the next batch then reads and writes while this one commits.
async fn run_lane<B: Batch>(lane: Arc<Lane<B>>, store: Store) {
    let mut turn_first = store.backend() == Backend::Sqlite;
    let run = Arc::new(Mutex::new(Run::<B> {
        turn: None,
        gave_up_waiting: false,
        taken: false,
        items: Arc::from(Vec::new()),
        answers: Vec::new(),
    }));
    let _untaken = Untaken { lane: Arc::clone(&lane), run: Arc::clone(&run), store: store.clone() };
    let wait = turn_wait(&store);
    let outcome = loop {
        if turn_first {
            let turn = Arc::clone(&lane.turn).lock_owned().await;
            lock(&run).turn = Some(turn);
        }
        let outcome = store
            .write(B::MIXED_OP, |tx| {
                let (lane, run, fence) = (Arc::clone(&lane), Arc::clone(&run), store.fence.clone());
                Box::pin(async move {
                    let (op, items) = take_once(&lane, &run, &fence, wait).await?;
                    let results = if items.is_empty() { Ok(Vec::new()) } else { B::body(tx, op, &items).await };
                    // The writes are sent: the next batch may read and write while this one
                    // commits. A body that failed gives the turn up too, before the retry waits
                    // for a connection: the next batch's runner may hold the pool's last one
                    // while it waits for the turn.
                    drop(lock(&run).turn.take());
                    results
                })
            })
            .await;
        if std::mem::take(&mut lock(&run).gave_up_waiting) {
            turn_first = true;
            continue;
        }
        break outcome;
    };
    let answers = {
        let mut run = lock(&run);
        drop(run.turn.take());
        std::mem::take(&mut run.answers)
    };
    // A transaction that failed before its body took the batch (its `BEGIN`) fails the writes
    // that were waiting for it.
    let answers = match &outcome {
        Err(_) if !lock(&run).taken => {
            let batch = take_batch(&lane, &store.fence);
            lock(&run).taken = true;
            batch.into_iter().map(|m| (m.op, m.done)).collect()
        }
        _ => answers,
    };
    answer(&lane, answers, outcome);
}

/// A runner on its way to its batch: if it ends without having taken one (it panicked), the
/// lane's next write must still find no runner on its way, and the writes waiting get one.
struct Untaken<B: Batch> {
    lane: Arc<Lane<B>>,
    run: Arc<Mutex<Run<B>>>,
    store: Store,
}

impl<B: Batch> Drop for Untaken<B> {
    fn drop(&mut self) {
        if !lock(&self.run).taken {
            self.lane.starting.store(false, Ordering::SeqCst);
            let waiting = !self.lane.waiting.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
            if waiting && tokio::runtime::Handle::try_current().is_ok() {
                start_runner(&self.lane, &self.store);
            }
        }
    }
}

/// Locks a runner's state.
fn lock<B: Batch>(run: &Mutex<Run<B>>) -> std::sync::MutexGuard<'_, Run<B>> {
    run.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a runner waits for the turn in an open transaction: a quarter of the time after
/// which the server ends a transaction left idle (`None`: the server never does).
fn turn_wait(store: &Store) -> Option<std::time::Duration> {
    let idle = store.options.idle_transaction_timeout;
    (!idle.is_zero()).then(|| idle / 4)
}

/// The batch of a runner's transaction body: on its first attempt waits for the turn (unless
/// the runner took it before beginning) and takes the batch; on a retry, the same batch,
/// without the turn (a failed attempt gave it up). The batch's op, and its items. A turn that
/// does not come within `wait` (the lane's batch waits for another transaction's locks) ends
/// the attempt: the runner then takes the turn before it begins again, so that the server does
/// not end its idle transaction meanwhile, which would fail its writes as if the database had
/// gone away.
async fn take_once<B: Batch>(
    lane: &Arc<Lane<B>>,
    run: &Arc<Mutex<Run<B>>>,
    fence: &Option<crate::Fence>,
    wait: Option<std::time::Duration>,
) -> Result<(&'static str, Arc<[B::Item]>)> {
    let needs_turn = {
        let run = lock(run);
        if run.taken {
            return Ok((batch_op::<B>(&run.answers), Arc::clone(&run.items)));
        }
        run.turn.is_none()
    };
    let turn = if needs_turn {
        let turn = Arc::clone(&lane.turn).lock_owned();
        match wait {
            None => Some(turn.await),
            Some(wait) => match tokio::time::timeout(wait, turn).await {
                Ok(turn) => Some(turn),
                Err(_) => {
                    lock(run).gave_up_waiting = true;
                    return Err(gone(B::MIXED_OP));
                }
            },
        }
    } else {
        None
    };
    let batch = take_batch(lane, fence);
    let mut run = lock(run);
    if turn.is_some() {
        run.turn = turn;
    }
    let mut items = Vec::with_capacity(batch.len());
    for member in batch {
        run.answers.push((member.op, member.done));
        items.push(member.item);
    }
    run.items = items.into();
    run.taken = true;
    Ok((batch_op::<B>(&run.answers), Arc::clone(&run.items)))
}

/// The op of a batch: its members' when they share one.
fn batch_op<B: Batch>(answers: &[(&'static str, tokio::sync::oneshot::Sender<Done<B::Output>>)]) -> &'static str {
    match answers.first() {
        Some((op, _)) if answers.iter().all(|(o, _)| o == op) => op,
        _ => B::MIXED_OP,
    }
}

/// Every member's answer to its batch's `outcome`.
fn answer<B: Batch>(
    lane: &Lane<B>,
    answers: Vec<(&'static str, tokio::sync::oneshot::Sender<Done<B::Output>>)>,
    outcome: Result<Vec<Result<B::Output>>>,
) {
    match outcome {
        // A batch whose writes all went away before it was taken committed nothing.
        Ok(_) if answers.is_empty() => {}
        Ok(results) => {
            lane.committed.fetch_add(1, Ordering::Relaxed);
            lane.committed_members.fetch_add(answers.len() as u64, Ordering::Relaxed);
            for ((_, done), result) in answers.into_iter().zip(results) {
                let _ = done.send(Done::Written(Box::new(result)));
            }
        }
        Err(e) if answers.len() == 1 => {
            let (op, done) = answers.into_iter().next().expect("one member");
            let _ = done.send(Done::Written(Box::new(Err(e.for_op(B::MIXED_OP, op)))));
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
