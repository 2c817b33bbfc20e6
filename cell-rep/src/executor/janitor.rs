//! The executor's janitors (reference §3.2, `registrypruner.go`, `containerreaper.go`):
//!
//! - the reservation pruner, every `reservation_timeout / 2`, completes reservations older than
//!   `reservation_timeout` with `expired container` and deletes them (freeing their resources);
//! - the reaper, every `reap_interval`, completes created containers that the runtime no longer
//!   has with `container missing`, and destroys runtime containers that are not in the registry
//!   (left over from a previous rep, or from a delete whose destroy failed).

use std::collections::HashSet;
use std::time::Duration;

use super::{ContainerState, Executor, RunResult};

/// Starts both janitors; they end when the executor shuts down.
pub(super) fn spawn(executor: &Executor) {
    let prune_every = (executor.inner.config.reservation_timeout / 2).max(Duration::from_millis(10));
    let reap_every = executor.inner.config.reap_interval.max(Duration::from_millis(10));
    spawn_loop(executor.clone(), prune_every, false, |e| Box::pin(async move { prune_once(&e).await }));
    // The reaper's first pass runs at once: with an empty registry it destroys whatever a
    // previous rep left in the runtime (the Go executor destroys its containers at startup).
    spawn_loop(executor.clone(), reap_every, true, |e| Box::pin(async move { reap_once(&e).await }));
}

fn spawn_loop(
    executor: Executor,
    every: Duration,
    immediate: bool,
    pass: fn(Executor) -> futures::future::BoxFuture<'static, ()>,
) {
    // Holding only a weak reference would be tidier, but the shutdown token ends the loop and
    // tests call `shutdown`; a rep runs its executor for its whole life.
    let shutdown = executor.inner.shutdown.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !immediate {
            ticker.tick().await;
        }
        loop {
            tokio::select! {
                _ = ticker.tick() => pass(executor.clone()).await,
                () = shutdown.cancelled() => break,
            }
        }
    });
}

/// One pruner pass.
pub(super) async fn prune_once(executor: &Executor) {
    let timeout = executor.inner.config.reservation_timeout;
    let expired: Vec<String> = executor
        .inner
        .lock()
        .values()
        .filter(|e| e.container.state == ContainerState::Reserved && e.container.reserved_at.elapsed() >= timeout)
        .map(|e| e.container.guid.clone())
        .collect();
    for guid in expired {
        tracing::info!(container_guid = %guid, "reservation expired");
        if executor.inner.complete_from(
            &guid,
            Some(ContainerState::Reserved),
            RunResult::failure("expired container", false, false),
        ) && let Err(error) = executor.delete(&guid).await
        {
            tracing::debug!(container_guid = %guid, %error, "deleting expired reservation");
        }
    }
}

/// One reaper pass.
pub(super) async fn reap_once(executor: &Executor) {
    // Snapshot before listing: anything created before the list must appear in it.
    let (created, known): (Vec<String>, HashSet<String>) = {
        let registry = executor.inner.lock();
        let created =
            registry.values().filter(|e| e.container.state.is_created()).map(|e| e.container.guid.clone()).collect();
        (created, registry.keys().cloned().collect())
    };
    let listed: HashSet<String> = match executor.inner.runtime.list().await {
        Ok(guids) => guids.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "reaper cannot list runtime containers");
            return;
        }
    };
    for guid in created.iter().filter(|g| !listed.contains(*g)) {
        let still_created = executor.get(guid).is_some_and(|c| c.state.is_created());
        if still_created && executor.inner.complete(guid, RunResult::failure("container missing", false, false)) {
            tracing::warn!(container_guid = %guid, "runtime lost the container");
            if let Some(entry) = executor.inner.lock().get(guid) {
                entry.cancel.cancel();
            }
        }
    }
    for guid in listed.iter().filter(|g| !known.contains(*g)) {
        if executor.inner.lock().contains_key(guid) {
            continue;
        }
        tracing::info!(container_guid = %guid, "destroying container unknown to the registry");
        if let Err(error) = executor.inner.runtime.destroy(guid).await {
            tracing::warn!(container_guid = %guid, %error, "destroying orphaned container failed");
        }
    }
}
