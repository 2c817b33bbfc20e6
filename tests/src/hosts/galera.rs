//! A three-node MariaDB Galera cluster across three hosts of a [`Network`]: the machine's own
//! `mariadbd` with the Galera provider, one node per host, each with its own data directory,
//! socket and configuration file under the network's scratch directory (`<scratch>/<host>/mariadb/`),
//! so neither the machine's own MariaDB nor `/etc/mysql` is touched.
//!
//! The first host's node bootstraps the cluster (`--wsrep-new-cluster`); the other two join it
//! and receive the data by state snapshot transfer over `rsync`. Every node listens on its host's
//! address at the default ports (3306 for clients, 4567 for replication, 4568 for incremental and
//! 4444 for snapshot transfers: each host is a network namespace of its own), and serves `root`
//! without a password to any host, so a client anywhere on the network connects as
//! `mysql://root@<ip>:3306/<db>`. Group communication timeouts are short
//! ([`PROVIDER_OPTIONS`]): a node that dies or is cut off leaves the cluster's view within a few
//! seconds (3.5 s measured after a SIGKILL), during which commits through the other nodes wait.
//!
//! What clients see (MariaDB 10.11, Galera 26.4): a transaction that loses certification to a
//! conflicting one committed through another node, or is aborted by it, fails with 1213
//! "Deadlock found when trying to get lock" (SQLSTATE 40001), at the statement or the `COMMIT`
//! (an autocommitted statement is retried once by the server, `wsrep_retry_autocommit`, so
//! conflicts show mostly in explicit transactions); a node outside the primary component (cut off
//! from a majority of the last view) refuses queries with 1047 "WSREP has not yet prepared node
//! for application use" (SQLSTATE 08S01) but answers `SHOW STATUS`, and rejoins on its own when
//! its links are back. A node acknowledges a commit once it is certified, not yet applied
//! everywhere: read with `SET SESSION wsrep_sync_wait = 1` to see every commit acknowledged
//! through another node.
//!
//! Needs the Debian packages `mariadb-server` (`mariadbd`, `mariadb-install-db`, and the
//! `wsrep_sst_rsync` script), `galera-4` (the provider) and `rsync`; [`GaleraCluster::available`]
//! says what is missing. Each node's output goes to `mariadbd-<host>.log` in the scratch
//! directory; every wait is bounded and its panic message ends with that log's last lines.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, Row};
use tokio::time::Instant;

use super::{Network, Process, REQUIRE_VAR};

/// The server.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";
/// Makes a data directory's system tables.
pub const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
/// The Galera replication provider (package `galera-4`).
pub const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
/// The state snapshot transfer script of `wsrep_sst_method=rsync` (package `mariadb-server`).
pub const SST_SCRIPT: &str = "/usr/bin/wsrep_sst_rsync";
/// The client port of every node, on its host's address.
pub const PORT: u16 = 3306;
/// `wsrep_cluster_name`.
pub const CLUSTER_NAME: &str = "diego-galera";
/// The user the servers run as (`--user`; made by package `mariadb-server`), owner of their
/// directories. Not root: run by root, the joiner's `rsync` daemon of a snapshot transfer writes
/// as `nobody` and cannot replace the data directory's files.
pub const USER: &str = "mysql";

/// Galera's own settings (`wsrep_provider_options`). A node that stops answering is suspected
/// after 3 s of silence (`evs.suspect_timeout`) and, once every other node suspects it, left out
/// of the next view; one silent for 6 s is declared inactive on its own (`evs.inactive_timeout`).
/// Galera's constraints, checked when it starts: `inactive_check_period <= suspect_timeout / 2`,
/// `keepalive_period <= suspect_timeout / 3`, `keepalive_period <= install_timeout <=
/// inactive_timeout`. `pc.recovery=false`: no primary-component state is saved, as the nodes are
/// never restarted from their data; the cache of write sets for incremental transfers is small.
pub const PROVIDER_OPTIONS: &str = "gcache.size=16M;pc.recovery=false;evs.suspect_timeout=PT3S;\
evs.inactive_timeout=PT6S;evs.keepalive_period=PT1S;evs.inactive_check_period=PT1S;evs.install_timeout=PT6S";

/// How long starting the cluster may take: the first node's bootstrap, then both joiners'
/// snapshot transfers.
pub const START_PATIENCE: Duration = Duration::from_secs(120);
/// How long one connection (through the test's relay) may take to be made.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one status query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Log lines a failed wait quotes.
const LOG_LINES: usize = 40;

/// One node: its host, its directory and its server process.
#[derive(Debug)]
pub struct GaleraNode {
    /// Its host's name.
    pub host: String,
    /// Its host's address, where it serves clients ([`PORT`]) and replicates.
    pub ip: Ipv4Addr,
    /// `<scratch>/<host>/mariadb`: its `my.cnf`, data directory (`data/`), socket and pid file.
    pub dir: PathBuf,
    /// Its log, `<scratch>/mariadbd-<host>.log`.
    pub log: PathBuf,
    process: Option<Process>,
}

impl GaleraNode {
    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }

    /// Its Unix socket, which the test process reaches without the network.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// A running three-node Galera cluster; its servers are killed when it is dropped (their data
/// stays in the network's scratch directory, removed with the network).
#[derive(Debug)]
pub struct GaleraCluster {
    nodes: Vec<GaleraNode>,
}

/// What [`GaleraCluster::start`] needs that this machine lacks, if anything: the server, the
/// provider, the snapshot transfer script and `rsync`, with the Debian package of each.
pub fn unavailable() -> Option<String> {
    let needed = [
        (MARIADBD, "mariadb-server"),
        (INSTALL_DB, "mariadb-server"),
        (SST_SCRIPT, "mariadb-server"),
        (PROVIDER, "galera-4"),
    ];
    let mut missing: Vec<String> =
        needed.iter().filter(|(path, _)| !Path::new(path).exists()).map(|(p, pkg)| format!("{p} ({pkg})")).collect();
    if std::process::Command::new("rsync").arg("--version").output().is_err() {
        missing.push("rsync (rsync)".into());
    }
    if !std::process::Command::new("id").arg(USER).output().is_ok_and(|o| o.status.success()) {
        missing.push(format!("user {USER} (mariadb-server)"));
    }
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

impl GaleraCluster {
    /// Whether this machine can run a Galera cluster: `false` (after saying why) when a test
    /// should skip.
    ///
    /// # Panics
    /// When it cannot and [`REQUIRE_VAR`] is set (as in CI): a multi-host test must not pass by
    /// not running.
    pub fn available(test: &str) -> bool {
        let Some(reason) = unavailable() else { return true };
        assert!(
            std::env::var_os(REQUIRE_VAR).is_none(),
            "{test}: {REQUIRE_VAR} is set but this machine cannot run a Galera cluster: {reason}"
        );
        eprintln!("skipping Galera test {test}: {reason} (set {REQUIRE_VAR}=1 to make this a failure)");
        false
    }

    /// Starts a node on each of `hosts` and waits until every one is in a primary component of
    /// all three, synced and ready (`wsrep_cluster_size=3`, `wsrep_ready=ON`).
    ///
    /// Data directories are made by `mariadb-install-db` (once, then copied to each node: the
    /// joiners' are replaced by the snapshot transfer anyway); `hosts[0]`'s node bootstraps a new
    /// cluster, and `root`@`%` (no password, every privilege) is created on it through its socket
    /// before the other two join, so they receive it with the data. Each node runs
    /// `mariadbd --defaults-file=<its my.cnf> --user=mysql` directly (`ip netns exec` execs it), so
    /// [`GaleraCluster::kill`] kills the server itself.
    ///
    /// # Panics
    /// When a step fails or a node is not ready within [`START_PATIENCE`] (with the tail of the
    /// node's log).
    pub async fn start(net: &Network, hosts: [&str; 3]) -> GaleraCluster {
        if let Some(reason) = unavailable() {
            panic!("cannot start a Galera cluster: {reason}");
        }
        let deadline = Instant::now() + START_PATIENCE;
        let ips: Vec<Ipv4Addr> = hosts.iter().map(|h| net.host(h).ip).collect();
        let members = ips.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",");
        let template = net.scratch().join("galera-install");
        install_db(&template, deadline).await;
        let mut nodes = Vec::new();
        for (host, ip) in hosts.iter().zip(&ips) {
            let dir = net.scratch().join(host).join("mariadb");
            copy_dir(&template, &dir.join("data"))
                .unwrap_or_else(|e| panic!("copying the data directory for {host}: {e}"));
            let config = dir.join("my.cnf");
            std::fs::write(&config, my_cnf(host, *ip, &dir, &members))
                .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
            chown_to_user(&dir);
            let log = net.scratch().join(format!("mariadbd-{host}.log"));
            nodes.push(GaleraNode { host: (*host).to_owned(), ip: *ip, dir, log, process: None });
        }
        let _ = std::fs::remove_dir_all(&template);
        let mut cluster = GaleraCluster { nodes };

        cluster.launch(net, 0, true);
        cluster.wait_socket_ready(0, deadline).await;
        cluster.create_remote_root(0).await;
        cluster.launch(net, 1, false);
        cluster.launch(net, 2, false);
        for i in 0..3 {
            cluster.wait_synced(net, i, 3, deadline).await;
        }
        cluster
    }

    /// Starts node `i`'s server (bootstrapping a new cluster when `bootstrap`).
    fn launch(&mut self, net: &Network, i: usize, bootstrap: bool) {
        let node = &mut self.nodes[i];
        let config = format!("--defaults-file={}", node.dir.join("my.cnf").display());
        let user = format!("--user={USER}");
        let mut args = vec![config.as_str(), user.as_str()];
        if bootstrap {
            args.push("--wsrep-new-cluster");
        }
        let name = format!("mariadbd-{}", node.host);
        node.process = Some(net.spawn(&node.host, &name, Path::new(MARIADBD), &args, &[]));
    }

    /// Waits until node `i` answers on its socket with `wsrep_ready=ON` (the bootstrap node,
    /// before any remote user exists).
    async fn wait_socket_ready(&mut self, i: usize, deadline: Instant) {
        loop {
            self.check_running(i, "to be ready");
            let options = MySqlConnectOptions::new().socket(self.nodes[i].socket()).username("root");
            if let Ok(Ok(mut conn)) = tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await
                && status(&mut conn, "wsrep_ready").await.as_deref() == Some("ON")
            {
                let _ = conn.close().await;
                return;
            }
            self.check_deadline(i, deadline, "to be ready on its socket");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates `root`@`%` on node `i` through its socket.
    async fn create_remote_root(&self, i: usize) {
        let node = &self.nodes[i];
        let options = MySqlConnectOptions::new().socket(node.socket()).username("root");
        let mut conn = options
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {} on its socket: {e}\n{}", node.host, node.log_tail(LOG_LINES)));
        for sql in
            ["CREATE USER IF NOT EXISTS 'root'@'%'", "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION"]
        {
            conn.execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql} on {}: {e}\n{}", node.host, node.log_tail(LOG_LINES)));
        }
        let _ = conn.close().await;
    }

    /// Waits until node `i`, asked over the network from its own host, is synced, ready, and
    /// sees a cluster of `size`.
    async fn wait_synced(&mut self, net: &Network, i: usize, size: u32, deadline: Instant) {
        let mut last = String::from("no answer");
        loop {
            self.check_running(i, "to join");
            let host = self.nodes[i].host.clone();
            if let Ok(mut conn) = self.connect(net, &host, &host, "").await {
                let ready = status(&mut conn, "wsrep_ready").await;
                let state = status(&mut conn, "wsrep_local_state_comment").await;
                let seen = status(&mut conn, "wsrep_cluster_size").await;
                let _ = conn.close().await;
                last = format!("wsrep_ready={ready:?} wsrep_local_state_comment={state:?} wsrep_cluster_size={seen:?}");
                if ready.as_deref() == Some("ON")
                    && state.as_deref() == Some("Synced")
                    && seen.and_then(|s| s.parse().ok()) == Some(size)
                {
                    return;
                }
            }
            self.check_deadline(i, deadline, &format!("to be synced in a cluster of {size} (last: {last})"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Panics (with its log) when node `i`'s server has exited.
    fn check_running(&mut self, i: usize, what: &str) {
        let node = &mut self.nodes[i];
        if let Some(process) = node.process.as_mut()
            && !process.alive()
        {
            panic!(
                "waiting for the Galera node on {} {what}: mariadbd exited\n{}",
                node.host,
                node.log_tail(LOG_LINES)
            );
        }
    }

    /// Panics (with its log) when `deadline` has passed.
    fn check_deadline(&self, i: usize, deadline: Instant, what: &str) {
        let node = &self.nodes[i];
        assert!(
            Instant::now() < deadline,
            "the Galera node on {} did not get {what} in time\n{}",
            node.host,
            node.log_tail(LOG_LINES)
        );
    }

    /// Every node, in the order of the hosts given to [`GaleraCluster::start`] (killed ones too).
    pub fn nodes(&self) -> &[GaleraNode] {
        &self.nodes
    }

    /// The node on `host`.
    ///
    /// # Panics
    /// When no node runs there.
    pub fn node(&self, host: &str) -> &GaleraNode {
        self.nodes.iter().find(|n| n.host == host).unwrap_or_else(|| panic!("no Galera node on host {host}"))
    }

    /// The hosts of the nodes not killed by [`GaleraCluster::kill`].
    pub fn live_hosts(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| n.process.is_some()).map(|n| n.host.as_str()).collect()
    }

    /// The multi-host URL of database `db`: `mysql://root@ip1:3306,ip2:3306,ip3:3306/<db>`
    /// (every node, in the order of the hosts, comma separated), for a client that fails over
    /// between them.
    pub fn url(&self, db: &str) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("mysql://root@{}/{db}", hosts.join(","))
    }

    /// The URL of database `db` on the node on `host` alone: `mysql://root@<ip>:3306/<db>`.
    pub fn node_url(&self, host: &str, db: &str) -> String {
        format!("mysql://root@{}/{db}", self.node(host).addr())
    }

    /// How to connect, as `root` to database `db` (none when empty), to the node on `host` from
    /// inside host `from`: to a loopback address of the test process that [`Network::reach`]
    /// relays from `from` to the node, so cutting `from`'s link, or the node's, cuts the
    /// connection. The options are the caller's to keep (e.g. in a task that reconnects).
    pub async fn connect_options(
        &self,
        net: &Network,
        from: &str,
        host: &str,
        db: &str,
    ) -> std::io::Result<MySqlConnectOptions> {
        let local = net.reach(from, self.node(host).addr()).await?;
        let options = MySqlConnectOptions::new().host(&local.ip().to_string()).port(local.port()).username("root");
        Ok(if db.is_empty() { options } else { options.database(db) })
    }

    /// A connection made with [`GaleraCluster::connect_options`]; fails after 5 s.
    pub async fn connect(
        &self,
        net: &Network,
        from: &str,
        host: &str,
        db: &str,
    ) -> Result<MySqlConnection, sqlx::Error> {
        let options = self.connect_options(net, from, host, db).await?;
        tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out").into()))
    }

    /// Creates database `db` (if it does not exist) through the first live node, which
    /// replicates it to the others.
    ///
    /// # Panics
    /// When every node is killed, or the statement fails.
    pub async fn create_database(&self, net: &Network, db: &str) {
        assert!(db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "database name {db:?}");
        let host = *self.live_hosts().first().expect("every Galera node was killed");
        let mut conn = self.connect(net, host, host, "").await.unwrap_or_else(|e| {
            panic!("connecting to the Galera node on {host}: {e}\n{}", self.node(host).log_tail(LOG_LINES))
        });
        let sql = format!("CREATE DATABASE IF NOT EXISTS `{db}`");
        conn.execute(AssertSqlSafe(sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("{sql} on {host}: {e}\n{}", self.node(host).log_tail(LOG_LINES)));
        let _ = conn.close().await;
    }

    /// Kills the node on `host` (SIGKILL to its `mariadbd`) and reaps it.
    pub fn kill(&mut self, host: &str) {
        let node = self.nodes.iter_mut().find(|n| n.host == host).unwrap_or_else(|| panic!("no Galera node on {host}"));
        if let Some(mut process) = node.process.take() {
            process.kill();
        }
    }

    /// `wsrep_cluster_size` as the node on `host` sees it, asked from inside its own host (so
    /// it answers while the host is cut off); `None` when it does not answer within 5 s.
    pub async fn cluster_size(&self, net: &Network, host: &str) -> Option<u32> {
        self.status(net, host, "wsrep_cluster_size").await?.parse().ok()
    }

    /// The global status variable `name` (`wsrep_ready`, `wsrep_local_state_comment`,
    /// `wsrep_cluster_status`, ...) of the node on `host`, asked from inside its own host; `None`
    /// when it does not answer within 5 s.
    pub async fn status(&self, net: &Network, host: &str, name: &str) -> Option<String> {
        let ask = async {
            let mut conn = self.connect(net, host, host, "").await.ok()?;
            let value = status(&mut conn, name).await;
            let _ = conn.close().await;
            value
        };
        tokio::time::timeout(QUERY_TIMEOUT, ask).await.ok().flatten()
    }

    /// Waits until every live node is synced, ready and sees a cluster of `size`.
    ///
    /// # Panics
    /// After `limit`, with the tail of the log of the first node that was not.
    pub async fn wait_cluster_size(&mut self, net: &Network, size: u32, limit: Duration) {
        let deadline = Instant::now() + limit;
        let live: BTreeSet<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].process.is_some()).collect();
        for i in live {
            self.wait_synced(net, i, size, deadline).await;
        }
    }
}

/// The value of global status variable `name` (`SHOW GLOBAL STATUS`, which a node answers also
/// when it is not ready for queries).
async fn status(conn: &mut MySqlConnection, name: &str) -> Option<String> {
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "status variable {name:?}");
    let sql = format!("SHOW GLOBAL STATUS LIKE '{name}'");
    let ask = conn.fetch_optional(AssertSqlSafe(sql));
    let row = tokio::time::timeout(QUERY_TIMEOUT, ask).await.ok()?.ok()??;
    row.try_get::<String, _>(1)
        .ok()
        .or_else(|| row.try_get::<Vec<u8>, _>(1).ok().map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// A node's configuration file: only what it says counts (`--defaults-file`), not `/etc/mysql`.
fn my_cnf(host: &str, ip: Ipv4Addr, dir: &Path, members: &str) -> String {
    let mut cnf = String::from("[mysqld]\n");
    let dir = dir.display();
    let settings = [
        format!("datadir = {dir}/data"),
        format!("socket = {dir}/mysqld.sock"),
        format!("pid-file = {dir}/mysqld.pid"),
        format!("tmpdir = {dir}"),
        format!("bind-address = {ip}"),
        format!("port = {PORT}"),
        "skip-name-resolve".into(),
        // Startup time and memory: a small buffer pool and redo log, no performance schema.
        "innodb_buffer_pool_size = 32M".into(),
        "innodb_log_file_size = 16M".into(),
        "performance_schema = OFF".into(),
        // Durability comes from replication to the other nodes; a node's own log is flushed
        // once a second (the standard Galera setting).
        "innodb_flush_log_at_trx_commit = 2".into(),
        "binlog_format = ROW".into(),
        "default_storage_engine = InnoDB".into(),
        "innodb_autoinc_lock_mode = 2".into(),
        "wsrep_on = ON".into(),
        format!("wsrep_provider = {PROVIDER}"),
        format!("wsrep_provider_options = \"{PROVIDER_OPTIONS}\""),
        format!("wsrep_cluster_name = {CLUSTER_NAME}"),
        format!("wsrep_cluster_address = gcomm://{members}"),
        format!("wsrep_node_address = {ip}"),
        format!("wsrep_node_name = {host}"),
        "wsrep_sst_method = rsync".into(),
    ];
    for setting in settings {
        let _ = writeln!(cnf, "{setting}");
    }
    cnf
}

/// Makes a data directory with `mariadb-install-db` (in the test process's own namespace: it
/// runs the server without networking), root@localhost without a password.
async fn install_db(datadir: &Path, deadline: Instant) {
    let _ = std::fs::remove_dir_all(datadir);
    let log_path = datadir.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
    let err = log.try_clone().unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
    let mut child = tokio::process::Command::new(INSTALL_DB)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--user={USER}"))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {INSTALL_DB}: {e}"));
    let status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{INSTALL_DB} did not finish in time\n{}", tail(&log_path, LOG_LINES)));
    match status {
        Ok(s) if s.success() => {}
        other => panic!("{INSTALL_DB} failed: {other:?}\n{}", tail(&log_path, LOG_LINES)),
    }
}

/// Gives `dir` and everything in it to [`USER`].
fn chown_to_user(dir: &Path) {
    let out = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{USER}:{USER}"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
    assert!(out.status.success(), "chown -R {USER} {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
}

/// Copies directory `from` into a new directory `to` (files and directories).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The last `lines` lines of file `path`, under a header naming it.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read it: {e})"));
    let all: Vec<&str> = text.lines().collect();
    let mut out = format!("----- {} (last {} of {} lines)\n", path.display(), lines.min(all.len()), all.len());
    for line in &all[all.len().saturating_sub(lines)..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}
