//! Leader election on the `bbs` lease, with fencing.
//!
//! [`Leadership::run`] acquires or renews the lease every `lock_retry_interval` (at most a third
//! of the TTL), retrying a failed or slow renewal soon instead of waiting a whole interval.
//! Renewal never waits behind request work: [`Leadership::spawn`] runs the loop on a thread and
//! runtime of its own, over a small pool of its own ([`db::Store::dedicated`]), so neither a
//! checked-out request pool nor busy request tasks delay it. Every renewal's duration is
//! recorded in [`LEASE_RENEWAL_DURATION`] (label `key`). While it holds
//! the lease, [`Leadership::writer`] hands out a store *fenced* by (key, owner, term): every write
//! transaction re-checks the lease inside the transaction, so a BBS whose lease was stolen (paused,
//! partitioned) can never commit, whatever its own view of leadership says. A BBS that cannot
//! renew before its TTL runs out steps down at once; standbys keep serving reads and Locket and
//! answer writes with UNAVAILABLE naming the leader (the `bbs` lease's value is its address).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use db::sql::leases::LeaseType;
use db::{Fence, Store};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The lease key the BBS leader holds.
pub const BBS_LOCK_KEY: &str = "bbs";

/// Histogram: how long one acquire-or-renew of a lease took, in seconds; label `key`.
pub const LEASE_RENEWAL_DURATION: &str = "lease_renewal_duration_seconds";
/// Counter: lease renewals that failed or timed out (not those refused because another owner
/// holds the lease); label `key`.
pub const LEASE_RENEWAL_FAILURES: &str = "lease_renewal_failures_total";

/// Connections in the leader's own lease pool: one renewing, one spare.
const LEASE_POOL_CONNECTIONS: u32 = 2;

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

/// Leader election state, shared by the gRPC services.
pub struct Leadership {
    store: Store,
    /// The store renewals go through: a dedicated, ungated pool once [`Leadership::run`] has
    /// opened it (until then, the request store, ungated).
    lease_store: OnceLock<Store>,
    owner: String,
    advertise: String,
    ttl: Duration,
    retry: Duration,
    state: watch::Sender<LeaderState>,
}

impl Leadership {
    /// A standby that will compete for the lease as `owner`, advertising `advertise`.
    pub fn new(store: Store, owner: String, advertise: String, ttl: Duration, retry: Duration) -> Arc<Self> {
        let (state, _) = watch::channel(LeaderState::Standby { leader: None });
        Arc::new(Self { store, lease_store: OnceLock::new(), owner, advertise, ttl, retry, state })
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
        self.retry.min(self.ttl / 3).max(Duration::from_millis(1))
    }

    /// How soon a failed or timed-out renewal is retried.
    fn retry_after_failure(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(1), self.renew_interval())
    }

    fn lease_store(&self) -> Store {
        self.lease_store.get().cloned().unwrap_or_else(|| self.store.ungated())
    }

    /// One election round: acquire or renew, or learn who leads. Returns the new state, or
    /// `None` when the database could not be asked in time (the state is then unchanged). One
    /// attempt is bounded by [`Leadership::renew_interval`].
    pub async fn tick(&self) -> Option<LeaderState> {
        let store = self.lease_store();
        let started = Instant::now();
        let attempt = tokio::time::timeout(
            self.renew_interval(),
            store.acquire_lease(BBS_LOCK_KEY, &self.owner, &self.advertise, LeaseType::Lock, self.ttl),
        )
        .await;
        metrics::histogram!(LEASE_RENEWAL_DURATION, "key" => BBS_LOCK_KEY).record(started.elapsed().as_secs_f64());
        let next = match attempt {
            Ok(Ok(lease)) => LeaderState::Leading {
                fence: Fence { key: BBS_LOCK_KEY.into(), owner: self.owner.clone(), term: lease.term },
            },
            Ok(Err(db::Error::LeaseHeld { .. })) => {
                let leader = tokio::time::timeout(self.renew_interval(), store.fetch_lease(BBS_LOCK_KEY))
                    .await
                    .ok()
                    .and_then(|lease| lease.ok())
                    .map(|lease| lease.value);
                LeaderState::Standby { leader }
            }
            Ok(Err(e)) => {
                metrics::counter!(LEASE_RENEWAL_FAILURES, "key" => BBS_LOCK_KEY).increment(1);
                tracing::warn!(error = %e, "cannot reach the database to renew the bbs lease");
                return None;
            }
            Err(_) => {
                metrics::counter!(LEASE_RENEWAL_FAILURES, "key" => BBS_LOCK_KEY).increment(1);
                tracing::warn!(timeout = ?self.renew_interval(), "renewing the bbs lease timed out; retrying");
                return None;
            }
        };
        self.set(next.clone());
        Some(next)
    }

    fn set(&self, next: LeaderState) {
        self.state.send_if_modified(|current| {
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

    /// Runs [`Leadership::run`] on a thread of its own with a single-threaded runtime of its
    /// own, so busy request tasks can never delay a renewal. The returned future resolves when
    /// the loop has ended (after `shutdown`, with the lease released).
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
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

    /// Runs election rounds until `shutdown`, then releases the lease if held. A leader renews
    /// every [`Leadership::renew_interval`] and retries a failed renewal after a tenth of the
    /// TTL; one that has not renewed within its TTL steps down even when the database cannot be
    /// reached. Renewals go through a pool of their own, opened here on the current runtime.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let own_pool = if self.lease_store.get().is_none() {
            match self.store.dedicated(LEASE_POOL_CONNECTIONS, self.renew_interval()).await {
                Ok(store) => {
                    let store = store.ungated();
                    let _ = self.lease_store.set(store.clone());
                    Some(store)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the lease pool; renewing through the request pool");
                    None
                }
            }
        } else {
            None
        };
        let mut last_renewal: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let pause = match self.tick().await {
                Some(LeaderState::Leading { .. }) => {
                    last_renewal = Some(started);
                    self.renew_interval()
                }
                Some(LeaderState::Standby { .. }) => {
                    last_renewal = None;
                    self.retry
                }
                None => {
                    if last_renewal.is_some_and(|at| at.elapsed() >= self.ttl) {
                        // The lease has lapsed by now; the fence would refuse our writes anyway.
                        self.set(LeaderState::Standby { leader: None });
                        last_renewal = None;
                    }
                    if last_renewal.is_some() { self.retry_after_failure() } else { self.retry }
                }
            };
            // Renewal cadence is measured from the start of the attempt, not its end.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(started + pause) => {}
            }
        }
        if self.is_leader() {
            let store = self.lease_store();
            match tokio::time::timeout(self.renew_interval(), store.release_lease(BBS_LOCK_KEY, &self.owner)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not release the bbs lease"),
                Err(_) => tracing::warn!("releasing the bbs lease timed out; it expires after its ttl"),
            }
            self.set(LeaderState::Standby { leader: None });
        }
        if let Some(store) = own_pool {
            store.close().await;
        }
    }
}
