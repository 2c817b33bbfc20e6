//! An in-process cluster: BBS + auctioneer + N cell reps on 127.0.0.1:0, over a fresh test
//! database, with intervals shortened so tests run in seconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use auctioneer::config::AuctioneerConfig;
use bbs::config::BbsConfig;
use cell_rep::{RepConfig, RuntimeKind};
use db::Backend;
use db::testing::TestDb;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// How a cluster is built.
pub struct ClusterSpec {
    /// Database backend.
    pub backend: Backend,
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
}

impl ClusterSpec {
    /// `cells` cells of `runtime` on `backend`, everything else at test defaults.
    pub fn new(backend: Backend, cells: usize, runtime: RuntimeKind) -> Self {
        Self {
            backend,
            cells,
            runtime,
            cell_memory_mb: 4096,
            bbs: Box::new(|_| {}),
            rep: Arc::new(|_| {}),
            auctioneer: true,
        }
    }
}

/// One running rep.
pub struct Rep {
    /// Its cell id.
    pub cell_id: String,
    /// Its gRPC address.
    pub address: String,
    config: RepConfig,
    evacuate: CancellationToken,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<(), cell_rep::RunError>>>,
}

/// A running cluster. Dropping it stops everything.
pub struct Cluster {
    /// The test database (dropped with the cluster).
    pub db: TestDb,
    /// The BBS gRPC address.
    pub bbs_address: String,
    /// The auctioneer gRPC address, when started.
    pub auctioneer_address: Option<String>,
    /// The reps, by index.
    pub reps: Vec<Rep>,
    /// Where reps keep their containers.
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    auctioneer_stop: Option<CancellationToken>,
    rep_spec: Arc<dyn Fn(&mut RepConfig) + Send + Sync>,
    runtime: RuntimeKind,
    cell_memory_mb: i32,
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port")
}

impl Cluster {
    /// Starts a cluster, or `None` when the backend is not configured (see `db::testing`).
    pub async fn start(spec: ClusterSpec) -> Option<Cluster> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let db = TestDb::create(spec.backend).await?;
        let shutdown = CancellationToken::new();
        let data_dir = std::env::temp_dir().join(format!("diego-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).expect("cluster data dir");

        let grpc = listener().await;
        let admin = listener().await;
        let bbs_address = grpc.local_addr().expect("bbs address").to_string();
        let mut bbs_config = BbsConfig {
            database_url: db.url.clone(),
            lock_ttl: Duration::from_secs(5),
            lock_retry_interval: Duration::from_millis(500),
            presence_check_interval: Duration::from_millis(250),
            communication_timeout: Duration::from_secs(5),
            ..BbsConfig::default()
        };
        shorten_convergence(&mut bbs_config);
        (spec.bbs)(&mut bbs_config);
        let bbs_config = bbs_config.validate().expect("valid bbs config");
        tokio::spawn(bbs::run(bbs_config, bbs::Listeners { grpc, admin }, bbs::Overrides::default(), shutdown.clone()));

        let mut cluster = Cluster {
            db,
            bbs_address,
            auctioneer_address: None,
            reps: Vec::new(),
            data_dir,
            shutdown,
            auctioneer_stop: None,
            rep_spec: spec.rep.clone(),
            runtime: spec.runtime,
            cell_memory_mb: spec.cell_memory_mb,
        };
        cluster.wait_for_bbs().await;
        if spec.auctioneer {
            cluster.start_auctioneer().await;
        }
        for i in 0..spec.cells {
            cluster.add_rep(i).await;
        }
        cluster.wait_for_cells(spec.cells).await;
        Some(cluster)
    }

    /// A client of the BBS.
    pub fn bbs(&self) -> BbsClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.bbs_address)).expect("bbs url").connect_lazy();
        BbsClient::new(channel)
    }

    async fn wait_for_bbs(&self) {
        let mut client = self.bbs();
        crate::eventually::eventually("the bbs to lead", Duration::from_secs(30), || {
            let mut c = client.clone();
            async move {
                c.upsert_domain(proto::pb::bbs::v1::UpsertDomainRequest { domain: "probe".into(), ttl: 1 }).await.ok()
            }
        })
        .await;
        let _ = &mut client;
    }

    /// Waits until `n` cells have live presences.
    pub async fn wait_for_cells(&self, n: usize) {
        let client = self.bbs();
        crate::eventually::eventually(&format!("{n} cells to register"), Duration::from_secs(30), || {
            let mut c = client.clone();
            async move {
                let cells = c.cells(proto::pb::bbs::v1::CellsRequest {}).await.ok()?.into_inner().cells;
                (cells.len() >= n).then_some(())
            }
        })
        .await;
    }

    /// Starts the auctioneer and waits until it serves.
    pub async fn start_auctioneer(&mut self) {
        let grpc = listener().await;
        let admin = listener().await;
        let address = grpc.local_addr().expect("auctioneer address").to_string();
        let config = AuctioneerConfig {
            bbs_address: self.bbs_address.clone(),
            lock_ttl: Duration::from_secs(5),
            lock_retry_interval: Duration::from_millis(500),
            cell_state_timeout: Duration::from_secs(2),
            ..AuctioneerConfig::default()
        };
        let stop = self.shutdown.child_token();
        tokio::spawn(auctioneer::run(config, auctioneer::Listeners { grpc, admin }, stop.clone()));
        crate::eventually::eventually("the auctioneer to hold its lock", Duration::from_secs(30), || {
            let address = address.clone();
            async move {
                let mut client = proto::pb::auctioneer::v1::auctioneer_client::AuctioneerClient::connect(format!(
                    "http://{address}"
                ))
                .await
                .ok()?;
                client.request_lrp_auctions(proto::pb::auctioneer::v1::RequestLrpAuctionsRequest::default()).await.ok()
            }
        })
        .await;
        self.auctioneer_address = Some(address);
        self.auctioneer_stop = Some(stop);
    }

    /// Stops the auctioneer (it releases its lock).
    pub async fn stop_auctioneer(&mut self) {
        if let Some(stop) = self.auctioneer_stop.take() {
            stop.cancel();
        }
        self.auctioneer_address = None;
        tokio::time::sleep(Duration::from_millis(300)).await;
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
            polling_interval: Duration::from_secs(2),
            evacuation_polling_interval: Duration::from_millis(500),
            evacuation_timeout: Duration::from_secs(60),
            presence_ttl: Duration::from_secs(3),
            presence_retry_interval: Duration::from_millis(500),
            graceful_shutdown_interval: Duration::from_secs(2),
            sim_start_delay: Duration::from_millis(100),
            ..RepConfig::default()
        };
        (self.rep_spec)(&mut config);
        config
    }

    /// Starts rep `i` (a new one, or one that was killed) and returns once it listens.
    pub async fn add_rep(&mut self, i: usize) {
        let config = self.rep_config(i);
        let grpc = listener().await;
        let admin = listener().await;
        let address = grpc.local_addr().expect("rep address").to_string();
        let config = RepConfig { advertise_address: address.clone(), ..config }.validate().expect("valid rep config");
        let deps = cell_rep::Deps::from_config(&config).expect("rep deps");
        let (evacuate, stop) = (self.shutdown.child_token(), deps.stop.clone());
        let task = tokio::spawn(cell_rep::run_with(
            config.clone(),
            cell_rep::Listeners { grpc, admin },
            deps,
            evacuate.clone(),
        ));
        let rep = Rep { cell_id: config.cell_id.clone(), address, config, evacuate, stop, task: Some(task) };
        if i < self.reps.len() {
            self.reps[i] = rep;
        } else {
            self.reps.push(rep);
        }
    }

    /// Kills rep `i` like SIGKILL: its tasks are aborted, its presence is not released (it
    /// expires), and its containers' processes keep running.
    pub fn kill_rep(&mut self, i: usize) {
        if let Some(task) = self.reps[i].task.take() {
            task.abort();
        }
    }

    /// Asks rep `i` to evacuate (as SIGTERM would) and returns once it has exited.
    pub async fn evacuate_rep(&mut self, i: usize) -> Result<(), cell_rep::RunError> {
        self.reps[i].evacuate.cancel();
        match self.reps[i].task.take() {
            Some(task) => task.await.expect("rep task panicked"),
            None => Ok(()),
        }
    }

    /// The config rep `i` runs with.
    pub fn rep_config_of(&self, i: usize) -> &RepConfig {
        &self.reps[i].config
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        for rep in &mut self.reps {
            rep.stop.cancel();
            if let Some(task) = rep.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
        }
        self.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for rep in &self.reps {
            rep.stop.cancel();
        }
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Convergence settings fit for tests (filled in once the BBS runs the converger).
fn shorten_convergence(_config: &mut BbsConfig) {}
