//! The auctioneer: batches LRP and task start requests, fetches cell state, places work with a
//! pure seeded `solve()`, dispatches it to reps and reports placement failures to the BBS.
//! Comments here cite `reference §N.N`: docs/reference/auction-rep.md §N.N.
//!
//! - [`placement`]: the pure, deterministic placement core (`placement::solve`).
//! - [`service`] and [`server`]: the `Auctioneer` gRPC service (plus health and reflection),
//!   which validates start requests and adds them to the [`batch`].
//! - [`runner`]: one auction per wake-up: drain, fetch [`cells`], solve, `Perform`, report.
//! - [`bbs_client`], [`rep_client`], [`lock`]: the outbound seams, each a trait with a tonic
//!   implementation (channels from [`connector`]) and a recording fake in `testing` (feature
//!   `testing`).
//! - [`lock`]: only the holder of the `auctioneer` Locket lock auctions; standbys wait.
//! - [`config`], [`admin`] (`/healthz`, `/metrics`), [`metrics`], [`error`].
//!
//! [`run`] wires it all on listeners it is given; it binds nothing itself, so tests and
//! `diego dev` run it on port 0 in one process.

pub mod admin;
pub mod batch;
pub mod bbs_client;
pub mod cells;
pub mod config;
pub mod connector;
pub mod error;
pub mod lock;
pub mod metrics;
pub mod placement;
pub mod rep_client;
pub mod runner;
pub mod server;
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use svc::config::IntoValid;
use svc::tls::Security;
use tokio_util::sync::CancellationToken;

pub use batch::{AuctionBatch, Work};
pub use bbs_client::{BbsClient, CellPresence, GrpcBbsClient, LrpKey};
pub use config::{AuctioneerConfig, ConfigError, ConfigOverrides};
pub use error::{ClientError, RunError};
pub use lock::{GrpcLocker, LockSpec, LockStatus, Locker};
pub use rep_client::{GrpcRepClient, RepClient};
pub use runner::{AuctionReport, AuctionRunner, RunnerConfig};

pub use svc::process::Listeners;

/// The outbound clients; [`Clients::grpc`] builds the real ones from the configuration, and
/// tests or an in-process cluster pass fakes or their own.
#[derive(Clone)]
pub struct Clients {
    /// The BBS (`Cells`, `FailActualLRP`, `RejectTask`).
    pub bbs: Arc<dyn BbsClient>,
    /// The reps (`State`, `Perform`).
    pub reps: Arc<dyn RepClient>,
    /// The Locket holding the `auctioneer` lock.
    pub locker: Arc<dyn Locker>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

impl Clients {
    /// The tonic clients: BBS and Locket at `config.bbs_address`, reps at their presences'
    /// addresses, all with `security`.
    pub fn grpc(config: &AuctioneerConfig, security: &Security) -> Result<Self, ClientError> {
        let (address, timeout) = (config.bbs_address.clone(), config.communication_timeout);
        Ok(Self {
            bbs: Arc::new(GrpcBbsClient::new(address.clone(), timeout, security.clone())?),
            reps: Arc::new(GrpcRepClient::new(config.cell_state_timeout, timeout, security.clone())),
            locker: Arc::new(GrpcLocker::new(address, timeout, security.clone())?),
        })
    }
}

/// Runs an auctioneer with the tonic clients until `shutdown`. See [`run_with`].
pub async fn run(
    config: impl IntoValid<AuctioneerConfig>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = config.into_valid()?;
    let clients = Clients::grpc(&config, &config.tls.security()?)?;
    run_with(config, listeners, clients, shutdown).await
}

/// Runs an auctioneer with the given clients until `shutdown`: serves gRPC and admin at once,
/// competes for the `auctioneer` lock (advertising `advertise_address`, or the bound gRPC
/// address), accepts start requests and auctions only while holding it, and releases it on
/// the way out. `config` is a checked [`svc::config::Valid`] one, or a plain one checked here.
pub async fn run_with(
    config: impl IntoValid<AuctioneerConfig>,
    listeners: Listeners,
    clients: Clients,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = config.into_valid()?;
    let security = config.tls.security()?;
    let grpc_address = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let admin_address = listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let advertise = if config.advertise_address.trim().is_empty() {
        if listeners.grpc.local_addr().is_ok_and(|a| a.ip().is_unspecified()) {
            tracing::warn!(grpc = %grpc_address, "listening on an unspecified address without advertise_address: the bbs cannot reach this auctioneer from another host");
        }
        grpc_address.clone()
    } else {
        config.advertise_address.clone()
    };
    let owner = svc::lease::owner_for(&security);
    tracing::info!(grpc = %grpc_address, admin = %admin_address, advertise = %advertise, owner = %owner, bbs = %config.bbs_address, seed = config.seed, "auctioneer starting");

    let stop = shutdown.child_token();
    svc::lag::spawn_monitor("auctioneer", stop.clone());
    let status = LockStatus::new();
    let batch = Arc::new(AuctionBatch::with_limits(config.max_pending_starts, config.max_pending_bytes));
    let spec = LockSpec::auctioneer(owner, advertise, config.lock_ttl, config.lock_retry_interval);
    let lock_task = tokio::spawn(lock::hold(clients.locker.clone(), spec, status.clone(), stop.clone()));
    let admin_task = tokio::spawn(
        admin::admin(status.clone()).tls(config.tls.admin_tls(&security)).serve(listeners.admin, stop.clone()),
    );
    let runner = AuctionRunner::new(
        batch.clone(),
        clients.bbs.clone(),
        clients.reps.clone(),
        RunnerConfig::from_config(&config),
    );
    let auction_task = tokio::spawn(auction_while_holding(runner, status.clone(), stop.clone()));

    let service = service::AuctioneerService::new(batch, status.clone());
    let result =
        server::serve(listeners.grpc, service, status, &security, config.max_request_bytes, stop.clone()).await;
    stop.cancel();
    // The lock task releases the lock; give it (and the rest) a bounded time to finish.
    let grace = config.lock_retry_interval + Duration::from_secs(1);
    let _ = tokio::time::timeout(grace, async {
        let _ = lock_task.await;
        let _ = auction_task.await;
        let _ = admin_task.await;
    })
    .await;
    tracing::info!("auctioneer stopped");
    result.map_err(RunError::from)
}

/// Runs auctions only while the lock is held: waits for the lock, drives the runner until the
/// lock is lost (cutting short an auction in flight), drops what was pending, and waits again.
async fn auction_while_holding(mut runner: AuctionRunner, status: LockStatus, stop: CancellationToken) {
    loop {
        if !status.wait_until(true, &stop).await {
            return;
        }
        let term = stop.child_token();
        let watch_lock = {
            let status = status.clone();
            let term = term.clone();
            async move {
                status.wait_until(false, &term).await;
                term.cancel();
            }
        };
        let (returned, ()) = tokio::join!(runner::run(runner, term.clone()), watch_lock);
        runner = returned;
        let dropped = runner.batch().clear();
        if dropped > 0 {
            tracing::info!(dropped, "dropped pending work after losing the lock; the bbs re-auctions it");
        }
    }
}
