//! What a run drives: an external BBS by address, or a BBS this process starts on a database
//! URL; plus, when the database is known, a `db::Store` on it for seeding, the raw-SQL
//! baselines and the convergence pass.
//!
//! Database URLs:
//! - `sqlite://FILE`: used as given (the file is created).
//! - `postgres://…/NAME`, `mysql://…/NAME`: the database must exist.
//! - `postgres://host:port`, `mysql://host:port` (no database name): a fresh database
//!   `benchmark_bbs_<seed>` is created on that server (dropped first if a previous run left it)
//!   and dropped at the end unless `--keep-database`.
//! - none at all: a fresh SQLite file `benchmark-bbs.db` in the output directory.
//!
//! A named database that already holds desired LRPs is refused unless `--reseed`, which deletes
//! every desired LRP, actual LRP and cell presence first (Diego's benchmark truncated the same
//! tables on reseed).
//!
//! Transport ([`TargetSpec::tls`]): plaintext, or mutual TLS with certificates from a PKI
//! directory ([`svc::pki::Pki`]). Under TLS the in-process BBS serves with the `diego://bbs`
//! certificate, and [`Clients`] call as the identities the role table (`svc::authz`) requires:
//! the operator `diego://operator/benchmark` for desires, listings and event streams, and each
//! simulated cell `diego://cell/<cell id>` for its own rep calls (per-cell fetch, claims, starts,
//! its presence). The connection layout is the same in both modes, so a TLS run and a plaintext
//! run differ only in the certificates.
//!
//! Where the BBS runs ([`Launch`]): in this process (the default), or with `--bbs-process` as
//! the real `bbs` binary in a child process ([`process::BbsProcess`]) with the same settings,
//! so that its memory is its own (`VmHWM` and a per-second RSS sample) and the simulator's CPU is
//! not inside its process.

pub mod process;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bbs::clients::{AuctioneerClient, ClientError, LrpStartRequest, TaskStartRequest};
use db::sql::leases::LeaseType;
use db::{Backend, Store, StoreOptions};
use futures::future::BoxFuture;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1::locket_client::LocketClient;
use serde::Serialize;
use svc::connect::ChannelOptions;
use svc::identity::Role;
use svc::pki::Pki;
use svc::tls::Security;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::Config;
use crate::format::redact;
use crate::generator::DOMAIN;
use crate::report::Memory;

use self::process::{BbsProcess, BbsProcessSpec};

/// An auctioneer that accepts every start request and does nothing (the benchmark measures the
/// BBS alone; Diego's benchmark required the brain to be stopped).
struct NoAuctioneer;

impl AuctioneerClient for NoAuctioneer {
    fn request_lrp_auctions(&self, _: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
    fn request_task_auctions(&self, _: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What the run drives, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// `in-process` (this process runs the BBS), `process` (this process started the `bbs`
    /// binary as a child, `--bbs-process`) or `external`.
    pub kind: String,
    /// The BBS's gRPC address.
    pub bbs_address: String,
    /// `sqlite`, `postgres` or `mysql` when the database is known.
    pub backend: Option<String>,
    /// The database URL without its password, when known.
    pub database: Option<String>,
    /// Whether this run created the database.
    pub created_database: bool,
    /// Whether the in-process BBS's connections have TCP_NODELAY (set through its listener).
    pub nodelay: bool,
    /// Whether every call goes over mutual TLS.
    pub tls: bool,
    /// The PKI directory the identities come from, under TLS.
    pub tls_dir: Option<std::path::PathBuf>,
}

/// `client` without message size limits (listings are big).
fn unbounded(client: BbsClient<Channel>) -> BbsClient<Channel> {
    client.max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
}

/// A database this run created on a server, to drop at the end.
struct CreatedDatabase {
    admin_url: String,
    name: String,
}

/// The BBS and database of a run.
pub struct Target {
    /// For the report.
    pub info: TargetInfo,
    /// The store on the BBS's database, when known.
    pub store: Option<Store>,
    /// The certificate directory the clients' identities come from, under TLS.
    pub pki: Option<Arc<Pki>>,
    bbs: Option<(CancellationToken, tokio::task::JoinHandle<Result<(), bbs::RunError>>)>,
    child: Option<BbsProcess>,
    created: Option<CreatedDatabase>,
    owned_file: Option<std::path::PathBuf>,
    keep: bool,
}

/// What to drive: the parts of a [`Config`] (or of the smoke benchmark's configuration) that
/// pick and prepare the BBS and its database.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// An external BBS.
    pub bbs_address: Option<String>,
    /// The database (see the module documentation).
    pub database_url: Option<String>,
    /// Names a database this run creates.
    pub seed: u64,
    /// Where the default SQLite file goes.
    pub output: std::path::PathBuf,
    /// Wipe a named database that holds desired LRPs.
    pub reseed: bool,
    /// Keep a database this run created.
    pub keep_database: bool,
    /// Event buffer per subscriber of an in-process BBS.
    pub event_buffer: usize,
    /// Event streams a BBS this run starts serves at once (`max_event_subscribers`).
    pub max_event_subscribers: usize,
    /// Give an in-process BBS an auctioneer that accepts and drops every start request (the
    /// BBS workload), instead of the real one found through the `auctioneer` lock (the smoke
    /// benchmark).
    pub stub_auctioneer: bool,
    /// Set TCP_NODELAY on the in-process BBS's listening socket, which Linux copies to every
    /// accepted connection. The BBS serves through `serve_with_incoming`, where tonic ignores
    /// its own `tcp_nodelay`, so without this every response written in more than one segment
    /// waits for the client's delayed ACK (~40 ms).
    pub nodelay_listener: bool,
    /// Mutual TLS with identities issued from this PKI directory (created with its CA when it
    /// has none and the BBS is in-process; an external BBS needs the directory of its cluster's
    /// CA, `ca.pem` and `ca-key.pem`). `None`: plaintext.
    pub tls: Option<std::path::PathBuf>,
}

/// Where a BBS this run starts runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Launch {
    /// In this process (`bbs::run` on a task).
    #[default]
    InProcess,
    /// The real `bbs` binary as a child process (`--bbs-process`).
    Process {
        /// The binary; `None`: the `bbs` next to this executable.
        binary: Option<std::path::PathBuf>,
    },
}

impl Launch {
    /// What `config` asks for.
    pub fn of(config: &Config) -> Self {
        if config.bbs_process { Launch::Process { binary: config.bbs_binary.clone() } } else { Launch::InProcess }
    }
}

/// A loopback listener on port 0 whose accepted connections inherit TCP_NODELAY (Linux).
pub fn nodelay_listener() -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(4096)
}

impl From<&Config> for TargetSpec {
    fn from(config: &Config) -> Self {
        Self {
            bbs_address: config.bbs_address.clone(),
            database_url: config.database_url.clone(),
            seed: config.seed,
            output: config.output.clone(),
            reseed: config.reseed,
            keep_database: config.keep_database,
            event_buffer: config.event_buffer,
            max_event_subscribers: config.max_event_subscribers(),
            stub_auctioneer: true,
            nodelay_listener: config.nodelay_listener,
            tls: config.tls_dir(),
        }
    }
}

/// Opens the PKI of `dir`: for an in-process BBS it is created when missing; for an external one
/// it must hold the cluster's CA (`ca.pem` and `ca-key.pem`, e.g. from `diego certs init`).
fn open_pki(dir: &std::path::Path, external: bool) -> anyhow::Result<Pki> {
    if external {
        for file in ["ca.pem", "ca-key.pem"] {
            anyhow::ensure!(
                dir.join(file).is_file(),
                "--tls-dir {} has no {file}: give the directory of the cluster's CA (diego certs init --dir D)",
                dir.display()
            );
        }
    }
    Pki::open(dir, &[]).with_context(|| format!("cannot open the certificate directory {}", dir.display()))
}

impl Target {
    /// Prepares the database (creating or checking it) and starts a BBS in this process when
    /// `config` asks for one. Returns once the BBS accepts connections (not necessarily leading
    /// yet).
    pub async fn start(config: &TargetSpec) -> anyhow::Result<Target> {
        Self::launch(config, &Launch::InProcess).await
    }

    /// [`Target::start`], with the BBS (when `config` asks for one) where `launch` says. A child
    /// BBS process is stopped by [`Target::stop`], or when the target is dropped.
    pub async fn launch(config: &TargetSpec, launch: &Launch) -> anyhow::Result<Target> {
        let (url, created, owned_file) = match (&config.database_url, &config.bbs_address) {
            (Some(url), _) => {
                let (url, created) = resolve_server_url(url, config.seed).await?;
                (Some(url), created, false)
            }
            (None, Some(_)) => (None, None, false),
            (None, None) => {
                let path = config.output.join("benchmark-bbs.db");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                (Some(format!("sqlite://{}", path.display())), None, true)
            }
        };
        let store = match &url {
            Some(url) => {
                let options = StoreOptions { max_connections: 16, ..StoreOptions::default() };
                let store =
                    Store::connect(url, options).await.with_context(|| format!("cannot open {}", redact(url)))?;
                if created.is_none() && !owned_file {
                    check_or_wipe(&store, config.reseed).await?;
                }
                Some(store)
            }
            None => None,
        };
        let kind = match (&config.bbs_address, launch) {
            (Some(_), _) => "external",
            (None, Launch::InProcess) => "in-process",
            (None, Launch::Process { .. }) => "process",
        };
        let info = TargetInfo {
            kind: kind.into(),
            bbs_address: config.bbs_address.clone().unwrap_or_default(),
            backend: store.as_ref().map(|s| s.backend().name().to_owned()),
            database: url.as_deref().map(redact),
            created_database: created.is_some(),
            nodelay: config.bbs_address.is_none() && config.nodelay_listener,
            tls: config.tls.is_some(),
            tls_dir: config.tls.clone(),
        };
        let pki = match &config.tls {
            Some(dir) => Some(Arc::new(open_pki(dir, config.bbs_address.is_some())?)),
            None => None,
        };
        let owned_file = owned_file.then(|| config.output.join("benchmark-bbs.db"));
        let mut target =
            Target { info, store, pki, bbs: None, child: None, created, owned_file, keep: config.keep_database };
        if let (None, Launch::Process { binary }) = (&config.bbs_address, launch) {
            let url = url.unwrap_or_default();
            let spec = BbsProcessSpec {
                binary: binary.as_deref(),
                database_url: &url,
                dir: &config.output,
                event_buffer: config.event_buffer,
                max_event_subscribers: config.max_event_subscribers,
                pki: target.pki.as_deref(),
            };
            let child = match BbsProcess::start(&spec).await {
                Ok(child) => child,
                Err(e) => {
                    // The child, if it started, was stopped when `start` dropped it.
                    if let Err(cleanup) = target.stop().await {
                        tracing::warn!(error = %cleanup, "cleaning up the target failed");
                    }
                    return Err(e);
                }
            };
            target.info.bbs_address = child.address.clone();
            target.child = Some(child);
        } else if config.bbs_address.is_none() {
            let url = url.unwrap_or_default();
            let grpc = if config.nodelay_listener {
                nodelay_listener()?
            } else {
                tokio::net::TcpListener::bind("127.0.0.1:0").await?
            };
            let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            target.info.bbs_address = grpc.local_addr()?.to_string();
            let tls = match &target.pki {
                Some(pki) => pki.tls_of(Role::Bbs, "").context("cannot issue the BBS's certificate")?,
                None => svc::config::tls::TlsConfig::insecure_plaintext(),
            };
            let bbs_config = bbs::config::BbsConfig {
                database_url: url,
                // Its generated encryption key file (for a server database) goes with the run's
                // files, not into the working directory.
                data_dir: config.output.clone(),
                event_buffer: config.event_buffer,
                max_event_subscribers: config.max_event_subscribers,
                tls,
                ..bbs::config::BbsConfig::default()
            }
            .validate()?;
            let overrides = if config.stub_auctioneer {
                bbs::Overrides { auctioneer: Some(Arc::new(NoAuctioneer)), ..Default::default() }
            } else {
                bbs::Overrides::default()
            };
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(bbs::run(bbs_config, bbs::Listeners { grpc, admin }, overrides, shutdown.clone()));
            target.bbs = Some((shutdown, task));
        }
        Ok(target)
    }

    /// Whether this process runs the BBS (so its peak memory is the BBS's, plus the simulator's).
    pub fn in_process(&self) -> bool {
        self.bbs.is_some()
    }

    /// The pid of the BBS this process started as its own process (`--bbs-process`).
    pub fn bbs_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(BbsProcess::pid)
    }

    /// The peak memory so far: this process's, and a child BBS's (`--bbs-process`).
    pub fn memory(&self) -> Memory {
        let note = match (&self.child, self.in_process()) {
            (Some(_), _) => "this process: the simulator and its clients; the BBS ran as its own process",
            (None, true) => "this process: the in-process BBS plus the simulator and its clients",
            (None, false) => "the simulator only; measure the external BBS's memory on its host",
        };
        Memory::of(crate::report::peak_rss_kib(), note, self.child.as_ref().map(BbsProcess::memory))
    }

    /// Stops a BBS this process started, closes the store and drops a database this run
    /// created (unless kept).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            child.stop().await;
        }
        if let Some((shutdown, task)) = self.bbs.take() {
            shutdown.cancel();
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the in-process bbs stopped with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the in-process bbs panicked"),
                Err(_) => tracing::warn!("the in-process bbs did not stop within 30 s"),
            }
        }
        if let Some(store) = self.store.take() {
            store.close().await;
        }
        if let Some(path) = self.owned_file.take()
            && !self.keep
        {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        if let Some(created) = self.created.take() {
            if self.keep {
                eprintln!("kept database {}", created.name);
            } else {
                let drop_sql = if created.admin_url.starts_with("postgres") {
                    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", created.name)
                } else {
                    format!("DROP DATABASE IF EXISTS {}", created.name)
                };
                server_exec(&created.admin_url, &drop_sql).await?;
            }
        }
        Ok(())
    }
}

/// For a PostgreSQL / MySQL URL without a database name: creates `benchmark_bbs_<seed>` there
/// and returns its URL. Other URLs are returned as they are.
async fn resolve_server_url(url: &str, seed: u64) -> anyhow::Result<(String, Option<CreatedDatabase>)> {
    let backend = Backend::from_url(url)?;
    if backend == Backend::Sqlite || !database_name(url).is_empty() {
        return Ok((url.to_owned(), None));
    }
    let name = format!("benchmark_bbs_{seed}");
    let drop_sql = if backend == Backend::Postgres {
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    } else {
        format!("DROP DATABASE IF EXISTS {name}")
    };
    server_exec(url, &drop_sql).await?;
    server_exec(url, &format!("CREATE DATABASE {name}")).await?;
    Ok((with_database(url, &name), Some(CreatedDatabase { admin_url: url.to_owned(), name })))
}

/// The database name in a server URL's path (empty when none).
pub fn database_name(url: &str) -> &str {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    match base[authority_start..].find('/') {
        Some(i) => &base[authority_start + i + 1..],
        None => "",
    }
}

/// `url` with its database path replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn server_exec(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .with_context(|| format!("cannot reach the database server {}", redact(admin_url)))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .with_context(|| format!("{sql} on {}", redact(admin_url)))?;
    let _ = conn.close().await;
    Ok(())
}

/// Refuses a database that already holds desired LRPs, or wipes it when `reseed`.
async fn check_or_wipe(store: &Store, reseed: bool) -> anyhow::Result<()> {
    let count: i64 = store.backend().query_scalar("SELECT COUNT(*) FROM desired_lrps").fetch_one(store.pool()).await?;
    if count == 0 {
        return Ok(());
    }
    anyhow::ensure!(
        reseed,
        "the database already holds {count} desired LRPs: pass --reseed to delete every desired LRP, actual LRP \
         and cell presence first, or give a server URL without a database name for a fresh one"
    );
    eprintln!("reseeding: deleting {count} desired LRPs, their actual LRPs and every cell presence");
    for sql in ["DELETE FROM actual_lrps", "DELETE FROM desired_lrps"] {
        store.backend().query(sql).execute(store.pool()).await?;
    }
    store
        .backend()
        .query("DELETE FROM leases WHERE type_code = ?")
        .bind(LeaseType::Presence.as_i64())
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The name of the simulator's operator identity (`diego://operator/benchmark`).
pub const OPERATOR_NAME: &str = "benchmark";

/// Clients of one BBS: the operator's calls spread over `connections` HTTP/2 connections, and
/// one connection per simulated cell for that cell's rep calls (`ActualLRPs` of its cell,
/// `ClaimActualLRP`, `StartActualLRP`, the Locket lock of its presence). Under TLS the operator
/// connections present `diego://operator/benchmark` and each cell's connection
/// `diego://cell/<cell id>`; in plaintext the layout is the same, so the two modes differ only
/// in the certificates.
#[derive(Clone)]
pub struct Clients {
    bbs: Arc<Vec<BbsClient<Channel>>>,
    cells: Arc<Vec<Channel>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

/// The security of `role`/`name`: its certificate from `pki`, or plaintext without one.
fn security_of(pki: Option<&Pki>, role: Role, name: &str) -> anyhow::Result<Security> {
    match pki {
        None => Ok(Security::Plaintext),
        Some(pki) => {
            let tls =
                pki.tls_of(role, name).with_context(|| format!("cannot issue the certificate of {role} {name}"))?;
            Ok(tls.security()?)
        }
    }
}

impl Clients {
    /// Lazily connecting clients of the BBS at `address`: `connections` operator connections
    /// and one connection per cell `0..cells` ([`crate::generator::cell_id`]), with identities
    /// from `pki` (plaintext without one).
    pub fn new(
        address: &str,
        connections: usize,
        cells: usize,
        timeout: Duration,
        pki: Option<&Pki>,
    ) -> anyhow::Result<Self> {
        // Wide HTTP/2 windows: big listings stream without waiting on window updates.
        let options = |security: Security| ChannelOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Some(timeout),
            initial_stream_window_size: Some(8 * 1024 * 1024),
            initial_connection_window_size: Some(32 * 1024 * 1024),
            ..ChannelOptions::new(timeout, security)
        };
        let operator = options(security_of(pki, Role::Operator, OPERATOR_NAME)?);
        // One channel per connection (not the connector's cache, which shares one per address).
        let bbs = (0..connections.max(1))
            .map(|_| Ok(unbounded(BbsClient::new(svc::connect::lazy(address, &operator)?))))
            .collect::<Result<_, svc::connect::ConnectError>>()?;
        let cells = (0..cells)
            .map(|c| {
                let options = options(security_of(pki, Role::Cell, &crate::generator::cell_id(c))?);
                Ok(svc::connect::lazy(address, &options)?)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { bbs: Arc::new(bbs), cells: Arc::new(cells), next: Default::default() })
    }

    /// An operator BBS client, round robin over the operator connections.
    pub fn bbs(&self) -> BbsClient<Channel> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.bbs[i % self.bbs.len()].clone()
    }

    /// The BBS client of simulated cell `c` (its own connection and identity).
    ///
    /// # Panics
    /// If `c` is not below the `cells` these clients were made for.
    pub fn cell(&self, c: usize) -> BbsClient<Channel> {
        unbounded(BbsClient::new(self.cells[c].clone()))
    }

    /// The Locket client of simulated cell `c` (for its presence), over the cell's connection.
    ///
    /// # Panics
    /// If `c` is not below the `cells` these clients were made for.
    pub fn cell_locket(&self, c: usize) -> LocketClient<Channel> {
        LocketClient::new(self.cells[c].clone())
    }

    /// Connections these clients open: the operator's plus one per cell.
    pub fn connections(&self) -> usize {
        self.bbs.len() + self.cells.len()
    }

    /// Waits until the BBS leads (accepts a write: upserting the benchmark's domain).
    pub async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let upsert = api::UpsertDomainRequest { domain: DOMAIN.into(), ttl: 0 };
            match self.bbs().upsert_domain(upsert).await {
                Ok(_) => return Ok(()),
                Err(status) if Instant::now() >= deadline => {
                    anyhow::bail!("the bbs did not accept writes within {within:?}: {status}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(database_name("postgres://postgres@127.0.0.1:5432"), "");
        assert_eq!(database_name("postgres://postgres@127.0.0.1:5432/"), "");
        assert_eq!(database_name("mysql://root@127.0.0.1:3306/diego?x=1"), "diego");
        assert_eq!(with_database("mysql://root@127.0.0.1:3306", "b"), "mysql://root@127.0.0.1:3306/b");
        assert_eq!(with_database("postgres://h:1/?sslmode=disable", "b"), "postgres://h:1/b?sslmode=disable");
        assert_eq!(redact("postgres://u:secret@h:1/db"), "postgres://u:***@h:1/db");
        assert_eq!(redact("postgres://u@h:1/db"), "postgres://u@h:1/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
