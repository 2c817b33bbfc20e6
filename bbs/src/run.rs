//! Wiring: `run()` starts every part of a BBS on the listeners it is given.

use std::sync::Arc;

use db::sql::leases::LeaseType;
use db::{Store, StoreOptions};
use svc::config::IntoValid;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clients::{
    AuctioneerClient, AuctioneerLocator, ClientError, GrpcAuctioneerClient, GrpcRepClient, RepClient,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{BbsConfig, ConfigError};
use crate::controllers::Context;
use crate::events::{EventHub, KeyLocks};
use crate::leader::Leadership;
use crate::{admin, callbacks, convergence, encryption, grpc, locket, server};

/// Connections in the pool that serves Locket (reps' presences, the auctioneer's lock): its own,
/// so lease traffic never queues behind request work on the request pool.
const LOCKET_POOL_CONNECTIONS: u32 = 8;

pub use svc::process::Listeners;

/// Seams tests replace; `Default` gives the real ones.
#[derive(Default)]
pub struct Overrides {
    /// The auctioneer client (default: gRPC, address from config or the `auctioneer` lock).
    pub auctioneer: Option<Arc<dyn AuctioneerClient>>,
    /// The rep client (default: gRPC).
    pub reps: Option<Arc<dyn RepClient>>,
    /// The wall clock (default: the host's).
    pub clock: Option<Arc<dyn Clock>>,
    /// Where this BBS announces lost cells (default: a channel of its own); a test passes a
    /// sender it subscribed to.
    pub lost_cells: Option<broadcast::Sender<String>>,
}

/// Why the BBS stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The directory of the default SQLite database cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The encryption keys cannot be loaded (docs/security.md).
    #[error("encryption keys: {0}")]
    Keys(String),
    /// The database takes too small a statement for the requests the BBS must serve.
    #[error("max_request_bytes: {0}")]
    RequestLimit(String),
    /// The store could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] db::Error),
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    /// A request hit an unrecoverable store error; the process steps down.
    #[error("stepping down after an unrecoverable database error")]
    Unrecoverable,
}

/// The request limit the BBS serves with: `configured`, lowered to what the database takes in
/// one statement (`statement_limit`, MySQL's `max_allowed_packet`, less
/// [`db::STATEMENT_HEADROOM`]). A request over that would reach the database as a statement it
/// refuses by closing the connection, which looks like an outage. `Err` when that leaves less
/// than the smallest limit the components work with.
fn fit_request_limit(configured: usize, statement_limit: Option<u64>) -> Result<usize, String> {
    let Some(limit) = statement_limit else {
        return Ok(configured);
    };
    let fits = usize::try_from(limit.saturating_sub(db::STATEMENT_HEADROOM)).unwrap_or(usize::MAX);
    let serving = configured.min(fits);
    if serving < proto::limits::MIN_REQUEST_BYTES_LIMIT {
        return Err(format!(
            "the database takes statements of at most {limit} bytes (max_allowed_packet), which leaves \
             {serving} bytes for a request, less than the smallest limit ({} bytes); raise the server's \
             max_allowed_packet",
            proto::limits::MIN_REQUEST_BYTES_LIMIT
        ));
    }
    Ok(serving)
}

/// Finds the auctioneer: a fixed address, or the value of the `auctioneer` lock.
struct Locator {
    fixed: String,
    store: Store,
}

impl AuctioneerLocator for Locator {
    fn locate(&self) -> futures::future::BoxFuture<'_, Result<String, ClientError>> {
        Box::pin(async move {
            if !self.fixed.is_empty() {
                return Ok(self.fixed.clone());
            }
            match self.store.fetch_lease("auctioneer").await {
                Ok(lease) if !lease.value.is_empty() => Ok(lease.value),
                _ => Err(ClientError::NoAddress("the auctioneer (nobody holds the auctioneer lock)".into())),
            }
        })
    }
}

/// Runs a BBS until `shutdown`: competes for the `bbs` lease, serves reads, Locket and health
/// at once, writes and event streams while it leads, and releases the lease on the way out.
/// `config` is a checked [`svc::config::Valid`] one, or a plain one checked here. With no
/// `database_url`, the SQLite file's `data_dir` is created if it does not exist.
pub async fn run(
    config: impl IntoValid<BbsConfig>,
    listeners: Listeners,
    overrides: Overrides,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = config.into_valid()?;
    let security = config.tls.security()?;
    if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| RunError::DataDir { path: config.data_dir.clone(), source })?;
    }
    // Encryption at rest (docs/security.md): the keys come from the key file, the environment or
    // a key file generated on first start; the leader re-encrypts rows not under the active key.
    let env_keys = std::env::var(encryption::KEYS_ENV).ok();
    let (keys, key_source) = encryption::load_keys(&config, env_keys.as_deref()).map_err(RunError::Keys)?;
    tracing::info!(active = keys.active_label().unwrap_or_default(), source = ?key_source, "encryption keys loaded");
    // The database ends a transaction left idle for a third of the lock TTL (2 s to 5 s): one
    // of a BBS cut off from the database mid-transaction must not keep its share lock on the
    // `bbs` lease row, or no standby could take over.
    let store_options = StoreOptions { keys, ..StoreOptions::default() }.for_lease_ttl(config.lock_ttl);
    let store = Store::connect(&config.effective_database_url(), store_options).await?;
    let max_request_bytes =
        fit_request_limit(config.max_request_bytes, store.statement_limit()).map_err(RunError::RequestLimit)?;
    if max_request_bytes < config.max_request_bytes {
        tracing::warn!(
            configured = config.max_request_bytes,
            serving = max_request_bytes,
            statement_limit = store.statement_limit(),
            "max_request_bytes lowered to what the database takes in one statement (max_allowed_packet)"
        );
    }
    let locket_store = store.dedicated(LOCKET_POOL_CONNECTIONS, config.lock_retry_interval).await?;
    let grpc_address = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let advertise =
        if config.advertise_address.is_empty() { grpc_address.clone() } else { config.advertise_address.clone() };
    let owner =
        if config.instance_id.is_empty() { svc::lease::owner_for(&security) } else { config.instance_id.clone() };
    tracing::info!(grpc = %grpc_address, advertise = %advertise, owner = %owner, backend = store.backend().name(), "bbs starting");

    let leadership = Leadership::new(store.clone(), owner, advertise, config.lock_ttl, config.lock_retry_interval);
    let events = Arc::new(
        EventHub::new(config.event_buffer)
            .with_max_subscribers(config.max_event_subscribers)
            .with_max_subscribers_per_identity(config.max_event_subscribers_per_identity),
    );
    let (callbacks, callback_rx) = callbacks::Callbacks::channel();
    let ctx = Context {
        leadership: leadership.clone(),
        events: events.clone(),
        locks: Arc::new(KeyLocks::new(256)),
        recreate_locks: Arc::new(KeyLocks::new(64)),
        auctioneer: overrides.auctioneer.unwrap_or_else(|| {
            let locator = Locator { fixed: config.auctioneer_address.clone(), store: locket_store.clone() };
            Arc::new(GrpcAuctioneerClient::new(locator, config.communication_timeout, security.clone()))
        }),
        reps: overrides
            .reps
            .unwrap_or_else(|| Arc::new(GrpcRepClient::new(config.communication_timeout, security.clone()))),
        clock: overrides.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        crash_policy: config.crash_policy(),
        max_task_retries: config.max_task_retries,
        max_lrp_instances: config.max_lrp_instances,
        callbacks,
        lost_cells: overrides.lost_cells.unwrap_or_else(|| broadcast::channel(LOST_CELLS_BUFFER).0),
        removed_lately: Arc::default(),
    };

    let stop = shutdown.child_token();
    let fatal = CancellationToken::new();
    // How late ready tasks run (svc::lag): a stall shows in the metrics and the log.
    svc::lag::spawn_monitor("bbs", stop.clone());
    // The election renews the bbs lease on a thread, runtime and pool of its own.
    let election = leadership.clone().spawn(stop.clone());
    let callback_pool = callbacks::spawn_workers(
        ctx.clone(),
        callback_rx,
        config.callback_workers,
        config.communication_timeout,
        callbacks::HttpClient::new(&callbacks::CallbackTls::from_config(&config)?),
        stop.clone(),
    );
    tokio::spawn(watch_leadership(leadership.clone(), events.clone(), stop.clone()));
    tokio::spawn(watch_presences(
        leadership.clone(),
        config.presence_check_interval,
        ctx.lost_cells.clone(),
        stop.clone(),
    ));
    tokio::spawn(
        admin::admin(leadership.clone())
            .events(events.clone())
            .tls(config.tls.admin_tls(&security))
            .serve(listeners.admin, stop.clone()),
    );
    let reencryption = encryption::spawn_reencryption(
        leadership.clone(),
        encryption::ReencryptOptions::from_config(&config),
        stop.clone(),
    );

    // Convergence: acts only while this process leads (the provider hands out the fenced
    // writer), is kicked by every lost cell and by winning the lease.
    let provider_leadership = leadership.clone();
    let provider: converger::StoreProvider = Arc::new(move || provider_leadership.writer().ok());
    let converger = converger::spawn(
        provider,
        Arc::new(convergence::ContextEffects::new(ctx.clone(), config.communication_timeout, security.clone())),
        ctx.clock.clone(),
        config.convergence(),
        stop.clone().cancelled_owned(),
    );
    let converger =
        tokio::spawn(kick_converger(leadership.clone(), converger, ctx.lost_cells.subscribe(), stop.clone()));

    let server = server::serve(
        listeners.grpc,
        grpc::BbsService::new(ctx, fatal.clone()),
        locket::LocketService::with_limits(locket_store.clone(), locket::LocketLimits::from_config(&config)),
        &security,
        max_request_bytes,
        stop.clone(),
    );
    tokio::pin!(server);
    let mut server_done = false;
    let outcome = tokio::select! {
        result = &mut server => {
            server_done = true;
            result.map_err(RunError::from)
        }
        _ = fatal.cancelled() => Err(RunError::Unrecoverable),
        _ = stop.cancelled() => Ok(()),
    };
    stop.cancel();
    // Let the server drain (unless it already ended) and the election release the lease.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        if !server_done {
            let _ = (&mut server).await;
        }
        let _ = election.await;
        let _ = callback_pool.await;
        // The pass in flight ends before the store it writes to closes.
        let _ = converger.await;
        let _ = reencryption.await;
    })
    .await;
    locket_store.close().await;
    store.close().await;
    tracing::info!("bbs stopped");
    outcome
}

/// Kicks a convergence pass when this process becomes the leader and for every lost cell; once
/// stopped, returns when the converger's loop has ended.
async fn kick_converger(
    leadership: Arc<Leadership>,
    converger: converger::ConvergerHandle,
    lost: broadcast::Receiver<String>,
    stop: CancellationToken,
) {
    follow(&leadership, &converger, lost, &stop).await;
    // The converger stops on `stop` too; wait for its pass in flight.
    stop.cancelled().await;
    converger.join().await;
}

async fn follow(
    leadership: &Leadership,
    converger: &converger::ConvergerHandle,
    mut lost: broadcast::Receiver<String>,
    stop: &CancellationToken,
) {
    let mut changes = leadership.subscribe();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() { return }
                if leadership.is_leader() {
                    converger.kick();
                }
            }
            cell = lost.recv() => match cell {
                Ok(cell) => match proto::models::CellId::parse(cell) {
                    Ok(cell) => converger.report_lost_cell(cell),
                    Err(e) => tracing::warn!(error = %e, "ignoring a lost cell with an invalid id"),
                },
                Err(broadcast::error::RecvError::Lagged(_)) => converger.kick(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Ends every event stream whenever this process stops leading, and when it stops: the
/// server's graceful shutdown waits for open streams, which a subscriber (a router, `diego
/// events`) would otherwise hold until the drain limit.
async fn watch_leadership(leadership: Arc<Leadership>, events: Arc<EventHub>, stop: CancellationToken) {
    let mut changes = leadership.subscribe();
    let mut was_leader = leadership.is_leader();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                events.close_all();
                return;
            }
            changed = changes.changed() => if changed.is_err() { return },
        }
        let leading = leadership.is_leader();
        if was_leader && !leading {
            events.close_all();
        }
        was_leader = leading;
    }
}

/// Lost cells announced and not yet read before the converger is kicked for a full pass instead.
const LOST_CELLS_BUFFER: usize = 1024;

/// While leading, notices expired cell presences every `interval` (instead of waiting for a
/// 30 s convergence poll), removes them and announces each lost cell.
async fn watch_presences(
    leadership: Arc<Leadership>,
    interval: std::time::Duration,
    lost: broadcast::Sender<String>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Ok(store) = leadership.writer() else { continue };
        match store.take_expired_leases(LeaseType::Presence).await {
            Ok(expired) => {
                for lease in expired {
                    tracing::warn!(cell_id = %lease.key, "cell presence expired: the cell is lost");
                    metrics::counter!("bbs_cells_lost_total").increment(1);
                    let _ = lost.send(lease.key);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check cell presences"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit_request_limit;

    const MIB: usize = 1024 * 1024;
    const HEADROOM: usize = db::STATEMENT_HEADROOM as usize;

    #[test]
    fn the_request_limit_fits_the_databases_statements() {
        // No statement limit (PostgreSQL, SQLite), or one far above the requests.
        assert_eq!(fit_request_limit(4 * MIB, None), Ok(4 * MIB));
        assert_eq!(fit_request_limit(4 * MIB, Some(64 * MIB as u64)), Ok(4 * MIB));
        // MariaDB's default of 16 MiB under a configured 32 MiB.
        assert_eq!(fit_request_limit(32 * MIB, Some(16 * MIB as u64)), Ok(16 * MIB - HEADROOM));
        // MySQL 5.7's default of 4 MiB under the default limit.
        assert_eq!(fit_request_limit(4 * MIB, Some(4 * MIB as u64)), Ok(4 * MIB - HEADROOM));
        // Too small to serve the components' batches.
        let err = fit_request_limit(4 * MIB, Some(MIB as u64)).unwrap_err();
        assert!(err.contains("max_allowed_packet") && err.contains("1048576"), "{err}");
    }
}
