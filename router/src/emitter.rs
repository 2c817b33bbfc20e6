//! The route emitter built into the router: keeps the [`RouteTable`] in step with the BBS and
//! publishes its routes to the proxy ([`RouteHandle`]).
//!
//! As Diego's route emitter does: subscribe to the instance events first, then list everything
//! (the full sync), so nothing that happens in between is missed; apply each event as it comes;
//! list everything again every `sync_interval` to repair what events missed. A dropped stream
//! (the BBS restarted, lost its leadership, or called this router a slow consumer) or a gap in
//! the stream's sequence numbers means subscribing and syncing again after `resync_interval`.
//! Meanwhile the last routes stay published: the instances keep serving while the BBS is away.
//!
//! Each periodic sync also renews the subscription (subscribe, sync, drop the old stream), so a
//! stream never outlives one `sync_interval`: a BBS whose shutdown waits for its open streams to
//! end, or that keeps a stream open after it stopped leading, is not followed for longer.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::RouterError;
use crate::table::{Change, RouteTable, Routes, Snapshot};

/// One item of an event stream: its sequence number and the change it announces, if any.
pub type Sequenced = (u64, Option<Change>);

/// Where routes come from: the BBS ([`crate::bbs::GrpcSource`]) or a fake in tests.
pub trait RouteSource: Send + Sync + 'static {
    /// Everything at once: every desired LRP's routes and every instance.
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, RouterError>>;
    /// The instance events from now on.
    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Sequenced, RouterError>>, RouterError>>;
}

/// The routes the proxy reads: swapped whole on every change, read without waiting for the
/// emitter.
#[derive(Debug, Clone, Default)]
pub struct RouteHandle(Arc<RwLock<Arc<Routes>>>);

impl RouteHandle {
    /// The current routes.
    pub fn current(&self) -> Arc<Routes> {
        match self.0.read() {
            Ok(routes) => routes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, routes: Routes) {
        crate::metrics::record_table(routes.len(), routes.endpoints());
        let routes = Arc::new(routes);
        match self.0.write() {
            Ok(mut current) => *current = routes,
            Err(poisoned) => *poisoned.into_inner() = routes,
        }
    }
}

/// What the emitter reports about itself (`/healthz`).
#[derive(Debug, Clone, Default)]
pub struct EmitterStatus(Arc<RwLock<Option<String>>>);

impl EmitterStatus {
    /// `None` while in step with the BBS, else why not.
    pub fn problem(&self) -> Option<String> {
        self.0.read().map(|p| p.clone()).unwrap_or(None)
    }

    fn set(&self, problem: Option<String>) {
        if let Ok(mut current) = self.0.write() {
            *current = problem;
        }
    }
}

/// The emitter: the table, its source and where its routes go.
pub struct Emitter {
    source: Arc<dyn RouteSource>,
    table: RouteTable,
    routes: RouteHandle,
    status: EmitterStatus,
    sync_interval: Duration,
    resync_interval: Duration,
}

impl Emitter {
    /// An emitter publishing to `routes`.
    pub fn new(
        source: Arc<dyn RouteSource>,
        routes: RouteHandle,
        status: EmitterStatus,
        sync_interval: Duration,
        resync_interval: Duration,
    ) -> Self {
        Self { source, table: RouteTable::new(), routes, status, sync_interval, resync_interval }
    }

    /// The full sync: lists everything and replaces the table (publishing when it changed).
    pub async fn sync(&mut self) -> Result<(), RouterError> {
        let snapshot = self.source.snapshot().await?;
        let changed = self.table.replace(snapshot);
        crate::metrics::record_sync(changed);
        if changed {
            tracing::info!("full sync changed the route table");
        }
        self.routes.publish(self.table.routes());
        Ok(())
    }

    /// Applies one change (publishing when the routes may have changed).
    pub fn apply(&mut self, change: Change) {
        if self.table.apply(change) {
            self.routes.publish(self.table.routes());
        }
    }

    /// Subscribes, syncs, follows the events and syncs every `sync_interval`; after a dropped
    /// stream or a failed sync, waits `resync_interval` and starts over. Returns on `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.follow(&stop).await {
                tracing::warn!(error = %e, "route emitter out of step with the bbs; subscribing again");
                crate::metrics::record_resync();
                self.status.set(Some(e.to_string()));
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.resync_interval) => {}
            }
        }
    }

    /// One subscription: `Ok` only on `stop`.
    async fn follow(&mut self, stop: &CancellationToken) -> Result<(), RouterError> {
        let mut events = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            events = self.source.subscribe() => events?,
        };
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            synced = self.sync() => synced?,
        }
        self.status.set(None);
        let mut last: Option<u64> = None;
        let mut next_sync = Instant::now() + self.sync_interval;
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(next_sync) => {
                    next_sync = Instant::now() + self.sync_interval;
                    // A new subscription first, then the sync, then the old stream goes: no event
                    // falls between them, and no stream outlives a sync interval (a BBS that
                    // stopped leading, or stops, without ending its streams is left within one).
                    let fresh = self.source.subscribe().await?;
                    self.sync().await?;
                    events = fresh;
                    last = None;
                }
                item = events.next() => match item {
                    None => return Err(RouterError::StreamEnded),
                    Some(Err(e)) => return Err(e),
                    Some(Ok((sequence, change))) => {
                        if last.is_some_and(|last| sequence != last + 1) {
                            tracing::warn!(sequence, ?last, "gap in the event stream; syncing");
                            self.sync().await?;
                        }
                        last = Some(sequence);
                        if let Some(change) = change {
                            self.apply(change);
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
#[path = "emitter_tests.rs"]
mod tests;
