//! The cell presence (reference 2.7): a Locket lease of type PRESENCE keyed by the cell id,
//! whose value is the cell's [`CellPresence`] as JSON, owned by a random uuid per process and
//! renewed every retry interval (5 s, at most a third of the TTL, measured from the start of each
//! attempt) with a TTL of 15 s, in a task of its own. A renewal that fails while the presence
//! may still be ours is retried after a tenth of the TTL, so one slow or failed call does not
//! lose the cell. Each attempt's duration goes to [`LEASE_RENEWAL_DURATION`] (label `key`, the
//! cell id). Auctioneers find cells through these presences, and the converger treats a cell
//! whose presence expired as lost.
//!
//! Losing the presence (the BBS unreachable, another owner still holding the key after a
//! restart) only flips [`PresenceStatus`] and is retried forever: containers keep running, since
//! the BBS keeps their records as Suspect and the cell's return promotes them back.

use std::sync::Arc;
use std::time::Duration;

use proto::models::{CellCapacity, CellId, CellPresence, RootfsProvider};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bbs_client::{BbsClient, PresenceLease};

/// Histogram: how long one acquire-or-renew of the presence took, in seconds; label `key`.
pub const LEASE_RENEWAL_DURATION: &str = "lease_renewal_duration_seconds";
/// Counter: renewals that failed or timed out while the presence may still have been ours;
/// label `key`.
pub const LEASE_RENEWAL_FAILURES: &str = "lease_renewal_failures_total";

/// Whether the presence is currently held, observable by the rest of the process.
#[derive(Debug, Clone)]
pub struct PresenceStatus {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for PresenceStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl PresenceStatus {
    /// A status that says "not held".
    pub fn new() -> Self {
        Self { tx: Arc::new(watch::Sender::new(false)) }
    }

    /// True while the last renewal succeeded.
    pub fn is_held(&self) -> bool {
        *self.tx.borrow()
    }

    fn set(&self, held: bool) {
        self.tx.send_if_modified(|current| std::mem::replace(current, held) != held);
    }

    /// Waits until the status is `held` (wrap it in a timeout).
    pub async fn wait_until(&self, held: bool) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|h| *h == held).await;
    }
}

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

/// Keeps the presence alive: [`Presence::tick`] is one attempt, [`Presence::run`] the loop.
pub struct Presence {
    bbs: Arc<dyn BbsClient>,
    lease: PresenceLease,
    ttl: Duration,
    retry_interval: Duration,
    status: PresenceStatus,
    /// Whether the lease may be ours: the last attempt succeeded, or timed out (and may have
    /// succeeded on the server). Decides whether shutdown releases it.
    maybe_held: bool,
    /// Failed attempts in a row, so the first one is a warning and the rest are quieter.
    failures: u64,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").field("lease", &self.lease).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Presence {
    /// A presence for `advert` owned by `owner` (a random uuid per process).
    pub fn new(
        bbs: Arc<dyn BbsClient>,
        advert: &CellAdvert,
        owner: impl Into<String>,
        ttl: Duration,
        retry_interval: Duration,
    ) -> Self {
        // A `CellPresence` is plain strings and numbers; serialising it cannot fail, and if it
        // somehow did the lease still names the cell.
        let value = serde_json::to_string(&advert.presence()).unwrap_or_default();
        Self {
            bbs,
            lease: PresenceLease { key: advert.cell_id.to_string(), owner: owner.into(), value },
            ttl,
            retry_interval,
            status: PresenceStatus::new(),
            maybe_held: false,
            failures: 0,
        }
    }

    /// The lease this presence holds.
    pub fn lease(&self) -> &PresenceLease {
        &self.lease
    }

    /// The shared status.
    pub fn status(&self) -> PresenceStatus {
        self.status.clone()
    }

    /// How often the presence is renewed: the retry interval, but at most a third of the TTL.
    pub fn renew_interval(&self) -> Duration {
        self.retry_interval.min(self.ttl / 3).max(Duration::from_millis(1))
    }

    /// How soon a renewal that failed while the presence may still be ours is retried.
    fn retry_after_failure(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(1), self.renew_interval())
    }

    /// One acquire-or-renew attempt, bounded by [`Presence::renew_interval`]; returns whether
    /// the presence is held afterwards.
    pub async fn tick(&mut self) -> bool {
        let started = tokio::time::Instant::now();
        let attempt = tokio::time::timeout(self.renew_interval(), self.bbs.lock_presence(&self.lease, self.ttl)).await;
        ::metrics::histogram!(LEASE_RENEWAL_DURATION, "key" => self.lease.key.clone())
            .record(started.elapsed().as_secs_f64());
        let error = match attempt {
            Ok(Ok(())) => {
                self.maybe_held = true;
                None
            }
            Ok(Err(e)) => {
                self.maybe_held = false;
                Some(e.to_string())
            }
            Err(_) => {
                self.maybe_held = true;
                Some(format!("lock call timed out after {:?}", self.renew_interval()))
            }
        };
        if error.is_some() && (self.maybe_held || self.status.is_held()) {
            ::metrics::counter!(LEASE_RENEWAL_FAILURES, "key" => self.lease.key.clone()).increment(1);
        }
        let was_held = self.status.is_held();
        match error {
            None => {
                if !was_held {
                    tracing::info!(cell_id = %self.lease.key, owner = %self.lease.owner, "cell presence held");
                }
                self.failures = 0;
                self.status.set(true);
            }
            Some(error) => {
                self.failures += 1;
                if was_held {
                    tracing::warn!(cell_id = %self.lease.key, error = %error, "lost the cell presence; retrying, containers keep running");
                } else if self.failures == 1 {
                    tracing::warn!(cell_id = %self.lease.key, error = %error, "cannot hold the cell presence; retrying");
                } else {
                    tracing::debug!(cell_id = %self.lease.key, error = %error, failures = self.failures, "cell presence still not held; retrying");
                }
                self.status.set(false);
            }
        }
        crate::metrics::record_presence(&self.lease.key, self.status.is_held());
        self.status.is_held()
    }

    /// Renews every [`Presence::renew_interval`] until `shutdown`, retrying a failed renewal
    /// of a presence that may still be ours after a tenth of the TTL; then releases the
    /// presence (bounded by the retry interval; if that fails it expires after its TTL).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let started = tokio::time::Instant::now();
            let was_held = self.status.is_held();
            let held = tokio::select! {
                _ = shutdown.cancelled() => break,
                held = self.tick() => held,
            };
            // The presence outlives a failed renewal by most of its TTL: retry soon.
            let pause =
                if !held && (was_held || self.maybe_held) { self.retry_after_failure() } else { self.renew_interval() };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(started + pause) => {}
            }
        }
        self.status.set(false);
        if !self.maybe_held {
            return;
        }
        match tokio::time::timeout(self.retry_interval, self.bbs.release_presence(&self.lease)).await {
            Ok(Ok(())) => tracing::info!(cell_id = %self.lease.key, "released the cell presence"),
            Ok(Err(e)) => {
                tracing::warn!(cell_id = %self.lease.key, error = %e, "cannot release the cell presence; it expires after its ttl")
            }
            Err(_) => {
                tracing::warn!(cell_id = %self.lease.key, "releasing the cell presence timed out; it expires after its ttl")
            }
        }
    }
}
