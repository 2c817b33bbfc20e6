//! The task processor (reference 2.5, `task_processor.go`): start and run, then complete (or
//! reject a creation failure so the BBS may place the task elsewhere).

use proto::error::ErrorCode;

use super::{Generator, MAX_RESULT_BYTES, is_definitive, task_run_request};
use crate::bbs_client::TaskCompletion;
use crate::executor::{Container, ContainerState};
use crate::text::truncate_bytes;

impl Generator {
    /// The task processor.
    pub(super) async fn process_task(&self, container: Container) {
        let guid = container.guid.as_str();
        if container.state == ContainerState::Completed {
            return self.finish_task(&container).await;
        }
        let cell_id = self.ctx.cell.cell_id.as_str();
        match self.ctx.bbs.start_task(guid, cell_id).await {
            // Reserved means nothing runs yet. `should_start = false` says the BBS already has
            // the task running here: an earlier pass started it but could not run it (the
            // definition fetch failed), so it is run now. Past reserved there is nothing to do.
            Ok(should_start) if container.state == ContainerState::Reserved => {
                tracing::debug!(task_guid = %guid, should_start, "task started in the bbs");
                self.fetch_and_run_task(guid).await;
            }
            Ok(_) => {}
            Err(e) if is_definitive(&e) => {
                // Cancelled, completed elsewhere or deleted: this container has no task to run.
                tracing::info!(task_guid = %guid, state = %container.state, error = %e, "the bbs refuses to start the task; deleting its container");
                self.delete(guid, "task start refused").await;
            }
            Err(e) => tracing::warn!(task_guid = %guid, error = %e, "cannot start the task; retrying on the next pass"),
        }
    }

    async fn fetch_and_run_task(&self, guid: &str) {
        let task = match self.ctx.bbs.task_by_guid(guid).await {
            Ok(task) => task,
            Err(e) if is_definitive(&e) => {
                tracing::warn!(task_guid = %guid, error = %e, "task gone; deleting its container");
                return self.delete(guid, "task gone").await;
            }
            Err(e) => {
                tracing::warn!(task_guid = %guid, error = %e, "cannot fetch the task; retrying on the next pass");
                return;
            }
        };
        let result = task_run_request(&task)
            .map_err(|reason| reason.to_owned())
            .and_then(|request| self.ctx.executor.run(guid, request).map_err(|e| e.to_string()));
        match result {
            Ok(()) => tracing::info!(task_guid = %guid, "running task container"),
            Err(reason) => {
                tracing::warn!(task_guid = %guid, error = %reason, "cannot run the task container; rejecting the task");
                let reason = format!("failed to run container: {reason}");
                if let Err(e) = self.ctx.bbs.reject_task(guid, &reason).await {
                    tracing::warn!(task_guid = %guid, error = %e, "cannot reject the task");
                }
                self.delete(guid, "task run failed").await;
            }
        }
    }

    async fn finish_task(&self, container: &Container) {
        let guid = container.guid.as_str();
        let result = container.result.clone().unwrap_or_default();
        if result.failed && result.retryable {
            tracing::info!(task_guid = %guid, reason = %result.failure_reason, "task container could not be created; rejecting the task");
            match self.ctx.bbs.reject_task(guid, &result.failure_reason).await {
                Err(e) if !is_definitive(&e) => {
                    // Keep the container: the next pass reports it again.
                    return tracing::warn!(task_guid = %guid, error = %e, "cannot reject the task; retrying on the next pass");
                }
                Err(e) => tracing::warn!(task_guid = %guid, error = %e, "the bbs refused the rejection"),
                Ok(()) => {}
            }
        } else {
            let completion = TaskCompletion {
                task_guid: guid.to_owned(),
                cell_id: self.ctx.cell.cell_id.to_string(),
                failed: result.failed,
                failure_reason: result.failure_reason.clone(),
                result: if result.failed { String::new() } else { truncate_bytes(&result.result, MAX_RESULT_BYTES) },
            };
            tracing::info!(task_guid = %guid, failed = completion.failed, reason = %completion.failure_reason, "task completed");
            match self.ctx.bbs.complete_task(&completion).await {
                Ok(()) => {}
                Err(e) if e.is(ErrorCode::InvalidStateTransition) || e.is(ErrorCode::ResourceNotFound) => {
                    tracing::debug!(task_guid = %guid, error = %e, "task already resolved (cancelled or completed)");
                }
                Err(e) if !is_definitive(&e) => {
                    // Keep the container (and its result): the next pass reports it again.
                    return tracing::warn!(task_guid = %guid, error = %e, "cannot complete the task; retrying on the next pass");
                }
                Err(e) => tracing::warn!(task_guid = %guid, error = %e, "the bbs refused the completion"),
            }
        }
        self.delete(guid, "task completed").await;
    }
}
