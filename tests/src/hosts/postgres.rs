//! A PostgreSQL primary and a synchronous streaming standby, each in its own host of a
//! [`Network`], run from the machine's PostgreSQL installation: what a database-failover scenario
//! kills, promotes and checks.
//!
//! # What it runs, as an operator would
//!
//! The binaries are the newest `/usr/lib/postgresql/<version>/bin` (15 here). PostgreSQL refuses
//! to run as root, so every server program runs as the `postgres` user through
//! `setpriv --reuid=postgres --regid=postgres --init-groups -- <program>` (setpriv `exec`s, and so
//! does `ip netns exec`: a server's [`Process`] is its postmaster). Each node keeps everything in
//! `<scratch>/<host>/`: `pgdata/` (the data directory, `postgres`-owned, mode 0700) and `sockets/`
//! (its Unix socket); the scratch directory and `<host>/` are made traversable (0755). Logs are
//! `<host>-initdb.log`, `<host>-postgres.log` (the server's stderr: `logging_collector` is off),
//! `<host>-basebackup.log` and `<host>-promote.log` in the scratch directory.
//!
//! 1. **Primary** (`PgCluster::start`): `initdb -D <pgdata> -U postgres --auth=trust -E UTF8
//!    --locale=C --no-sync`, then appended to its `postgresql.conf`:
//!    ```text
//!    port = 5432
//!    wal_level = replica
//!    max_wal_senders = 10
//!    max_replication_slots = 10
//!    hot_standby = on
//!    synchronous_commit = on
//!    synchronous_standby_names = '*'
//!    shared_buffers = 32MB
//!    log_line_prefix = '%m [%p] %q%u@%d '
//!    ```
//!    and to its `pg_hba.conf`, for the network's /24 (the hosts' subnet):
//!    ```text
//!    host all all 10.A.B.0/24 trust
//!    host replication all 10.A.B.0/24 trust
//!    ```
//!    Started in its host as `postgres -D <pgdata> -c listen_addresses=<host ip>
//!    -c unix_socket_directories=<host dir>/sockets -c cluster_name=<host>`: what differs
//!    between the nodes is given on the command line, so the configuration files the standby
//!    copies stay right for it.
//! 2. **Standby**: `pg_basebackup -h <primary ip> -p 5432 -U postgres -D <pgdata> -R -X stream
//!    -c fast -C -S <standby host, `-` as `_`>`, run inside the standby's host (over the
//!    network): the copy, a physical replication slot on the primary, and (`-R`)
//!    `standby.signal` plus `primary_conninfo` and `primary_slot_name` in
//!    `postgresql.auto.conf`. Started like the primary, with its own address, socket directory
//!    and `cluster_name` (the `application_name` it streams as). `start` returns when the
//!    primary's `pg_stat_replication` shows it `streaming` with `sync_state = 'sync'`: from then
//!    on a commit is acknowledged only once the standby has flushed it
//!    (`synchronous_commit = on`).
//! 3. **Failover** ([`PgCluster::kill_primary`], [`PgCluster::promote_standby`]): the primary's
//!    postmaster is stopped (SIGSTOP, so it forks nothing more), its children and then itself are
//!    SIGKILLed: a crash, nothing of the server answers or sends afterwards. Promotion is
//!    `pg_ctl promote -D <pgdata> -w -t 60` in the standby's host, then, because the promoted
//!    node inherited `synchronous_standby_names = '*'` with the primary's `postgresql.conf` and
//!    has no standby of its own (every commit would wait forever),
//!    `ALTER SYSTEM SET synchronous_standby_names = ''` and `SELECT pg_reload_conf()` on it (what
//!    Patroni does, through its own configuration file, when no synchronous standby is left).
//!    Promotion is over when a new connection sees `pg_is_in_recovery() = false` and the empty
//!    setting, and a transaction that writes (`SELECT txid_current()`) commits: commits that
//!    were waiting are released only once the checkpointer has loaded the new setting, and the
//!    checkpointer is busy with the end-of-recovery checkpoint then. Measured on the 2-core
//!    development machine: `pg_ctl promote -w` 105-130 ms, writable 125-200 ms after the
//!    promotion started (one run in 20, under a parallel build, took 5.2 s, before each write
//!    attempt was bounded to 1 s: probably the commit waiting for the checkpointer).
//!    The old primary stays down: bringing it back as a standby (`pg_rewind`, a new
//!    basebackup) is not done here.
//!
//! Surprises: while `pg_basebackup -X stream` runs, its WAL stream is itself a synchronous
//! standby for `synchronous_standby_names = '*'` (the primary logs `standby "pg_basebackup" is
//! now a synchronous standby`), so `start` waits for the standby by its `cluster_name`, not for
//! any `sync` row.
//!
//! Clients reach a node at `<host ip>:5432` as `postgres`, without a password. [`PgCluster::url`]
//! is libpq's multi-host form with `target_session_attrs=read-write`, which libpq (`psql`) and
//! diego's store (`db::Store`) follow to the writable node; sqlx alone does not parse it (give
//! a bare sqlx connection a [`PgCluster::node_url`]). The test process connects through
//! [`Network::reach`] from a host of its choice ([`PgCluster::connect`]). Everything stops when
//! the [`PgCluster`] (its servers: SIGKILL) and the [`Network`] (the namespaces, the scratch
//! directory with the data) are dropped.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::{Connection as _, PgConnection};
use tokio::time::Instant;

use super::{Network, Process};

/// The port every node listens on, on its host's address.
pub const PORT: u16 = 5432;
/// The superuser every client connects as (trusted from the network's subnet: no password).
pub const USER: &str = "postgres";
/// Where the PostgreSQL versions are installed (`<version>/bin/postgres`).
pub const INSTALL_DIR: &str = "/usr/lib/postgresql";
/// How long starting, copying, promoting or connecting may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Variables of the test's environment that would change what the client programs connect to.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGTARGETSESSIONATTRS",
    "PGDATA",
];

/// The `bin` directory of the newest PostgreSQL under [`INSTALL_DIR`], if there is one.
pub fn bin_dir() -> Option<PathBuf> {
    let entries = std::fs::read_dir(INSTALL_DIR).ok()?;
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version: Vec<u32> = name.split('.').map(str::parse).collect::<Result<_, _>>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Why this machine cannot run a [`PgCluster`], if it cannot: no PostgreSQL server installed, no
/// `postgres` user, no `setpriv`.
pub fn unavailable() -> Option<String> {
    if bin_dir().is_none() {
        return Some(format!("no PostgreSQL server under {INSTALL_DIR}/<version>/bin"));
    }
    if !matches!(nix::unistd::User::from_name(USER), Ok(Some(_))) {
        return Some(format!("no `{USER}` user to run PostgreSQL as"));
    }
    match std::process::Command::new("setpriv").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("the `setpriv` command (util-linux) is missing".into()),
    }
}

/// Whether a PostgreSQL cluster can run here: `false` (after saying why) when the test should
/// skip.
///
/// # Panics
/// When it cannot run and [`super::REQUIRE_VAR`] is set.
pub fn available(test: &str) -> bool {
    let Some(reason) = unavailable() else { return true };
    assert!(
        std::env::var_os(super::REQUIRE_VAR).is_none(),
        "{test}: {} is set but this machine cannot run a PostgreSQL cluster: {reason}",
        super::REQUIRE_VAR
    );
    eprintln!("skipping {test}: {reason} (set {}=1 to make this a failure)", super::REQUIRE_VAR);
    false
}

/// The last `lines` lines of the file at `path` (or why there are none), for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let mut out = format!("--- last {} of {} lines of {}\n", lines.min(all.len()), all.len(), path.display());
            for line in &all[all.len().saturating_sub(lines)..] {
                let _ = writeln!(out, "{line}");
            }
            out
        }
        Err(e) => format!("--- {}: {e}\n", path.display()),
    }
}

/// One node: a server in one host.
#[derive(Debug)]
struct Node {
    host: String,
    ip: Ipv4Addr,
    /// `<scratch>/<host>`.
    dir: PathBuf,
    /// `<dir>/pgdata`.
    data: PathBuf,
    /// `<dir>/sockets`.
    sockets: PathBuf,
    /// The server's log.
    log: PathBuf,
    /// The postmaster, while it was not killed.
    server: Option<Process>,
}

impl Node {
    fn new(net: &Network, host: &str) -> Node {
        let dir = net.scratch().join(host);
        Node {
            host: host.to_owned(),
            ip: net.host(host).ip,
            data: dir.join("pgdata"),
            sockets: dir.join("sockets"),
            log: net.scratch().join(format!("{host}-postgres.log")),
            dir,
            server: None,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }

    /// Makes its directories: `dir` traversable by everyone, `data` and `sockets` the
    /// `postgres` user's.
    fn make_dirs(&self, net: &Network) {
        let user = match nix::unistd::User::from_name(USER) {
            Ok(Some(user)) => user,
            other => panic!("postgres: no `{USER}` user to run the servers as ({other:?})"),
        };
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("postgres: chmod {mode:o} {}: {e}", path.display()));
        };
        mode(net.scratch(), 0o755);
        std::fs::create_dir_all(&self.dir).unwrap_or_else(|e| panic!("postgres: {}: {e}", self.dir.display()));
        mode(&self.dir, 0o755);
        for (path, bits) in [(&self.data, 0o700), (&self.sockets, 0o755)] {
            std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("postgres: {}: {e}", path.display()));
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .unwrap_or_else(|e| panic!("postgres: chown {USER} {}: {e}", path.display()));
            mode(path, bits);
        }
    }

    /// Starts its postmaster in its host.
    fn start(&mut self, net: &Network, bin: &Path) {
        let postgres = bin.join("postgres");
        let args = [
            "--reuid=postgres".to_owned(),
            "--regid=postgres".to_owned(),
            "--init-groups".to_owned(),
            "--".to_owned(),
            path_str(&postgres).to_owned(),
            "-D".to_owned(),
            path_str(&self.data).to_owned(),
            "-c".to_owned(),
            format!("listen_addresses={}", self.ip),
            "-c".to_owned(),
            format!("unix_socket_directories={}", path_str(&self.sockets)),
            "-c".to_owned(),
            format!("cluster_name={}", self.host),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = format!("{}-postgres", self.host);
        self.server = Some(net.spawn(&self.host, &name, Path::new("setpriv"), &args, &[]));
    }

    /// Panics, with the tail of its log, when its server is not running.
    fn check_alive(&mut self, doing: &str) {
        let alive = self.server.as_mut().is_some_and(Process::alive);
        assert!(alive, "postgres: the server on {} exited while {doing}\n{}", self.host, tail(&self.log, 40));
    }

    /// Waits until it answers `SELECT 1` (from its own host).
    async fn wait_ready(&mut self, net: &Network) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.check_alive("starting");
            let last = match connect_to(net, &self.host, self.addr(), "postgres").await {
                Ok(mut conn) => match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn).await {
                    Ok(_) => return,
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "postgres: the server on {} did not accept connections within {PATIENCE:?} (last: {last})\n{}",
                self.host,
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Crashes its server: stops the postmaster (so it forks nothing more), SIGKILLs its
    /// children, then it, and reaps it.
    fn crash(&mut self) {
        let Some(mut server) = self.server.take() else { return };
        let Ok(raw) = i32::try_from(server.pid()) else { return };
        let pid = Pid::from_raw(raw);
        if server.alive() {
            let _ = kill(pid, Signal::SIGSTOP);
            for child in children(raw) {
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            }
        }
        server.kill();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.crash();
    }
}

/// The pids of the processes whose parent is `parent` (from `/proc/<pid>/stat`).
fn children(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent)
        })
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("postgres: {} is not UTF-8", path.display()))
}

/// A connection to the server at `target`, database `db`, made from inside `from` (through
/// [`Network::reach`]), within 5 s.
async fn connect_to(net: &Network, from: &str, target: SocketAddr, db: &str) -> Result<PgConnection, sqlx::Error> {
    let local = net.reach(from, target).await.map_err(sqlx::Error::Io)?;
    let url = format!("postgres://{USER}@{local}/{db}?sslmode=disable");
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&url)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {target} from {from} took over {CONNECT_TIMEOUT:?}"),
        ))),
    }
}

/// Runs `program args` as the `postgres` user inside `host`, in `cwd`, to its end, its output
/// going to `log`; panics, with the tail of `log`, when it fails or takes over [`PATIENCE`].
async fn run_as_postgres(net: &Network, host: &str, cwd: &Path, log: &Path, program: &Path, args: &[&str]) {
    let what = format!("{} {}", program.display(), args.join(" "));
    let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("postgres: {}: {e}", log.display()));
    let err = out.try_clone().unwrap_or_else(|e| panic!("postgres: {}: {e}", log.display()));
    let mut command = tokio::process::Command::new("ip");
    command
        .args(["netns", "exec", net.host(host).netns()])
        .args(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    for var in PG_ENV {
        command.env_remove(var);
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("postgres: cannot run {what} in {host}: {e}"));
    match tokio::time::timeout(PATIENCE, child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => panic!("postgres: `{what}` in {host} failed ({status})\n{}", tail(log, 40)),
        Ok(Err(e)) => panic!("postgres: waiting for `{what}` in {host}: {e}"),
        Err(_) => panic!("postgres: `{what}` in {host} did not finish within {PATIENCE:?}\n{}", tail(log, 40)),
    }
}

/// Appends `text` to the file at `path`.
fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("postgres: cannot open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("postgres: cannot write {}: {e}", path.display()));
}

/// A PostgreSQL primary and its synchronous streaming standby, each in its own host (see the
/// module's documentation for the commands and settings). The servers are killed when it is
/// dropped; their data directories go with the network's scratch directory.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    /// The node first started as the primary, then the one first started as the standby.
    nodes: [Node; 2],
    /// Which of `nodes` is the primary now.
    primary: usize,
}

impl PgCluster {
    /// Starts a primary on host `primary` and a synchronous streaming standby of it on host
    /// `standby`, and returns once the primary reports the standby `streaming` and `sync`.
    ///
    /// # Panics
    /// When PostgreSQL is not installed, or a step fails or takes over [`PATIENCE`] (with the
    /// tail of the step's log).
    pub async fn start(net: &Network, primary: &str, standby: &str) -> PgCluster {
        assert_ne!(primary, standby, "postgres: the primary and the standby need hosts of their own");
        let bin = bin_dir().unwrap_or_else(|| panic!("postgres: no PostgreSQL server under {INSTALL_DIR}"));
        let mut cluster = PgCluster { bin, nodes: [Node::new(net, primary), Node::new(net, standby)], primary: 0 };
        let started = Instant::now();
        cluster.init_primary(net).await;
        cluster.nodes[0].start(net, &cluster.bin);
        cluster.nodes[0].wait_ready(net).await;
        cluster.base_backup(net).await;
        cluster.nodes[1].start(net, &cluster.bin);
        cluster.nodes[1].wait_ready(net).await;
        cluster.wait_sync(net).await;
        eprintln!(
            "multihost: postgres: primary on {primary} ({}), synchronous standby on {standby} ({}), streaming after {} ms",
            cluster.nodes[0].ip,
            cluster.nodes[1].ip,
            started.elapsed().as_millis()
        );
        cluster
    }

    /// `initdb` on the primary's host, and its settings.
    async fn init_primary(&self, net: &Network) {
        let node = &self.nodes[0];
        node.make_dirs(net);
        let log = net.scratch().join(format!("{}-initdb.log", node.host));
        let args = ["-D", path_str(&node.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"];
        run_as_postgres(net, &node.host, &node.dir, &log, &self.bin.join("initdb"), &args).await;
        append(
            &node.data.join("postgresql.conf"),
            &format!(
                "\n# diego-rs multi-host tests (tests/src/hosts/postgres.rs); listen_addresses,\n\
                 # unix_socket_directories and cluster_name are given on each node's command line.\n\
                 port = {PORT}\n\
                 wal_level = replica\n\
                 max_wal_senders = 10\n\
                 max_replication_slots = 10\n\
                 hot_standby = on\n\
                 synchronous_commit = on\n\
                 synchronous_standby_names = '*'\n\
                 shared_buffers = 32MB\n\
                 log_line_prefix = '%m [%p] %q%u@%d '\n"
            ),
        );
        let [a, b, c, _] = node.ip.octets();
        append(
            &node.data.join("pg_hba.conf"),
            &format!(
                "\n# diego-rs multi-host tests: every host of the network, no password\n\
                 host all all {a}.{b}.{c}.0/24 trust\n\
                 host replication all {a}.{b}.{c}.0/24 trust\n"
            ),
        );
    }

    /// `pg_basebackup` of the primary, run in the standby's host over the network, writing the
    /// standby's configuration (`-R`) and creating its replication slot on the primary.
    async fn base_backup(&self, net: &Network) {
        let (primary, standby) = (&self.nodes[0], &self.nodes[1]);
        standby.make_dirs(net);
        let log = net.scratch().join(format!("{}-basebackup.log", standby.host));
        let ip = primary.ip.to_string();
        let port = PORT.to_string();
        let slot = standby.host.replace('-', "_");
        let args = [
            "-h",
            &ip,
            "-p",
            &port,
            "-U",
            USER,
            "-D",
            path_str(&standby.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-C",
            "-S",
            &slot,
        ];
        run_as_postgres(net, &standby.host, &standby.dir, &log, &self.bin.join("pg_basebackup"), &args).await;
    }

    /// Waits until the primary reports a standby `streaming` and `sync`.
    async fn wait_sync(&mut self, net: &Network) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = String::from("nothing");
        loop {
            self.nodes[self.primary].check_alive("waiting for the standby");
            self.nodes[1 - self.primary].check_alive("waiting for it to stream");
            if let Ok(rows) = self.replication(net).await {
                // By its `cluster_name`: while it ran, pg_basebackup's WAL stream was a
                // synchronous standby too (`synchronous_standby_names = '*'`).
                let standby = &self.nodes[1 - self.primary].host;
                if rows.iter().any(|(name, state, sync)| name == standby && state == "streaming" && sync == "sync") {
                    return;
                }
                seen = format!("{rows:?}");
            }
            assert!(
                Instant::now() < deadline,
                "postgres: no synchronous standby streaming within {PATIENCE:?} (pg_stat_replication: {seen})\n{}\n{}",
                tail(&self.nodes[self.primary].log, 30),
                tail(&self.nodes[1 - self.primary].log, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The primary's `pg_stat_replication`: `(application_name, state, sync_state)` of each
    /// standby connected, asked from the primary's own host.
    pub async fn replication(&self, net: &Network) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        let mut conn = self.connect(net, self.primary(), self.primary(), "postgres").await?;
        sqlx::query_as(
            "SELECT application_name::text, coalesce(state, '')::text, coalesce(sync_state, '')::text \
             FROM pg_stat_replication ORDER BY application_name",
        )
        .fetch_all(&mut conn)
        .await
    }

    fn node(&self, host: &str) -> &Node {
        self.nodes.iter().find(|n| n.host == host).unwrap_or_else(|| {
            panic!("postgres: no node on host {host} (nodes: {}, {})", self.nodes[0].host, self.nodes[1].host)
        })
    }

    /// The host of the primary: the one started as the primary, or the standby once promoted.
    pub fn primary(&self) -> &str {
        &self.nodes[self.primary].host
    }

    /// The host of the other node: the standby, or the killed primary after a promotion.
    pub fn standby(&self) -> &str {
        &self.nodes[1 - self.primary].host
    }

    /// The address clients reach the node on `host` at (`<host ip>:5432`).
    pub fn addr(&self, host: &str) -> SocketAddr {
        self.node(host).addr()
    }

    /// The server log of the node on `host`.
    pub fn log(&self, host: &str) -> PathBuf {
        self.node(host).log.clone()
    }

    /// The data directory of the node on `host`.
    pub fn data_dir(&self, host: &str) -> PathBuf {
        self.node(host).data.clone()
    }

    /// `postgres://postgres@<primary ip>:5432,<standby ip>:5432/<db>?target_session_attrs=read-write`:
    /// libpq's multi-host URL of database `db`, with which a client tries the nodes in order and
    /// keeps the first that accepts writes: libpq (`psql`), and diego's own store
    /// (`db::Store`, db/src/targets.rs), which also moves its pools to the other node when the
    /// one it uses goes away. sqlx itself does not parse it: give a bare sqlx connection a
    /// [`PgCluster::node_url`].
    pub fn url(&self, db: &str) -> String {
        let (a, b) = (&self.nodes[0], &self.nodes[1]);
        format!("postgres://{USER}@{}:{PORT},{}:{PORT}/{db}?target_session_attrs=read-write", a.ip, b.ip)
    }

    /// `postgres://postgres@<ip>:5432/<db>`: the URL of database `db` on the node on `host`.
    pub fn node_url(&self, host: &str, db: &str) -> String {
        format!("postgres://{USER}@{}/{db}", self.node(host).addr())
    }

    /// A connection to database `db` of the node on `node`, made from inside host `from` (so it
    /// goes over `from`'s link, and a cut stops it), within 5 s.
    pub async fn connect(&self, net: &Network, from: &str, node: &str, db: &str) -> Result<PgConnection, sqlx::Error> {
        connect_to(net, from, self.node(node).addr(), db).await
    }

    /// Creates database `db` (letters, digits and `_`) on the primary, from the primary's host.
    ///
    /// # Panics
    /// When it cannot.
    pub async fn create_database(&self, net: &Network, db: &str) {
        assert!(
            !db.is_empty() && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "postgres: database name {db:?} must be letters, digits and _"
        );
        let primary = self.primary();
        let mut conn = self
            .connect(net, primary, primary, "postgres")
            .await
            .unwrap_or_else(|e| panic!("postgres: cannot connect to the primary on {primary}: {e}"));
        let sql = format!("CREATE DATABASE {db}");
        let done = tokio::time::timeout(PATIENCE, sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn)).await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("postgres: CREATE DATABASE {db} on {primary}: {e}"),
            Err(_) => panic!(
                "postgres: CREATE DATABASE {db} on {primary} took over {PATIENCE:?} (is the standby streaming?)\n{}",
                tail(&self.nodes[self.primary].log, 30)
            ),
        }
    }

    /// Crashes the primary: its postmaster stopped, then its every process SIGKILLed, as when
    /// its machine loses power. Its connections are reset; a commit it had not acknowledged is
    /// never acknowledged.
    pub fn kill_primary(&mut self) {
        let primary = self.primary;
        self.nodes[primary].crash();
    }

    /// Promotes the standby, as an operator would once the primary is gone: `pg_ctl promote -w`
    /// in its host, then `ALTER SYSTEM SET synchronous_standby_names = ''` and a reload (it has
    /// no standby to wait for). Returns how long it took until a new connection found it out of
    /// recovery and a writing transaction committed on it; from then on [`PgCluster::primary`]
    /// names it.
    ///
    /// # Panics
    /// When there is no standby left, or promotion fails or takes over [`PATIENCE`].
    pub async fn promote_standby(&mut self, net: &Network) -> Duration {
        let standby = 1 - self.primary;
        assert!(self.nodes[standby].server.is_some(), "postgres: no standby to promote (it was killed)");
        let started = Instant::now();
        let deadline = started + PATIENCE;
        let node = &self.nodes[standby];
        let host = node.host.clone();
        let log = net.scratch().join(format!("{host}-promote.log"));
        let args = ["promote", "-D", path_str(&node.data), "-w", "-t", "60"];
        run_as_postgres(net, &host, &node.dir, &log, &self.bin.join("pg_ctl"), &args).await;
        let promoted = started.elapsed();
        self.until(standby, deadline, "it to leave recovery (and to reset synchronous_standby_names)", async || {
            let mut conn = self.connect(net, &host, &host, "postgres").await?;
            let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await?;
            if recovering {
                return Ok(false);
            }
            sqlx::raw_sql("ALTER SYSTEM SET synchronous_standby_names = ''").execute(&mut conn).await?;
            sqlx::raw_sql("SELECT pg_reload_conf()").execute(&mut conn).await?;
            Ok(true)
        })
        .await;
        self.until(standby, deadline, "new connections to see synchronous_standby_names = ''", async || {
            // A new connection's backend starts from the postmaster's settings.
            let mut conn = self.connect(net, &host, &host, "postgres").await?;
            let names: String =
                sqlx::query_scalar("SELECT current_setting('synchronous_standby_names')").fetch_one(&mut conn).await?;
            Ok(names.is_empty())
        })
        .await;
        let reset = started.elapsed();
        self.until(standby, deadline, "a write to commit", async || {
            // A transaction with an id commits only once no synchronous standby is waited
            // for; the checkpointer tells the backends, when it gets to the reload.
            let mut conn = self.connect(net, &host, &host, "postgres").await?;
            let write = sqlx::query_scalar::<_, i64>("SELECT txid_current()").fetch_one(&mut conn);
            match tokio::time::timeout(Duration::from_secs(1), write).await {
                Ok(result) => result.map(|_| true),
                Err(_) => Ok(false),
            }
        })
        .await;
        let writable = started.elapsed();
        let summary = format!(
            "promoted {host}: pg_ctl promote -w returned after {} ms, synchronous_standby_names reset after {} ms, \
             first write committed after {} ms",
            promoted.as_millis(),
            reset.as_millis(),
            writable.as_millis()
        );
        append(&log, &format!("{summary}\n"));
        eprintln!("multihost: postgres: {summary}");
        self.primary = standby;
        writable
    }

    /// Retries `attempt` every 100 ms until it returns `Ok(true)`; panics after `deadline`, with
    /// the tail of node `node`'s log.
    async fn until(
        &self,
        node: usize,
        deadline: Instant,
        what: &str,
        mut attempt: impl AsyncFnMut() -> Result<bool, sqlx::Error>,
    ) {
        loop {
            let last = match attempt().await {
                Ok(true) => return,
                Ok(false) => "not yet".to_owned(),
                Err(e) => e.to_string(),
            };
            let node = &self.nodes[node];
            assert!(
                Instant::now() < deadline,
                "postgres: promoting {}: gave up waiting for {what} (last: {last})\n{}",
                node.host,
                tail(&node.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the node on `host` is in recovery (a standby), asked from its own host.
    ///
    /// # Panics
    /// When it does not answer within 10 s.
    pub async fn is_in_recovery(&self, net: &Network, host: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = async {
                let mut conn = self.connect(net, host, host, "postgres").await?;
                sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await
            };
            let error = match tokio::time::timeout(CONNECT_TIMEOUT, answer).await {
                Ok(Ok(recovering)) => return recovering,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
            };
            assert!(
                Instant::now() < deadline,
                "postgres: the node on {host} does not say whether it is in recovery: {error}\n{}",
                tail(&self.node(host).log, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `psql -X -A -t -c <sql>` in host `from` against `url` (e.g. [`PgCluster::url`]),
    /// giving up on each host after 5 s; returns its output, trimmed, or why it failed.
    pub async fn psql(&self, net: &Network, from: &str, url: &str, sql: &str) -> Result<String, String> {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", net.host(from).netns()])
            .arg(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for var in PG_ENV {
            command.env_remove(var);
        }
        command.env("PGCONNECT_TIMEOUT", "5");
        let out = tokio::time::timeout(PATIENCE, command.output())
            .await
            .map_err(|_| format!("psql in {from} did not finish within {PATIENCE:?}"))?
            .map_err(|e| format!("cannot run psql in {from}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!("psql in {from} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }
}
