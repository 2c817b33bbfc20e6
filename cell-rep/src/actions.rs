//! The action tree as steps (reference §3.4, `depot/transformer`, `depot/steps`).
//!
//! Each action runs as a future that returns `Ok(())`, a failure whose text becomes the
//! container's failure reason, or `Cancelled` when the container's cancellation token fired.
//! Cancellation propagates down the tree: the run step answers it with SIGTERM, then SIGKILL
//! after the graceful interval. Steps also signal *ready*: a run step as soon as its process
//! started, serial when its last child is ready, parallel and codependent when all children are.
//!
//! - [`run`](run::run_step): a process in the container with the environment of §3.3;
//! - [`download`](download::download_step) / upload: HTTP or `file://`, checksum verified;
//! - [`flow`]: timeout, try, serial, parallel, codependent, emit-progress;
//! - [`preflight`]: checks of a whole tree before it starts (exec limits, `max_pids`).
//!
//! What does not live here: the composition of setup, action, monitor and checks into a
//! container's lifetime, which is the executor's (`executor/lifecycle.rs`).

pub mod build;
pub mod download;
pub mod flow;
pub mod preflight;
pub mod run;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::models::v1 as pb;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use crate::runtime::{ContainerRuntime, ProcessRole};

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The step was interrupted by its cancellation token (a stop, a timeout, a codependent
    /// sibling's exit).
    #[error("cancelled")]
    Cancelled,
    /// The step failed; the text is what users see as the failure reason.
    #[error("{0}")]
    Failed(String),
}

impl StepError {
    /// A failure with `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        StepError::Failed(message.into())
    }

    /// Combines the results of concurrent children: `Ok` when none failed, `Cancelled` when the
    /// only errors are cancellations, else every failure joined with `"; "`.
    pub fn aggregate(results: Vec<Result<(), StepError>>) -> Result<(), StepError> {
        let mut cancelled = false;
        let mut failures = Vec::new();
        for result in results {
            match result {
                Ok(()) => {}
                Err(StepError::Cancelled) => cancelled = true,
                Err(StepError::Failed(message)) => failures.push(message),
            }
        }
        if !failures.is_empty() {
            Err(StepError::Failed(failures.join("; ")))
        } else if cancelled {
            Err(StepError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The *ready* signal of a step: fired at most once; dropping it unfired means never ready.
#[derive(Debug, Default)]
pub struct Ready(Option<oneshot::Sender<()>>);

impl Ready {
    /// A signal nobody listens to.
    pub fn none() -> Self {
        Ready(None)
    }

    /// A signal and the receiver that resolves when it fires (or errs when dropped unfired).
    pub fn channel() -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Ready(Some(tx)), rx)
    }

    /// Fires the signal; later calls do nothing.
    pub fn fire(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Fields that identify a container in logs.
#[derive(Debug, Clone, Default)]
pub struct LogFields {
    /// The LRP's process guid, for LRP containers.
    pub process_guid: String,
    /// The LRP instance index, for LRP containers.
    pub index: String,
    /// The task guid, for task containers.
    pub task_guid: String,
}

/// Everything a step needs about its container. Cheap to share by reference across the tree.
pub struct StepContext {
    /// The runtime the container lives in.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The container guid.
    pub guid: String,
    /// Environment before each run action's own (instance variables, the request's env).
    pub env_before: Vec<(String, String)>,
    /// Environment after each run action's own (networking variables, `PORT`).
    pub env_after: Vec<(String, String)>,
    /// SIGTERM → SIGKILL interval for run steps.
    pub graceful_stop: Duration,
    /// Log source for steps that name none.
    pub log_source: String,
    /// Which part of the container's steps this tree is.
    pub role: ProcessRole,
    /// Limits concurrent downloads across the executor (5 by default).
    pub downloads: Arc<Semaphore>,
    /// Where downloads are staged before they are verified and moved into the container.
    pub scratch_dir: PathBuf,
    /// Identifies the container in logs.
    pub log: LogFields,
    /// Names processes uniquely within the container.
    pub sequence: Arc<AtomicU64>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext").field("guid", &self.guid).field("role", &self.role).finish()
    }
}

impl StepContext {
    /// The same container with another role (setup / action / monitor), sharing the sequence.
    pub fn with_role(&self, role: ProcessRole) -> StepContext {
        StepContext {
            runtime: Arc::clone(&self.runtime),
            guid: self.guid.clone(),
            env_before: self.env_before.clone(),
            env_after: self.env_after.clone(),
            graceful_stop: self.graceful_stop,
            log_source: self.log_source.clone(),
            role,
            downloads: Arc::clone(&self.downloads),
            scratch_dir: self.scratch_dir.clone(),
            log: self.log.clone(),
            sequence: Arc::clone(&self.sequence),
        }
    }

    /// A process id unique within the container, e.g. `action-3`.
    pub fn next_process_id(&self) -> String {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let role = match self.role {
            ProcessRole::Setup => "setup",
            ProcessRole::Action => "action",
            ProcessRole::Monitor => "monitor",
        };
        format!("{role}-{n}")
    }

    /// Writes a line to the container's log stream (emit-progress messages, download progress).
    pub fn emit(&self, source: &str, message: &str) {
        let source = if source.is_empty() { self.log_source.as_str() } else { source };
        tracing::info!(
            target: "cell_rep::app",
            container_guid = %self.guid,
            process_guid = %self.log.process_guid,
            index = %self.log.index,
            task_guid = %self.log.task_guid,
            source,
            "{message}"
        );
    }
}

/// Runs one action (and its children) in `ctx`'s container until it ends or `cancel` fires.
pub fn run_action<'a>(
    ctx: &'a StepContext,
    action: &'a pb::Action,
    cancel: CancellationToken,
    ready: Ready,
) -> BoxFuture<'a, Result<(), StepError>> {
    use pb::action::Action as A;
    Box::pin(async move {
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        match &action.action {
            None => Err(StepError::failed("invalid action: no action set")),
            Some(A::RunAction(run)) => run::run_step(ctx, run, cancel, ready).await,
            Some(A::DownloadAction(download)) => download::download_step(ctx, download, cancel, ready).await,
            Some(A::UploadAction(upload)) => download::upload_step(ctx, upload, cancel, ready).await,
            Some(A::TimeoutAction(timeout)) => flow::timeout_step(ctx, timeout, cancel, ready).await,
            Some(A::EmitProgressAction(emit)) => flow::emit_progress_step(ctx, emit, cancel, ready).await,
            Some(A::TryAction(try_action)) => flow::try_step(ctx, try_action, cancel, ready).await,
            Some(A::ParallelAction(parallel)) => flow::parallel_step(ctx, &parallel.actions, cancel, ready).await,
            Some(A::SerialAction(serial)) => flow::serial_step(ctx, &serial.actions, cancel, ready).await,
            Some(A::CodependentAction(codependent)) => {
                flow::codependent_step(ctx, &codependent.actions, cancel, ready).await
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_prefers_failures_over_cancellations() {
        assert_eq!(StepError::aggregate(vec![Ok(()), Ok(())]), Ok(()));
        assert_eq!(StepError::aggregate(vec![Ok(()), Err(StepError::Cancelled)]), Err(StepError::Cancelled));
        assert_eq!(
            StepError::aggregate(vec![
                Err(StepError::failed("a")),
                Err(StepError::Cancelled),
                Err(StepError::failed("b"))
            ]),
            Err(StepError::failed("a; b"))
        );
    }

    #[tokio::test]
    async fn ready_fires_once_and_reports_drops() {
        let (mut ready, rx) = Ready::channel();
        ready.fire();
        ready.fire();
        assert!(rx.await.is_ok());
        let (ready, rx) = Ready::channel();
        drop(ready);
        assert!(rx.await.is_err());
    }
}
