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
//!
//! **Code.** The cluster's start and what it answers are here; `server` is one node's server
//! (directories, `initdb` and settings, `pg_basebackup`, the postmaster started and crashed),
//! `sql` the connections and queries, `failover` the crash and the promotion.
//!
//! [`Process`]: super::Process

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::Network;

mod failover;
mod server;
mod sql;

use server::Node;

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
}
