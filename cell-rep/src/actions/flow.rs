//! Steps that compose other steps: timeout, try, serial, parallel, codependent, emit-progress
//! (`depot/steps/{timeout,try,serial,parallel,codependent,emit_progress}_step.go`).

use std::time::Duration;

use futures::future::{join, join_all};
use proto::pb::models::v1 as pb;
use tokio_util::sync::CancellationToken;

use super::{Ready, StepContext, StepError, run_action};
use crate::text::format_duration;

/// Fires `ready` once every receiver fired; does nothing if any child dropped its signal.
async fn all_ready(receivers: Vec<tokio::sync::oneshot::Receiver<()>>, mut ready: Ready) {
    if join_all(receivers).await.iter().all(Result::is_ok) {
        ready.fire();
    }
}

fn missing_child(kind: &str) -> StepError {
    StepError::failed(format!("invalid {kind} action: no child action"))
}

/// Runs the child; when `timeout_ms` passes first, interrupts it and fails with
/// `exceeded <d> timeout[; child error]`. A non-positive timeout runs the child unbounded.
pub async fn timeout_step(
    ctx: &StepContext,
    action: &pb::TimeoutAction,
    cancel: CancellationToken,
    ready: Ready,
) -> Result<(), StepError> {
    let child = action.action.as_deref().ok_or_else(|| missing_child("timeout"))?;
    let Ok(ms) = u64::try_from(action.timeout_ms) else { return run_action(ctx, child, cancel, ready).await };
    if ms == 0 {
        return run_action(ctx, child, cancel, ready).await;
    }
    let limit = Duration::from_millis(ms);
    let child_cancel = cancel.child_token();
    let mut run = run_action(ctx, child, child_cancel.clone(), ready);
    tokio::select! {
        result = &mut run => result,
        () = tokio::time::sleep(limit) => {
            child_cancel.cancel();
            let child_result = run.await;
            if cancel.is_cancelled() {
                return Err(StepError::Cancelled);
            }
            let base = format!("exceeded {} timeout", format_duration(limit));
            Err(StepError::Failed(match child_result {
                Err(StepError::Failed(message)) => format!("{base}; {message}"),
                _ => base,
            }))
        }
    }
}

/// Runs the child and succeeds whatever it did (the failure is only logged); a cancellation
/// still propagates.
pub async fn try_step(
    ctx: &StepContext,
    action: &pb::TryAction,
    cancel: CancellationToken,
    ready: Ready,
) -> Result<(), StepError> {
    let child = action.action.as_deref().ok_or_else(|| missing_child("try"))?;
    match run_action(ctx, child, cancel, ready).await {
        Err(StepError::Failed(message)) => {
            tracing::info!(container_guid = %ctx.guid, error = %message, "try action failed; ignoring");
            Ok(())
        }
        other => other,
    }
}

/// Runs children in order, stopping at the first error; ready when the last child is ready.
pub async fn serial_step(
    ctx: &StepContext,
    actions: &[pb::Action],
    cancel: CancellationToken,
    mut ready: Ready,
) -> Result<(), StepError> {
    let Some((last, rest)) = actions.split_last() else {
        ready.fire();
        return Ok(());
    };
    for action in rest {
        run_action(ctx, action, cancel.clone(), Ready::none()).await?;
    }
    run_action(ctx, last, cancel, ready).await
}

/// Runs every child to its end; the error aggregates the failures. Ready when all are ready.
pub async fn parallel_step(
    ctx: &StepContext,
    actions: &[pb::Action],
    cancel: CancellationToken,
    ready: Ready,
) -> Result<(), StepError> {
    let mut receivers = Vec::with_capacity(actions.len());
    let children = actions.iter().map(|action| {
        let (child_ready, rx) = Ready::channel();
        receivers.push(rx);
        run_action(ctx, action, cancel.clone(), child_ready)
    });
    let children: Vec<_> = children.collect();
    let (results, ()) = join(join_all(children), all_ready(receivers, ready)).await;
    StepError::aggregate(results)
}

/// Runs every child; the first to exit, cleanly or not, cancels the others. The error
/// aggregates the failures (the cancellations it caused are not failures). Ready when all are
/// ready.
pub async fn codependent_step(
    ctx: &StepContext,
    actions: &[pb::Action],
    cancel: CancellationToken,
    ready: Ready,
) -> Result<(), StepError> {
    let siblings = cancel.child_token();
    let mut receivers = Vec::with_capacity(actions.len());
    let children: Vec<_> = actions
        .iter()
        .map(|action| {
            let (child_ready, rx) = Ready::channel();
            receivers.push(rx);
            let siblings = siblings.clone();
            async move {
                let result = run_action(ctx, action, siblings.clone(), child_ready).await;
                siblings.cancel();
                result
            }
        })
        .collect();
    let (results, ()) = join(join_all(children), all_ready(receivers, ready)).await;
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    let failures: Vec<_> = results.into_iter().filter(|r| !matches!(r, Err(StepError::Cancelled))).collect();
    StepError::aggregate(failures)
}

/// Logs the start message, runs the child, then logs the success message or
/// `<failure prefix>: <error>`.
pub async fn emit_progress_step(
    ctx: &StepContext,
    action: &pb::EmitProgressAction,
    cancel: CancellationToken,
    ready: Ready,
) -> Result<(), StepError> {
    let child = action.action.as_deref().ok_or_else(|| missing_child("emit-progress"))?;
    if !action.start_message.is_empty() {
        ctx.emit(&action.log_source, &action.start_message);
    }
    let result = run_action(ctx, child, cancel, ready).await;
    match &result {
        Ok(()) if !action.success_message.is_empty() => ctx.emit(&action.log_source, &action.success_message),
        Err(StepError::Failed(message)) if !action.failure_message_prefix.is_empty() => {
            ctx.emit(&action.log_source, &format!("{}: {message}", action.failure_message_prefix));
        }
        _ => {}
    }
    result
}
