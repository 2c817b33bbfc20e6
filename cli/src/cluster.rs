//! A whole cluster in one process: a BBS, an auctioneer and N cell reps on loopback, over one
//! database. `diego dev` runs one with Diego's timings; the end-to-end suite runs them with
//! intervals shortened so tests take seconds; the smoke benchmark (`benchmark-bbs smoke`) joins
//! an auctioneer and N sim cells to the BBS it started itself ([`Cluster::join`]). The HTTP
//! router ([`Cluster::start_router`], in `cluster/router.rs`) joins when asked.

mod bbs_restart;
mod router;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The router's configuration, for [`ClusterSpec::router_config`].
pub use ::router::RouterConfig;
use auctioneer::config::AuctioneerConfig;
use bbs::config::BbsConfig;
use cell_rep::rep::CellViews;
use cell_rep::{RepConfig, RuntimeKind};
use proto::pb::bbs::v1::bbs_client::BbsClient;
use svc::identity::Role;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// How long connecting to a component of the cluster may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Cluster::shutdown`] waits for each component to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a cluster is built.
pub struct ClusterSpec {
    /// The BBS's database URL.
    pub database_url: String,
    /// Where reps keep their containers (each in `cell-N/`).
    pub data_dir: PathBuf,
    /// The BBS's gRPC listen address (`127.0.0.1:0` picks a free port).
    pub bbs_listen: String,
    /// Number of cells.
    pub cells: usize,
    /// Container runtime of every cell.
    pub runtime: RuntimeKind,
    /// Memory per cell in MB.
    pub cell_memory_mb: i32,
    /// Changes to the BBS configuration.
    pub bbs: Box<dyn FnOnce(&mut BbsConfig) + Send>,
    /// Changes to every rep's configuration.
    pub rep: Arc<dyn Fn(&mut RepConfig) + Send + Sync>,
    /// Whether to start the auctioneer.
    pub auctioneer: bool,
    /// Changes to the auctioneer's configuration (also applied when it is started later).
    pub auctioneer_config: Arc<dyn Fn(&mut AuctioneerConfig) + Send + Sync>,
    /// Test timings (short leases, TTLs, polling and convergence intervals) instead of Diego's.
    pub fast: bool,
    /// Where the cluster's CA and certificates live (made on first start, kept after); every
    /// component speaks mutual TLS with its own identity. `None`: plaintext, for experiments.
    pub tls_dir: Option<PathBuf>,
    /// Extra names (DNS or IP) the components' certificates are valid for, besides loopback.
    pub tls_hosts: Vec<String>,
    /// Where the HTTP router listens, when the cluster runs one (`None`: no router; tests start
    /// it with [`Cluster::start_router`]).
    pub router: Option<String>,
    /// Changes to the router's configuration (after the test timings).
    pub router_config: Arc<dyn Fn(&mut RouterConfig) + Send + Sync>,
}

impl ClusterSpec {
    /// `cells` cells of `runtime` over `database_url`, with test timings on a free port.
    pub fn new(database_url: String, data_dir: PathBuf, cells: usize, runtime: RuntimeKind) -> Self {
        let tls_dir = Some(data_dir.join("tls"));
        Self {
            database_url,
            data_dir,
            bbs_listen: "127.0.0.1:0".into(),
            cells,
            runtime,
            cell_memory_mb: 4096,
            bbs: Box::new(|_| {}),
            rep: Arc::new(|_| {}),
            auctioneer: true,
            auctioneer_config: Arc::new(|_| {}),
            fast: true,
            tls_dir,
            tls_hosts: Vec::new(),
            router: None,
            router_config: Arc::new(|_| {}),
        }
    }
}

/// One running rep.
pub struct Rep {
    /// Its cell id.
    pub cell_id: String,
    /// Its gRPC address.
    pub address: String,
    /// Its admin address (`/healthz`, `/metrics`).
    pub admin_address: String,
    config: RepConfig,
    evacuate: CancellationToken,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), cell_rep::RunError>>>,
}

/// A running cluster. Dropping it stops everything.
pub struct Cluster {
    /// The BBS gRPC address.
    pub bbs_address: String,
    /// The auctioneer gRPC address, when started.
    pub auctioneer_address: Option<String>,
    /// The BBS admin address (`/healthz`, `/leader`, `/metrics`), when this cluster started it.
    pub bbs_admin_address: Option<String>,
    /// The auctioneer admin address (`/healthz`, `/metrics`), when started.
    pub auctioneer_admin_address: Option<String>,
    /// The cluster's own admin address, when this cluster started the BBS: its `/metrics` shows
    /// every component's series, each cell's capacity and containers read fresh on every scrape.
    pub metrics_address: Option<String>,
    /// The HTTP router's address (the routed traffic), when started.
    pub router_address: Option<String>,
    /// The HTTP router's admin address (`/healthz`, `/routes`, `/metrics`), when started.
    pub router_admin_address: Option<String>,
    /// The reps, by index.
    pub reps: Vec<Rep>,
    /// Where reps keep their containers.
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    /// The BBS this cluster started: cancelled last, and waited for (it releases its lease).
    bbs_stop: CancellationToken,
    bbs_task: Option<JoinHandle<()>>,
    /// The configuration of the BBS this cluster started (for [`Cluster::restart_bbs`]).
    bbs_config: Option<svc::config::Valid<BbsConfig>>,
    auctioneer_stop: Option<CancellationToken>,
    auctioneer_task: Option<JoinHandle<()>>,
    router_stop: Option<CancellationToken>,
    router_task: Option<JoinHandle<()>>,
    /// The admin views of the running reps, for the cluster's `/metrics`.
    views: CellViews,
    rep_spec: Arc<dyn Fn(&mut RepConfig) + Send + Sync>,
    auctioneer_spec: Arc<dyn Fn(&mut AuctioneerConfig) + Send + Sync>,
    router_spec: Arc<dyn Fn(&mut RouterConfig) + Send + Sync>,
    runtime: RuntimeKind,
    cell_memory_mb: i32,
    fast: bool,
    /// The cluster's certificate directory (`None`: plaintext).
    pki: Option<Arc<svc::pki::Pki>>,
    /// What the cluster's own clients (`bbs()`, the waits) present: the operator identity.
    operator: svc::tls::Security,
}

/// The identity the cluster's own clients use, and `diego dev`'s `operator.pem`.
pub const OPERATOR_NAME: &str = "operator";

/// Why a cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A port could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A component's configuration was refused.
    #[error("invalid {component} configuration: {message}")]
    Config {
        /// Which component.
        component: &'static str,
        /// Why.
        message: String,
    },
    /// A component did not come up in time.
    #[error("{0}")]
    Timeout(String),
    /// The cluster's certificates could not be made or read.
    #[error("cannot prepare the cluster's certificates: {0}")]
    Tls(String),
}

fn create_data_dir(path: &std::path::Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(|source| ClusterError::DataDir { path: path.to_owned(), source })
}

async fn bind(address: &str) -> Result<TcpListener, ClusterError> {
    TcpListener::bind(address).await.map_err(|source| ClusterError::Bind { address: address.to_owned(), source })
}

/// Polls `probe` every 100 ms until it returns `Some`, or fails after `limit` with
/// [`ClusterError::Timeout`] naming `what` (the end-to-end suite's `eventually` too).
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Timeout(format!("gave up after {limit:?} waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    /// Starts a cluster and returns once the BBS leads, the auctioneer serves and every cell
    /// has registered.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        // The process's one recorder before any component records, so no early series is lost.
        let _ = svc::admin::metrics_handle();
        let shutdown = CancellationToken::new();
        create_data_dir(&spec.data_dir)?;

        let grpc = bind(&spec.bbs_listen).await?;
        let admin = bind("127.0.0.1:0").await?;
        let bbs_address = grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut cluster = Cluster::around(bbs_address, &spec, shutdown.clone())?;
        cluster.bbs_admin_address = admin.local_addr().map(|a| a.to_string()).ok();
        let mut bbs_config = BbsConfig {
            database_url: spec.database_url.clone(),
            // Where a generated encryption key goes when the database is not a SQLite file.
            data_dir: spec.data_dir.clone(),
            tls: cluster.tls_for(Role::Bbs, "")?,
            ..BbsConfig::default()
        };
        if spec.fast {
            bbs_config.lock_ttl = Duration::from_secs(5);
            bbs_config.lock_retry_interval = Duration::from_millis(500);
            bbs_config.presence_check_interval = Duration::from_millis(250);
            bbs_config.communication_timeout = Duration::from_secs(5);
            shorten_convergence(&mut bbs_config);
        }
        (spec.bbs)(&mut bbs_config);
        let bbs_config =
            bbs_config.validate().map_err(|e| ClusterError::Config { component: "bbs", message: e.to_string() })?;
        cluster.spawn_bbs(bbs_config, grpc, admin);
        cluster.serve_metrics().await?;

        cluster.wait_for_bbs().await?;
        cluster.start_members(spec.auctioneer, spec.cells).await?;
        cluster.wait_for_cells(spec.cells).await?;
        if let Some(listen) = &spec.router {
            cluster.start_router(listen).await?;
        }
        Ok(cluster)
    }

    /// Starts the auctioneer (when `spec.auctioneer`) and `spec.cells` reps against the BBS at
    /// `bbs_address`, which this cluster neither starts nor stops (`spec`'s database and BBS
    /// settings are unused). Returns once the auctioneer serves and every rep listens; the cells
    /// may not have registered yet (see [`Cluster::wait_for_cells`]).
    pub async fn join(bbs_address: String, spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        create_data_dir(&spec.data_dir)?;
        let mut cluster = Cluster::around(bbs_address, &spec, CancellationToken::new())?;
        cluster.start_members(spec.auctioneer, spec.cells).await?;
        Ok(cluster)
    }

    /// A cluster of no members yet around the BBS at `bbs_address`, its certificate directory
    /// made (or found) and its operator identity loaded.
    fn around(bbs_address: String, spec: &ClusterSpec, shutdown: CancellationToken) -> Result<Cluster, ClusterError> {
        let tls_error = |e: &dyn std::fmt::Display| ClusterError::Tls(e.to_string());
        let pki = match &spec.tls_dir {
            Some(dir) => Some(Arc::new(svc::pki::Pki::open(dir, &spec.tls_hosts).map_err(|e| tls_error(&e))?)),
            None => None,
        };
        let operator = match &pki {
            Some(pki) => pki
                .tls_of(Role::Operator, OPERATOR_NAME)
                .map_err(|e| tls_error(&e))?
                .security()
                .map_err(|e| tls_error(&e))?,
            None => svc::tls::Security::Plaintext,
        };
        Ok(Cluster {
            bbs_address,
            auctioneer_address: None,
            bbs_admin_address: None,
            auctioneer_admin_address: None,
            metrics_address: None,
            router_address: None,
            router_admin_address: None,
            reps: Vec::new(),
            data_dir: spec.data_dir.clone(),
            bbs_stop: shutdown.child_token(),
            bbs_task: None,
            bbs_config: None,
            shutdown,
            auctioneer_stop: None,
            auctioneer_task: None,
            router_stop: None,
            router_task: None,
            views: CellViews::new(),
            rep_spec: spec.rep.clone(),
            auctioneer_spec: spec.auctioneer_config.clone(),
            router_spec: spec.router_config.clone(),
            fast: spec.fast,
            runtime: spec.runtime,
            cell_memory_mb: spec.cell_memory_mb,
            pki,
            operator,
        })
    }

    /// The `[tls]` configuration of the identity of `role` named `name` in this cluster:
    /// its certificate (issued now if it has none yet), or plaintext.
    pub fn tls_for(&self, role: Role, name: &str) -> Result<svc::config::tls::TlsConfig, ClusterError> {
        match &self.pki {
            Some(pki) => pki.tls_of(role, name).map_err(|e| ClusterError::Tls(e.to_string())),
            None => Ok(svc::config::tls::TlsConfig::insecure_plaintext()),
        }
    }

    /// The certificate directory, if the cluster speaks TLS.
    pub fn tls_dir(&self) -> Option<&std::path::Path> {
        self.pki.as_deref().map(svc::pki::Pki::dir)
    }

    /// The transport security of the cluster's operator identity (what [`Cluster::bbs`] uses).
    pub fn operator_security(&self) -> &svc::tls::Security {
        &self.operator
    }

    /// Channel options for a client of this cluster, as its operator.
    fn client_options(&self) -> svc::connect::ChannelOptions {
        // No channel-wide deadline: clients also read event streams.
        svc::connect::ChannelOptions {
            timeout: None,
            ..svc::connect::ChannelOptions::new(CONNECT_TIMEOUT, self.operator.clone())
        }
    }

    /// Starts the auctioneer (when asked) and reps `0..cells`.
    async fn start_members(&mut self, auctioneer: bool, cells: usize) -> Result<(), ClusterError> {
        if auctioneer {
            self.start_auctioneer().await?;
        }
        for i in 0..cells {
            self.add_rep(i).await?;
        }
        Ok(())
    }

    /// A client of the BBS.
    pub fn bbs(&self) -> BbsClient<Channel> {
        let channel = svc::connect::lazy(&self.bbs_address, &self.client_options())
            .unwrap_or_else(|_| Channel::from_static("http://127.0.0.1:8889").connect_lazy());
        BbsClient::new(channel)
    }

    async fn wait_for_bbs(&self) -> Result<(), ClusterError> {
        let client = self.bbs();
        wait_for("the bbs to lead", Duration::from_secs(30), || {
            let mut c = client.clone();
            async move {
                c.upsert_domain(proto::pb::bbs::v1::UpsertDomainRequest { domain: "probe".into(), ttl: 1 }).await.ok()
            }
        })
        .await
        .map(|_| ())
    }

    /// Waits until `n` cells have live presences.
    pub async fn wait_for_cells(&self, n: usize) -> Result<(), ClusterError> {
        let client = self.bbs();
        wait_for(&format!("{n} cells to register"), Duration::from_secs(30), || {
            let mut c = client.clone();
            async move {
                let cells = c.cells(proto::pb::bbs::v1::CellsRequest::default()).await.ok()?.into_inner().cells;
                (cells.len() >= n).then_some(())
            }
        })
        .await
    }

    /// Starts the auctioneer and waits until it serves.
    pub async fn start_auctioneer(&mut self) -> Result<(), ClusterError> {
        let grpc = bind("127.0.0.1:0").await?;
        let admin = bind("127.0.0.1:0").await?;
        let address = grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let admin_address = admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut config = AuctioneerConfig {
            bbs_address: self.bbs_address.clone(),
            tls: self.tls_for(Role::Auctioneer, "")?,
            ..AuctioneerConfig::default()
        };
        if self.fast {
            config.lock_ttl = Duration::from_secs(5);
            config.lock_retry_interval = Duration::from_millis(500);
        }
        (self.auctioneer_spec)(&mut config);
        let config =
            config.validate().map_err(|e| ClusterError::Config { component: "auctioneer", message: e.to_string() })?;
        let stop = self.shutdown.child_token();
        let run = auctioneer::run(config, auctioneer::Listeners { grpc, admin }, stop.clone());
        self.auctioneer_task = Some(tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "the auctioneer stopped");
            }
        }));
        // The auctioneer's port accepts only the BBS: probe as the BBS.
        let probe = match self.tls_for(Role::Bbs, "")?.files().map_err(|e| ClusterError::Tls(e.to_string()))? {
            Some(files) => svc::tls::Security::mutual(files).map_err(|e| ClusterError::Tls(e.to_string()))?,
            None => svc::tls::Security::Plaintext,
        };
        let options = svc::connect::ChannelOptions {
            timeout: None,
            ..svc::connect::ChannelOptions::new(CONNECT_TIMEOUT, probe).expect(Role::Auctioneer)
        };
        wait_for("the auctioneer to hold its lock", Duration::from_secs(30), || {
            let (address, options) = (address.clone(), options.clone());
            async move {
                let channel = svc::connect::connect(&address, &options).await.ok()?;
                let mut client = proto::pb::auctioneer::v1::auctioneer_client::AuctioneerClient::new(channel);
                client.request_lrp_auctions(proto::pb::auctioneer::v1::RequestLrpAuctionsRequest::default()).await.ok()
            }
        })
        .await?;
        self.auctioneer_address = Some(address);
        self.auctioneer_admin_address = Some(admin_address);
        self.auctioneer_stop = Some(stop);
        Ok(())
    }

    /// Stops the auctioneer and returns once it has released its lock (or after 10 s).
    pub async fn stop_auctioneer(&mut self) {
        if let Some(stop) = self.auctioneer_stop.take() {
            stop.cancel();
        }
        if let Some(task) = self.auctioneer_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        self.auctioneer_address = None;
        self.auctioneer_admin_address = None;
    }

    /// Serves the cluster's own admin page (`/healthz`, `/metrics`) on a free loopback port.
    async fn serve_metrics(&mut self) -> Result<(), ClusterError> {
        let listener = bind("127.0.0.1:0").await?;
        self.metrics_address = listener.local_addr().map(|a| a.to_string()).ok();
        let views = self.views.clone();
        let healthz = self.views.clone();
        let admin = svc::admin::Admin::new()
            .healthz(move || format!("ok (cells running: {})\n", healthz.cells().join(", ")))
            .before_metrics(move || views.record());
        tokio::spawn(admin.serve(listener, self.shutdown.clone()));
        Ok(())
    }

    fn rep_config(&self, i: usize) -> RepConfig {
        let mut config = RepConfig {
            bbs_address: self.bbs_address.clone(),
            cell_id: format!("cell-{i}"),
            zone: format!("z{}", i % 2 + 1),
            runtime: self.runtime,
            memory_mb: self.cell_memory_mb,
            disk_mb: 16_384,
            containers: 100,
            data_dir: self.data_dir.join(format!("cell-{i}")),
            ..RepConfig::default()
        };
        if self.fast {
            config.polling_interval = Duration::from_secs(2);
            config.evacuation_polling_interval = Duration::from_millis(500);
            config.evacuation_timeout = Duration::from_secs(60);
            config.presence_ttl = Duration::from_secs(3);
            config.presence_retry_interval = Duration::from_millis(500);
            config.graceful_shutdown_interval = Duration::from_secs(2);
            config.route_drain = Duration::from_secs(1);
            config.sim_start_delay = Duration::from_millis(100);
        }
        (self.rep_spec)(&mut config);
        config
    }

    /// Starts rep `i` (a new one, or one that was killed) and returns once it listens.
    pub async fn add_rep(&mut self, i: usize) -> Result<(), ClusterError> {
        let mut config = self.rep_config(i);
        if config.tls == svc::config::tls::TlsConfig::default() {
            // The cell's certificate names its cell id (after the spec's changes).
            config.tls = self.tls_for(Role::Cell, &config.cell_id)?;
        }
        let grpc = bind("127.0.0.1:0").await?;
        let admin = bind("127.0.0.1:0").await?;
        let address = grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let admin_address = admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let invalid = |e: String| ClusterError::Config { component: "cell rep", message: e };
        let config = RepConfig { advertise_address: address.clone(), ..config }
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        let deps = cell_rep::Deps::from_config(&config).map_err(|e| invalid(e.to_string()))?;
        let (evacuate, stop) = (self.shutdown.child_token(), deps.stop.clone());
        let (views, listeners, rep_config) = (self.views.clone(), cell_rep::Listeners { grpc, admin }, config.clone());
        let stopping = evacuate.clone();
        let task =
            tokio::spawn(
                async move { cell_rep::rep::run_observed(rep_config, listeners, deps, stopping, &views).await },
            );
        let cell_id = config.cell_id.clone();
        let config = config.into_inner();
        let rep = Rep { cell_id, address, admin_address, config, evacuate, stop, task: Some(task) };
        if i < self.reps.len() {
            self.reps[i] = rep;
        } else {
            self.reps.push(rep);
        }
        Ok(())
    }

    /// Stops rep `i` at once, without evacuating: no instance is handed over and the cell
    /// vanishes from the presence set (its presence is released), as when its machine dies.
    /// Returns once it has stopped.
    pub async fn kill_rep(&mut self, i: usize) {
        self.reps[i].stop.cancel();
        if let Some(task) = self.reps[i].task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Asks rep `i` to evacuate (as SIGTERM would) and returns once it has exited.
    pub async fn evacuate_rep(&mut self, i: usize) -> Result<(), cell_rep::RunError> {
        self.reps[i].evacuate.cancel();
        match self.reps[i].task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// The config rep `i` runs with.
    pub fn rep_config_of(&self, i: usize) -> &RepConfig {
        &self.reps[i].config
    }

    /// Stops everything, each component releasing its lease through a BBS that still serves:
    /// the router first (it holds none), the reps (their presences), then the auctioneer (its
    /// lock), then the BBS (its lease); returns once each has stopped (or after 10 s each), so a
    /// cluster started next on the same database leads at once.
    pub async fn shutdown(mut self) {
        self.stop_router().await;
        let reps: Vec<_> = self
            .reps
            .iter_mut()
            .filter_map(|rep| {
                rep.stop.cancel();
                rep.task.take()
            })
            .collect();
        for task in reps {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        self.stop_auctioneer().await;
        self.bbs_stop.cancel();
        if let Some(task) = self.bbs_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        self.shutdown.cancel();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for rep in &self.reps {
            rep.stop.cancel();
        }
        self.shutdown.cancel();
    }
}

/// Convergence settings fit for tests: a pass every second, stale instances re-auctioned after
/// 2 s, crash backoff from 1 s.
fn shorten_convergence(config: &mut BbsConfig) {
    config.convergence_interval = Duration::from_secs(1);
    config.stale_unclaimed = Duration::from_secs(2);
    config.cell_sync_grace = Duration::from_secs(5);
    config.crash_backoff_base = Duration::from_secs(1);
    config.kick_task = Duration::from_secs(2);
}
