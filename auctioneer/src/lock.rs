//! Leadership: only the auctioneer holding the `auctioneer` lock in the BBS's Locket auctions.
//!
//! [`hold`] acquires the lock and renews it every retry interval (reference §1.1; TTL 15 s,
//! retry 5 s by default), at most a third of the TTL apart, measured from the start of each
//! attempt; a renewal that fails while the lease may still be ours is retried after a tenth of
//! the TTL instead of a whole interval, so a blip does not cost the lease. Every attempt's
//! duration goes to [`LEASE_RENEWAL_DURATION`] (label `key`). The lock's value is this auctioneer's advertised gRPC address, which
//! is how the BBS finds the active auctioneer. [`LockStatus`] tells the rest of the process
//! whether the lock is held: the gRPC service refuses start requests with UNAVAILABLE while
//! standing by, and the auction loop stops at once when the lock is lost. A renewal that fails
//! or takes longer than the retry interval counts as losing the lock, so this process stops
//! auctioning before the lease can expire and another auctioneer take over. On shutdown the
//! lock is released, so a standby takes over without waiting for the TTL.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::locket::v1 as locket_pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connector::Connector;
use crate::error::ClientError;
use crate::metrics;

/// The Locket key the active auctioneer holds.
pub const LOCK_KEY: &str = "auctioneer";

/// Histogram: how long one acquire-or-renew `Lock` call took, in seconds; label `key`.
pub const LEASE_RENEWAL_DURATION: &str = "lease_renewal_duration_seconds";
/// Counter: renewals that failed or timed out while the lease may still have been ours; label
/// `key`.
pub const LEASE_RENEWAL_FAILURES: &str = "lease_renewal_failures_total";

/// Whether this process holds the lock, observable by every part of it. Cloning shares it.
#[derive(Debug, Clone)]
pub struct LockStatus {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for LockStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl LockStatus {
    /// A status that says "not held".
    pub fn new() -> Self {
        Self { tx: Arc::new(watch::Sender::new(false)) }
    }

    /// True while the lock is held.
    pub fn is_held(&self) -> bool {
        *self.tx.borrow()
    }

    /// Records whether the lock is held (tests use this as a fake lock holder).
    pub fn set_held(&self, held: bool) {
        if self.tx.send_if_modified(|current| std::mem::replace(current, held) != held) {
            metrics::record_lock_held(held);
        }
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Waits until the status is `held`; returns false if `shutdown` came first.
    pub async fn wait_until(&self, held: bool, shutdown: &CancellationToken) -> bool {
        let mut rx = self.subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            reached = rx.wait_for(|h| *h == held) => reached.is_ok(),
        }
    }
}

/// What to lock: key, owner, value, TTL, and how often to renew or retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSpec {
    /// The Locket key.
    pub key: String,
    /// This process's identity (a random uuid per process).
    pub owner: String,
    /// The value others read: the advertised gRPC address.
    pub value: String,
    /// Lease time to live.
    pub ttl: Duration,
    /// Renewal (and standby retry) interval; also the bound on one `Lock` call.
    pub retry_interval: Duration,
}

impl LockSpec {
    /// How often a holder renews: the retry interval, but at most a third of the TTL.
    pub fn renew_interval(&self) -> Duration {
        self.retry_interval.min(self.ttl / 3).max(Duration::from_millis(1))
    }

    /// How soon a renewal that failed while the lease may still be ours is retried.
    pub fn retry_after_failure(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(1), self.renew_interval())
    }

    /// The `auctioneer` lock for `owner`, advertising `address`.
    pub fn auctioneer(
        owner: impl Into<String>,
        address: impl Into<String>,
        ttl: Duration,
        retry_interval: Duration,
    ) -> Self {
        Self { key: LOCK_KEY.to_owned(), owner: owner.into(), value: address.into(), ttl, retry_interval }
    }
}

/// The Locket calls leadership needs.
pub trait Locker: Send + Sync + 'static {
    /// Acquires or renews the lock; fails (ALREADY_EXISTS) while another owner holds it.
    fn lock<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Releases the lock if this owner holds it.
    fn release<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>>;
}

/// The tonic Locket client, talking to the BBS's `Locket` service.
#[derive(Debug)]
pub struct GrpcLocker {
    address: String,
    connector: Connector,
}

impl GrpcLocker {
    /// A client of the Locket at `address` (the BBS address); checks the address at once.
    pub fn new(address: impl Into<String>, timeout: Duration) -> Result<Self, ClientError> {
        let address = address.into();
        crate::connector::check_address(&address)?;
        Ok(Self { address, connector: Connector::new(timeout) })
    }

    fn client(&self) -> Result<locket_pb::locket_client::LocketClient<tonic::transport::Channel>, ClientError> {
        Ok(locket_pb::locket_client::LocketClient::new(self.connector.channel(&self.address)?))
    }
}

fn resource(spec: &LockSpec) -> locket_pb::Resource {
    locket_pb::Resource {
        key: spec.key.clone(),
        owner: spec.owner.clone(),
        value: spec.value.clone(),
        type_code: locket_pb::TypeCode::Lock as i32,
    }
}

impl Locker for GrpcLocker {
    fn lock<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            // Whole seconds on the wire; round up so the lease never outlives less than asked.
            let ttl = spec.ttl.as_millis().div_ceil(1000).max(1);
            let request = locket_pb::LockRequest {
                resource: Some(resource(spec)),
                ttl_in_seconds: i64::try_from(ttl).unwrap_or(i64::MAX),
            };
            self.client()?
                .lock(request)
                .await
                .map(|_| ())
                .map_err(|status| ClientError::call(format!("locket {}", self.address), "Lock", status))
        })
    }

    fn release<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let request = locket_pb::ReleaseRequest { resource: Some(resource(spec)) };
            self.client()?
                .release(request)
                .await
                .map(|_| ())
                .map_err(|status| ClientError::call(format!("locket {}", self.address), "Release", status))
        })
    }
}

/// Competes for the lock until `shutdown`, keeping `status` up to date; then releases it.
pub async fn hold(locker: Arc<dyn Locker>, spec: LockSpec, status: LockStatus, shutdown: CancellationToken) {
    // Whether the last attempt may have left us holding the lease (a cut-short call may have
    // succeeded on the server), so shutdown knows to release it.
    let mut maybe_held = false;
    let mut standing_by_logged = false;
    loop {
        let started = tokio::time::Instant::now();
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => {
                maybe_held = true;
                break;
            }
            attempt = tokio::time::timeout(spec.renew_interval(), locker.lock(&spec)) => attempt,
        };
        ::metrics::histogram!(LEASE_RENEWAL_DURATION, "key" => spec.key.clone())
            .record(started.elapsed().as_secs_f64());
        let error = match attempt {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("lock call timed out after {:?}", spec.renew_interval())),
        };
        let failed = error.is_some();
        if failed && maybe_held {
            ::metrics::counter!(LEASE_RENEWAL_FAILURES, "key" => spec.key.clone()).increment(1);
        }
        // A failure while the lease may still be ours is retried soon: the lease outlives it.
        let pause = if failed && maybe_held { spec.retry_after_failure() } else { spec.renew_interval() };
        match error {
            None => {
                maybe_held = true;
                if !status.is_held() {
                    tracing::info!(key = %spec.key, owner = %spec.owner, value = %spec.value, "acquired the lock; auctioning");
                    status.set_held(true);
                }
                standing_by_logged = false;
            }
            Some(error) if status.is_held() => {
                // Stop at once: the lease may run out before the next renewal.
                status.set_held(false);
                tracing::warn!(key = %spec.key, owner = %spec.owner, error = %error, "lost the lock; standing by");
                standing_by_logged = true;
            }
            Some(error) => {
                maybe_held = false;
                if !standing_by_logged {
                    tracing::info!(key = %spec.key, owner = %spec.owner, error = %error, "lock not acquired; standing by");
                    standing_by_logged = true;
                } else {
                    tracing::debug!(key = %spec.key, error = %error, "lock still not acquired");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(started + pause) => {}
        }
    }
    let was_held = status.is_held();
    status.set_held(false);
    if was_held || maybe_held {
        match tokio::time::timeout(spec.retry_interval, locker.release(&spec)).await {
            Ok(Ok(())) => tracing::info!(key = %spec.key, owner = %spec.owner, "released the lock"),
            Ok(Err(e)) => {
                tracing::warn!(key = %spec.key, error = %e, "cannot release the lock; it expires after its ttl")
            }
            Err(_) => {
                tracing::warn!(key = %spec.key, "releasing the lock timed out; it expires after its ttl")
            }
        }
    }
}
