//! Diego across the hosts of a [`Network`]: the real `bbs`, `auctioneer` and `cell-rep` binaries,
//! each in its own host, configured only by a config file written here and `--config`, over
//! mutual TLS with certificates issued for the hosts' addresses, on one shared test database
//! served by a database host. The test talks to them as the operator, from a host of its choice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use db::Backend;
use db::testing::TestDb;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::rep::v1::rep_client::RepClient;
use svc::connect::ChannelOptions;
use svc::identity::Role;
use svc::pki::Pki;
use svc::tls::Security;
use tonic::transport::Channel;

use super::{Network, Process};
use crate::eventually::eventually;

/// The BBS's gRPC port on its host.
pub const BBS_PORT: u16 = 8889;
/// The auctioneer's gRPC port on its host.
pub const AUCTIONEER_PORT: u16 = 9016;
/// The rep's gRPC port on its host.
pub const REP_PORT: u16 = 1801;
/// The operator identity's name (`diego://operator/operator`).
pub const OPERATOR: &str = "operator";

/// The intervals every component runs with: short, so failures are noticed in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// The `bbs` lease's TTL.
    pub bbs_lock_ttl: Duration,
    /// The `auctioneer` lock's TTL (also the BBS's `locket.auctioneer_lock_ttl`).
    pub auctioneer_lock_ttl: Duration,
    /// How often the BBS and the auctioneers renew or retry their locks.
    pub lock_retry_interval: Duration,
    /// A cell presence's TTL.
    pub presence_ttl: Duration,
    /// How often a rep renews its presence.
    pub presence_retry_interval: Duration,
    /// Time between two convergence passes of the BBS leader.
    pub convergence_interval: Duration,
    /// Timeout of calls between components.
    pub communication_timeout: Duration,
    /// How long a cell may take to answer the auctioneer's `State`.
    pub cell_state_timeout: Duration,
    /// A rep's bulk-sync interval.
    pub polling_interval: Duration,
}

impl Timings {
    /// Seconds-scale leases and passes, for links that deliver at once.
    pub fn fast() -> Timings {
        Timings {
            bbs_lock_ttl: Duration::from_secs(3),
            auctioneer_lock_ttl: Duration::from_secs(3),
            lock_retry_interval: Duration::from_millis(500),
            presence_ttl: Duration::from_secs(3),
            presence_retry_interval: Duration::from_millis(500),
            convergence_interval: Duration::from_secs(2),
            communication_timeout: Duration::from_secs(2),
            cell_state_timeout: Duration::from_secs(1),
            polling_interval: Duration::from_secs(2),
        }
    }
}

/// The component binaries this test process runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `bbs`.
    pub bbs: PathBuf,
    /// `auctioneer`.
    pub auctioneer: PathBuf,
    /// `cell-rep`.
    pub cell_rep: PathBuf,
}

impl Binaries {
    /// The binaries next to this test executable's directory (`target/<profile>/`; tests run
    /// from `target/<profile>/deps/`).
    ///
    /// # Panics
    /// When one is missing, saying how to build them.
    pub fn find() -> Binaries {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test executable: {e}"));
        let dir = exe.parent().and_then(Path::parent).map(Path::to_owned).unwrap_or_default();
        let find = |name: &str| {
            let path = dir.join(name);
            assert!(
                path.is_file(),
                "multihost: {} is missing: the multi-host tests run the real binaries; build them first with \
                 `cargo build -p bbs -p auctioneer -p cell-rep` (`cargo test --workspace` builds them too)",
                path.display()
            );
            path
        };
        Binaries { bbs: find("bbs"), auctioneer: find("auctioneer"), cell_rep: find("cell-rep") }
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A duration as the config files write it.
fn duration(d: Duration) -> String {
    quoted(&format!("{}ms", d.as_millis()))
}

/// The `host:port` of a `scheme://user@host:port/db` URL (`default_port` when it names none).
fn server_of(url: &str, default_port: u16) -> Option<SocketAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let with_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:{default_port}") };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port.parse().ok()
}

/// `url` with its `host:port` replaced by `server`.
fn url_via(url: &str, server: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{user}{server}{tail}")
}

/// Components on the hosts of a network, over one test database served by a database host.
/// Dropping it kills every component, then tears the network down, then drops the database.
pub struct Deployment {
    processes: Mutex<BTreeMap<String, Process>>,
    /// The hosts.
    pub net: Network,
    /// The test database (as the test process reaches it); `None` on a database the test runs
    /// in hosts of its own ([`Deployment::on_network`]).
    pub db: Option<TestDb>,
    /// The database URL as the hosts reach it (through the database host).
    pub db_url: String,
    /// The intervals every component runs with.
    pub timings: Timings,
    pki: Pki,
    binaries: Binaries,
    keys_file: PathBuf,
    operator: Security,
}

impl Deployment {
    /// Makes a network of `hosts` (see [`Network::start`]) and a fresh database on `backend`
    /// (PostgreSQL or MySQL: the hosts share one server), served by host `db_host` on the
    /// server's port. `None` when this machine cannot make hosts or the backend is not
    /// configured (each says why; see [`super::REQUIRE_VAR`] and `DIEGO_TEST_REQUIRE_BACKENDS`).
    ///
    /// # Panics
    /// When anything else goes wrong, or for SQLite (a file cannot be shared across hosts).
    pub async fn start(
        test: &str,
        hosts: &[&str],
        db_host: &str,
        backend: Backend,
        timings: Timings,
        seed: u64,
    ) -> Option<Deployment> {
        let default_port = match backend {
            Backend::Postgres => 5432,
            Backend::Mysql => 3306,
            Backend::Sqlite => panic!("{test}: hosts cannot share a SQLite file; use PostgreSQL or MySQL"),
        };
        let net = Network::start(test, hosts, seed)?;
        let db = TestDb::create(backend).await?;
        let server = server_of(&db.url, default_port)
            .unwrap_or_else(|| panic!("cannot find the database server's address in {}", db.url));
        let served = net
            .serve(db_host, server.port(), server)
            .await
            .unwrap_or_else(|e| panic!("cannot serve the database on {db_host}: {e}"));
        let db_url = url_via(&db.url, served);
        Some(Deployment::on_network(net, Some(db), db_url, timings))
    }

    /// Components on the hosts of `net` over the database at `db_url` (as the hosts reach it:
    /// e.g. a database the test runs in hosts of its own, named by a multi-host URL); `db`, the
    /// test database to drop afterwards, if any.
    pub fn on_network(net: Network, db: Option<TestDb>, db_url: String, timings: Timings) -> Deployment {
        let binaries = Binaries::find();
        let ips: Vec<String> = net.hosts().iter().map(|h| h.ip.to_string()).collect();
        let pki = Pki::open(&net.scratch().join("tls"), &ips).unwrap_or_else(|e| panic!("test PKI: {e}"));
        let operator = pki
            .test_tls(Role::Operator, OPERATOR)
            .security()
            .unwrap_or_else(|e| panic!("the operator's certificate: {e}"));
        // Every BBS of one database needs the same keys.
        let keys_file = net.scratch().join("encryption.keys");
        let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        std::fs::write(&keys_file, format!("multihost={key}\nactive=multihost\n"))
            .unwrap_or_else(|e| panic!("{}: {e}", keys_file.display()));
        Deployment {
            processes: Mutex::new(BTreeMap::new()),
            net,
            db,
            db_url,
            timings,
            pki,
            binaries,
            keys_file,
            operator,
        }
    }

    /// The test database the hosts share.
    ///
    /// # Panics
    /// For a deployment [`Deployment::on_network`] made without one.
    pub fn test_db(&self) -> &TestDb {
        self.db.as_ref().unwrap_or_else(|| panic!("this deployment runs on a database of its own hosts"))
    }

    /// The `[tls]` table of the identity `role`/`name`.
    fn tls_table(&self, role: Role, name: &str) -> String {
        let tls = self.pki.test_tls(role, name);
        format!(
            "\n[tls]\nca = {}\ncert = {}\nkey = {}\n",
            quoted(&tls.ca.display().to_string()),
            quoted(&tls.cert.display().to_string()),
            quoted(&tls.key.display().to_string())
        )
    }

    /// Writes `<name>.toml` and starts `program --config <it>` in host `name` (the component is
    /// known by its host's name).
    fn launch(&self, name: &str, program: &Path, config: &str) {
        let path = self.net.scratch().join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let path = path.display().to_string();
        let process =
            self.net.spawn(name, name, program, &["--config", &path], &[("RUST_LOG", &log), ("NO_COLOR", "1")]);
        let old = self.processes.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), process);
        assert!(old.is_none(), "host {name} already runs a component");
    }

    /// Starts a BBS on host `host`.
    pub fn start_bbs(&self, host: &str) {
        let t = self.timings;
        let h = self.net.host(host);
        let data_dir = self.net.scratch().join(host);
        let mut config = String::new();
        let _ = writeln!(config, "database_url = {}", quoted(&self.db_url));
        let _ = writeln!(config, "data_dir = {}", quoted(&data_dir.display().to_string()));
        let _ = writeln!(config, "listen_address = {}", quoted(&h.addr(BBS_PORT).to_string()));
        let _ = writeln!(config, "admin_address = {}", quoted(&h.addr(BBS_PORT + 1).to_string()));
        let _ = writeln!(config, "instance_id = {}", quoted(host));
        let _ = writeln!(config, "lock_ttl = {}", duration(t.bbs_lock_ttl));
        let _ = writeln!(config, "lock_retry_interval = {}", duration(t.lock_retry_interval));
        let _ = writeln!(config, "presence_check_interval = {}", duration(Duration::from_millis(250)));
        let _ = writeln!(config, "communication_timeout = {}", duration(t.communication_timeout));
        let _ = writeln!(config, "convergence_interval = {}", duration(t.convergence_interval));
        let _ = writeln!(config, "stale_unclaimed = {}", duration(t.convergence_interval));
        let _ = writeln!(config, "crash_backoff_base = \"1s\"");
        let _ = writeln!(config, "kick_task = \"2s\"");
        let _ = writeln!(config, "encryption_keys_file = {}", quoted(&self.keys_file.display().to_string()));
        let _ = writeln!(config, "\n[locket]\nauctioneer_lock_ttl = {}", duration(t.auctioneer_lock_ttl));
        config.push_str(&self.tls_table(Role::Bbs, ""));
        self.launch(host, &self.binaries.bbs, &config);
    }

    /// Starts an auctioneer on host `host`, talking to the BBS on host `bbs`.
    pub fn start_auctioneer(&self, host: &str, bbs: &str) {
        let t = self.timings;
        let h = self.net.host(host);
        let mut config = String::new();
        let _ = writeln!(config, "bbs_address = {}", quoted(&self.net.host(bbs).addr(BBS_PORT).to_string()));
        let _ = writeln!(config, "listen_address = {}", quoted(&h.addr(AUCTIONEER_PORT).to_string()));
        let _ = writeln!(config, "admin_address = {}", quoted(&h.addr(AUCTIONEER_PORT + 1).to_string()));
        let _ = writeln!(config, "lock_ttl = {}", duration(t.auctioneer_lock_ttl));
        let _ = writeln!(config, "lock_retry_interval = {}", duration(t.lock_retry_interval));
        let _ = writeln!(config, "communication_timeout = {}", duration(t.communication_timeout));
        let _ = writeln!(config, "cell_state_timeout = {}", duration(t.cell_state_timeout));
        let _ = writeln!(config, "cells_retry_interval = \"500ms\"");
        config.push_str(&self.tls_table(Role::Auctioneer, ""));
        self.launch(host, &self.binaries.auctioneer, &config);
    }

    /// Starts a rep (`sim` runtime) on host `host` as cell `host`, talking to the BBS on host
    /// `bbs`.
    pub fn start_cell(&self, host: &str, bbs: &str) {
        let t = self.timings;
        let h = self.net.host(host);
        let data_dir = self.net.scratch().join(host);
        let mut config = String::new();
        let _ = writeln!(config, "bbs_address = {}", quoted(&self.net.host(bbs).addr(BBS_PORT).to_string()));
        let _ = writeln!(config, "cell_id = {}", quoted(host));
        let _ = writeln!(config, "runtime = \"sim\"");
        let _ = writeln!(config, "listen_address = {}", quoted(&h.addr(REP_PORT).to_string()));
        let _ = writeln!(config, "admin_address = {}", quoted(&h.addr(REP_PORT - 1).to_string()));
        let _ = writeln!(config, "data_dir = {}", quoted(&data_dir.display().to_string()));
        let _ = writeln!(config, "memory_mb = 4096");
        let _ = writeln!(config, "containers = 100");
        let _ = writeln!(config, "presence_ttl = {}", duration(t.presence_ttl));
        let _ = writeln!(config, "presence_retry_interval = {}", duration(t.presence_retry_interval));
        let _ = writeln!(config, "polling_interval = {}", duration(t.polling_interval));
        let _ = writeln!(config, "communication_timeout = {}", duration(t.communication_timeout));
        let _ = writeln!(config, "graceful_shutdown_interval = \"1s\"");
        let _ = writeln!(config, "route_drain = \"1s\"");
        let _ = writeln!(config, "sim_start_delay = \"100ms\"");
        config.push_str(&self.tls_table(Role::Cell, host));
        self.launch(host, &self.binaries.cell_rep, &config);
    }

    /// Whether the component of host `name` is still running.
    pub fn alive(&self, name: &str) -> bool {
        self.processes.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name).is_some_and(Process::alive)
    }

    /// Kills the component of host `name`.
    pub fn kill(&self, name: &str) {
        if let Some(mut process) = self.processes.lock().unwrap_or_else(|p| p.into_inner()).remove(name) {
            process.kill();
        }
    }

    /// A channel, as the operator, from inside host `from` to `target`, for a server of `role`.
    async fn channel(&self, from: &str, target: SocketAddr, role: Role) -> Channel {
        let local = self.net.reach(from, target).await.unwrap_or_else(|e| panic!("relay from {from}: {e}"));
        // A write is several database round trips: on slow links it needs more than 5 s.
        let timeout = Duration::from_secs(5).max(self.timings.communication_timeout * 2);
        let options = ChannelOptions::new(timeout, self.operator.clone()).expect(role);
        svc::connect::lazy(&local.to_string(), &options).unwrap_or_else(|e| panic!("channel to {target}: {e}"))
    }

    /// A client of the BBS on host `bbs`, as the operator on host `from`.
    pub async fn bbs(&self, from: &str, bbs: &str) -> BbsClient<Channel> {
        BbsClient::new(self.channel(from, self.net.host(bbs).addr(BBS_PORT), Role::Bbs).await)
    }

    /// A client of the Locket on the BBS on host `bbs`, as the operator on host `from`.
    pub async fn locket(&self, from: &str, bbs: &str) -> LocketClient<Channel> {
        LocketClient::new(self.channel(from, self.net.host(bbs).addr(BBS_PORT), Role::Bbs).await)
    }

    /// A client of the rep on host `cell`, as the operator on host `from` (the cell itself, to
    /// reach a rep that is cut off).
    pub async fn rep(&self, from: &str, cell: &str) -> RepClient<Channel> {
        RepClient::new(self.channel(from, self.net.host(cell).addr(REP_PORT), Role::Cell).await)
    }

    /// Waits until the BBS on host `bbs` leads: a write through it succeeds.
    pub async fn wait_leading(&self, from: &str, bbs: &str) {
        let client = self.bbs(from, bbs).await;
        eventually(&format!("the bbs on {bbs} to lead"), Duration::from_secs(30), || {
            let mut client = client.clone();
            async move {
                client.upsert_domain(api::UpsertDomainRequest { domain: "probe".into(), ttl: 1 }).await.ok().map(drop)
            }
        })
        .await;
    }

    /// Waits until the BBS on host `bbs` lists every cell of `cells` as present.
    pub async fn wait_cells(&self, from: &str, bbs: &str, cells: &[&str]) {
        let client = self.bbs(from, bbs).await;
        eventually(&format!("cells {cells:?} to register"), Duration::from_secs(30), || {
            let mut client = client.clone();
            async move {
                let present = client.cells(api::CellsRequest::default()).await.ok()?.into_inner().cells;
                cells.iter().all(|c| present.iter().any(|p| p.cell_id == *c)).then_some(())
            }
        })
        .await;
    }

    /// The holder of lock `key` as the Locket of the BBS on host `bbs` answers host `from`.
    pub async fn lock_holder(&self, from: &str, bbs: &str, key: &str) -> Option<locket::Resource> {
        let mut client = self.locket(from, bbs).await;
        client.fetch(locket::FetchRequest { key: key.into() }).await.ok()?.into_inner().resource
    }

    /// The address of the auctioneer on host `host`, as it advertises it in its lock.
    pub fn auctioneer_address(&self, host: &str) -> String {
        self.net.host(host).addr(AUCTIONEER_PORT).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten_to_the_database_host() {
        let server: SocketAddr = "10.1.2.3:5432".parse().unwrap();
        assert_eq!(
            server_of("postgres://postgres@127.0.0.1:5432/postgres", 5432),
            Some("127.0.0.1:5432".parse().unwrap())
        );
        assert_eq!(server_of("mysql://root@localhost/mysql", 3306), Some("127.0.0.1:3306".parse().unwrap()));
        assert_eq!(server_of("postgres://u:p@127.0.0.1:6543", 5432), Some("127.0.0.1:6543".parse().unwrap()));
        assert_eq!(
            url_via("postgres://postgres@127.0.0.1:5432/diego_x", server),
            "postgres://postgres@10.1.2.3:5432/diego_x"
        );
        assert_eq!(
            url_via("mysql://root@127.0.0.1:3306/x?ssl-mode=DISABLED", server),
            "mysql://root@10.1.2.3:5432/x?ssl-mode=DISABLED"
        );
    }
}
