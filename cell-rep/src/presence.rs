//! The cell presence (reference 2.7): a Locket lease of type PRESENCE keyed by the cell id,
//! whose value is the cell's [`CellPresence`] as JSON, owned by a random uuid per process and
//! kept by the service toolkit's one lease holder ([`svc::lease`]) in a task of its own: renewed
//! every retry interval (5 s, at most a third of the TTL, measured from the start of each
//! attempt) with a TTL of 15 s; a renewal that fails while the presence may still be ours is
//! retried after a tenth of the TTL, so one slow or failed call does not lose the cell; each
//! attempt's duration goes to [`LEASE_RENEWAL_DURATION`] (label `key`, the cell id). Auctioneers
//! find cells through these presences, and the converger treats a cell whose presence expired as
//! lost. This module says only what a presence call is and what holding it means.
//!
//! Losing the presence (the BBS unreachable, another owner still holding the key after a
//! restart) only flips [`PresenceStatus`] and is retried forever: containers keep running, since
//! the BBS keeps their records as Suspect and the cell's return promotes them back.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::models::{CellCapacity, CellId, CellPresence, RootfsProvider};
use svc::lease::{Attempt, Fencing, HeldStatus, LeaseCalls, LeaseHolder, LeaseTiming, Report};
use tokio_util::sync::CancellationToken;

use crate::bbs_client::{BbsClient, PresenceLease};

pub use svc::lease::{LEASE_RENEWAL_DURATION, LEASE_RENEWAL_FAILURES};

/// Whether the presence is currently held (the last renewal succeeded), observable by the rest
/// of the process.
pub type PresenceStatus = HeldStatus;

/// What this cell advertises, built from its configuration and the address it serves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellAdvert {
    /// The cell id.
    pub cell_id: CellId,
    /// `host:port` of the rep's gRPC server.
    pub rep_address: String,
    /// Zone.
    pub zone: String,
    /// Total capacity.
    pub capacity: CellCapacity,
    /// Preloaded rootfs names.
    pub rootfs_names: Vec<String>,
    /// Required placement tags.
    pub placement_tags: Vec<String>,
    /// Optional placement tags.
    pub optional_placement_tags: Vec<String>,
}

impl CellAdvert {
    /// The rootfs providers: `preloaded` with the stack names.
    pub fn rootfs_providers(&self) -> Vec<RootfsProvider> {
        vec![RootfsProvider { name: "preloaded".into(), properties: self.rootfs_names.clone() }]
    }

    /// The presence value.
    pub fn presence(&self) -> CellPresence {
        CellPresence {
            cell_id: self.cell_id.clone(),
            rep_address: self.rep_address.clone(),
            rep_url: format!("http://{}", self.rep_address),
            zone: self.zone.clone(),
            capacity: self.capacity,
            rootfs_providers: self.rootfs_providers(),
            placement_tags: self.placement_tags.clone(),
            optional_placement_tags: self.optional_placement_tags.clone(),
            annotations: Default::default(),
        }
    }
}

/// The presence as a lease: Locket calls through the BBS client, and the status they drive.
struct PresenceCalls {
    bbs: Arc<dyn BbsClient>,
    lease: PresenceLease,
    ttl: Duration,
    status: PresenceStatus,
}

impl LeaseCalls for PresenceCalls {
    type Held = ();

    fn key(&self) -> &str {
        self.lease.key()
    }

    fn acquire(&self) -> BoxFuture<'_, Attempt<()>> {
        Box::pin(async move {
            match self.bbs.lock_presence(&self.lease, self.ttl).await {
                Ok(()) => Attempt::Held(()),
                // A collision and an unreachable BBS look alike here: retried all the same.
                Err(e) => Attempt::Failed { error: e.to_string(), maybe_applied: false },
            }
        })
    }

    fn release(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.bbs.release_presence(&self.lease).await.map_err(|e| e.to_string()) })
    }

    fn report(&self, report: &Report<'_, ()>) {
        if report.stopping {
            self.status.set(false);
            return;
        }
        let lease = &self.lease;
        let held = report.after.is_held();
        match report.error {
            None if held && !self.status.is_held() => {
                tracing::info!(cell_id = %lease.key(), owner = %lease.owner, "cell presence held");
            }
            None => {}
            Some(error) if report.before.is_held() => {
                tracing::warn!(cell_id = %lease.key(), %error, "lost the cell presence; retrying, containers keep running")
            }
            Some(error) if report.failures <= 1 => {
                tracing::warn!(cell_id = %lease.key(), %error, "cannot hold the cell presence; retrying")
            }
            Some(error) => {
                tracing::debug!(cell_id = %lease.key(), %error, failures = report.failures, "cell presence still not held; retrying")
            }
        }
        self.status.set(held);
        crate::metrics::record_presence(lease.key(), held);
    }
}

/// Keeps the presence alive: [`Presence::tick`] is one attempt, [`Presence::run`] the loop.
pub struct Presence {
    holder: LeaseHolder<PresenceCalls>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let calls = self.holder.calls();
        f.debug_struct("Presence").field("lease", &calls.lease).field("ttl", &calls.ttl).finish_non_exhaustive()
    }
}

impl Presence {
    /// A presence for `advert` owned by `owner`, one per process; under mutual TLS the cell's own
    /// identity and an instance (`svc::lease::owner`), or the Locket refuses it.
    pub fn new(
        bbs: Arc<dyn BbsClient>,
        advert: &CellAdvert,
        owner: impl Into<String>,
        ttl: Duration,
        retry_interval: Duration,
    ) -> Self {
        let lease = PresenceLease { owner: owner.into(), presence: advert.presence() };
        let calls = PresenceCalls { bbs, lease, ttl, status: PresenceStatus::new() };
        Self { holder: LeaseHolder::new(calls, LeaseTiming::new(ttl, retry_interval), Fencing::Unfenced) }
    }

    /// The lease this presence holds.
    pub fn lease(&self) -> &PresenceLease {
        &self.holder.calls().lease
    }

    /// The shared status.
    pub fn status(&self) -> PresenceStatus {
        self.holder.calls().status.clone()
    }

    /// How often the presence is renewed: the retry interval, but at most a third of the TTL.
    pub fn renew_interval(&self) -> Duration {
        self.holder.timing().renew_interval()
    }

    /// One acquire-or-renew attempt, bounded by [`Presence::renew_interval`]; returns whether
    /// the presence is held afterwards.
    pub async fn tick(&mut self) -> bool {
        self.holder.tick().await;
        self.holder.state().is_held()
    }

    /// Renews every [`Presence::renew_interval`] until `shutdown`, retrying a failed renewal
    /// of a presence that may still be ours after a tenth of the TTL; then releases the
    /// presence (bounded by the renew interval; if that fails it expires after its TTL).
    pub async fn run(self, shutdown: CancellationToken) {
        self.holder.run(shutdown).await;
    }
}
