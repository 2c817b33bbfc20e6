//! Wiring of one rep process (reference 2.1): the executor, the generator consuming its events,
//! the presence, the admin server, bulk sync, the evacuator, and the gRPC server, all on
//! listeners and clients that are handed in. [`run`] builds the real BBS client and runtime from
//! the configuration; [`run_with`] takes them as [`Deps`], so tests and `diego dev` run many
//! cells in one process.
//!
//! [`run_observed`] also lists the rep's admin view in a [`CellViews`] while it runs, so one
//! `/metrics` page can show every in-process cell.
//!
//! Stopping: cancelling `shutdown` starts evacuation (as SIGUSR1 does in the binary), and the rep returns once
//! the cell is empty or the evacuation timeout expired. Cancelling [`Deps::stop`] stops at once:
//! servers close and the containers are stopped and deleted without handing anything over.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::models::{CellCapacity, CellId};
use svc::config::IntoValid;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminView, SnapshotFn};
use crate::bbs_client::{BbsClient, BbsError, GrpcBbsClient};
use crate::bulk_sync::{self, BulkSync};
use crate::config::{ConfigError, RepConfig, RuntimeKind};
use crate::context::{CellInfo, RepContext, concrete_host};
use crate::evacuation::{EvacuationOutcome, Evacuator};
use crate::executor::{ContainerState, Executor, ExecutorConfig, Resources};
use crate::generator::Generator;
use crate::metrics::CellSnapshot;
use crate::presence::{CellAdvert, Presence};
use crate::recovery::RecoveryService;
use crate::rootfs::{HOST_BUSYBOX, RootfsError, prepare_busybox_rootfs};
use crate::runtime::ContainerRuntime;
use crate::runtime::process::{ProcessConfig, ProcessRuntime};
use crate::runtime::runc::{RuncConfig, RuncRuntime};
use crate::runtime::sim::{SimConfig, SimRuntime};
use crate::server;
use crate::service::RepService;

pub use svc::process::Listeners;

/// What the rep talks to, injectable for in-process clusters and tests.
#[derive(Clone)]
pub struct Deps {
    /// The BBS and its Locket.
    pub bbs: Arc<dyn BbsClient>,
    /// Where containers run.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Cancel to stop at once, without evacuating (a second SIGTERM, or test teardown).
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").field("runtime", &self.runtime.name()).finish_non_exhaustive()
    }
}

impl Deps {
    /// The tonic BBS client at `config.bbs_address` (with the configured transport security)
    /// and the runtime `config.runtime` names.
    pub fn from_config(config: &RepConfig) -> Result<Self, RunError> {
        let security = config.tls.security()?;
        let bbs: Arc<dyn BbsClient> =
            Arc::new(GrpcBbsClient::new(config.bbs_address.clone(), config.communication_timeout, security)?);
        let runtime: Arc<dyn ContainerRuntime> = match config.runtime {
            RuntimeKind::Process => Arc::new(ProcessRuntime::with_config(ProcessConfig {
                cgroup_parent: config.cgroup_parent.clone(),
                logs: config.logs.clone(),
                ..ProcessConfig::new(&config.data_dir)
            })),
            RuntimeKind::Runc => {
                let mut runc = RuncConfig::new(config.data_dir.clone());
                runc.logs = config.logs.clone();
                if !config.cgroup_parent.trim_matches('/').is_empty() {
                    runc.cgroup_parent = config.cgroup_parent.trim_matches('/').to_owned();
                }
                Arc::new(RuncRuntime::new(runc))
            }
            RuntimeKind::Sim => Arc::new(SimRuntime::new(SimConfig {
                healthy_after: config.sim_start_delay,
                task_duration: config.sim_task_duration,
                ..SimConfig::default()
            })),
        };
        Ok(Self { bbs, runtime, stop: CancellationToken::new() })
    }
}

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The BBS client could not be built (a malformed address).
    #[error("cannot build the bbs client: {0}")]
    Bbs(#[from] BbsError),
    /// The default rootfs could not be prepared.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("grpc server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

/// Runs a rep with the tonic BBS client and the configured runtime. See [`run_with`].
pub async fn run(
    config: impl IntoValid<RepConfig>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let config = config.into_valid()?;
    let deps = Deps::from_config(&config)?;
    run_with(config, listeners, deps, shutdown).await
}

/// Runs a rep with the given BBS client and runtime until it has evacuated after `shutdown`
/// (or the `Evacuate` RPC), or until `deps.stop`.
pub async fn run_with(
    config: impl IntoValid<RepConfig>,
    listeners: Listeners,
    deps: Deps,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_observed(config, listeners, deps, shutdown, &CellViews::new()).await
}

/// The admin views of the reps running in this process, by cell id, so that one `/metrics`
/// page can show every in-process cell (`diego dev`): a rep's own page records only its own
/// cell's snapshot, on its own scrapes. Cloning shares the set.
#[derive(Clone, Default)]
pub struct CellViews {
    views: Arc<Mutex<BTreeMap<String, SnapshotFn>>>,
}

impl std::fmt::Debug for CellViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellViews").field("cells", &self.lock().keys().cloned().collect::<Vec<_>>()).finish()
    }
}

impl CellViews {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fresh snapshot of every running cell in the process's metrics recorder (what
    /// a rep's `/metrics` does for its own cell before rendering).
    pub fn record(&self) {
        let views: Vec<SnapshotFn> = self.lock().values().cloned().collect();
        for view in views {
            crate::metrics::record_snapshot(&view().snapshot);
        }
    }

    /// The cell ids of the running reps.
    pub fn cells(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SnapshotFn>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`run_with`], with the rep's admin view in `views` while it runs.
pub async fn run_observed(
    config: impl IntoValid<RepConfig>,
    listeners: Listeners,
    deps: Deps,
    shutdown: CancellationToken,
    views: &CellViews,
) -> Result<(), RunError> {
    let config = config.into_valid()?;
    let security = config.tls.security()?;
    let cell_id =
        CellId::parse(config.cell_id.clone()).map_err(|e| ConfigError::Invalid { field: "cell_id", rule: e.rule })?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| RunError::DataDir { path: config.data_dir.clone(), source })?;
    let mut rootfs = config.rootfs.clone();
    if rootfs.is_empty() && config.runtime == RuntimeKind::Runc {
        let dir = config.data_dir.join("rootfs").join(crate::config::DEFAULT_ROOTFS);
        rootfs.insert(crate::config::DEFAULT_ROOTFS.to_owned(), prepare_busybox_rootfs(&dir, HOST_BUSYBOX.as_ref())?);
    }

    let grpc_address = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let admin_address = listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let rep_address = if config.advertise_address.trim().is_empty() {
        grpc_address.clone()
    } else {
        config.advertise_address.clone()
    };
    if concrete_host(&rep_address).is_none() {
        tracing::warn!(grpc = %grpc_address, "listening on an unspecified address without advertise_address: the bbs and auctioneers cannot reach this rep from another host");
    }
    let host_address = if config.host_address.trim().is_empty() {
        concrete_host(&rep_address).unwrap_or_default()
    } else {
        config.host_address.clone()
    };
    let total = Resources::new(config.memory_mb, config.disk_mb, config.containers);
    let executor = Executor::new(
        ExecutorConfig {
            reservation_timeout: config.reserved_expiration_time,
            graceful_stop: config.graceful_shutdown_interval,
            route_drain: config.route_drain,
            healthy_interval: config.healthy_monitoring_interval,
            rootfs,
            ..ExecutorConfig::new(total, config.data_dir.join("executor"))
        },
        Arc::clone(&deps.runtime),
    );
    let cell = CellInfo {
        cell_id: cell_id.clone(),
        zone: config.zone.clone(),
        rep_address: rep_address.clone(),
        host_address,
        rootfs_names: config.rootfs_names(),
        placement_tags: config.placement_tags.clone(),
        optional_placement_tags: config.optional_placement_tags.clone(),
    };
    let owner = svc::lease::owner_for(&security);
    tracing::info!(cell_id = %cell_id, grpc = %grpc_address, admin = %admin_address, advertise = %rep_address, runtime = deps.runtime.name(), owner = %owner, bbs = %config.bbs_address, "rep starting");

    let ctx = Arc::new(RepContext::new(cell.clone(), executor.clone(), Arc::clone(&deps.bbs)));
    let generator = Generator::new(Arc::clone(&ctx));
    // Subscribe before anything can be reserved, so no reserved event is missed.
    let events = executor.subscribe();
    let halt = CancellationToken::new();
    let kick = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(Arc::clone(&generator).run(events, Arc::clone(&kick), halt.clone())));
    // A BBS whose database forgot what runs asks for a bulk sync at once (issue 19).
    let recovery = RecoveryService::new(Arc::clone(&ctx), Arc::clone(&kick));

    let advert = CellAdvert {
        cell_id: cell.cell_id.clone(),
        rep_address: cell.rep_address.clone(),
        zone: cell.zone.clone(),
        capacity: CellCapacity { memory_mb: total.memory_mb, disk_mb: total.disk_mb, containers: total.containers },
        rootfs_names: cell.rootfs_names.clone(),
        placement_tags: cell.placement_tags.clone(),
        optional_placement_tags: cell.optional_placement_tags.clone(),
    };
    let presence =
        Presence::new(Arc::clone(&deps.bbs), &advert, owner, config.presence_ttl, config.presence_retry_interval);
    let presence_status = presence.status();
    let presence_task = tokio::spawn(presence.run(halt.clone()));
    svc::lag::spawn_monitor("rep", halt.clone());

    let view: SnapshotFn = {
        let (ctx, presence_status) = (Arc::clone(&ctx), presence_status.clone());
        Arc::new(move || AdminView { snapshot: snapshot(&ctx), presence_held: presence_status.is_held() })
    };
    views.lock().insert(cell_id.to_string(), Arc::clone(&view));
    tasks.push(tokio::spawn(admin::serve(listeners.admin, view, config.tls.admin_tls(&security), halt.clone())));
    tasks.push(tokio::spawn({
        let sync = BulkSync::new(Arc::clone(&generator));
        let (polling, evacuation_polling, halt) =
            (config.polling_interval, config.evacuation_polling_interval, halt.clone());
        async move {
            // The previous run's records first, so their replacements need not wait for a
            // polling and a convergence interval.
            bulk_sync::startup(&sync, &presence_status, polling, &halt).await;
            bulk_sync::run(sync, polling, evacuation_polling, kick, halt).await;
        }
    }));
    let evacuator =
        Evacuator::new(Arc::clone(&generator), config.evacuation_polling_interval, config.evacuation_timeout);
    tasks.push(tokio::spawn({
        let halt = halt.clone();
        async move {
            let outcome = evacuator.run(halt.clone()).await;
            if outcome != EvacuationOutcome::Aborted {
                tracing::info!(?outcome, "evacuation finished; the rep exits");
                halt.cancel();
            }
        }
    }));
    tasks.push(tokio::spawn({
        let (halt, evacuation) = (halt.clone(), ctx.evacuation.clone());
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if evacuation.start() {
                        tracing::info!("shutdown requested; evacuating");
                    }
                }
                _ = halt.cancelled() => {}
            }
        }
    }));
    tasks.push(tokio::spawn({
        let (halt, stop) = (halt.clone(), deps.stop.clone());
        async move {
            tokio::select! {
                _ = stop.cancelled() => {
                    tracing::info!("stop requested; stopping without evacuating");
                    halt.cancel();
                }
                _ = halt.cancelled() => {}
            }
        }
    }));

    let service = RepService::new(Arc::clone(&generator));
    let result = server::serve(
        listeners.grpc,
        service,
        recovery,
        ctx.evacuation.clone(),
        &security,
        server::Limits { max_request_bytes: config.max_request_bytes, max_exec_sessions: config.max_exec_sessions },
        halt.clone(),
    )
    .await;
    halt.cancel();

    // Whatever is left (nothing after a complete evacuation) is stopped and deleted.
    let grace = config.graceful_shutdown_interval + Duration::from_secs(5);
    if tokio::time::timeout(grace, executor.shutdown_and_wait()).await.is_err() {
        tracing::warn!(cell_id = %cell_id, "containers did not all stop in time");
    }
    // The presence task releases the presence; bound the wait by its call timeout.
    let _ = tokio::time::timeout(config.presence_retry_interval + Duration::from_secs(1), presence_task).await;
    for task in tasks {
        task.abort();
    }
    // The page shows the cell empty, not as it last was.
    if let Some(view) = views.lock().remove(cell_id.as_str()) {
        crate::metrics::record_snapshot(&view().snapshot);
    }
    tracing::info!(cell_id = %cell_id, "rep stopped");
    result.map_err(RunError::from)
}

/// Capacity, containers by state and the evacuation flag, for `/metrics` and `/healthz`.
fn snapshot(ctx: &RepContext) -> CellSnapshot {
    let containers = ctx.executor.list();
    let by_state = ContainerState::ALL
        .into_iter()
        .map(|state| (state.as_str(), containers.iter().filter(|c| c.state == state).count()))
        .collect();
    let triple = |r: Resources| (r.memory_mb, r.disk_mb, r.containers);
    CellSnapshot {
        cell_id: ctx.cell.cell_id.to_string(),
        total: triple(ctx.executor.total()),
        available: triple(ctx.executor.available()),
        containers_by_state: by_state,
        evacuating: ctx.evacuation.is_set(),
    }
}
