//! Container events → BBS calls (reference 2.5).
//!
//! Every lifecycle event of the executor (reserved, running, readiness, completed) and every
//! bulk-sync pass queues a *container operation* for the container's guid. Operations on one guid
//! run one at a time; while one runs, at most one more waits, and later requests join the waiting
//! one (Diego's operation queue). An operation re-reads the container, so it acts on the current
//! state whatever event queued it, and dispatches on the container's workload.
//!
//! A bulk-sync pass queues its operations with [`Generator::enqueue_all`]: the RUNNING LRP
//! containers (cell not evacuating) whose guids have no operation running or waiting are taken
//! together as one operation, which re-reads them and reports the ones still running in one
//! `StartActualLRPs` ([`Generator::start_running`]); a busy guid, and every other container, gets
//! its ordinary operation. Event-driven starts (running, readiness changes) stay single calls.
//!
//! The processors:
//!
//! - `generator/lrp.rs`: the LRP processor (claim and run, start, crash or remove) and, while
//!   the cell evacuates, the evacuation processor;
//! - `generator/task.rs`: the task processor (start and run, complete or reject);
//! - `generator/run_request.rs`: run requests built from desired LRPs and task definitions.
//!
//! Every log line carries the container guid and the instance's process guid and index or task
//! guid, so one container's life can be followed.

mod lrp;
mod run_request;
mod task;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use crate::context::RepContext;
use crate::executor::{Container, ContainerEvent};
use crate::workload::Workload;

pub use run_request::{internal_routes, lrp_run_request, resolve_metric_tags, task_run_request};

/// Completes when the queued operation (or the one it joined) has run.
pub type OperationDone = Shared<BoxFuture<'static, ()>>;

/// Longest task result reported to the BBS (bbs.md 2.3: "the rep returns at most the first
/// 10 KB").
pub const MAX_RESULT_BYTES: usize = 10 * 1024;

#[derive(Default)]
struct Slot {
    /// The operation waiting behind the running one, and the sender that completes it.
    waiting: Option<(OperationDone, oneshot::Sender<()>)>,
}

/// Drives the BBS from container state. Cheap to share (`Arc`).
pub struct Generator {
    ctx: Arc<RepContext>,
    slots: Mutex<HashMap<String, Slot>>,
    /// Instances whose replacement was already requested (logged once).
    replacement_requested: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").field("cell_id", &self.ctx.cell.cell_id).finish_non_exhaustive()
    }
}

/// Removes the slots of the guids an operation holds if its driver ends abnormally (a panic), so
/// the guids are not stuck.
struct SlotGuard<'a> {
    generator: &'a Generator,
    guids: &'a [String],
    armed: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut slots = self.generator.slots();
            for guid in self.guids {
                slots.remove(guid);
            }
        }
    }
}

impl Generator {
    /// A generator over the rep's shared state.
    pub fn new(ctx: Arc<RepContext>) -> Arc<Self> {
        Arc::new(Self { ctx, slots: Mutex::new(HashMap::new()), replacement_requested: Mutex::new(HashSet::new()) })
    }

    /// The shared state.
    pub fn context(&self) -> &Arc<RepContext> {
        &self.ctx
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an operation for container `guid` and returns a future that completes once it ran.
    /// Dropping the future does not cancel the operation.
    pub fn enqueue(self: &Arc<Self>, guid: &str) -> OperationDone {
        self.enqueue_in(&mut self.slots(), guid)
    }

    /// [`Generator::enqueue`] with the slots locked.
    fn enqueue_in(self: &Arc<Self>, slots: &mut HashMap<String, Slot>, guid: &str) -> OperationDone {
        let (tx, done) = operation_done();
        match slots.get_mut(guid) {
            Some(slot) => {
                if let Some((waiting, _)) = &slot.waiting {
                    return waiting.clone();
                }
                slot.waiting = Some((done.clone(), tx));
            }
            None => {
                slots.insert(guid.to_owned(), Slot::default());
                let this = Arc::clone(self);
                let guid = guid.to_owned();
                tokio::spawn(async move { this.drive(guid, tx).await });
            }
        }
        done
    }

    /// Runs the operations of one guid until none waits.
    async fn drive(&self, guid: String, mut done: oneshot::Sender<()>) {
        let mut guard = SlotGuard { generator: self, guids: std::slice::from_ref(&guid), armed: true };
        loop {
            self.process(&guid).await;
            let _ = done.send(());
            match self.next_waiting(&guid) {
                Some(next) => done = next,
                None => {
                    guard.armed = false;
                    return;
                }
            }
        }
    }

    /// After an operation of `guid` ran: the completion of the operation waiting behind it
    /// (which runs next, in the same slot), or `None` once the slot is released.
    fn next_waiting(&self, guid: &str) -> Option<oneshot::Sender<()>> {
        let mut slots = self.slots();
        match slots.get_mut(guid).and_then(|slot| slot.waiting.take()) {
            Some((_, next)) => Some(next),
            None => {
                slots.remove(guid);
                None
            }
        }
    }

    /// Queues the bulk-sync operation of every container in `containers` and returns a future
    /// that completes once they all ran. The RUNNING LRP containers of a cell that does not
    /// evacuate are re-asserted together ([`Generator::start_running`]); every other container
    /// gets its ordinary operation.
    pub fn enqueue_all(self: &Arc<Self>, containers: &[Container]) -> OperationDone {
        let (running, others): (Vec<&Container>, Vec<&Container>) =
            containers.iter().partition(|c| self.running_lrp_identity(c).is_some());
        let mut done: Vec<OperationDone> = others.iter().map(|c| self.enqueue(&c.guid)).collect();
        done.push(self.start_running(running.iter().map(|c| c.guid.clone()).collect()));
        all_done(done)
    }

    /// Re-asserts the RUNNING LRP containers `guids` with one `StartActualLRPs`, without going
    /// behind the per-guid queue: the guids with no operation running or waiting are taken as if
    /// one operation ran for all of them ([`Generator::start_many`]: re-read, reported together,
    /// each answer handled as the single start's), then released, and what queued behind any of
    /// them meanwhile runs. A busy guid gets an ordinary [`Generator::enqueue`] instead (its
    /// operation re-reads the container and does what it needs). Returns a future that completes
    /// once all of that ran; dropping it does not cancel anything.
    pub fn start_running(self: &Arc<Self>, guids: Vec<String>) -> OperationDone {
        let mut done = Vec::new();
        let mut taken = Vec::new();
        {
            let mut slots = self.slots();
            for guid in guids {
                if slots.contains_key(&guid) {
                    done.push(self.enqueue_in(&mut slots, &guid));
                } else {
                    slots.insert(guid.clone(), Slot::default());
                    taken.push(guid);
                }
            }
        }
        if !taken.is_empty() {
            let (tx, batch_done) = operation_done();
            done.push(batch_done);
            let this = Arc::clone(self);
            tokio::spawn(async move { this.drive_many(taken, tx).await });
        }
        all_done(done)
    }

    /// Runs [`Generator::start_many`] for the taken slots of `guids`, then releases them, driving
    /// each guid's waiting operation, if any, as [`Generator::drive`] would.
    async fn drive_many(self: Arc<Self>, guids: Vec<String>, done: oneshot::Sender<()>) {
        let mut guard = SlotGuard { generator: &self, guids: &guids, armed: true };
        self.start_many(&guids).await;
        let _ = done.send(());
        guard.armed = false;
        for guid in &guids {
            if let Some(next) = self.next_waiting(guid) {
                let this = Arc::clone(&self);
                let guid = guid.clone();
                tokio::spawn(async move { this.drive(guid, next).await });
            }
        }
    }

    /// One operation: re-reads the container and hands it to its processor.
    pub async fn process(&self, guid: &str) {
        let Some(container) = self.ctx.executor.get(guid) else {
            tracing::debug!(container_guid = %guid, "container gone; nothing to do");
            return;
        };
        match &container.workload {
            Workload::Lrp(lrp) => {
                let identity = self.ctx.lrp_identity(lrp);
                if self.ctx.evacuation.is_set() {
                    self.evacuate_lrp(container, identity).await;
                } else {
                    self.process_lrp(container, identity).await;
                }
            }
            Workload::Task(_) => self.process_task(container).await,
        }
    }

    /// Queues an operation for every container event until `shutdown`. When the receiver lags
    /// it notifies `resync` so a bulk sync repairs what was missed.
    pub async fn run(
        self: Arc<Self>,
        mut events: broadcast::Receiver<ContainerEvent>,
        resync: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(ContainerEvent::Deleted(guid)) => {
                    self.ctx.forget_instance(&guid);
                    self.replacement_requested().remove(&guid);
                }
                // Creation is not a lifecycle step the BBS hears about (reference 2.5).
                Ok(ContainerEvent::Created(_)) => {}
                Ok(event) => {
                    // The operation runs on its own; nobody waits for it here.
                    drop(self.enqueue(event.guid()));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(cell_id = %self.ctx.cell.cell_id, missed, "missed container events; asking for a bulk sync");
                    resync.notify_one();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn replacement_requested(&self) -> MutexGuard<'_, HashSet<String>> {
        self.replacement_requested.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes a container, logging (not failing) when that does not work.
    async fn delete(&self, guid: &str, why: &'static str) {
        match self.ctx.executor.delete(guid).await {
            Ok(()) => tracing::debug!(container_guid = %guid, why, "container deleted"),
            Err(crate::executor::ExecutorError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(container_guid = %guid, why, error = %e, "cannot delete container"),
        }
    }

    /// Stops a container in the background (a graceful stop can take the whole graceful
    /// interval; the operation for this guid need not wait for it). Its completion comes back
    /// as an event.
    pub(crate) fn stop_in_background(&self, guid: &str, why: &'static str) {
        let executor = self.ctx.executor.clone();
        let guid = guid.to_owned();
        tokio::spawn(async move {
            tracing::info!(container_guid = %guid, why, "stopping container");
            if let Err(e) = executor.stop(&guid).await {
                tracing::debug!(container_guid = %guid, error = %e, "stop failed");
            }
        });
    }
}

/// A new operation's completion: the sender to fire once it ran, and the future that waits for it.
fn operation_done() -> (oneshot::Sender<()>, OperationDone) {
    let (tx, rx) = oneshot::channel::<()>();
    let done = async move {
        let _ = rx.await;
    }
    .boxed()
    .shared();
    (tx, done)
}

/// Completes once every one of `done` did.
fn all_done(done: Vec<OperationDone>) -> OperationDone {
    futures::future::join_all(done).map(drop).boxed().shared()
}

/// Whether a BBS error is a definitive refusal (the record says no) rather than a failure to
/// reach or hear from the BBS, after which the operation is simply retried on the next pass.
pub(crate) fn is_definitive(error: &crate::bbs_client::BbsError) -> bool {
    use proto::error::ErrorCode::{Deadlock, ResourceConflict, Timeout, Unavailable, Unknown, Unrecoverable};
    !matches!(error.code, None | Some(Unavailable | Timeout | Deadlock | ResourceConflict | Unrecoverable | Unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_definitive() {
        use crate::bbs_client::BbsError;
        use proto::error::ErrorCode;
        assert!(is_definitive(&BbsError::new("c", Some(ErrorCode::ActualLrpCannotBeClaimed), "")));
        assert!(is_definitive(&BbsError::new("c", Some(ErrorCode::ResourceNotFound), "")));
        assert!(!is_definitive(&BbsError::new("c", Some(ErrorCode::Unavailable), "")));
        assert!(!is_definitive(&BbsError::new("c", None, "")));
    }
}
