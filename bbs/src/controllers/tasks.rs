//! Task rules (bbs.md 3.5): the store decides and writes each transition
//! ([`db::sql::tasks`]); this controller adds what happens around it.
//!
//! - Every write goes through the leader's fenced store and holds the task's lock stripe from
//!   before the write until its event is published, so one task's events leave in commit order.
//! - Desire publishes `TaskCreated` and sends one task start request to the auctioneer in the
//!   background (a failure is only logged; convergence re-kicks pending tasks).
//! - Start publishes `TaskChanged` only when the task moved (`should_start`); a repeated start
//!   from the same cell changes nothing and publishes nothing.
//! - Reject sends no auction (convergence re-kicks); once the retries are exhausted it fails the
//!   task, which then gets its completion callback like any other completed task.
//! - Complete, cancel and fail enqueue the completion callback when the definition has a URL.
//!   Cancel also tells the rep the task ran on, in the background, best-effort.
//! - Resolving publishes `TaskChanged`; delete publishes `TaskRemoved`.

use db::sql::tasks::{TaskChange, TaskFilter};
use proto::models::{CellId, DomainName, Task, TaskDefinition, TaskGuid, TaskState};
use proto::pb::models::v1 as pb;

use super::Context;
use crate::clients::TaskStartRequest;
use crate::{Result, cells};

/// Task reads and writes.
pub struct Tasks<'a>(pub &'a Context);

impl Tasks<'_> {
    /// Every task matching `filter` (works on standbys).
    pub async fn list(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        Ok(self.0.reader().tasks(filter).await?)
    }

    /// One task; ResourceNotFound when absent.
    pub async fn get(&self, guid: &TaskGuid) -> Result<Task> {
        Ok(self.0.reader().task(guid).await?)
    }

    /// Stores a new PENDING task and requests its auction. ResourceExists on a taken guid.
    #[tracing::instrument(skip_all, fields(task_guid = %guid))]
    pub async fn desire(&self, guid: &TaskGuid, domain: &DomainName, definition: &TaskDefinition) -> Result<Task> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let task = store.desire_task(guid, domain, definition, now).await?;
        tracing::info!(domain = %domain, "task desired");
        ctx.events
            .publish_task(pb::task_event::Event::TaskCreated(pb::TaskCreatedEvent { task: Some(task.clone().into()) }));
        ctx.request_task_auctions(vec![start_request(guid, domain, definition)]);
        Ok(task)
    }

    /// StartTask from the rep of `cell_id`: whether the rep should start it (false when it
    /// already runs there). InvalidStateTransition from any other state or cell.
    #[tracing::instrument(skip_all, fields(task_guid = %guid, cell_id = %cell_id))]
    pub async fn start(&self, guid: &TaskGuid, cell_id: &CellId) -> Result<bool> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.start_task(guid, cell_id, now).await?;
        if change.should_start {
            tracing::info!("task started");
            publish_changed(ctx, &change);
        }
        Ok(change.should_start)
    }

    /// CancelTask: completes the task failed with "task was cancelled", enqueues its callback,
    /// and asks the rep it ran on (if any) to cancel it, in the background.
    #[tracing::instrument(skip_all, fields(task_guid = %guid))]
    pub async fn cancel(&self, guid: &TaskGuid) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.cancel_task(guid, now).await?;
        tracing::info!(was_running_on = change.before.cell_id.as_ref().map_or("", CellId::as_str), "task cancelled");
        publish_changed(ctx, &change);
        enqueue_callback(ctx, &change);
        if let Some(cell_id) = &change.before.cell_id {
            cancel_on_rep(ctx, cell_id.to_string(), guid.to_string());
        }
        Ok(())
    }

    /// FailTask (deprecated): like cancel with `reason`, without telling the rep.
    #[tracing::instrument(skip_all, fields(task_guid = %guid))]
    pub async fn fail(&self, guid: &TaskGuid, reason: &str) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.fail_task(guid, reason, now).await?;
        tracing::info!(reason, "task failed");
        publish_changed(ctx, &change);
        enqueue_callback(ctx, &change);
        Ok(())
    }

    /// RejectTask: back to PENDING with the reason, or failed once `max_task_retries`
    /// rejections were already counted. InvalidRequest unless PENDING or RUNNING. No auction is
    /// sent: convergence re-kicks pending tasks.
    #[tracing::instrument(skip_all, fields(task_guid = %guid))]
    pub async fn reject(&self, guid: &TaskGuid, reason: &str) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.reject_task(guid, reason, ctx.max_task_retries, now).await?;
        let failed = change.after.as_ref().is_some_and(|t| t.state == TaskState::Completed);
        let rejections = change.after.as_ref().map_or(0, |t| t.rejection_count);
        if failed {
            tracing::info!(reason, rejections, "task rejected too often; failed");
        } else {
            tracing::info!(reason, rejections, "task rejected; pending again");
        }
        publish_changed(ctx, &change);
        if failed {
            enqueue_callback(ctx, &change);
        }
        Ok(())
    }

    /// CompleteTask from the rep of `cell_id`. RunningOnDifferentCell when it runs elsewhere,
    /// InvalidStateTransition when it is not running. Enqueues the completion callback.
    #[tracing::instrument(skip_all, fields(task_guid = %guid, cell_id = %cell_id))]
    pub async fn complete(
        &self,
        guid: &TaskGuid,
        cell_id: &CellId,
        failed: bool,
        failure_reason: &str,
        result: &str,
    ) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.complete_task(guid, cell_id, failed, failure_reason, result, now).await?;
        tracing::info!(failed, "task completed");
        publish_changed(ctx, &change);
        enqueue_callback(ctx, &change);
        Ok(())
    }

    /// ResolvingTask: COMPLETED to RESOLVING (InvalidStateTransition otherwise, which is how a
    /// second resolver learns it lost).
    #[tracing::instrument(skip_all, fields(task_guid = %guid))]
    pub async fn resolving(&self, guid: &TaskGuid) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.resolving_task(guid, now).await?;
        tracing::debug!("task resolving");
        publish_changed(ctx, &change);
        Ok(())
    }

    /// DeleteTask: removes a RESOLVING task (InvalidStateTransition otherwise).
    #[tracing::instrument(skip_all, fields(task_guid = %guid))]
    pub async fn delete(&self, guid: &TaskGuid) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let change = store.delete_task(guid).await?;
        tracing::info!("task deleted");
        ctx.events.publish_task(pb::task_event::Event::TaskRemoved(pb::TaskRemovedEvent {
            task: Some(change.before.into()),
        }));
        Ok(())
    }
}

/// The auction request for a task, from its definition ([`TaskStartRequest::of`]).
pub fn start_request(guid: &TaskGuid, domain: &DomainName, definition: &TaskDefinition) -> TaskStartRequest {
    TaskStartRequest::of(guid, domain, definition)
}

/// Publishes `TaskChanged(before, after)` for a change that kept the row.
fn publish_changed(ctx: &Context, change: &TaskChange) {
    let Some(after) = &change.after else { return };
    ctx.events.publish_task(pb::task_event::Event::TaskChanged(pb::TaskChangedEvent {
        before: Some(change.before.clone().into()),
        after: Some(after.clone().into()),
    }));
}

/// Queues the completion callback of a task that just completed (a no-op without a URL).
fn enqueue_callback(ctx: &Context, change: &TaskChange) {
    if let Some(after) = &change.after
        && after.state == TaskState::Completed
    {
        ctx.callbacks.enqueue(after.clone());
    }
}

/// Asks the rep of `cell_id` to cancel the task, in the background; every failure is only
/// logged (the rep also notices the task is gone when it next syncs).
fn cancel_on_rep(ctx: &Context, cell_id: String, task_guid: String) {
    let (store, reps) = (ctx.reader().clone(), ctx.reps.clone());
    tokio::spawn(async move {
        match cells::rep_address(&store, &cell_id).await {
            Ok(Some(address)) => match reps.cancel_task(&cell_id, &address, &task_guid).await {
                Ok(()) => tracing::info!(%cell_id, %task_guid, "rep cancelled the task"),
                Err(e) => tracing::warn!(%cell_id, %task_guid, error = %e, "rep cancel request failed"),
            },
            Ok(None) => tracing::info!(%cell_id, %task_guid, "cell is gone; not sending a cancel"),
            Err(e) => tracing::warn!(%cell_id, %task_guid, error = %e, "cannot look the cell up to cancel a task"),
        }
    });
}
