//! The executor: the in-memory registry of containers on this cell, keyed by guid, that
//! reserves capacity, runs containers through a [`ContainerRuntime`], stops and deletes them, and
//! broadcasts a [`ContainerEvent`] at every lifecycle step (reference §3.1-3.6).
//!
//! - `executor.rs`: the public API, the registry and its accounting;
//! - `executor/types.rs`: configuration, requests, events and errors;
//! - `executor/lifecycle.rs`: one container's life: create, setup, action with monitor / checks /
//!   readiness, result;
//! - `executor/env.rs`: the environment of §3.3 from the workload and allocated ports;
//! - `executor/janitor.rs`: reservation expiry and the reaper of containers the runtime lost.
//!
//! Invariant: remaining capacity = total − Σ allocations of every registry entry, whatever its
//! state; only `delete` (or reservation expiry, which deletes) gives resources back.

mod env;
mod janitor;
mod lifecycle;
mod types;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::container::{Container, ContainerState, LifecycleEvent, PortMapping, RunRequest, RunResult};
pub use crate::resources::Resources;
use crate::runtime::{ContainerRuntime, validate_guid};
pub use crate::workload::Workload;
pub use env::{instance_env, network_env};
pub use types::{AllocationRequest, ContainerEvent, ExecutorConfig, ExecutorError, ReserveError};

/// One registry entry.
struct Entry {
    container: Container,
    /// Cancels the container's step tree.
    cancel: CancellationToken,
    /// Whether `stop` or `delete` was asked; the result then says `stopped`.
    stop_requested: bool,
    /// Readiness state reported so far (used when the container becomes running).
    ready_for_traffic: bool,
    /// A stop is draining it: reported unroutable, its processes stopped once the drain ends.
    /// Readiness no longer makes it routable.
    draining: bool,
    /// `true` once nothing runs for this container any more (lifecycle task ended, or never run).
    finished: watch::Sender<bool>,
    /// `true` once a delete finished; concurrent deletes wait on it.
    deleting: Option<watch::Receiver<bool>>,
}

struct Inner {
    config: ExecutorConfig,
    runtime: Arc<dyn ContainerRuntime>,
    registry: Mutex<HashMap<String, Entry>>,
    events: broadcast::Sender<ContainerEvent>,
    shutdown: CancellationToken,
    downloads: Arc<Semaphore>,
}

/// The executor. Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("runtime", &self.inner.runtime.name())
            .field("total", &self.inner.config.total)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: ContainerEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Applies `event` to `guid`'s state, lets `update` adjust the container, and returns the
    /// snapshot; `None` when the guid is gone or the transition is refused.
    fn transition(&self, guid: &str, event: LifecycleEvent, update: impl FnOnce(&mut Entry)) -> Option<Container> {
        self.transition_from(guid, None, event, update)
    }

    /// [`transition`](Self::transition), refused unless the container is in state `from` (when
    /// given), checked under the same lock.
    fn transition_from(
        &self,
        guid: &str,
        from: Option<ContainerState>,
        event: LifecycleEvent,
        update: impl FnOnce(&mut Entry),
    ) -> Option<Container> {
        let mut registry = self.lock();
        let entry = registry.get_mut(guid)?;
        if from.is_some_and(|from| from != entry.container.state) {
            return None;
        }
        match entry.container.state.apply(event) {
            Ok(next) => {
                entry.container.state = next;
                update(entry);
                Some(entry.container.clone())
            }
            Err(error) => {
                tracing::debug!(container_guid = %guid, %error, "transition refused");
                None
            }
        }
    }

    /// Completes `guid` with `result` unless it already completed; marks it stopped when a stop
    /// was asked. Emits `Completed`. Returns whether this call completed it.
    fn complete(&self, guid: &str, result: RunResult) -> bool {
        self.complete_from(guid, None, result)
    }

    /// [`complete`](Self::complete), only if the container is in state `from` (when given).
    fn complete_from(&self, guid: &str, from: Option<ContainerState>, mut result: RunResult) -> bool {
        let snapshot = self.transition_from(guid, from, LifecycleEvent::Complete, |entry| {
            result.stopped |= entry.stop_requested;
            entry.container.result = Some(result);
        });
        match snapshot {
            Some(container) => {
                let result = container.result.clone().unwrap_or_default();
                tracing::info!(
                    container_guid = %guid,
                    process_guid = %container.workload.process_guid(),
                    index = %container.workload.index(),
                    task_guid = %container.workload.task_guid(),
                    failed = result.failed,
                    stopped = result.stopped,
                    reason = %result.failure_reason,
                    "container completed"
                );
                self.emit(ContainerEvent::Completed(container));
                true
            }
            None => false,
        }
    }
}

impl Executor {
    /// An executor over `runtime`. Starts the reservation pruner and the reaper when called
    /// inside a tokio runtime (without one they do not run).
    pub fn new(config: ExecutorConfig, runtime: Arc<dyn ContainerRuntime>) -> Self {
        let (events, _) = broadcast::channel(config.event_buffer.max(16));
        let downloads = Arc::new(Semaphore::new(config.max_concurrent_downloads.max(1)));
        let inner = Arc::new(Inner {
            config,
            runtime,
            registry: Mutex::new(HashMap::new()),
            events,
            shutdown: CancellationToken::new(),
            downloads,
        });
        let executor = Executor { inner };
        if tokio::runtime::Handle::try_current().is_ok() {
            janitor::spawn(&executor);
        } else {
            tracing::warn!("executor created outside a tokio runtime; pruner and reaper not started");
        }
        executor
    }

    /// The configuration.
    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// The runtime containers run in.
    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.inner.runtime
    }

    /// Total capacity.
    pub fn total(&self) -> Resources {
        self.inner.config.total
    }

    /// Remaining capacity: total minus every registry entry's allocation.
    pub fn available(&self) -> Resources {
        let registry = self.inner.lock();
        Resources::remaining(&self.inner.config.total, registry.values().map(|e| &e.container.allocation))
    }

    /// Atomically reserves memory, disk and one slot under `guid` and emits `Reserved`.
    pub fn reserve(&self, guid: &str, request: AllocationRequest) -> Result<(), ReserveError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ReserveError::ShuttingDown);
        }
        let invalid = |reason: String| ReserveError::InvalidRequest { guid: guid.to_owned(), reason };
        validate_guid(guid).map_err(|e| invalid(e.to_string()))?;
        if request.memory_mb < 0 || request.disk_mb < 0 {
            return Err(invalid(format!("negative memory ({}) or disk ({})", request.memory_mb, request.disk_mb)));
        }
        let allocation = Resources::container(request.memory_mb, request.disk_mb);
        let container = {
            let mut registry = self.inner.lock();
            if registry.contains_key(guid) {
                return Err(ReserveError::GuidNotAvailable { guid: guid.to_owned() });
            }
            let available =
                Resources::remaining(&self.inner.config.total, registry.values().map(|e| &e.container.allocation));
            available
                .check_fits(&allocation)
                .map_err(|shortfall| ReserveError::InsufficientResources { guid: guid.to_owned(), shortfall })?;
            let container = Container {
                guid: guid.to_owned(),
                state: ContainerState::Reserved,
                workload: request.workload,
                allocation,
                ports: Vec::new(),
                address: String::new(),
                internal_address: String::new(),
                routable: false,
                result: None,
                reserved_at: Instant::now(),
                run_request: None,
            };
            let (finished, _) = watch::channel(false);
            registry.insert(
                guid.to_owned(),
                Entry {
                    container: container.clone(),
                    cancel: self.inner.shutdown.child_token(),
                    stop_requested: false,
                    ready_for_traffic: false,
                    draining: false,
                    finished,
                    deleting: None,
                },
            );
            container
        };
        tracing::info!(
            container_guid = %guid,
            process_guid = %container.workload.process_guid(),
            index = %container.workload.index(),
            task_guid = %container.workload.task_guid(),
            memory_mb = request.memory_mb,
            disk_mb = request.disk_mb,
            "container reserved"
        );
        self.inner.emit(ContainerEvent::Reserved(container));
        Ok(())
    }

    /// Runs a reserved container in the background: create, setup, then the action with its
    /// monitor or checks. Progress arrives as events.
    pub fn run(&self, guid: &str, request: RunRequest) -> Result<(), ExecutorError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ExecutorError::ShuttingDown);
        }
        let rootfs_path = self.resolve_rootfs(guid, &request.rootfs)?;
        let request = Arc::new(request);
        let (cancel, container) = {
            let mut registry = self.inner.lock();
            let entry = registry.get_mut(guid).ok_or_else(|| ExecutorError::NotFound { guid: guid.to_owned() })?;
            let state = entry.container.state;
            if entry.stop_requested {
                return Err(ExecutorError::InvalidState { guid: guid.to_owned(), state, operation: "run a stopped" });
            }
            let next = state.apply(LifecycleEvent::Initialize).map_err(|_| ExecutorError::InvalidState {
                guid: guid.to_owned(),
                state,
                operation: "run",
            })?;
            entry.container.state = next;
            entry.container.run_request = Some(Arc::clone(&request));
            (entry.cancel.clone(), entry.container.clone())
        };
        lifecycle::spawn(Arc::clone(&self.inner), container, request, rootfs_path, cancel);
        Ok(())
    }

    /// `preloaded:<name>` → the configured directory. Unknown names are refused when a rootfs
    /// map is configured; other schemes pass through for the runtime to judge.
    fn resolve_rootfs(&self, guid: &str, rootfs: &str) -> Result<Option<PathBuf>, ExecutorError> {
        let Some(name) = rootfs.strip_prefix("preloaded:") else { return Ok(None) };
        let name = name.trim_start_matches('/');
        match self.inner.config.rootfs.get(name) {
            Some(path) => Ok(Some(path.clone())),
            None if self.inner.config.rootfs.is_empty() => Ok(None),
            None => Err(ExecutorError::InvalidRequest {
                guid: guid.to_owned(),
                reason: format!("unknown preloaded rootfs {name:?}"),
            }),
        }
    }

    /// Stops a container gracefully: marks its result stopped, interrupts its steps (SIGTERM,
    /// then SIGKILL after `graceful_stop`) and waits for them. A container never run completes at
    /// once (`stopped-before-running`). Idempotent.
    ///
    /// A running, routable container whose run request has a `drain` is drained first: it turns
    /// unroutable at once (a `Readiness` event, which the generator reports to the BBS, so
    /// routers take it out of their tables) and its steps are interrupted only `drain` later.
    /// Executor shutdown cuts a drain short, and a container stopped during shutdown (or not
    /// routable, or not running yet) is interrupted at once.
    pub async fn stop(&self, guid: &str) -> Result<(), ExecutorError> {
        let (never_run, reserved, mut finished, draining) = {
            let mut registry = self.inner.lock();
            let entry = registry.get_mut(guid).ok_or_else(|| ExecutorError::NotFound { guid: guid.to_owned() })?;
            entry.stop_requested = true;
            let drain = entry.container.run_request.as_ref().map_or(Duration::ZERO, |r| r.drain);
            let draining = if entry.draining {
                // An earlier stop drains it; its timer interrupts the steps.
                None
            } else if !drain.is_zero()
                && entry.container.state == ContainerState::Running
                && entry.container.routable
                && !entry.cancel.is_cancelled()
            {
                entry.draining = true;
                entry.container.routable = false;
                Some((drain, entry.container.clone(), entry.cancel.clone()))
            } else {
                entry.cancel.cancel();
                None
            };
            // `run` attaches the request under this lock, so a container without one has no
            // lifecycle task and never will (its token is cancelled and its state moves on).
            let never_run = entry.container.run_request.is_none();
            if never_run {
                entry.finished.send_replace(true);
            }
            (never_run, entry.container.state == ContainerState::Reserved, entry.finished.subscribe(), draining)
        };
        let drain = match draining {
            Some((drain, container, cancel)) => {
                tracing::info!(container_guid = %guid, ?drain, "draining container: unroutable, stopping it after the drain");
                self.inner.emit(ContainerEvent::Readiness(container));
                // On its own task, so a caller that gives up waiting does not leave it running.
                // Its token is a child of the shutdown token: shutdown ends the drain early.
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(drain) => {}
                        () = cancel.cancelled() => {}
                    }
                    cancel.cancel();
                });
                drain
            }
            None => {
                tracing::info!(container_guid = %guid, "stopping container");
                self.get(guid).and_then(|c| c.run_request).map_or(Duration::ZERO, |r| r.drain)
            }
        };
        if never_run {
            if reserved {
                self.inner.complete(guid, RunResult::failure("stopped-before-running", true, false));
            }
            return Ok(());
        }
        let bound = self.inner.config.graceful_stop.saturating_add(drain).saturating_add(Duration::from_secs(5));
        if tokio::time::timeout(bound, finished.wait_for(|done| *done)).await.is_err() {
            tracing::warn!(container_guid = %guid, "container steps did not finish after stop");
        }
        Ok(())
    }

    /// Stops the container, destroys it in the runtime, removes it from the registry (freeing its
    /// resources) and emits `Deleted`. Concurrent deletes collapse into one.
    pub async fn delete(&self, guid: &str) -> Result<(), ExecutorError> {
        let (wait_for, done_tx) = {
            let mut registry = self.inner.lock();
            let entry = registry.get_mut(guid).ok_or_else(|| ExecutorError::NotFound { guid: guid.to_owned() })?;
            match &entry.deleting {
                Some(rx) => (Some(rx.clone()), None),
                None => {
                    let (tx, rx) = watch::channel(false);
                    entry.deleting = Some(rx);
                    (None, Some(tx))
                }
            }
        };
        if let Some(mut rx) = wait_for {
            let _ = rx.wait_for(|done| *done).await;
            return Ok(());
        }
        let was_run = self.get(guid).is_some_and(|c| c.run_request.is_some());
        match self.stop(guid).await {
            Ok(()) | Err(ExecutorError::NotFound { .. }) => {}
            Err(error) => tracing::warn!(container_guid = %guid, %error, "stop before delete failed"),
        }
        if was_run && let Err(error) = self.inner.runtime.destroy(guid).await {
            // The reaper destroys it later: it will not be in the registry any more.
            tracing::warn!(container_guid = %guid, %error, "destroying container failed");
        }
        self.inner.lock().remove(guid);
        tracing::info!(container_guid = %guid, "container deleted");
        self.inner.emit(ContainerEvent::Deleted(guid.to_owned()));
        if let Some(tx) = done_tx {
            let _ = tx.send(true);
        }
        Ok(())
    }

    /// A snapshot of one container.
    pub fn get(&self, guid: &str) -> Option<Container> {
        self.inner.lock().get(guid).map(|e| e.container.clone())
    }

    /// Snapshots of every container, ordered by guid.
    pub fn list(&self) -> Vec<Container> {
        self.inspect(|containers| containers.iter().map(|c| (*c).clone()).collect())
    }

    /// Calls `f` with every container, ordered by guid, under the registry's lock: for views
    /// that need a few fields of each (the cell's state, asked for by every auction) without
    /// copying whole containers, run info included. `f` must not call back into the executor.
    pub fn inspect<R>(&self, f: impl FnOnce(&[&Container]) -> R) -> R {
        let registry = self.inner.lock();
        let mut containers: Vec<&Container> = registry.values().map(|e| &e.container).collect();
        containers.sort_by(|a, b| a.guid.cmp(&b.guid));
        f(&containers)
    }

    /// A receiver of every event from now on. A receiver that falls more than `event_buffer`
    /// events behind gets `Lagged` and should resync from [`Executor::list`].
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }

    /// Stops everything without waiting: refuses new work, stops the janitors and interrupts
    /// every container's steps (which then stop their processes gracefully in the background).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let mut registry = self.inner.lock();
        for entry in registry.values_mut() {
            entry.stop_requested = true;
            entry.cancel.cancel();
        }
    }

    /// [`shutdown`](Self::shutdown), then deletes every container (waiting for graceful stops
    /// and destroying them in the runtime).
    pub async fn shutdown_and_wait(&self) {
        self.shutdown();
        let guids: Vec<String> = self.inner.lock().keys().cloned().collect();
        futures::future::join_all(guids.iter().map(|guid| self.delete(guid))).await;
    }

    /// One pass of the reservation pruner: completes and deletes reservations older than
    /// `reservation_timeout`. Runs periodically on its own; public for tests.
    pub async fn prune_expired_reservations(&self) {
        janitor::prune_once(self).await;
    }

    /// One pass of the reaper: completes created containers the runtime no longer has
    /// (`container missing`) and destroys runtime containers not in the registry. Runs
    /// periodically on its own; public for tests.
    pub async fn reap(&self) {
        janitor::reap_once(self).await;
    }
}
