//! One container's life after `run` (reference §3.2-3.5, `depot/containerstore/storenode.go`,
//! `depot/steps/*`): create it in the runtime, run the setup action, then the long-lived part
//! (the action with its monitor or checks and its readiness checks), read the task result file
//! and complete it. Before anything runs, the whole request is checked (`preflight`): a process
//! that cannot be exec'd or more processes at once than `max_pids` fail the container at once,
//! not retryable, with the reason.
//!
//! The long-lived part behaves like Diego's `codependent(action, health…, readiness…)` with
//! error-on-exit off: a failure of either side ends the other, but a clean exit of the action
//! leaves the health checks running (a daemonized process keeps the instance alive until its
//! checks fail). With no monitor and no checks, it is just the action, and the container is
//! running as soon as the action's process started.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::pending;
use proto::pb::models::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Container, ContainerEvent, Entry, Inner, LifecycleEvent, RunRequest, RunResult, env};
use crate::actions::{LogFields, Ready, StepContext, StepError, preflight, run_action};
use crate::checks::{CheckDefaults, CheckSpec, CheckTarget, never_healthy};
use crate::runtime::exec_limits::ExecLimits;
use crate::runtime::{ContainerInfo, ContainerSpec, ProcessRole};

/// Marks the entry finished when the lifecycle task ends, however it ends.
struct FinishGuard {
    inner: Arc<Inner>,
    guid: String,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        if let Some(entry) = self.inner.lock().get(&self.guid) {
            entry.finished.send_replace(true);
        }
    }
}

/// Starts the lifecycle task of a container that just moved to initializing.
pub(super) fn spawn(
    inner: Arc<Inner>,
    container: Container,
    request: Arc<RunRequest>,
    rootfs_path: Option<PathBuf>,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!(
        "container",
        container_guid = %container.guid,
        process_guid = %container.workload.process_guid(),
        index = %container.workload.index(),
        task_guid = %container.workload.task_guid(),
    );
    let guard = FinishGuard { inner: Arc::clone(&inner), guid: container.guid.clone() };
    tokio::spawn(
        async move {
            let _guard = guard;
            drive(&inner, container, &request, rootfs_path, cancel).await;
        }
        .instrument(span),
    );
}

fn dedup(ports: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(ports.len());
    for &port in ports {
        if !out.contains(&port) {
            out.push(port);
        }
    }
    out
}

async fn drive(
    inner: &Arc<Inner>,
    container: Container,
    request: &RunRequest,
    rootfs_path: Option<PathBuf>,
    cancel: CancellationToken,
) {
    let guid = container.guid.clone();
    let spec = ContainerSpec {
        guid: guid.clone(),
        rootfs: request.rootfs.clone(),
        rootfs_path,
        memory_mb: container.allocation.memory_mb,
        disk_mb: container.allocation.disk_mb,
        ports: dedup(&request.ports),
        privileged: request.privileged,
        cpu_weight: request.cpu_weight,
        max_pids: request.max_pids,
        workload: Some(container.workload.clone()),
    };
    tracing::info!("creating container");
    let info = match inner.runtime.create(spec).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "creating container failed");
            inner.complete(&guid, RunResult::failure(format!("failed to create container: {error}"), false, true));
            return;
        }
    };
    let created = inner.transition(&guid, LifecycleEvent::Create, |entry: &mut Entry| {
        entry.container.ports = info.ports.clone();
        entry.container.address = info.host_ip.clone();
        entry.container.internal_address = info.internal_ip.clone();
    });
    let Some(created) = created else {
        // Completed (stopped, reaped) or deleted while the runtime was creating it.
        return;
    };
    tracing::info!(ports = ?info.ports, "container created");
    inner.emit(ContainerEvent::Created(created));

    let mut env_before = env::instance_env(&container.workload);
    env_before.extend(request.env.iter().cloned());
    let ctx = StepContext {
        runtime: Arc::clone(&inner.runtime),
        guid: guid.clone(),
        env_before,
        env_after: env::network_env(&info),
        graceful_stop: inner.config.graceful_stop,
        log_source: request.log_source.clone(),
        role: ProcessRole::Setup,
        downloads: Arc::clone(&inner.downloads),
        scratch_dir: inner.config.data_dir.join("downloads"),
        log: LogFields {
            process_guid: container.workload.process_guid().to_owned(),
            index: container.workload.index(),
            task_guid: container.workload.task_guid().to_owned(),
        },
        sequence: Arc::default(),
    };

    if let Err(reason) = preflight(&ctx, request) {
        // Not retryable: every cell would refuse it the same way.
        tracing::warn!(%reason, "refusing to start the container's processes");
        inner.complete(&guid, RunResult::failure(reason, false, false));
        return;
    }
    let mut outcome = Ok(());
    if let Some(setup) = &request.setup {
        outcome = run_action(&ctx, setup, cancel.clone(), Ready::none()).await;
    }
    if outcome.is_ok() {
        outcome = long_lived(inner, &ctx, request, &info, &cancel).await;
    }
    let result = match outcome {
        Ok(()) => finish_ok(inner, &guid, request).await,
        Err(StepError::Cancelled) => RunResult::failure("cancelled", true, false),
        Err(StepError::Failed(reason)) => RunResult::failure(reason, false, false),
    };
    inner.complete(&guid, result);
}

/// Refuses a request before any process starts when one of its run actions cannot be exec'd or
/// its actions start more processes at once than `max_pids` (see `actions::preflight`). The
/// monitor runs beside the action; the setup runs before both.
fn preflight(ctx: &StepContext, request: &RunRequest) -> Result<(), String> {
    let monitor = if request.checks.is_empty() { request.monitor.as_ref() } else { None };
    let limits = ExecLimits::host();
    for action in request.setup.iter().chain(std::iter::once(&request.action)).chain(monitor) {
        preflight::check_exec_tree(ctx, action, limits)?;
    }
    let setup = request.setup.as_ref().map_or(0, preflight::concurrent_processes);
    let long_lived =
        preflight::concurrent_processes(&request.action) + monitor.map_or(0, preflight::concurrent_processes);
    preflight::check_pids(setup.max(long_lived), request.max_pids)
}

/// The result of a successful tree: not failed, with the task result file when there is one.
async fn finish_ok(inner: &Inner, guid: &str, request: &RunRequest) -> RunResult {
    if request.result_file.is_empty() {
        return RunResult::default();
    }
    match read_result(inner, guid, &request.result_file).await {
        Ok(result) => RunResult { result, ..RunResult::default() },
        Err(error) => {
            tracing::warn!(path = %request.result_file, %error, "reading the result file failed");
            RunResult::failure("failed to fetch result", false, false)
        }
    }
}

async fn read_result(inner: &Inner, guid: &str, path: &str) -> Result<String, String> {
    let Some(host_path) = inner.runtime.host_path(guid, path).map_err(|e| e.to_string())? else {
        return Ok(String::new());
    };
    let file = tokio::fs::File::open(&host_path).await.map_err(|e| e.to_string())?;
    let max = inner.config.max_result_bytes;
    let mut data = Vec::new();
    file.take((max as u64).saturating_add(1)).read_to_end(&mut data).await.map_err(|e| e.to_string())?;
    if data.len() > max {
        return Err(format!("result file is larger than {max} bytes"));
    }
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// Moves the container to running (healthy) and emits `Running`.
fn mark_running(inner: &Inner, guid: &str, has_readiness: bool) {
    let snapshot = inner.transition(guid, LifecycleEvent::Run, |entry: &mut Entry| {
        // A stop asked before it ran interrupts it at once; it does not turn routable then.
        entry.container.routable = (!has_readiness || entry.ready_for_traffic) && !entry.stop_requested;
    });
    if let Some(container) = snapshot {
        tracing::info!(routable = container.routable, "container running");
        inner.emit(ContainerEvent::Running(container));
    }
}

/// Records a readiness result; emits `Readiness` when a running container's `routable` flips.
fn set_readiness(inner: &Inner, guid: &str, ready: bool) {
    let snapshot = {
        let mut registry = inner.lock();
        let Some(entry) = registry.get_mut(guid) else { return };
        entry.ready_for_traffic = ready;
        // A draining container stays out of the routes whatever its readiness says.
        let running = entry.container.state == super::ContainerState::Running && !entry.draining;
        (running && entry.container.routable != ready).then(|| {
            entry.container.routable = ready;
            entry.container.clone()
        })
    };
    if let Some(container) = snapshot {
        tracing::info!(routable = ready, "container readiness changed");
        inner.emit(ContainerEvent::Readiness(container));
    }
}

fn specs(checks: &[pb::Check], defaults: &CheckDefaults) -> Vec<CheckSpec> {
    checks.iter().filter_map(|c| CheckSpec::from_pb(c, defaults)).collect()
}

/// The action with its health (monitor or checks) and readiness, as one codependent unit.
async fn long_lived(
    inner: &Inner,
    ctx: &StepContext,
    request: &RunRequest,
    info: &ContainerInfo,
    cancel: &CancellationToken,
) -> Result<(), StepError> {
    let guid = ctx.guid.as_str();
    let defaults = CheckDefaults { timeout: inner.config.check_timeout, interval: inner.config.healthy_interval };
    let checks = specs(&request.checks, &defaults);
    let readiness_checks = specs(&request.readiness_checks, &defaults);
    let target = CheckTarget { runtime: inner.runtime.as_ref(), guid, address: &info.host_ip, ports: &info.ports };
    let poll = inner.config.healthcheck_interval;
    let has_readiness = !readiness_checks.is_empty();
    let monitor = if checks.is_empty() { request.monitor.as_ref() } else { None };
    let has_health = !checks.is_empty() || monitor.is_some();

    let action_ctx = ctx.with_role(ProcessRole::Action);
    let mut monitor_ctx = ctx.with_role(ProcessRole::Monitor);
    monitor_ctx.log_source = "HEALTH".into();
    let action_cancel = cancel.child_token();
    let health_cancel = cancel.child_token();
    let (main_ready, main_ready_rx) = Ready::channel();

    let main = run_action(&action_ctx, &request.action, action_cancel.clone(), main_ready);
    let health = async {
        if let Some(monitor) = monitor {
            return monitor_health(inner, &monitor_ctx, monitor, request.start_timeout, has_readiness, &health_cancel)
                .await;
        }
        let watched = async {
            if checks.is_empty() {
                if main_ready_rx.await.is_ok() {
                    mark_running(inner, guid, has_readiness);
                }
                return pending::<StepError>().await;
            }
            tracing::info!("Starting health monitoring of container");
            if let Err(reason) = target.startup(&checks, poll, request.start_timeout).await {
                tracing::info!(%reason, "Container became unhealthy");
                return StepError::Failed(reason);
            }
            tracing::info!("Container became healthy");
            mark_running(inner, guid, has_readiness);
            let reason = target.liveness(&checks).await;
            tracing::info!(%reason, "Container became unhealthy");
            StepError::Failed(reason)
        };
        tokio::select! {
            error = watched => error,
            () = health_cancel.cancelled() => StepError::Cancelled,
        }
    };
    let readiness = async {
        target
            .readiness(&readiness_checks, poll, |ready, output| {
                if !ready {
                    tracing::info!(%output, "readiness check failed");
                }
                set_readiness(inner, guid, ready);
            })
            .await;
        pending::<()>().await;
    };
    tokio::pin!(main, health, readiness);

    let main_result = tokio::select! {
        result = &mut main => result,
        error = &mut health => {
            action_cancel.cancel();
            let _ = main.await;
            return Err(error);
        }
        () = &mut readiness => pending().await,
    };
    if let Err(error) = main_result {
        health_cancel.cancel();
        let _ = health.await;
        return Err(error);
    }
    if !has_health {
        return Ok(());
    }
    // The action exited cleanly but the instance is monitored: it lives until its checks fail
    // or it is stopped.
    tracing::info!("action exited cleanly; health monitoring continues");
    tokio::select! {
        error = &mut health => Err(error),
        () = &mut readiness => pending().await,
    }
}

/// The legacy monitor: run it every `healthcheck_interval` until it succeeds (bounded by the
/// start timeout, 0 = forever), mark running, then every `healthy_interval` until it fails.
async fn monitor_health(
    inner: &Inner,
    ctx: &StepContext,
    monitor: &pb::Action,
    start_timeout: Duration,
    has_readiness: bool,
    cancel: &CancellationToken,
) -> StepError {
    let started = Instant::now();
    loop {
        let attempt_cancel = cancel.child_token();
        let attempt = run_action(ctx, monitor, attempt_cancel.clone(), Ready::none());
        tokio::pin!(attempt);
        let remaining =
            if start_timeout.is_zero() { Duration::MAX } else { start_timeout.saturating_sub(started.elapsed()) };
        let result = tokio::select! {
            result = &mut attempt => result,
            () = tokio::time::sleep(remaining) => {
                attempt_cancel.cancel();
                let _ = attempt.await;
                Err(StepError::failed("health check timed out"))
            }
        };
        match result {
            Ok(()) => break,
            Err(StepError::Cancelled) => return StepError::Cancelled,
            Err(StepError::Failed(output)) => {
                if !start_timeout.is_zero() && started.elapsed() >= start_timeout {
                    tracing::info!(%output, "Container became unhealthy");
                    return StepError::Failed(never_healthy(start_timeout, &output));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(inner.config.healthcheck_interval) => {}
            () = cancel.cancelled() => return StepError::Cancelled,
        }
    }
    tracing::info!("Container became healthy");
    mark_running(inner, &ctx.guid, has_readiness);
    loop {
        tokio::select! {
            () = tokio::time::sleep(inner.config.healthy_interval) => {}
            () = cancel.cancelled() => return StepError::Cancelled,
        }
        match run_action(ctx, monitor, cancel.clone(), Ready::none()).await {
            Ok(()) => {}
            Err(StepError::Cancelled) => return StepError::Cancelled,
            Err(StepError::Failed(output)) => {
                tracing::info!(%output, "Container became unhealthy");
                return StepError::Failed(format!("Instance became unhealthy: {output}"));
            }
        }
    }
}
