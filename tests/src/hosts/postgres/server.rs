//! One node's server: its directories, `initdb` and the primary's settings, the standby's
//! `pg_basebackup`, its postmaster started and crashed, and the server programs run as `postgres`.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::super::{Network, Process};
use super::sql::connect_to;
use super::{PATIENCE, PG_ENV, PORT, PgCluster, USER, tail};

/// One node: a server in one host.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) host: String,
    pub(super) ip: Ipv4Addr,
    /// `<scratch>/<host>`.
    pub(super) dir: PathBuf,
    /// `<dir>/pgdata`.
    pub(super) data: PathBuf,
    /// `<dir>/sockets`.
    sockets: PathBuf,
    /// The server's log.
    pub(super) log: PathBuf,
    /// The postmaster, while it was not killed.
    pub(super) server: Option<Process>,
}

impl Node {
    pub(super) fn new(net: &Network, host: &str) -> Node {
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

    pub(super) fn addr(&self) -> SocketAddr {
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
    pub(super) fn start(&mut self, net: &Network, bin: &Path) {
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
    pub(super) fn check_alive(&mut self, doing: &str) {
        let alive = self.server.as_mut().is_some_and(Process::alive);
        assert!(alive, "postgres: the server on {} exited while {doing}\n{}", self.host, tail(&self.log, 40));
    }

    /// Waits until it answers `SELECT 1` (from its own host).
    pub(super) async fn wait_ready(&mut self, net: &Network) {
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
    pub(super) fn crash(&mut self) {
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

pub(super) fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("postgres: {} is not UTF-8", path.display()))
}

/// Runs `program args` as the `postgres` user inside `host`, in `cwd`, to its end, its output
/// going to `log`; panics, with the tail of `log`, when it fails or takes over [`PATIENCE`].
pub(super) async fn run_as_postgres(net: &Network, host: &str, cwd: &Path, log: &Path, program: &Path, args: &[&str]) {
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
pub(super) fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("postgres: cannot open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("postgres: cannot write {}: {e}", path.display()));
}

impl PgCluster {
    /// `initdb` on the primary's host, and its settings.
    pub(super) async fn init_primary(&self, net: &Network) {
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
    pub(super) async fn base_backup(&self, net: &Network) {
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
}
