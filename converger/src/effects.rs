//! [`Effects`]: everything a convergence pass does outside the store. The BBS implements it on
//! top of its auctioneer client, rep clients, event hub, callback pool and key locks; tests use
//! the recording fake in `testing` (feature `testing`).
//!
//! What the BBS must implement, method by method (all on its `Context`):
//!
//! | method | BBS side |
//! |---|---|
//! | [`Effects::request_lrp_auctions`] | `AuctioneerClient::request_lrp_auctions` (one call per pass) |
//! | [`Effects::request_task_auctions`] | `AuctioneerClient::request_task_auctions` (one call per pass) |
//! | [`Effects::stop_instance`] | `Context::stop_instance` (looks the rep up by cell id) |
//! | [`Effects::retry_callback`] | `Callbacks::enqueue` (ignores tasks without a callback URL) |
//! | [`Effects::publish_index_change`] | `Context::publish_index_change` |
//! | [`Effects::publish_removed`] | an `ActualLrpRemoved` instance event for the row |
//! | [`Effects::publish_task_change`] | `TaskChanged(before, after)`, or `TaskRemoved(before)` when `after` is `None` |
//! | [`Effects::lock_key`] | `KeyLocks::lock((guid, index))` / `KeyLocks::lock(task_guid)` |
//! | [`Effects::cell_report`] | the rep's `Recovery.Report` (default: no reports, no hold) |
//! | [`Effects::request_cell_sync`] | `Recovery.Report` with `sync` (default: nothing) |
//! | [`Effects::publish_desired_recovered`] | a `DesiredLRPCreated` event (default: nothing) |
//!
//! Not here: store writes (the converger makes them itself through the fenced store the BBS
//! hands it) and the decision of what to do (the pure plans).

use std::fmt;

use db::sql::actual_lrps::IndexChange;
use futures::future::BoxFuture;
use proto::models::{ActualLrp, CellId, DesiredLrp, InstanceGuid, ProcessGuid, Task, TaskGuid};

pub use crate::lrp::recovery::{CellReport, ReportedInstance};

pub use proto::models::{LrpStartRequest, TaskStartRequest};

/// A rep stop for one instance. The rep stops the container and then removes the actual LRP
/// itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StopInstance {
    /// The cell that runs it (a live cell: convergence never asks a lost cell).
    pub cell_id: CellId,
    /// The desired LRP.
    pub process_guid: ProcessGuid,
    /// The container.
    pub instance_guid: InstanceGuid,
    /// The index.
    pub index: i32,
}

/// What a write is about, for [`Effects::lock_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKey<'a> {
    /// One index of a desired LRP (all its presences).
    Instance(&'a ProcessGuid, i32),
    /// One task.
    Task(&'a TaskGuid),
}

/// Held from before a write until its events are published; dropping it releases the key.
pub type KeyGuard<'a> = Box<dyn Send + 'a>;

/// Why an outbound call failed (the message of the client's error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectError(String);

impl EffectError {
    /// An error saying `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl fmt::Display for EffectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EffectError {}

/// The outside world of a convergence pass. Calls that may wait return futures; the event and
/// callback methods are synchronous hand-offs (the BBS queues them).
pub trait Effects: Send + Sync + 'static {
    /// Sends every LRP start of the pass to the auctioneer, in one call. Never called with an
    /// empty list.
    fn request_lrp_auctions(&self, starts: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), EffectError>>;

    /// Sends every task start of the pass (the pending tasks) to the auctioneer, in one call.
    /// Never called with an empty list.
    fn request_task_auctions(&self, starts: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), EffectError>>;

    /// Asks the rep of `stop.cell_id` to stop an instance. The converger runs up to
    /// `workers` of these at once; a failure is logged and retried by the next pass.
    fn stop_instance(&self, stop: StopInstance) -> BoxFuture<'_, Result<(), EffectError>>;

    /// Queues the completion callback of a COMPLETED task again (the callback pool resolves
    /// and deletes it). Tasks without a callback URL are never passed.
    fn retry_callback(&self, task: Task);

    /// Publishes the instance events of one committed per-index write. Created rows are passed
    /// as a change from no row to the new UNCLAIMED row.
    fn publish_index_change(&self, change: &IndexChange<()>);

    /// Publishes the removal of a row deleted by a set-based delete (evacuating rows on lost
    /// cells, retired rows with no live container, retired suspects).
    fn publish_removed(&self, lrp: &ActualLrp);

    /// Publishes a committed task change; `after` is `None` when the task was deleted.
    fn publish_task_change(&self, before: &Task, after: Option<&Task>);

    /// Locks `key` so that this pass's write of it and the events published for it are not
    /// interleaved with a controller's write of the same key. Held for one per-key write; the
    /// converger never holds two at once (holding several could deadlock against a controller
    /// that nests its locks), so the set-based deletes and the creates of missing rows publish
    /// without one.
    fn lock_key<'a>(&'a self, key: LockKey<'a>) -> BoxFuture<'a, KeyGuard<'a>>;

    /// Asks the rep of live cell `cell` what it runs, and the desired LRPs it keeps for the
    /// process guids in `desired_for` (issue 19, `lrp::recovery`). `Ok(None)` says this world
    /// has no such reports (the default: convergence then decides from the database alone, as
    /// before); an error counts as a cell that did not answer.
    fn cell_report<'a>(
        &'a self,
        cell: &'a CellId,
        desired_for: &'a [ProcessGuid],
    ) -> BoxFuture<'a, Result<Option<CellReport>, EffectError>> {
        let _ = (cell, desired_for);
        Box::pin(async { Ok(None) })
    }

    /// Asks the rep of live cell `cell` to run its bulk sync at once: it runs instances whose
    /// actual LRPs the database lost, and re-adopts them as they are (issue 19). The default
    /// does nothing (the rep's own polling re-adopts them).
    fn request_cell_sync<'a>(&'a self, cell: &'a CellId) -> BoxFuture<'a, Result<(), EffectError>> {
        let _ = cell;
        Box::pin(async { Ok(()) })
    }

    /// Publishes the creation of a desired LRP rebuilt from the cells' reports (marked
    /// recovered). The default publishes nothing.
    fn publish_desired_recovered(&self, lrp: &DesiredLrp) {
        let _ = lrp;
    }

    /// Whether an operator removed the desired LRP `process_guid` lately (RemoveDesiredLRP
    /// served by this BBS). Its instances run on until their stops reach the reps, and a rep
    /// reports the run info it keeps for them meanwhile; a pass must not take that for a lost
    /// record and rebuild what was removed. The default (no such memory): never.
    fn removed_lately(&self, process_guid: &ProcessGuid) -> bool {
        let _ = process_guid;
        false
    }
}
