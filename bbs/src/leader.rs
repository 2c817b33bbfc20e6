//! Leader election on the `bbs` lease, with fencing.
//!
//! [`Leadership::run`] acquires or renews the lease every `lock_retry_interval`. While it holds
//! the lease, [`Leadership::writer`] hands out a store *fenced* by (key, owner, term): every write
//! transaction re-checks the lease inside the transaction, so a BBS whose lease was stolen (paused,
//! partitioned) can never commit, whatever its own view of leadership says. A BBS that cannot
//! renew before its TTL runs out steps down at once; standbys keep serving reads and Locket and
//! answer writes with UNAVAILABLE naming the leader (the `bbs` lease's value is its address).

use std::sync::Arc;
use std::time::Duration;

use db::sql::leases::LeaseType;
use db::{Fence, Store};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The lease key the BBS leader holds.
pub const BBS_LOCK_KEY: &str = "bbs";

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
        Arc::new(Self { store, owner, advertise, ttl, retry, state })
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

    /// One election round: acquire or renew, or learn who leads. Returns the new state, or
    /// `None` when the database could not be asked (the state is then unchanged).
    pub async fn tick(&self) -> Option<LeaderState> {
        let attempt =
            self.store.acquire_lease(BBS_LOCK_KEY, &self.owner, &self.advertise, LeaseType::Lock, self.ttl).await;
        let next = match attempt {
            Ok(lease) => LeaderState::Leading {
                fence: Fence { key: BBS_LOCK_KEY.into(), owner: self.owner.clone(), term: lease.term },
            },
            Err(db::Error::LeaseHeld { .. }) => {
                let leader = self.store.fetch_lease(BBS_LOCK_KEY).await.ok().map(|lease| lease.value);
                LeaderState::Standby { leader }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the database to renew the bbs lease");
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

    /// Runs election rounds until `shutdown`, then releases the lease if held. A leader that has
    /// not renewed within its TTL steps down even when the database cannot be reached.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            match self.tick().await {
                Some(LeaderState::Leading { .. }) => last_renewal = Some(Instant::now()),
                Some(LeaderState::Standby { .. }) => last_renewal = None,
                None => {
                    if last_renewal.is_some_and(|at| at.elapsed() >= self.ttl) {
                        // The lease has lapsed by now; the fence would refuse our writes anyway.
                        self.set(LeaderState::Standby { leader: None });
                        last_renewal = None;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.retry) => {}
            }
        }
        if self.is_leader() {
            if let Err(e) = self.store.release_lease(BBS_LOCK_KEY, &self.owner).await {
                tracing::warn!(error = %e, "could not release the bbs lease");
            }
            self.set(LeaderState::Standby { leader: None });
        }
    }
}
