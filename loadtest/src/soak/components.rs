//! The soak's components as real processes: two `bbs` (one leads, one stands by), one
//! `auctioneer`, `sim` cells and `process` cells, each the binary next to the running executable,
//! configured by a file written here and `--config`, over mutual TLS with certificates from one
//! PKI under `<out>/tls`. Every process can be SIGKILLed and started again on the same config
//! (same ports), SIGSTOPped and SIGCONTinued, and has its VmRSS read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use nix::sys::signal::Signal;
use svc::identity::Role;
use svc::pki::Pki;

use crate::target::process::{binaries_dir_of, quoted, tls_table};
pub use crate::target::process::{free_port, rss_kib, signal};

/// What a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A BBS.
    Bbs,
    /// The auctioneer.
    Auctioneer,
    /// A rep with the `sim` runtime.
    SimCell,
    /// A rep with the `process` runtime.
    ProcessCell,
}

/// Intervals of the soak's components: short, so chaos is noticed and healed in seconds.
pub const LOCK_TTL: Duration = Duration::from_secs(3);
/// The BBS's convergence interval (also the doubled-instance tolerance).
pub const CONVERGENCE_INTERVAL: Duration = Duration::from_secs(2);

/// One component: its config and, while it runs, its process.
#[derive(Debug)]
pub struct Component {
    /// `bbs-1`, `auctioneer`, `sim-1`, `proc-1`, ...
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its gRPC address.
    pub address: String,
    program: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Whether it is SIGSTOPped.
    pub paused: bool,
}

impl Component {
    /// Starts its process (again).
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.program)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", std::env::var("SOAK_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// SIGKILLs and reaps its process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&mut self, stop: bool) {
        if let Some(pid) = self.pid() {
            signal(pid, if stop { Signal::SIGSTOP } else { Signal::SIGCONT });
            self.paused = stop;
        }
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether its process is running (it may have exited by itself).
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binaries next to the running executable (`target/<profile>/`), or one directory up for
/// a test executable in `target/<profile>/deps/`.
pub fn binaries_dir() -> anyhow::Result<PathBuf> {
    let dir = binaries_dir_of("bbs")?;
    for name in ["bbs", "auctioneer", "cell-rep"] {
        if !dir.join(name).is_file() {
            return Err(anyhow!(
                "{} is missing: the soak runs the real binaries; build them with \
                 `cargo build -p bbs -p auctioneer -p cell-rep` (same profile as benchmark-bbs)",
                dir.join(name).display()
            ));
        }
    }
    Ok(dir)
}

/// Writes the configs of every component under `dir` and returns them, not started.
pub fn plan(
    dir: &Path,
    pki: &Pki,
    database_url: &str,
    sim_cells: usize,
    process_cells: usize,
) -> anyhow::Result<BTreeMap<String, Component>> {
    let bin = binaries_dir()?;
    let keys = dir.join("encryption.keys");
    let key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(&keys, format!("soak={key}\nactive=soak\n"))?;
    let mut out = BTreeMap::new();
    let mut add = |name: &str, kind: Kind, program: &str, address: String, config: String| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config)?;
        out.insert(
            name.to_owned(),
            Component {
                name: name.to_owned(),
                kind,
                address,
                program: bin.join(program),
                config: path,
                log: dir.join(format!("{name}.log")),
                child: None,
                paused: false,
            },
        );
        Ok(())
    };
    let mut bbs_addresses = Vec::new();
    for i in 1..=2 {
        let name = format!("bbs-{i}");
        let address = format!("127.0.0.1:{}", free_port()?);
        let mut c = String::new();
        let _ = writeln!(c, "database_url = {}", quoted(database_url));
        let _ = writeln!(c, "data_dir = {}", quoted(&dir.join(&name).display().to_string()));
        let _ = writeln!(c, "listen_address = {}", quoted(&address));
        let _ = writeln!(c, "admin_address = \"127.0.0.1:{}\"", free_port()?);
        let _ = writeln!(c, "instance_id = {}", quoted(&name));
        let _ = writeln!(c, "lock_ttl = \"{}ms\"", LOCK_TTL.as_millis());
        let _ = writeln!(c, "lock_retry_interval = \"500ms\"");
        let _ = writeln!(c, "presence_check_interval = \"250ms\"");
        let _ = writeln!(c, "communication_timeout = \"2s\"");
        let _ = writeln!(c, "convergence_interval = \"{}ms\"", CONVERGENCE_INTERVAL.as_millis());
        let _ = writeln!(c, "stale_unclaimed = \"{}ms\"", CONVERGENCE_INTERVAL.as_millis());
        let _ = writeln!(c, "cell_sync_grace = \"5s\"");
        let _ = writeln!(c, "expire_pending_task = \"60s\"");
        let _ = writeln!(c, "crash_backoff_base = \"1s\"");
        let _ = writeln!(c, "kick_task = \"2s\"");
        let _ = writeln!(c, "encryption_keys_file = {}", quoted(&keys.display().to_string()));
        let _ = writeln!(c, "\n[locket]\nauctioneer_lock_ttl = \"{}ms\"", LOCK_TTL.as_millis());
        c.push_str(&tls_table(pki, Role::Bbs, "")?);
        add(&name, Kind::Bbs, "bbs", address.clone(), c)?;
        bbs_addresses.push(address);
    }
    let address = format!("127.0.0.1:{}", free_port()?);
    let mut c = String::new();
    let _ = writeln!(c, "bbs_address = {}", quoted(&bbs_addresses[0]));
    let _ = writeln!(c, "listen_address = {}", quoted(&address));
    let _ = writeln!(c, "admin_address = \"127.0.0.1:{}\"", free_port()?);
    let _ = writeln!(c, "lock_ttl = \"{}ms\"", LOCK_TTL.as_millis());
    let _ = writeln!(c, "lock_retry_interval = \"500ms\"");
    let _ = writeln!(c, "communication_timeout = \"2s\"");
    let _ = writeln!(c, "cell_state_timeout = \"1s\"");
    let _ = writeln!(c, "cells_retry_interval = \"500ms\"");
    c.push_str(&tls_table(pki, Role::Auctioneer, "")?);
    add("auctioneer", Kind::Auctioneer, "auctioneer", address, c)?;
    let cells = (1..=sim_cells)
        .map(|i| (format!("sim-{i}"), Kind::SimCell))
        .chain((1..=process_cells).map(|i| (format!("proc-{i}"), Kind::ProcessCell)));
    for (n, (name, kind)) in cells.enumerate() {
        let address = format!("127.0.0.1:{}", free_port()?);
        let mut c = String::new();
        // Cells alternate between the two BBSs: each BBS serves presences and redirects writes.
        let _ = writeln!(c, "bbs_address = {}", quoted(&bbs_addresses[n % 2]));
        let _ = writeln!(c, "cell_id = {}", quoted(&name));
        let runtime = if kind == Kind::SimCell { "sim" } else { "process" };
        let _ = writeln!(c, "runtime = \"{runtime}\"");
        let _ = writeln!(c, "listen_address = {}", quoted(&address));
        let _ = writeln!(c, "admin_address = \"127.0.0.1:{}\"", free_port()?);
        let _ = writeln!(c, "data_dir = {}", quoted(&dir.join(&name).display().to_string()));
        let _ = writeln!(c, "cgroup_parent = \"\"");
        let _ = writeln!(c, "memory_mb = 4096");
        let _ = writeln!(c, "containers = {}", if kind == Kind::SimCell { 100 } else { 40 });
        let _ = writeln!(c, "presence_ttl = \"3s\"");
        let _ = writeln!(c, "presence_retry_interval = \"500ms\"");
        let _ = writeln!(c, "polling_interval = \"2s\"");
        let _ = writeln!(c, "communication_timeout = \"2s\"");
        let _ = writeln!(c, "graceful_shutdown_interval = \"1s\"");
        let _ = writeln!(c, "route_drain = \"1s\"");
        let _ = writeln!(c, "sim_start_delay = \"100ms\"");
        let _ = writeln!(c, "sim_task_duration = \"500ms\"");
        c.push_str(&tls_table(pki, Role::Cell, &name)?);
        add(&name, kind, "cell-rep", address, c)?;
    }
    Ok(out)
}

/// The pids of every process descending from `root` (children, grandchildren, ...).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.filter_map(|e| e.ok()) {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // `pid (comm) state ppid ...`: comm may hold spaces, so read after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(pid, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

/// SIGKILLs every process whose working directory lies under `dir` (containers of the process
/// cells that outlived a killed rep).
pub fn kill_strays(dir: &Path) -> usize {
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    for entry in entries.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        if std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            signal(pid, Signal::SIGKILL);
            killed += 1;
        }
    }
    killed
}
