//! Leader election on the `bbs` lease, with fencing.
//!
//! The lease is kept by the service toolkit's one lease holder ([`svc::lease`]): it acquires or
//! renews every renew interval (the `lock_retry_interval`, at most a third of the TTL),
//! retrying a failed or slow renewal soon instead of waiting a whole interval, and records every
//! renewal's duration in [`LEASE_RENEWAL_DURATION`] (label `key`). This module says what a
//! lease call is (a direct store call) and what holding it means. Renewal never waits behind
//! request work: [`Leadership::spawn`] runs the loop on a thread and runtime of its own, over a
//! small pool of its own ([`db::Store::dedicated`]), so neither a checked-out request pool nor
//! busy request tasks delay it. While it holds the lease, [`Leadership::writer`] hands out a
//! store *fenced* by (key, owner, term): every write transaction re-checks the lease inside the
//! transaction, so a BBS whose lease was stolen (paused, partitioned) can never commit, whatever
//! its own view of leadership says. Fencing is why a failed renewal does not end leadership at
//! once; a BBS that cannot renew before its TTL runs out steps down even when the database
//! cannot be reached. Standbys keep serving reads and Locket and answer writes with UNAVAILABLE
//! naming the leader (the `bbs` lease's value is its address).

use std::sync::Arc;
use std::time::Duration;

use db::sql::leases::LeaseType;
use db::{Fence, Store};
use futures::future::BoxFuture;
use svc::lease::{Attempt, Fencing, LeaseCalls, LeaseHolder, LeaseState, LeaseTiming, Report};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

pub use svc::lease::{LEASE_RENEWAL_DURATION, LEASE_RENEWAL_FAILURES};

/// The lease key the BBS leader holds.
pub const BBS_LOCK_KEY: &str = "bbs";

/// The prefix of the lease every BBS, leader or standby, holds while it runs
/// (`bbs-replica/<owner>`, a lock whose value is its address): how `diego status` lists the
/// standbys. A lock, not a presence: presences are cells.
pub const BBS_REPLICA_PREFIX: &str = "bbs-replica/";

/// Connections in the leader's own lease pool: one renewing, one spare.
const LEASE_POOL_CONNECTIONS: u32 = 2;

/// How long a stopping leader waits for its lease pool to close (see [`Leadership::run`]).
const LEASE_POOL_CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// What this process knows about leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    /// This process leads under `fence`.
    Leading {
        /// The lease this process writes under.
        fence: Fence,
    },
    /// Another process (at `leader`, if known) leads.
    Standby {
        /// The leader's advertised address.
        leader: Option<String>,
    },
}

impl From<&LeaseState<Fence>> for LeaderState {
    fn from(state: &LeaseState<Fence>) -> Self {
        match state {
            LeaseState::Held(fence) => LeaderState::Leading { fence: fence.clone() },
            LeaseState::NotHeld { holder } => LeaderState::Standby { leader: holder.clone() },
        }
    }
}

/// Leader election state, shared by the gRPC services.
pub struct Leadership {
    store: Store,
    owner: String,
    advertise: String,
    timing: LeaseTiming,
    state: Arc<watch::Sender<LeaderState>>,
}

impl Leadership {
    /// A standby that will compete for the lease as `owner`, advertising `advertise`.
    pub fn new(store: Store, owner: String, advertise: String, ttl: Duration, retry: Duration) -> Arc<Self> {
        let (state, _) = watch::channel(LeaderState::Standby { leader: None });
        Arc::new(Self { store, owner, advertise, timing: LeaseTiming::new(ttl, retry), state: Arc::new(state) })
    }

    /// The current state.
    pub fn state(&self) -> LeaderState {
        self.state.borrow().clone()
    }

    /// Whether this process leads.
    pub fn is_leader(&self) -> bool {
        matches!(*self.state.borrow(), LeaderState::Leading { .. })
    }

    /// Notifications of state changes.
    pub fn subscribe(&self) -> watch::Receiver<LeaderState> {
        self.state.subscribe()
    }

    /// The fenced store to write with, or NotLeader naming the leader.
    pub fn writer(&self) -> Result<Store, Error> {
        match &*self.state.borrow() {
            LeaderState::Leading { fence } => Ok(self.store.fenced(fence.clone())),
            LeaderState::Standby { leader } => Err(Error::NotLeader { leader: leader.clone() }),
        }
    }

    /// The unfenced store, for reads.
    pub fn reader(&self) -> &Store {
        &self.store
    }

    /// How often a leader renews: the retry interval, but never less often than every third of
    /// the TTL, so two renewals can fail before the lease runs out.
    pub fn renew_interval(&self) -> Duration {
        self.timing.renew_interval()
    }

    /// The lease calls, through `store`.
    fn lease(&self, store: Store) -> BbsLease {
        BbsLease {
            store,
            owner: self.owner.clone(),
            advertise: self.advertise.clone(),
            ttl: self.timing.ttl,
            state: self.state.clone(),
        }
    }

    /// One election round through the request store (ungated): acquire or renew, or learn who
    /// leads. Returns the new state, or `None` when the database could not be asked in time (the
    /// state is then unchanged). One attempt is bounded by [`Leadership::renew_interval`].
    pub async fn tick(&self) -> Option<LeaderState> {
        let lease = self.lease(self.store.ungated());
        let next = match svc::lease::attempt(&lease, self.timing).await {
            Attempt::Held(fence) => LeaderState::Leading { fence },
            Attempt::Refused { holder } => LeaderState::Standby { leader: holder },
            Attempt::Failed { error, .. } => {
                if self.is_leader() {
                    svc::lease::record_renewal_failure(BBS_LOCK_KEY);
                }
                tracing::warn!(%error, "cannot renew the bbs lease; retrying");
                return None;
            }
        };
        publish(&self.state, next.clone());
        Some(next)
    }

    /// Runs [`Leadership::run`] on a thread of its own with a single-threaded runtime of its
    /// own, so busy request tasks can never delay a renewal. The returned future resolves when
    /// the loop has ended (after `shutdown`, with the lease released).
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> impl Future<Output = ()> + Send + use<> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name("bbs-lease".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(self.run(shutdown)),
                Err(e) => tracing::error!(error = %e, "cannot start the bbs lease runtime"),
            }
            let _ = done_tx.send(());
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the bbs lease thread");
        }
        async move {
            let _ = done_rx.await;
        }
    }

    /// Holds the lease until `shutdown`, then releases it if it may be held: a leader renews
    /// every [`Leadership::renew_interval`] and retries a failed renewal after a tenth of the
    /// TTL; one that has not renewed within its TTL steps down even when the database cannot be
    /// reached. Renewals go through a pool of their own, opened here on the current runtime
    /// (the request pool, ungated, if it cannot be opened).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let own_pool = match self.store.dedicated(LEASE_POOL_CONNECTIONS, self.renew_interval()).await {
            Ok(store) => Some(store.ungated()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the lease pool; renewing through the request pool");
                None
            }
        };
        let store = own_pool.clone().unwrap_or_else(|| self.store.ungated());
        let replica = ReplicaLease {
            store: store.clone(),
            key: format!("{BBS_REPLICA_PREFIX}{}", self.owner),
            owner: self.owner.clone(),
            advertise: self.advertise.clone(),
            ttl: self.timing.ttl,
        };
        futures::join!(
            LeaseHolder::new(self.lease(store), self.timing, Fencing::Fenced).run(shutdown.clone()),
            LeaseHolder::new(replica, self.timing, Fencing::Unfenced).run(shutdown),
        );
        if let Some(store) = own_pool {
            // sqlx's close waits for every connection to come back; on MySQL one was seen never
            // to (about one stop in twenty), which held the stop forever. Bounded: whatever is
            // left is dropped with this thread's runtime, and the server rolls it back.
            if tokio::time::timeout(LEASE_POOL_CLOSE_LIMIT, store.close()).await.is_err() {
                tracing::warn!("closing the lease pool timed out; its connections are dropped");
            }
        }
    }
}

/// The `bbs` lease as direct store calls, publishing what holding it means.
struct BbsLease {
    store: Store,
    owner: String,
    advertise: String,
    ttl: Duration,
    state: Arc<watch::Sender<LeaderState>>,
}

impl LeaseCalls for BbsLease {
    type Held = Fence;

    fn key(&self) -> &str {
        BBS_LOCK_KEY
    }

    fn acquire(&self) -> BoxFuture<'_, Attempt<Fence>> {
        Box::pin(async move {
            match self.store.acquire_lease(BBS_LOCK_KEY, &self.owner, &self.advertise, LeaseType::Lock, self.ttl).await
            {
                Ok(lease) => {
                    Attempt::Held(Fence { key: BBS_LOCK_KEY.into(), owner: self.owner.clone(), term: lease.term })
                }
                Err(db::Error::LeaseHeld { .. }) => Attempt::Refused { holder: None },
                Err(e) => Attempt::Failed { error: e.to_string(), maybe_applied: false },
            }
        })
    }

    fn holder(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.store.fetch_lease(BBS_LOCK_KEY).await.ok().map(|lease| lease.value) })
    }

    fn release(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.store.release_lease(BBS_LOCK_KEY, &self.owner).await.map_err(|e| e.to_string()) })
    }

    fn report(&self, report: &Report<'_, Fence>) {
        if let Some(error) = report.error {
            tracing::warn!(%error, "cannot renew the bbs lease; retrying");
        }
        // A standby that stops has nothing to give up.
        if report.stopping && !report.before.is_held() {
            return;
        }
        publish(&self.state, report.after.into());
    }
}

/// The `bbs-replica/<owner>` lease: this BBS runs, at this address.
struct ReplicaLease {
    store: Store,
    key: String,
    owner: String,
    advertise: String,
    ttl: Duration,
}

impl LeaseCalls for ReplicaLease {
    type Held = ();

    fn key(&self) -> &str {
        &self.key
    }

    fn acquire(&self) -> BoxFuture<'_, Attempt<()>> {
        Box::pin(async move {
            match self.store.acquire_lease(&self.key, &self.owner, &self.advertise, LeaseType::Lock, self.ttl).await {
                Ok(_) => Attempt::Held(()),
                Err(db::Error::LeaseHeld { owner, .. }) => Attempt::Refused { holder: Some(owner) },
                Err(e) => Attempt::Failed { error: e.to_string(), maybe_applied: false },
            }
        })
    }

    fn release(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.store.release_lease(&self.key, &self.owner).await.map_err(|e| e.to_string()) })
    }
}

/// Publishes `next` if it differs from the current state.
fn publish(state: &watch::Sender<LeaderState>, next: LeaderState) {
    state.send_if_modified(|current| {
        if *current == next {
            return false;
        }
        match &next {
            LeaderState::Leading { fence } => {
                tracing::info!(owner = %fence.owner, term = fence.term, "became the bbs leader");
            }
            LeaderState::Standby { leader } => {
                tracing::info!(leader = leader.as_deref().unwrap_or("unknown"), "standing by");
            }
        }
        metrics::gauge!("bbs_leader").set(if matches!(next, LeaderState::Leading { .. }) { 1.0 } else { 0.0 });
        *current = next.clone();
        true
    });
}

#[cfg(test)]
mod tests {
    use db::Backend;
    use db::testing::TestDb;

    use super::*;

    /// A TTL no test waits out: a successor that leads at once did not wait for it.
    const LONG_TTL: Duration = Duration::from_secs(60);

    /// A leader that stops (Ctrl-C, SIGTERM) gives its lease up on the way out, so a successor
    /// (a restarted `diego dev`, a standby) leads on its first attempt instead of after the TTL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_leader_releases_its_lease_so_a_successor_leads_at_once() {
        for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mysql] {
            let Some(db) = TestDb::create(backend).await else { continue };
            let retry = Duration::from_millis(200);
            let first = Leadership::new(db.store.clone(), "first".into(), "127.0.0.1:1".into(), LONG_TTL, retry);
            let stop = CancellationToken::new();
            let election = first.clone().spawn(stop.clone());
            let mut changes = first.subscribe();
            tokio::time::timeout(
                Duration::from_secs(10),
                changes.wait_for(|s| matches!(s, LeaderState::Leading { .. })),
            )
            .await
            .expect("the first bbs never led")
            .expect("state channel");

            stop.cancel();
            tokio::time::timeout(Duration::from_secs(10), election)
                .await
                .unwrap_or_else(|_| panic!("{}: the election did not stop", backend.name()));
            assert!(!first.is_leader(), "{}: a stopped bbs no longer leads", backend.name());

            let second = Leadership::new(db.store.clone(), "second".into(), "127.0.0.1:2".into(), LONG_TTL, retry);
            let state = second.tick().await;
            assert!(
                matches!(state, Some(LeaderState::Leading { .. })),
                "{}: the successor must lead at once, got {state:?}",
                backend.name()
            );
        }
    }

    /// Every running BBS, the standby too, holds `bbs-replica/<owner>` with its address (how
    /// `diego status` lists the standbys), and gives it up when it stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_running_bbs_holds_its_replica_lock_until_it_stops() {
        for backend in [Backend::Sqlite, Backend::Postgres, Backend::Mysql] {
            let Some(db) = TestDb::create(backend).await else { continue };
            let retry = Duration::from_millis(200);
            let stop = CancellationToken::new();
            let mut elections = Vec::new();
            for (owner, address) in [("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")] {
                let bbs = Leadership::new(db.store.clone(), owner.into(), address.into(), LONG_TTL, retry);
                elections.push(bbs.spawn(stop.clone()));
            }
            let replica = |owner: &'static str| {
                let store = db.store.clone();
                async move { store.fetch_lease(&format!("{BBS_REPLICA_PREFIX}{owner}")).await.ok() }
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while replica("a").await.is_none() || replica("b").await.is_none() {
                assert!(tokio::time::Instant::now() < deadline, "{}: both replica locks", backend.name());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let b = replica("b").await.expect("b's replica lock");
            assert_eq!((b.owner.as_str(), b.value.as_str()), ("b", "127.0.0.1:2"));
            stop.cancel();
            for election in elections {
                tokio::time::timeout(Duration::from_secs(10), election)
                    .await
                    .unwrap_or_else(|_| panic!("{}: the election did not stop", backend.name()));
            }
            assert!(replica("a").await.is_none() && replica("b").await.is_none(), "{}: released", backend.name());
        }
    }
}
