//! The run step: one process in the container (`depot/steps/run_step.go`).
//!
//! Environment order (§3.3): the context's `env_before` (instance variables, the request's env),
//! the action's own env, then `env_after` (networking variables, `PORT`); a later duplicate wins.
//! Ready as soon as the process started. A non-zero exit fails with
//! `<source>: Exited with status N`, plus ` (out of memory)` when the kernel killed it for memory.
//! On cancellation: SIGTERM, SIGKILL after the graceful interval, then give up after 1 s more.

use std::time::Duration;

use proto::pb::models::v1 as pb;
use tokio_util::sync::CancellationToken;

use super::{Ready, StepContext, StepError};
use crate::runtime::{ExitStatus, ProcessSpec, RuntimeProcess, StopSignal};

/// How long a killed process may take to be reaped before the step gives up on it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `run` in `ctx`'s container.
pub async fn run_step(
    ctx: &StepContext,
    run: &pb::RunAction,
    cancel: CancellationToken,
    mut ready: Ready,
) -> Result<(), StepError> {
    let source = if run.log_source.is_empty() { ctx.log_source.clone() } else { run.log_source.clone() };
    let env = run_env(ctx, run);
    let spec = ProcessSpec {
        id: ctx.next_process_id(),
        path: run.path.clone(),
        args: run.args.clone(),
        env,
        dir: run.dir.clone(),
        user: run.user.clone(),
        nofile: run.resource_limits.as_ref().and_then(|l| l.nofile),
        log_source: source.clone(),
        suppress_output: run.suppress_log_output,
        role: Some(ctx.role),
    };
    let process = ctx
        .runtime
        .spawn(&ctx.guid, spec)
        .await
        .map_err(|e| StepError::failed(format!("failed to start process: {e}")))?;
    ready.fire();
    wait_or_stop(ctx, process, &source, cancel).await
}

/// The environment of `run`'s process: `env_before`, the action's own, then `env_after`.
pub fn run_env(ctx: &StepContext, run: &pb::RunAction) -> Vec<(String, String)> {
    let mut env = ctx.env_before.clone();
    env.extend(run.env.iter().map(|v| (v.name.clone(), v.value.clone())));
    env.extend(ctx.env_after.iter().cloned());
    env
}

/// Waits for `process`; on cancellation stops it gracefully and returns `Cancelled`.
async fn wait_or_stop(
    ctx: &StepContext,
    mut process: RuntimeProcess,
    source: &str,
    cancel: CancellationToken,
) -> Result<(), StepError> {
    let status = tokio::select! {
        status = process.wait() => status,
        () = cancel.cancelled() => {
            stop_process(ctx, &mut process).await;
            return Err(StepError::Cancelled);
        }
    };
    exit_result(source, status)
}

/// SIGTERM, then SIGKILL after `graceful_stop`, then wait at most [`EXIT_TIMEOUT`].
pub async fn stop_process(ctx: &StepContext, process: &mut RuntimeProcess) {
    if let Err(error) = process.signal(StopSignal::Terminate) {
        tracing::warn!(container_guid = %ctx.guid, %error, "sigterm failed");
    }
    if tokio::time::timeout(ctx.graceful_stop, process.wait()).await.is_ok() {
        return;
    }
    tracing::info!(container_guid = %ctx.guid, graceful_stop = ?ctx.graceful_stop, "process ignored sigterm; sending sigkill");
    if let Err(error) = process.signal(StopSignal::Kill) {
        tracing::warn!(container_guid = %ctx.guid, %error, "sigkill failed");
    }
    if tokio::time::timeout(EXIT_TIMEOUT, process.wait()).await.is_err() {
        tracing::warn!(container_guid = %ctx.guid, "process did not exit after sigkill");
    }
}

/// `Ok` for exit 0, else the failure reason users see.
pub fn exit_result(source: &str, status: ExitStatus) -> Result<(), StepError> {
    if status.code == 0 {
        return Ok(());
    }
    let prefix = if source.is_empty() { String::new() } else { format!("{source}: ") };
    let oom = if status.out_of_memory { " (out of memory)" } else { "" };
    Err(StepError::Failed(format!("{prefix}Exited with status {}{oom}", status.code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_name_the_source_status_and_memory() {
        assert_eq!(exit_result("APP", ExitStatus { code: 0, out_of_memory: false }), Ok(()));
        assert_eq!(
            exit_result("APP/PROC/WEB", ExitStatus { code: 1, out_of_memory: false }),
            Err(StepError::failed("APP/PROC/WEB: Exited with status 1"))
        );
        assert_eq!(
            exit_result("", ExitStatus { code: 137, out_of_memory: true }),
            Err(StepError::failed("Exited with status 137 (out of memory)"))
        );
    }
}
