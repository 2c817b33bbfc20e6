//! The `process` runtime: each container is a directory `<data_dir>/containers/<guid>` and each
//! process a child process group (`process_group(0)`) running on the host, with stdout / stderr
//! captured line by line into the cell's [`LogStore`] (a ring per container and a rotated file
//! under `<data_dir>/logs`, see [`crate::logs`]) and logged.
//!
//! There is no filesystem or network isolation: no rootfs, host networking. Container paths map
//! into the container directory (`/tmp/app` is `<dir>/tmp/app`), so downloads land there and the
//! working directory is there; an absolute executable path is looked up in the container
//! directory first and on the host otherwise. Process groups are recorded in `<dir>/pgids` (and
//! the container's cgroup in `<dir>/cgroup`), so a destroy after a rep restart still kills what
//! the previous rep started; groups with no process left are dropped from the record when the
//! next one is added (see `room`).
//!
//! Resources are limited (see [`limits`]): `memory_mb`, `max_pids` and the CPU weight through a
//! cgroup v2 per container where the host allows it, through `RLIMIT_AS`, `nice` and a process
//! count otherwise. A process whose command line or environment cannot be exec'd is refused
//! before anything is spawned (see [`super::exec_limits`]).

mod exec;
pub mod limits;
mod room;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

pub use self::limits::LimitMode;
use super::exec_limits::{ExecLimits, check_exec};
use super::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ExitStatus, PortAllocator, ProcessSpec, RuntimeError,
    RuntimeProcess, StopSignal, exit_code, join_inside, validate_guid,
};
use crate::container::PortMapping;
use crate::logs::capture::{capture, drained, source_for};
use crate::logs::{Identity, LogConfig, LogStore, Stream};

/// The default `PATH` of processes whose environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Configuration of the process runtime.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Containers live under `<data_dir>/containers`.
    pub data_dir: PathBuf,
    /// The cgroup v2 directory, relative to the cgroup2 mount, holding one cgroup per container
    /// (`diego-rs`, shared with the runc runtime's cgroups). Empty: never use cgroups.
    pub cgroup_parent: String,
    /// The cgroup2 mount; `None` finds it in `/proc/self/mountinfo`.
    pub cgroup_mount: Option<PathBuf>,
    /// Address space allowed over `memory_mb` when memory is limited with `RLIMIT_AS` (128 MiB).
    pub address_space_headroom_mb: u64,
    /// The bounds of the captured output (kept under `<data_dir>/logs`).
    pub logs: LogConfig,
}

impl ProcessConfig {
    /// Defaults: cgroups under `diego-rs` when usable, 128 MiB of address-space headroom.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            cgroup_parent: "diego-rs".into(),
            cgroup_mount: None,
            address_space_headroom_mb: 128,
            logs: LogConfig::default(),
        }
    }
}

/// Runs containers as host process groups in per-container directories.
#[derive(Debug)]
pub struct ProcessRuntime {
    root: PathBuf,
    ports: PortAllocator,
    containers: Mutex<HashMap<String, ProcContainer>>,
    mode: LimitMode,
    /// Distinguishes this runtime's cgroups from another's under the same parent.
    instance: String,
    headroom_mb: u64,
    logs: LogStore,
}

#[derive(Debug, Default)]
struct ProcContainer {
    ports: Vec<PortMapping>,
    pgids: Vec<i32>,
    memory_mb: i32,
    max_pids: i32,
    cpu_weight: u32,
    /// The container's cgroup, in cgroup mode.
    cgroup: Option<PathBuf>,
    /// Serializes spawns, so concurrent ones (a parallel action) see each other in the count.
    spawning: Arc<tokio::sync::Mutex<()>>,
}

impl ProcessRuntime {
    /// A runtime keeping its containers under `<data_dir>/containers`, with the default limits
    /// configuration.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self::with_config(ProcessConfig::new(data_dir.as_ref()))
    }

    /// A runtime with `config`; decides here whether limits use cgroups or rlimits.
    pub fn with_config(config: ProcessConfig) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let mode = limits::detect(&config.cgroup_parent, config.cgroup_mount.as_deref(), &instance);
        Self {
            root: config.data_dir.join("containers"),
            ports: PortAllocator::default(),
            containers: Mutex::new(HashMap::new()),
            mode,
            instance,
            headroom_mb: config.address_space_headroom_mb,
            logs: LogStore::new(config.logs, Some(&config.data_dir.join("logs"))),
        }
    }

    /// How this runtime enforces memory, pids and CPU weight.
    pub fn limit_mode(&self) -> &LimitMode {
        &self.mode
    }

    /// Makes process group `pid`, just started in container `guid`, part of it: recorded for its
    /// destruction and the reaper, and moved into its cgroup (killed if that fails, as `op`).
    async fn adopt(
        &self,
        guid: &str,
        dir: &Path,
        cgroup: Option<&Path>,
        pid: i32,
        op: &'static str,
    ) -> Result<(), RuntimeError> {
        if pid <= 0 {
            return Ok(());
        }
        self.record_group(guid, dir, pid).await;
        if let Some(cgroup) = cgroup
            && let Err(source) = limits::join_cgroup(cgroup, pid)
        {
            let _ = signal_group(pid, StopSignal::Kill);
            return Err(RuntimeError::Io { op, guid: guid.to_owned(), source });
        }
        Ok(())
    }

    /// The directory of container `guid`.
    pub fn container_dir(&self, guid: &str) -> PathBuf {
        self.root.join(guid)
    }

    fn io<'g>(op: &'static str, guid: &'g str) -> impl FnOnce(std::io::Error) -> RuntimeError + 'g {
        move |source| RuntimeError::Io { op, guid: guid.to_owned(), source }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProcContainer>> {
        self.containers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn spawn_inner(&self, guid: &str, spec: ProcessSpec) -> Result<RuntimeProcess, RuntimeError> {
        validate_guid(guid)?;
        let dir = self.container_dir(guid);
        if !self.lock().contains_key(guid) && !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Err(RuntimeError::NotFound { guid: guid.to_owned() });
        }
        let refused = |reason: String| RuntimeError::Refused { guid: guid.to_owned(), reason };
        check_exec(&spec.path, &spec.args, &spec.env, ExecLimits::host()).map_err(|e| refused(e.to_string()))?;
        let cwd = if spec.dir.is_empty() { Some(dir.clone()) } else { join_inside(&dir, &spec.dir) };
        let cwd = cwd.ok_or_else(|| RuntimeError::Unsupported {
            runtime: "process",
            what: format!("working directory {:?}", spec.dir),
        })?;
        tokio::fs::create_dir_all(&cwd).await.map_err(Self::io("create working directory", guid))?;

        let admitted = self.admit(guid, false).await?;
        let (memory_mb, cpu_weight, cgroup) = (admitted.memory_mb, admitted.cpu_weight, admitted.cgroup.clone());

        let program = resolve_program(&dir, &spec.path).await;
        let path_env = spec.env.iter().rev().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let wrappers = self.wrappers(memory_mb, cpu_weight);
        let mut command = if wrappers.is_empty() {
            Command::new(&program)
        } else {
            // The wrappers exec the program: resolve and check it now, so a missing or
            // non-executable program fails the spawn as it does without them.
            let program = program.to_str().and_then(|p| limits::search_path(p, path_env));
            let program = program.ok_or(nix::errno::Errno::ENOENT).and_then(|p| executable(&cwd.join(&p)).map(|()| p));
            let program = program.map_err(|errno| RuntimeError::Io {
                op: "spawn process",
                guid: guid.to_owned(),
                source: std::io::Error::from_raw_os_error(errno as i32),
            })?;
            let mut command = Command::new(&wrappers[0]);
            command.args(&wrappers[1..]).arg(program);
            command
        };
        command.args(&spec.args).current_dir(&cwd).env_clear();
        if !spec.env.iter().any(|(k, _)| k == "PATH") {
            command.env("PATH", DEFAULT_PATH);
        }
        if !spec.env.iter().any(|(k, _)| k == "HOME") {
            command.env("HOME", &dir);
        }
        if !spec.env.iter().any(|(k, _)| k == "TMPDIR") {
            command.env("TMPDIR", dir.join("tmp"));
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some((uid, gid)) = run_as(&spec.user).await {
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(false);

        let oom_before = cgroup.as_deref().map_or(0, limits::cgroup_oom_kills);
        let mut child = command.spawn().map_err(Self::io("spawn process", guid))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        self.adopt(guid, &dir, cgroup.as_deref(), pid, "move process into the container cgroup").await?;
        drop(admitted);
        let source = source_for(&self.logs, guid, &spec.log_source, spec.role);
        let mut pumps = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let (logs, source) = (self.logs.clone(), Arc::clone(&source));
            pumps.push(capture(stdout, logs, guid.to_owned(), source, Stream::Stdout, spec.suppress_output));
        }
        if let Some(stderr) = child.stderr.take() {
            let logs = self.logs.clone();
            pumps.push(capture(stderr, logs, guid.to_owned(), source, Stream::Stderr, spec.suppress_output));
        }
        tracing::debug!(container_guid = %guid, pid, path = %spec.path, "process started");

        let (tx, rx) = watch::channel(None);
        let guid_owned = guid.to_owned();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(error) => {
                    tracing::warn!(container_guid = %guid_owned, pid, %error, "waiting for process failed");
                    255
                }
            };
            // SIGKILL while the cgroup counted a new OOM kill: the kernel killed it for memory.
            let out_of_memory =
                code == 137 && cgroup.as_deref().is_some_and(|c| limits::cgroup_oom_kills(c) > oom_before);
            tracing::debug!(container_guid = %guid_owned, pid, code, out_of_memory, "process exited");
            drained(pumps).await;
            let _ = tx.send(Some(ExitStatus { code, out_of_memory }));
        });
        let signaller = Arc::new(move |signal: StopSignal| signal_group(pid, signal));
        Ok(RuntimeProcess::new(signaller, rx))
    }
}

impl ProcessRuntime {
    /// The process groups started in `guid` (in memory and on disk).
    fn pgids(&self, guid: &str) -> Vec<i32> {
        let mut pgids = self.lock().get(guid).map(|c| c.pgids.clone()).unwrap_or_default();
        let recorded = std::fs::read_to_string(self.container_dir(guid).join("pgids")).unwrap_or_default();
        pgids.extend(recorded.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| *p > 0));
        pgids.sort_unstable();
        pgids.dedup();
        pgids
    }

    /// In rlimit mode, the programs and arguments the process runs under before its own
    /// executable: `prlimit --as=<bytes> --` for memory, `nice -n <n> --` for CPU weight.
    fn wrappers(&self, memory_mb: i32, cpu_weight: u32) -> Vec<std::ffi::OsString> {
        let LimitMode::Rlimit { prlimit, nice, .. } = &self.mode else { return Vec::new() };
        let mut out: Vec<std::ffi::OsString> = Vec::new();
        if let Some(bytes) = limits::address_space_bytes(memory_mb, self.headroom_mb) {
            match prlimit {
                Some(prlimit) => {
                    out.extend([prlimit.clone().into_os_string(), format!("--as={bytes}").into(), "--".into()]);
                }
                None => tracing::warn!(memory_mb, "prlimit not found; the memory limit is not enforced"),
            }
        }
        if let Some(level) = limits::nice_for(cpu_weight) {
            match nice {
                Some(nice) => {
                    out.extend([nice.clone().into_os_string(), "-n".into(), level.to_string().into(), "--".into()])
                }
                None => tracing::warn!(cpu_weight, "nice not found; the cpu weight is not enforced"),
            }
        }
        out
    }
}

impl Drop for ProcessRuntime {
    /// Kills every process group still recorded, so a dropped runtime (a finished test, an
    /// exiting rep) leaves no children behind.
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.lock());
        for container in containers.values() {
            for &pgid in &container.pgids {
                let _ = signal_group(pgid, StopSignal::Kill);
            }
            if let Some(cgroup) = &container.cgroup {
                // Kill what escaped the process groups too.
                let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
            }
        }
        // The cgroups can go once their processes are gone: a moment after the kill. (A destroy
        // of the guid after a restart removes any left behind.)
        let cgroups: Vec<PathBuf> = containers.into_values().filter_map(|c| c.cgroup).collect();
        if !cgroups.is_empty() {
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if cgroups.iter().all(|c| std::fs::remove_dir(c).is_ok() || !c.exists()) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
        }
    }
}

impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn logs(&self) -> Option<LogStore> {
        Some(self.logs.clone())
    }

    fn create(&self, spec: ContainerSpec) -> BoxFuture<'_, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            validate_guid(&spec.guid)?;
            let guid = spec.guid.as_str();
            if self.lock().contains_key(guid) {
                return Err(RuntimeError::AlreadyExists { guid: guid.to_owned() });
            }
            self.logs.open(guid, Identity::of(guid, spec.workload.as_ref()));
            let dir = self.container_dir(guid);
            for sub in ["tmp", "home"] {
                tokio::fs::create_dir_all(dir.join(sub)).await.map_err(Self::io("create container directory", guid))?;
            }
            let cgroup = match &self.mode {
                LimitMode::Cgroup { parent } => {
                    let cgroup = parent.join(format!("{}-{guid}", self.instance));
                    limits::create_container_cgroup(&cgroup, spec.memory_mb, spec.max_pids, spec.cpu_weight)
                        .map_err(Self::io("create container cgroup", guid))?;
                    let recorded = cgroup.to_string_lossy().into_owned();
                    tokio::fs::write(dir.join("cgroup"), recorded)
                        .await
                        .map_err(Self::io("record container cgroup", guid))?;
                    Some(cgroup)
                }
                LimitMode::Rlimit { .. } => None,
            };
            let ports = match self.ports.allocate(&spec.ports) {
                Ok(ports) => ports,
                Err(source) => {
                    if let Some(cgroup) = &cgroup {
                        let _ = limits::remove_cgroup(cgroup).await;
                    }
                    return Err(RuntimeError::Io { op: "allocate host ports", guid: guid.to_owned(), source });
                }
            };
            let container = ProcContainer {
                ports: ports.clone(),
                memory_mb: spec.memory_mb,
                max_pids: spec.max_pids,
                cpu_weight: spec.cpu_weight,
                cgroup,
                ..ProcContainer::default()
            };
            self.lock().insert(guid.to_owned(), container);
            Ok(ContainerInfo { host_ip: "127.0.0.1".into(), internal_ip: "127.0.0.1".into(), ports })
        })
    }

    fn spawn<'a>(&'a self, guid: &'a str, process: ProcessSpec) -> BoxFuture<'a, Result<RuntimeProcess, RuntimeError>> {
        Box::pin(self.spawn_inner(guid, process))
    }

    fn exec<'a>(
        &'a self,
        guid: &'a str,
        spec: crate::exec::ExecSpec,
    ) -> BoxFuture<'a, Result<crate::exec::ExecSession, RuntimeError>> {
        Box::pin(self.exec_inner(guid, spec))
    }

    fn destroy<'a>(&'a self, guid: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_guid(guid)?;
            let dir = self.container_dir(guid);
            self.logs.close(guid);
            let removed = self.lock().remove(guid);
            let mut pgids = removed.as_ref().map(|c| c.pgids.clone()).unwrap_or_default();
            pgids.extend(read_pgids(&dir).await);
            pgids.sort_unstable();
            pgids.dedup();
            for pgid in pgids {
                let _ = signal_group(pgid, StopSignal::Kill);
            }
            let mut cgroup = removed.as_ref().and_then(|c| c.cgroup.clone());
            if cgroup.is_none() {
                cgroup = tokio::fs::read_to_string(dir.join("cgroup")).await.ok().map(|p| PathBuf::from(p.trim()));
            }
            if let Some(cgroup) = cgroup.filter(|c| c.is_absolute())
                && let Err(source) = limits::remove_cgroup(&cgroup).await
            {
                tracing::warn!(container_guid = %guid, cgroup = %cgroup.display(), error = %source, "removing the container cgroup failed");
            }
            if let Some(container) = removed {
                self.ports.release(&container.ports);
            }
            // Output pumps of just-killed processes may still create their log files: retry.
            let mut attempt = 0;
            loop {
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(_) if attempt < 5 => {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        return Err(RuntimeError::Io {
                            op: "remove container directory",
                            guid: guid.to_owned(),
                            source: e,
                        });
                    }
                }
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let mut guids = Vec::new();
            let mut entries = match tokio::fs::read_dir(&self.root).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(guids),
                Err(e) => return Err(RuntimeError::Io { op: "list containers", guid: String::new(), source: e }),
            };
            while let Ok(Some(entry)) = entries.next_entry().await {
                if !entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if let Some(name) = entry.file_name().to_str()
                    && validate_guid(name).is_ok()
                {
                    guids.push(name.to_owned());
                }
            }
            guids.sort();
            Ok(guids)
        })
    }

    fn host_path(&self, guid: &str, container_path: &str) -> Result<Option<PathBuf>, RuntimeError> {
        validate_guid(guid)?;
        join_inside(&self.container_dir(guid), container_path)
            .map(Some)
            .ok_or_else(|| RuntimeError::Unsupported { runtime: "process", what: format!("path {container_path:?}") })
    }
}

/// Sends a signal to a whole process group; a group that is gone is not an error.
fn signal_group(pgid: i32, signal: StopSignal) -> Result<(), RuntimeError> {
    if pgid <= 0 {
        return Ok(());
    }
    let sig = match signal {
        StopSignal::Terminate => Signal::SIGTERM,
        StopSignal::Kill => Signal::SIGKILL,
    };
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => {
            Err(RuntimeError::Io { op: "signal process group", guid: pgid.to_string(), source: errno.into() })
        }
    }
}

/// Whether `path` could be exec'd: `ENOENT` when missing, `EACCES` when not an executable file.
fn executable(path: &Path) -> Result<(), nix::errno::Errno> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(_) => Err(nix::errno::Errno::ENOENT),
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(nix::errno::Errno::EACCES),
    }
}

/// An absolute path present inside the container directory wins over the host's.
async fn resolve_program(dir: &Path, path: &str) -> PathBuf {
    if path.starts_with('/')
        && let Some(inside) = join_inside(dir, path)
        && tokio::fs::try_exists(&inside).await.unwrap_or(false)
    {
        return inside;
    }
    PathBuf::from(path)
}

/// The uid and gid to run as: only when the rep is root and the user exists on the host.
async fn run_as(user: &str) -> Option<(u32, u32)> {
    if user.is_empty() || user == "root" || !nix::unistd::geteuid().is_root() {
        return None;
    }
    let passwd = tokio::fs::read_to_string("/etc/passwd").await.ok()?;
    let found = super::lookup_passwd(&passwd, user);
    if found.is_none() {
        tracing::debug!(user, "user not found on the host; running as the rep's user");
    }
    found
}

async fn read_pgids(dir: &Path) -> Vec<i32> {
    let text = tokio::fs::read_to_string(dir.join("pgids")).await.unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).filter(|p: &i32| *p > 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup plumbing against a plain directory standing in for the cgroup parent (no
    /// kernel behind it: the limit files are just written and read back). The kernel side is
    /// covered by `tests/limits.rs` where cgroup v2 is usable.
    #[tokio::test]
    async fn in_cgroup_mode_a_container_gets_a_cgroup_with_its_limits_and_its_processes() {
        let root = std::env::temp_dir().join(format!("cell-rep-fake-cgroup-{}", uuid::Uuid::new_v4().simple()));
        let parent = root.join("cgroup").join("diego-rs");
        std::fs::create_dir_all(&parent).expect("fake parent");
        let mut runtime =
            ProcessRuntime::with_config(ProcessConfig { cgroup_parent: String::new(), ..ProcessConfig::new(&root) });
        runtime.mode = LimitMode::Cgroup { parent: parent.clone() };
        runtime.instance = "inst".into();
        let spec =
            ContainerSpec { guid: "g1".into(), memory_mb: 64, max_pids: 7, cpu_weight: 50, ..ContainerSpec::default() };
        runtime.create(spec).await.expect("create");
        let cgroup = parent.join("inst-g1");
        let read = |file: &str| std::fs::read_to_string(cgroup.join(file)).unwrap_or_default();
        assert_eq!(read("pids.max"), "7");
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.weight"), "20");
        let recorded = std::fs::read_to_string(runtime.container_dir("g1").join("cgroup")).expect("recorded");
        assert_eq!(PathBuf::from(recorded), cgroup);

        let process = ProcessSpec {
            id: "p".into(),
            path: "/bin/sh".into(),
            args: vec!["-c".into(), "exit 0".into()],
            ..ProcessSpec::default()
        };
        let mut process = runtime.spawn("g1", process).await.expect("spawn");
        assert_eq!(process.wait().await.code, 0);
        let pid = read("cgroup.procs");
        assert!(pid.trim().parse::<i32>().is_ok_and(|p| p > 0), "the process joined: {pid:?}");
        // The count comes from the cgroup.
        std::fs::write(cgroup.join("pids.current"), "7\n").expect("fake count");
        let full = ProcessSpec { id: "q".into(), path: "/bin/true".into(), ..ProcessSpec::default() };
        let refused = runtime.spawn("g1", full).await.expect_err("the cgroup is full");
        assert_eq!(refused.to_string(), "max_pids 7 reached: the container already runs 7 processes");
        // No wrappers in cgroup mode: the kernel enforces the limits.
        assert!(runtime.wrappers(64, 50).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }
}
