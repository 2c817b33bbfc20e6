//! Processes benchmark-bbs starts: the BBS of `--bbs-process` ([`BbsProcess`]) and the soak's
//! components (`crate::soak::components`) share what is here: signals, memory figures from
//! `/proc`, free loopback ports, config-file quoting, the binaries next to this executable, and
//! [`Supervised`], a child that is stopped (SIGTERM, then SIGKILL after a bound) however the run
//! ends: [`Supervised::stop`] on the normal path, its `Drop` on an error or a panic, and on
//! SIGINT / SIGTERM of benchmark-bbs a watcher that stops every supervised child and exits 130.
//! (A SIGKILL of benchmark-bbs itself cannot be caught: its children are then left running.)

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use svc::identity::Role;
use svc::pki::Pki;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a stopping child gets between SIGTERM and SIGKILL (the BBS's own graceful stop ends
/// its streams and waits up to 10 s for calls in flight).
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// How often a supervised BBS's RSS is sampled.
pub const RSS_PERIOD: Duration = Duration::from_secs(1);

/// How long a started BBS gets to accept connections.
const SERVE_WITHIN: Duration = Duration::from_secs(60);

/// Sends `signal` to `pid` (errors, e.g. an exited process, are ignored).
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// VmHWM (peak RSS) of `pid` in KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM")
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned)))
        .is_some_and(|state| state != "Z" && state != "X")
}

/// A free loopback port for a child process to bind ([`svc::ports`]).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(svc::ports::free_port()?)
}

/// `text` as a TOML (and JSON) string literal.
pub fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// The `[tls]` table of `role`/`name` with certificates from `pki`.
pub fn tls_table(pki: &Pki, role: Role, name: &str) -> anyhow::Result<String> {
    let tls = pki.tls_of(role, name)?;
    Ok(format!(
        "\n[tls]\nca = {}\ncert = {}\nkey = {}\n",
        quoted(&tls.ca.display().to_string()),
        quoted(&tls.cert.display().to_string()),
        quoted(&tls.key.display().to_string())
    ))
}

/// The directory of the binaries built with this one: the running executable's
/// (`target/<profile>/`), or one up for a test executable in `target/<profile>/deps/`.
pub fn binaries_dir_of(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("the running executable")?;
    let mut dir = exe.parent().map(Path::to_owned).unwrap_or_default();
    if !dir.join(name).is_file() && dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().map(Path::to_owned).unwrap_or_default();
    }
    Ok(dir)
}

/// Pids of the supervised children, for the signal watcher.
static SUPERVISED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static WATCH: Once = Once::new();

fn supervised() -> std::sync::MutexGuard<'static, Vec<u32>> {
    SUPERVISED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Installs, once per process, the watcher that on SIGINT or SIGTERM stops every supervised
/// child and exits 130. Installed only when a child is started, so a run without one keeps the
/// default signal behaviour.
fn watch_signals() {
    WATCH.call_once(|| {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        handle.spawn(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let pids = supervised().clone();
            eprintln!("benchmark-bbs: interrupted: stopping {} child process(es)", pids.len());
            for &pid in &pids {
                signal(pid, Signal::SIGTERM);
            }
            let deadline = Instant::now() + STOP_GRACE;
            while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for &pid in pids.iter().filter(|&&p| alive(p)) {
                signal(pid, Signal::SIGKILL);
            }
            std::process::exit(130);
        });
    });
}

/// A child process that is stopped however its owner ends (see the module documentation).
#[derive(Debug)]
pub struct Supervised {
    child: Option<Child>,
    name: String,
}

impl Supervised {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        watch_signals();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        supervised().push(child.id());
        Ok(Self { child: Some(child), name: name.to_owned() })
    }

    /// Its pid while it has not been stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How it ended, if it has exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then SIGKILL when it has not exited within `grace`; reaps it. Returns its exit
    /// status and whether it had to be killed.
    pub async fn stop(&mut self, grace: Duration) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        unregister(child.id());
        signal(child.id(), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some((status, false)),
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => break,
            }
        }
        tracing::warn!(child = %self.name, ?grace, "the child did not stop after SIGTERM: SIGKILL");
        let _ = child.kill();
        child.wait().ok().map(|status| (status, true))
    }
}

fn unregister(pid: u32) {
    supervised().retain(|&p| p != pid);
}

impl Drop for Supervised {
    /// An owner that ends without [`Supervised::stop`] (an error, a panic): SIGTERM, a short
    /// blocking wait, then SIGKILL, and reap.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        unregister(child.id());
        signal(child.id(), Signal::SIGTERM);
        for _ in 0..40 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// What to start a BBS process with: the settings an in-process BBS would get.
#[derive(Debug, Clone)]
pub struct BbsProcessSpec<'a> {
    /// The `bbs` binary; `None`: the one next to this executable.
    pub binary: Option<&'a Path>,
    /// Its database.
    pub database_url: &'a str,
    /// Where its config file, log and (for a server database) encryption key file go.
    pub dir: &'a Path,
    /// Events a subscriber may fall behind (`event_buffer`).
    pub event_buffer: usize,
    /// Event streams it serves at once (`max_event_subscribers`).
    pub max_event_subscribers: usize,
    /// Mutual TLS with the `diego://bbs` certificate from this PKI; `None`: plaintext.
    pub pki: Option<&'a Pki>,
}

/// The BBS's memory as sampled while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChildMemory {
    /// `VmHWM` of the process read just before it was stopped, in KiB.
    pub hwm_kib: Option<u64>,
    /// The largest `VmRSS` sampled (every [`RSS_PERIOD`]), in KiB.
    pub sampled_max_kib: Option<u64>,
    /// Samples taken.
    pub samples: u64,
}

/// A `bbs` binary run as its own process for the benchmark.
#[derive(Debug)]
pub struct BbsProcess {
    child: Supervised,
    /// Its gRPC address.
    pub address: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its stdout and stderr.
    pub log: PathBuf,
    sampler: CancellationToken,
    max_rss: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
}

impl BbsProcess {
    /// Writes its config file into `spec.dir`, starts it, waits until it accepts connections
    /// (not necessarily leading yet), and samples its RSS from then on.
    pub async fn start(spec: &BbsProcessSpec<'_>) -> anyhow::Result<Self> {
        let binary = match spec.binary {
            Some(path) => path.to_owned(),
            None => binaries_dir_of("bbs")?.join("bbs"),
        };
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing: --bbs-process runs the real bbs binary; build it with `cargo build -p bbs` in the same \
             profile as benchmark-bbs, or name it with --bbs-binary",
            binary.display()
        );
        let address = format!("127.0.0.1:{}", free_port()?);
        let config = spec.dir.join("bbs.toml");
        std::fs::write(&config, config_text(spec, &address)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log = spec.dir.join("bbs.log");
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", std::env::var("BENCHMARK_BBS_CHILD_LOG").unwrap_or_else(|_| "warn".into()))
            .env("NO_COLOR", "1");
        let mut child = Supervised::spawn("bbs", command, &log)?;
        let deadline = Instant::now() + SERVE_WITHIN;
        loop {
            if let Some(status) = child.exited() {
                return Err(anyhow!("the bbs process exited ({status}) before serving:\n{}", tail(&log, 20)));
            }
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the bbs process did not listen on {address} within {SERVE_WITHIN:?}:\n{}",
                tail(&log, 20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = child.pid().unwrap_or_default();
        let (sampler, max_rss, samples) = (CancellationToken::new(), Arc::new(AtomicU64::new(0)), Arc::default());
        tokio::spawn(sample_rss(pid, sampler.clone(), Arc::clone(&max_rss), Arc::clone(&samples)));
        Ok(Self { child, address, config, log, sampler, max_rss, samples })
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Its memory so far: `VmHWM` now, and the sampled maximum.
    pub fn memory(&self) -> ChildMemory {
        let samples = self.samples.load(Ordering::Relaxed);
        ChildMemory {
            hwm_kib: self.pid().and_then(hwm_kib),
            sampled_max_kib: (samples > 0).then(|| self.max_rss.load(Ordering::Relaxed)),
            samples,
        }
    }

    /// Stops it (SIGTERM, SIGKILL after [`STOP_GRACE`]) and returns its memory read just before.
    pub async fn stop(mut self) -> ChildMemory {
        let memory = self.memory();
        self.sampler.cancel();
        match self.child.stop(STOP_GRACE).await {
            Some((status, false)) if !status.success() => {
                tracing::warn!(%status, log = %self.log.display(), "the bbs process stopped with an error")
            }
            Some((_, true)) => tracing::warn!("the bbs process was killed after {STOP_GRACE:?}"),
            _ => {}
        }
        memory
    }
}

impl Drop for BbsProcess {
    fn drop(&mut self) {
        self.sampler.cancel();
    }
}

/// Samples `pid`'s VmRSS every [`RSS_PERIOD`] into `max` until `stop`.
async fn sample_rss(pid: u32, stop: CancellationToken, max: Arc<AtomicU64>, samples: Arc<AtomicU64>) {
    let mut every = tokio::time::interval(RSS_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Some(kib) = rss_kib(pid) {
            max.fetch_max(kib, Ordering::Relaxed);
            samples.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The BBS's config file: the in-process BBS's settings (database, data directory, event
/// buffer, TLS), a loopback gRPC address and an admin port the kernel picks.
fn config_text(spec: &BbsProcessSpec<'_>, address: &str) -> anyhow::Result<String> {
    let mut c = String::from("# Written by benchmark-bbs --bbs-process for this run.\n");
    let _ = writeln!(c, "database_url = {}", quoted(spec.database_url));
    let _ = writeln!(c, "data_dir = {}", quoted(&spec.dir.display().to_string()));
    let _ = writeln!(c, "listen_address = {}", quoted(address));
    let _ = writeln!(c, "admin_address = \"127.0.0.1:0\"");
    let _ = writeln!(c, "event_buffer = {}", spec.event_buffer);
    let _ = writeln!(c, "max_event_subscribers = {}", spec.max_event_subscribers);
    match spec.pki {
        Some(pki) => c.push_str(&tls_table(pki, Role::Bbs, "")?),
        None => c.push_str("\n[tls]\ninsecure_plaintext = true\n"),
    }
    Ok(c)
}

/// The last `lines` lines of the file at `path` (for an error message).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_of_this_process() {
        let me = std::process::id();
        let (rss, hwm) = (rss_kib(me).unwrap(), hwm_kib(me).unwrap());
        assert!(rss > 0 && hwm >= rss, "rss {rss} hwm {hwm}");
        assert!(alive(me));
        assert_eq!(status_kib(me, "NoSuchField"), None);
    }

    #[tokio::test]
    async fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = std::env::temp_dir().join(format!("supervised-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]);
        let mut child = Supervised::spawn("stubborn", command, &dir.join("log")).unwrap();
        let pid = child.pid().unwrap();
        while !std::fs::read_to_string(dir.join("log")).unwrap_or_default().contains("ready") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, killed) = child.stop(Duration::from_millis(300)).await.unwrap();
        assert!(killed, "SIGTERM was ignored, so it took a SIGKILL");
        assert!(!alive(pid));
        assert!(!supervised().contains(&pid));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_dropped_child_is_stopped() {
        let dir = std::env::temp_dir().join(format!("supervised-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new("sleep");
        command.arg("60");
        let child = Supervised::spawn("sleeper", command, &dir.join("log")).unwrap();
        let pid = child.pid().unwrap();
        assert!(alive(pid));
        drop(child);
        assert!(!alive(pid));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_config_file_carries_the_event_stream_limit() {
        let dir = std::env::temp_dir().join(format!("bbs-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = BbsProcessSpec {
            binary: None,
            database_url: "sqlite://x.db",
            dir: &dir,
            event_buffer: 77,
            max_event_subscribers: 4_065,
            pki: None,
        };
        let file = dir.join("bbs.toml");
        std::fs::write(&file, config_text(&spec, "127.0.0.1:1").unwrap()).unwrap();
        let config = svc::config::load::<bbs::config::BbsConfig>(Some(&file)).expect("the BBS reads it");
        assert_eq!((config.max_event_subscribers, config.event_buffer), (4_065, 77));
        let _ = std::fs::remove_dir_all(dir);
    }
}
