//! Leadership: only the auctioneer holding the `auctioneer` lock in the BBS's Locket auctions.
//!
//! [`hold`] keeps the lock with the service toolkit's one lease holder ([`svc::lease`]): it
//! acquires the lock and renews it every retry interval (reference §1.1; TTL 15 s, retry 5 s by
//! default), at most a third of the TTL apart, retrying soon after a failure while the lease may
//! still be ours, and releasing it on shutdown so a standby takes over without waiting for the
//! TTL. This module says only what a lock call is (a Locket `Lock` / `Release` through
//! [`Locker`]) and what holding it means: the lock's value is this auctioneer's advertised gRPC
//! address, which is how the BBS finds the active auctioneer, and [`LockStatus`] tells the rest
//! of the process whether the lock is held: the gRPC service refuses start requests with
//! UNAVAILABLE while standing by, and the auction loop stops at once when the lock is lost. The
//! lock is not fenced, so a renewal that fails or takes longer than the renew interval counts as
//! losing it: this process stops auctioning before the lease can expire and another auctioneer
//! take over.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::pb::locket::v1 as locket_pb;
use svc::lease::{Attempt, Fencing, HeldStatus, LeaseCalls, LeaseHolder, LeaseTiming, Report};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::connector::Connector;
use crate::error::ClientError;
use crate::metrics;

pub use svc::lease::{LEASE_RENEWAL_DURATION, LEASE_RENEWAL_FAILURES};

/// The Locket key the active auctioneer holds.
pub const LOCK_KEY: &str = "auctioneer";

/// Whether this process holds the lock, observable by every part of it. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct LockStatus {
    status: HeldStatus,
}

impl LockStatus {
    /// A status that says "not held".
    pub fn new() -> Self {
        Self::default()
    }

    /// True while the lock is held.
    pub fn is_held(&self) -> bool {
        self.status.is_held()
    }

    /// Records whether the lock is held (tests use this as a fake lock holder).
    pub fn set_held(&self, held: bool) {
        if self.status.set(held) {
            metrics::record_lock_held(held);
        }
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.status.subscribe()
    }

    /// Waits until the status is `held`; returns false if `shutdown` came first.
    pub async fn wait_until(&self, held: bool, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = self.status.wait_until(held) => true,
        }
    }
}

/// What to lock: key, owner, value, TTL, and how often to renew or retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSpec {
    /// The Locket key.
    pub key: String,
    /// This process's lease owner: its identity URI and a random instance (`svc::lease::owner_for`).
    pub owner: String,
    /// The value others read: the advertised gRPC address.
    pub value: String,
    /// Lease time to live.
    pub ttl: Duration,
    /// Renewal (and standby retry) interval; also the bound on one `Lock` call.
    pub retry_interval: Duration,
}

impl LockSpec {
    /// The lease timing: TTL and retry interval.
    pub fn timing(&self) -> LeaseTiming {
        LeaseTiming::new(self.ttl, self.retry_interval)
    }

    /// How often a holder renews: the retry interval, but at most a third of the TTL.
    pub fn renew_interval(&self) -> Duration {
        self.timing().renew_interval()
    }

    /// How soon a renewal that failed while the lease may still be ours is retried.
    pub fn retry_after_failure(&self) -> Duration {
        self.timing().retry_after_failure()
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
    /// A client of the Locket at `address` (the BBS address), with `security` (under mutual
    /// TLS the server must be a `diego://bbs`); checks the address at once.
    pub fn new(
        address: impl Into<String>,
        timeout: Duration,
        security: svc::tls::Security,
    ) -> Result<Self, ClientError> {
        let address = address.into();
        crate::connector::check_address(&address)?;
        let options = svc::connect::ChannelOptions::new(timeout, security).expect(svc::identity::Role::Bbs);
        Ok(Self { address, connector: Connector::with_options(options) })
    }

    fn client(&self) -> Result<locket_pb::locket_client::LocketClient<tonic::transport::Channel>, ClientError> {
        Ok(locket_pb::locket_client::LocketClient::new(self.connector.channel(&self.address)?))
    }
}

fn resource(spec: &LockSpec) -> locket_pb::Resource {
    svc::lease::locket::resource(&spec.key, &spec.owner, &spec.value, locket_pb::TypeCode::Lock)
}

impl Locker for GrpcLocker {
    fn lock<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let request = svc::lease::locket::lock_request(resource(spec), spec.ttl);
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

/// The `auctioneer` lock as a lease: Locket calls, and the status they drive.
struct AuctioneerLock {
    locker: Arc<dyn Locker>,
    spec: LockSpec,
    status: LockStatus,
}

impl LeaseCalls for AuctioneerLock {
    type Held = ();

    fn key(&self) -> &str {
        &self.spec.key
    }

    fn acquire(&self) -> BoxFuture<'_, Attempt<()>> {
        Box::pin(async move {
            match self.locker.lock(&self.spec).await {
                Ok(()) => Attempt::Held(()),
                // Locket's refusals and failures look alike; either way the lease may still be
                // ours until its TTL runs out, so both count as failures.
                Err(e) => Attempt::Failed { error: e.to_string(), maybe_applied: false },
            }
        })
    }

    fn release(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.locker.release(&self.spec).await.map_err(|e| e.to_string()) })
    }

    fn report(&self, report: &Report<'_, ()>) {
        let spec = &self.spec;
        if report.after.is_held() {
            if !self.status.is_held() {
                tracing::info!(key = %spec.key, owner = %spec.owner, value = %spec.value, "acquired the lock; auctioning");
            }
            self.status.set_held(true);
        } else if self.status.is_held() {
            // Stop at once: the lease may run out before the next renewal.
            self.status.set_held(false);
            if !report.stopping {
                let error = report.error.unwrap_or("refused");
                tracing::warn!(key = %spec.key, owner = %spec.owner, %error, "lost the lock; standing by");
            }
        } else if let Some(error) = report.error {
            if report.failures <= 1 {
                tracing::info!(key = %spec.key, owner = %spec.owner, %error, "lock not acquired; standing by");
            } else {
                tracing::debug!(key = %spec.key, %error, "lock still not acquired");
            }
        }
    }
}

/// Competes for the lock until `shutdown`, keeping `status` up to date; then releases it.
pub async fn hold(locker: Arc<dyn Locker>, spec: LockSpec, status: LockStatus, shutdown: CancellationToken) {
    let timing = spec.timing();
    LeaseHolder::new(AuctioneerLock { locker, spec, status }, timing, Fencing::Unfenced).run(shutdown).await;
}
