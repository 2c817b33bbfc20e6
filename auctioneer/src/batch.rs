//! [`AuctionBatch`]: the start requests waiting for the next auction.
//!
//! Requests accumulate while an auction runs; the next auction takes them all with
//! [`AuctionBatch::drain`]. Duplicates are dropped on the way in, keeping the first (Diego's
//! `auctionrunner/batch.go` keeps the first at drain time, which gives the same result): an LRP
//! instance is identified by its process guid and index, a task by its guid. Every addition
//! wakes the runner through a [`Notify`], so a burst of requests collapses into one wake-up.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::placement::{LrpWork, PlacementConstraint, TaskWork};

/// A set of LRP instances and tasks: what a batch drains, what one cell is asked to perform,
/// and what a cell refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// LRP instances.
    pub lrps: Vec<LrpWork>,
    /// Tasks.
    pub tasks: Vec<TaskWork>,
}

impl Work {
    /// True when there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.lrps.is_empty() && self.tasks.is_empty()
    }

    /// How many items (instances plus tasks) it holds.
    pub fn len(&self) -> usize {
        self.lrps.len() + self.tasks.len()
    }
}

#[derive(Default)]
struct Pending {
    work: Work,
    lrp_keys: HashSet<(String, i32)>,
    task_keys: HashSet<String>,
    /// What the pending items hold in memory, by [`footprint`].
    bytes: usize,
}

impl Pending {
    fn push_lrp(&mut self, lrp: LrpWork) -> bool {
        if self.lrp_keys.insert((lrp.process_guid.clone(), lrp.index)) {
            self.bytes += footprint(&lrp.process_guid, &lrp.domain, &lrp.constraint);
            self.work.lrps.push(lrp);
            true
        } else {
            false
        }
    }

    fn push_task(&mut self, task: TaskWork) -> bool {
        if self.task_keys.insert(task.task_guid.clone()) {
            self.bytes += footprint(&task.task_guid, &task.domain, &task.constraint);
            self.work.tasks.push(task);
            true
        } else {
            false
        }
    }
}

/// About what one pending item holds in memory: the item, its key and its strings. Each item
/// holds its own copy of the placement constraint, so a request naming many indices of one LRP
/// costs its constraint once per index; this is what the byte capacity counts.
pub fn footprint(guid: &str, domain: &str, constraint: &PlacementConstraint) -> usize {
    const STRING: usize = std::mem::size_of::<String>();
    let strings = |items: &[String]| items.iter().map(|s| s.len() + STRING).sum::<usize>();
    std::mem::size_of::<LrpWork>()
        + 2 * guid.len()
        + domain.len()
        + constraint.rootfs.len()
        + strings(&constraint.placement_tags)
        + strings(&constraint.volume_drivers)
        + 64
}

/// The pending start requests, shared by the gRPC service (which adds) and the auction runner
/// (which drains). It holds at most `capacity` items, so no stream of requests can grow the
/// auctioneer's memory without bound: a request that would pass it is refused whole.
pub struct AuctionBatch {
    pending: Mutex<Pending>,
    notify: Notify,
    capacity: usize,
    capacity_bytes: usize,
}

impl Default for AuctionBatch {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

/// How many LRP instances and tasks a batch holds unless configured otherwise: a whole
/// Diego-scale cluster (250 000 instances) starting at once.
pub const DEFAULT_CAPACITY: usize = 250_000;

/// How much memory the pending items may hold (by [`footprint`]) unless configured otherwise;
/// 250 000 ordinary instances take about 60 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 256 * 1024 * 1024;

/// A request was refused because the batch would pass its capacity; nothing was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the auction batch is full: {pending} starts ({pending_bytes} bytes) pending, {incoming} more ({incoming_bytes} \
     bytes) requested, capacity {capacity} starts or {capacity_bytes} bytes; retry later"
)]
pub struct BatchFull {
    /// Items pending now.
    pub pending: usize,
    /// Their footprint.
    pub pending_bytes: usize,
    /// Items the request carried.
    pub incoming: usize,
    /// Their footprint once expanded.
    pub incoming_bytes: usize,
    /// The batch's capacity in items.
    pub capacity: usize,
    /// The batch's capacity in bytes.
    pub capacity_bytes: usize,
}

impl std::fmt::Debug for AuctionBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (lrps, tasks) = self.counts();
        f.debug_struct("AuctionBatch").field("lrps", &lrps).field("tasks", &tasks).finish()
    }
}

impl AuctionBatch {
    /// An empty batch of [`DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch holding at most `capacity` items (and [`DEFAULT_CAPACITY_BYTES`]).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_CAPACITY_BYTES)
    }

    /// An empty batch holding at most `capacity` items whose [`footprint`]s total at most
    /// `capacity_bytes`.
    pub fn with_limits(capacity: usize, capacity_bytes: usize) -> Self {
        Self { pending: Mutex::default(), notify: Notify::new(), capacity, capacity_bytes }
    }

    /// Refuses `incoming` more items of `incoming_bytes` when they would not fit (duplicates
    /// count: the check comes before anything is built or added).
    pub fn check_room(&self, incoming: usize, incoming_bytes: usize) -> Result<(), BatchFull> {
        let pending = self.lock();
        self.fits(&pending, incoming, incoming_bytes)
    }

    fn fits(&self, pending: &Pending, incoming: usize, incoming_bytes: usize) -> Result<(), BatchFull> {
        let (items, bytes) = (pending.work.len(), pending.bytes);
        if items.saturating_add(incoming) > self.capacity || bytes.saturating_add(incoming_bytes) > self.capacity_bytes
        {
            return Err(BatchFull {
                pending: items,
                pending_bytes: bytes,
                incoming,
                incoming_bytes,
                capacity: self.capacity,
                capacity_bytes: self.capacity_bytes,
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave `Pending` inconsistent in a way that
        // matters (at worst a key without its item), so a poisoned lock is simply reused.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds LRP instances not already pending and wakes the runner; returns how many were new.
    /// Adds nothing when they would not fit (what the gRPC service calls).
    pub fn try_add_lrps(&self, lrps: Vec<LrpWork>) -> Result<usize, BatchFull> {
        let added = {
            let mut pending = self.lock();
            let bytes = lrps.iter().map(|l| footprint(&l.process_guid, &l.domain, &l.constraint)).sum();
            self.fits(&pending, lrps.len(), bytes)?;
            lrps.into_iter().map(|l| pending.push_lrp(l)).filter(|&new| new).count()
        };
        if added > 0 {
            self.notify.notify_one();
        }
        Ok(added)
    }

    /// Adds tasks not already pending and wakes the runner; returns how many were new. Adds
    /// nothing when they would not fit (what the gRPC service calls).
    pub fn try_add_tasks(&self, tasks: Vec<TaskWork>) -> Result<usize, BatchFull> {
        let added = {
            let mut pending = self.lock();
            let bytes = tasks.iter().map(|t| footprint(&t.task_guid, &t.domain, &t.constraint)).sum();
            self.fits(&pending, tasks.len(), bytes)?;
            tasks.into_iter().map(|t| pending.push_task(t)).filter(|&new| new).count()
        };
        if added > 0 {
            self.notify.notify_one();
        }
        Ok(added)
    }

    /// Adds LRP instances not already pending and wakes the runner, whatever the capacity;
    /// returns how many were new.
    pub fn add_lrps(&self, lrps: impl IntoIterator<Item = LrpWork>) -> usize {
        let added = {
            let mut pending = self.lock();
            lrps.into_iter().map(|l| pending.push_lrp(l)).filter(|&new| new).count()
        };
        if added > 0 {
            self.notify.notify_one();
        }
        added
    }

    /// Adds tasks not already pending and wakes the runner, whatever the capacity; returns how
    /// many were new.
    pub fn add_tasks(&self, tasks: impl IntoIterator<Item = TaskWork>) -> usize {
        let added = {
            let mut pending = self.lock();
            tasks.into_iter().map(|t| pending.push_task(t)).filter(|&new| new).count()
        };
        if added > 0 {
            self.notify.notify_one();
        }
        added
    }

    /// Takes everything pending, in arrival order, leaving the batch empty.
    pub fn drain(&self) -> Work {
        std::mem::take(&mut *self.lock()).work
    }

    /// Puts drained work back in front of whatever arrived since, for an auction that could not
    /// run (the BBS did not list the cells). Later duplicates of requeued items are dropped.
    /// Does not wake the runner: the caller decides when to retry.
    pub fn requeue(&self, work: Work) {
        let mut pending = self.lock();
        let newer = std::mem::take(&mut *pending);
        for lrp in work.lrps.into_iter().chain(newer.work.lrps) {
            pending.push_lrp(lrp);
        }
        for task in work.tasks.into_iter().chain(newer.work.tasks) {
            pending.push_task(task);
        }
    }

    /// Drops everything pending (when the lock is lost: the next auctioneer gets the work again
    /// from the BBS's convergence); returns how many items were dropped.
    pub fn clear(&self) -> usize {
        self.drain().len()
    }

    /// How many LRP instances and tasks are pending.
    pub fn counts(&self) -> (usize, usize) {
        let pending = self.lock();
        (pending.work.lrps.len(), pending.work.tasks.len())
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.counts() == (0, 0)
    }

    /// Waits until work is added. An addition made while nobody waits is remembered (once),
    /// so a wake-up is never lost between a drain and the next wait.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_would_pass_the_capacity_is_refused_whole() {
        let batch = AuctionBatch::with_capacity(3);
        assert_eq!(batch.try_add_lrps(vec![lrp("a", 0, 1), lrp("a", 1, 1)]), Ok(2));
        assert_eq!(batch.check_room(2, 0).map_err(|e| (e.pending, e.incoming, e.capacity)), Err((2, 2, 3)));
        assert_eq!(
            batch.try_add_lrps(vec![lrp("b", 0, 1), lrp("b", 1, 1)]).map_err(|e| (e.pending, e.incoming)),
            Err((2, 2))
        );
        assert_eq!(batch.try_add_tasks(vec![task("t1"), task("t2")]).map_err(|e| e.pending), Err(2));
        assert_eq!(batch.counts(), (2, 0), "nothing of a refused request was added");
        assert_eq!(batch.try_add_tasks(vec![task("t1")]), Ok(1));
        assert_eq!(batch.drain().len(), 3);
        assert_eq!(batch.check_room(3, 0), Ok(()));
    }

    #[test]
    fn the_memory_of_pending_items_is_bounded_too() {
        let big = |index| {
            let mut l = lrp("app", index, 1);
            l.constraint.volume_drivers = vec!["d".repeat(4000); 10];
            l
        };
        let one = footprint("app", &big(0).domain, &big(0).constraint);
        assert!(one > 40_000, "{one}");
        let batch = AuctionBatch::with_limits(1000, 3 * one);
        assert_eq!(batch.try_add_lrps(vec![big(0), big(1), big(2)]), Ok(3));
        let refused = batch.try_add_lrps(vec![big(3)]).unwrap_err();
        assert_eq!((refused.pending, refused.pending_bytes, refused.incoming_bytes), (3, 3 * one, one));
        assert_eq!(batch.counts(), (3, 0));
        batch.drain();
        assert_eq!(batch.try_add_lrps(vec![big(3)]), Ok(1), "draining gives the room back");
    }

    fn lrp(guid: &str, index: i32, memory_mb: i64) -> LrpWork {
        LrpWork {
            process_guid: guid.into(),
            index,
            resource: crate::placement::WorkResource { memory_mb, ..Default::default() },
            ..LrpWork::default()
        }
    }

    fn task(guid: &str) -> TaskWork {
        TaskWork { task_guid: guid.into(), ..TaskWork::default() }
    }

    #[test]
    fn duplicates_are_dropped_keeping_the_first() {
        let batch = AuctionBatch::new();
        assert_eq!(batch.add_lrps([lrp("a", 0, 1), lrp("a", 1, 1), lrp("a", 0, 99)]), 2);
        assert_eq!(batch.add_lrps([lrp("a", 1, 99), lrp("b", 0, 1)]), 1);
        assert_eq!(batch.add_tasks([task("t1"), task("t1"), task("t2")]), 2);
        let work = batch.drain();
        let keys: Vec<_> = work.lrps.iter().map(|l| (l.process_guid.as_str(), l.index, l.resource.memory_mb)).collect();
        assert_eq!(keys, [("a", 0, 1), ("a", 1, 1), ("b", 0, 1)]);
        let tasks: Vec<_> = work.tasks.iter().map(|t| t.task_guid.as_str()).collect();
        assert_eq!(tasks, ["t1", "t2"]);
    }

    #[test]
    fn drain_empties_the_batch_and_forgets_the_keys() {
        let batch = AuctionBatch::new();
        batch.add_lrps([lrp("a", 0, 1)]);
        assert_eq!(batch.drain().len(), 1);
        assert!(batch.is_empty());
        assert!(batch.drain().is_empty());
        // The same instance may be requested again for the next auction.
        assert_eq!(batch.add_lrps([lrp("a", 0, 1)]), 1);
    }

    #[test]
    fn requeue_puts_old_work_first_and_drops_newer_duplicates() {
        let batch = AuctionBatch::new();
        batch.add_lrps([lrp("a", 0, 1)]);
        batch.add_tasks([task("t1")]);
        let old = batch.drain();
        batch.add_lrps([lrp("b", 0, 1), lrp("a", 0, 2)]);
        batch.add_tasks([task("t2"), task("t1")]);
        batch.requeue(old);
        let work = batch.drain();
        let keys: Vec<_> = work.lrps.iter().map(|l| (l.process_guid.as_str(), l.resource.memory_mb)).collect();
        assert_eq!(keys, [("a", 1), ("b", 1)]);
        let tasks: Vec<_> = work.tasks.iter().map(|t| t.task_guid.as_str()).collect();
        assert_eq!(tasks, ["t1", "t2"]);
    }

    #[test]
    fn clear_reports_how_much_was_dropped() {
        let batch = AuctionBatch::new();
        batch.add_lrps([lrp("a", 0, 1), lrp("a", 1, 1)]);
        batch.add_tasks([task("t")]);
        assert_eq!(batch.clear(), 3);
        assert_eq!(batch.counts(), (0, 0));
    }

    #[tokio::test]
    async fn an_addition_before_the_wait_is_not_lost() {
        let batch = AuctionBatch::new();
        batch.add_tasks([task("t")]);
        tokio::time::timeout(std::time::Duration::from_secs(5), batch.wait())
            .await
            .expect("the stored wake-up should end the wait");
    }

    #[test]
    fn adding_only_duplicates_does_not_wake() {
        let batch = AuctionBatch::new();
        batch.add_tasks([task("t")]);
        // Consume the stored permit.
        let first = batch.notify.notified();
        futures::pin_mut!(first);
        assert!(futures::FutureExt::now_or_never(first.as_mut()).is_some());
        batch.add_tasks([task("t")]);
        let second = batch.notify.notified();
        futures::pin_mut!(second);
        assert!(futures::FutureExt::now_or_never(second.as_mut()).is_none());
    }
}
