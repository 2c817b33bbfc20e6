//! The `runc` runtime: an OCI bundle per container under `<data_dir>/runc/bundles/<guid>`, run
//! with the `runc` binary and a runc state root of `<data_dir>/runc/root` (so tests and reps on
//! one host never share state).
//!
//! A container is `runc create`d and never started: runc's own init stays blocked in the
//! container's pid namespace as its pause process, holding the namespaces and the cgroup (memory,
//! pids, CPU shares). Every process of the action tree is a `runc exec` child of the rep, so its
//! exit status comes back through the `runc exec` process, SIGTERM is forwarded by runc, and
//! SIGKILL goes straight to the pid `runc exec` wrote. Because the container never stops by
//! itself, its cgroup stays readable after a process dies: a process that exits 137 while the
//! cgroup's `oom_kill` counter grew was killed for memory.
//!
//! The rootfs is mounted read-only; `/tmp` and `/home` are bind mounts of writable directories of
//! the bundle, which is where downloads and task result files live.

mod exec;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

use super::exec_limits::{ExecLimits, check_exec};
use super::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ExitStatus, PortAllocator, ProcessSpec, RuntimeError,
    RuntimeProcess, StopSignal, exit_code, join_inside, validate_guid,
};
use crate::container::PortMapping;
use crate::logs::capture::{capture, drained, source_for};
use crate::logs::{Identity, LogConfig, LogStore, Stream};

/// Configuration of the runc runtime.
#[derive(Debug, Clone)]
pub struct RuncConfig {
    /// Where bundles and the runc state root live (`<data_dir>/runc`).
    pub data_dir: PathBuf,
    /// The runc binary; `runc` is looked up on `PATH`.
    pub runc_path: PathBuf,
    /// The parent of every container's cgroup (`/<cgroup_parent>/<instance>-<guid>`).
    pub cgroup_parent: String,
    /// The bounds of the captured output (kept under `<data_dir>/logs`).
    pub logs: LogConfig,
}

impl RuncConfig {
    /// Defaults: `runc` from `PATH`, cgroups under `/diego-rs`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            runc_path: PathBuf::from("runc"),
            cgroup_parent: "diego-rs".into(),
            logs: LogConfig::default(),
        }
    }
}

/// Runs containers with runc.
#[derive(Debug)]
pub struct RuncRuntime {
    config: RuncConfig,
    /// Distinguishes this runtime's cgroups from another's on the same host.
    instance: String,
    ports: PortAllocator,
    containers: Mutex<HashMap<String, RuncContainer>>,
    logs: LogStore,
}

#[derive(Debug, Clone)]
struct RuncContainer {
    bundle: PathBuf,
    cgroups_path: String,
    rootfs: PathBuf,
    ports: Vec<PortMapping>,
}

/// Whether a runc binary can be found: `path` itself if it has a slash, else on `PATH`.
pub fn runc_available(path: &Path) -> bool {
    if path.components().count() > 1 {
        return path.is_file();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(path).is_file()))
        .unwrap_or(false)
}

impl RuncRuntime {
    /// A runtime with `config`.
    pub fn new(config: RuncConfig) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let logs = LogStore::new(config.logs.clone(), Some(&config.data_dir.join("logs")));
        Self { config, instance, ports: PortAllocator::default(), containers: Mutex::new(HashMap::new()), logs }
    }

    fn state_root(&self) -> PathBuf {
        self.config.data_dir.join("runc").join("root")
    }

    fn bundle_dir(&self, guid: &str) -> PathBuf {
        self.config.data_dir.join("runc").join("bundles").join(guid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RuncContainer>> {
        self.containers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn runc(&self) -> Command {
        let mut command = Command::new(&self.config.runc_path);
        command.arg("--root").arg(self.state_root());
        command
    }

    /// Runs a short runc subcommand and returns its stdout, or its stderr as the error.
    async fn run_runc(&self, op: &'static str, guid: &str, args: &[&str]) -> Result<String, RuntimeError> {
        let output = self.runc().args(args).stdin(Stdio::null()).output().await.map_err(|source| RuntimeError::Io {
            op,
            guid: guid.to_owned(),
            source,
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            Err(RuntimeError::Command { op, guid: guid.to_owned(), message: format!("{} ({})", stderr, output.status) })
        }
    }

    async fn create_inner(&self, spec: ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        validate_guid(&spec.guid)?;
        let guid = spec.guid.as_str();
        self.logs.open(guid, Identity::of(guid, spec.workload.as_ref()));
        let io = |op: &'static str| move |source| RuntimeError::Io { op, guid: guid.to_owned(), source };
        let rootfs = spec.rootfs_path.clone().ok_or_else(|| RuntimeError::Unsupported {
            runtime: "runc",
            what: format!("rootfs {:?} (only preloaded:<name> rootfses from the rootfs map)", spec.rootfs),
        })?;
        let rootfs = tokio::fs::canonicalize(&rootfs).await.map_err(io("resolve rootfs"))?;
        let init = find_init(&rootfs).await.ok_or_else(|| RuntimeError::Unsupported {
            runtime: "runc",
            what: format!("rootfs {} has no /bin/sh", rootfs.display()),
        })?;
        if self.lock().contains_key(guid) {
            return Err(RuntimeError::AlreadyExists { guid: guid.to_owned() });
        }
        let bundle = self.bundle_dir(guid);
        let (tmp, home) = (bundle.join("rw").join("tmp"), bundle.join("rw").join("home"));
        for dir in [&tmp, &home, &bundle.join("exec"), &self.state_root()] {
            tokio::fs::create_dir_all(dir).await.map_err(io("create bundle directory"))?;
        }
        // World-writable like a real /tmp, so a non-root user can use it.
        set_mode(&tmp, 0o1777).await;
        let cgroups_path = format!("/{}/{}-{}", self.config.cgroup_parent, self.instance, guid);
        let config = spec::bundle_config(&spec::BundleSpec {
            guid,
            rootfs: &rootfs,
            init,
            tmp_dir: &tmp,
            home_dir: &home,
            memory_mb: spec.memory_mb,
            max_pids: spec.max_pids,
            cpu_weight: spec.cpu_weight,
            privileged: spec.privileged,
            cgroups_path: &cgroups_path,
        });
        let json = serde_json::to_vec_pretty(&config).unwrap_or_default();
        tokio::fs::write(bundle.join("config.json"), json).await.map_err(io("write config.json"))?;

        // The init holds its stdio for the container's lifetime, so give it files, not pipes.
        let stderr_path = bundle.join("init.stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(io("create init log"))?;
        let status = self
            .runc()
            .arg("create")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--pid-file")
            .arg(bundle.join("init.pid"))
            .arg(guid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .await
            .map_err(io("run runc create"))?;
        if !status.success() {
            let message = tokio::fs::read_to_string(&stderr_path).await.unwrap_or_default();
            let _ = self.run_runc("runc delete", guid, &["delete", "--force", guid]).await;
            let _ = tokio::fs::remove_dir_all(&bundle).await;
            return Err(RuntimeError::Command {
                op: "runc create",
                guid: guid.to_owned(),
                message: format!("{} ({status})", message.trim()),
            });
        }
        let ports = match self.ports.allocate(&spec.ports) {
            Ok(ports) => ports,
            Err(source) => {
                let _ = self.run_runc("runc delete", guid, &["delete", "--force", guid]).await;
                return Err(RuntimeError::Io { op: "allocate host ports", guid: guid.to_owned(), source });
            }
        };
        tracing::debug!(container_guid = %guid, bundle = %bundle.display(), %cgroups_path, "runc container created");
        self.lock().insert(guid.to_owned(), RuncContainer { bundle, cgroups_path, rootfs, ports: ports.clone() });
        Ok(ContainerInfo { host_ip: "127.0.0.1".into(), internal_ip: "127.0.0.1".into(), ports })
    }

    async fn spawn_inner(&self, guid: &str, process: ProcessSpec) -> Result<RuntimeProcess, RuntimeError> {
        let container =
            self.lock().get(guid).cloned().ok_or_else(|| RuntimeError::NotFound { guid: guid.to_owned() })?;
        let io = |op: &'static str| move |source| RuntimeError::Io { op, guid: guid.to_owned(), source };
        let id = if process.id.is_empty() { uuid::Uuid::new_v4().simple().to_string() } else { process.id.clone() };
        let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
        if !process.dir.is_empty()
            && let Ok(Some(host_dir)) = self.host_path(guid, &process.dir)
        {
            let _ = tokio::fs::create_dir_all(host_dir).await;
        }
        check_exec(&process.path, &process.args, &process.env, ExecLimits::host())
            .map_err(|e| RuntimeError::Refused { guid: guid.to_owned(), reason: e.to_string() })?;
        let user = resolve_user(&container.rootfs, &process.user).await;
        let mut args = vec![process.path.clone()];
        args.extend(process.args.iter().cloned());
        let process_json = spec::exec_process(&spec::ExecSpec {
            args,
            env: &process.env,
            cwd: &process.dir,
            user,
            nofile: process.nofile,
        });
        let exec_dir = container.bundle.join("exec");
        let process_path = exec_dir.join(format!("{id}.json"));
        let pid_path = exec_dir.join(format!("{id}.pid"));
        let _ = tokio::fs::remove_file(&pid_path).await;
        let json = serde_json::to_vec(&process_json).unwrap_or_default();
        tokio::fs::write(&process_path, json).await.map_err(io("write process.json"))?;

        let oom_before = oom_kills(&container.cgroups_path).await;
        let mut child = self
            .runc()
            .arg("exec")
            .arg("--process")
            .arg(&process_path)
            .arg("--pid-file")
            .arg(&pid_path)
            .arg(guid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(io("run runc exec"))?;
        let exec_pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let source = source_for(&self.logs, guid, &process.log_source, process.role);
        let mut pumps = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let (logs, source) = (self.logs.clone(), Arc::clone(&source));
            pumps.push(capture(stdout, logs, guid.to_owned(), source, Stream::Stdout, process.suppress_output));
        }
        if let Some(stderr) = child.stderr.take() {
            let logs = self.logs.clone();
            pumps.push(capture(stderr, logs, guid.to_owned(), source, Stream::Stderr, process.suppress_output));
        }
        tracing::debug!(container_guid = %guid, exec_pid, path = %process.path, "runc exec started");

        let (tx, rx) = watch::channel(None);
        let guid_owned = guid.to_owned();
        let cgroups_path = container.cgroups_path.clone();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(error) => {
                    tracing::warn!(container_guid = %guid_owned, %error, "waiting for runc exec failed");
                    255
                }
            };
            let oom_after = oom_kills(&cgroups_path).await;
            let out_of_memory = code == 137 && oom_after > oom_before;
            tracing::debug!(container_guid = %guid_owned, code, out_of_memory, "runc exec exited");
            drained(pumps).await;
            let _ = tx.send(Some(ExitStatus { code, out_of_memory }));
        });
        let signaller = Arc::new(move |signal: StopSignal| match signal {
            // runc forwards SIGTERM to the process it started.
            StopSignal::Terminate => send(exec_pid, Signal::SIGTERM),
            // SIGKILL cannot be forwarded: kill the process itself (pid from runc's pid file),
            // and runc exec with it.
            StopSignal::Kill => {
                let pid = std::fs::read_to_string(&pid_path).ok().and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid {
                    send(pid, Signal::SIGKILL)?;
                }
                send(exec_pid, Signal::SIGKILL)
            }
        });
        Ok(RuntimeProcess::new(signaller, rx))
    }
}

impl ContainerRuntime for RuncRuntime {
    fn name(&self) -> &'static str {
        "runc"
    }

    fn logs(&self) -> Option<LogStore> {
        Some(self.logs.clone())
    }

    fn create(&self, spec: ContainerSpec) -> BoxFuture<'_, Result<ContainerInfo, RuntimeError>> {
        Box::pin(self.create_inner(spec))
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
            self.logs.close(guid);
            let removed = self.lock().remove(guid);
            if let Err(error) = self.run_runc("runc delete", guid, &["delete", "--force", guid]).await {
                let gone = matches!(&error, RuntimeError::Command { message, .. } if message.contains("not exist"));
                if !gone {
                    return Err(error);
                }
            }
            if let Some(container) = removed {
                self.ports.release(&container.ports);
            }
            match tokio::fs::remove_dir_all(self.bundle_dir(guid)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(RuntimeError::Io { op: "remove bundle", guid: guid.to_owned(), source }),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            if !tokio::fs::try_exists(self.state_root()).await.unwrap_or(false) {
                return Ok(Vec::new());
            }
            let out = self.run_runc("runc list", "", &["list", "--format", "json"]).await?;
            let parsed: Option<Vec<serde_json::Value>> =
                serde_json::from_str(out.trim()).map_err(|e| RuntimeError::Command {
                    op: "runc list",
                    guid: String::new(),
                    message: format!("unparsable output: {e}"),
                })?;
            let mut guids: Vec<String> = parsed
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.get("id").and_then(serde_json::Value::as_str).map(str::to_owned))
                .collect();
            guids.sort();
            Ok(guids)
        })
    }

    fn host_path(&self, guid: &str, container_path: &str) -> Result<Option<PathBuf>, RuntimeError> {
        validate_guid(guid)?;
        let rw = self.bundle_dir(guid).join("rw");
        let trimmed = container_path.trim_start_matches('/');
        let writable = ["tmp", "home"].iter().any(|d| trimmed == *d || trimmed.starts_with(&format!("{d}/")));
        if !writable {
            return Err(RuntimeError::Unsupported {
                runtime: "runc",
                what: format!("path {container_path:?} is on the read-only rootfs; use /tmp or /home"),
            });
        }
        join_inside(&rw, container_path)
            .map(Some)
            .ok_or_else(|| RuntimeError::Unsupported { runtime: "runc", what: format!("path {container_path:?}") })
    }
}

fn send(pid: i32, signal: Signal) -> Result<(), RuntimeError> {
    if pid <= 0 {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(RuntimeError::Io { op: "signal runc process", guid: pid.to_string(), source: errno.into() }),
    }
}

async fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await;
}

/// The init runc checks for at create time; it is never started.
async fn find_init(rootfs: &Path) -> Option<&'static str> {
    for candidate in ["/bin/sh", "/usr/bin/sh", "/bin/busybox"] {
        if let Some(path) = join_inside(rootfs, candidate)
            && tokio::fs::symlink_metadata(&path).await.is_ok()
        {
            return Some(candidate);
        }
    }
    None
}

/// uid and gid of `user` from the rootfs's `/etc/passwd`; root when absent or unknown.
async fn resolve_user(rootfs: &Path, user: &str) -> (u32, u32) {
    if user.is_empty() || user == "root" {
        return (0, 0);
    }
    let passwd = tokio::fs::read_to_string(rootfs.join("etc/passwd")).await.unwrap_or_default();
    super::lookup_passwd(&passwd, user).unwrap_or_else(|| {
        tracing::debug!(user, "user not in the rootfs; running as root");
        (0, 0)
    })
}

/// The cgroup's count of OOM kills: `oom_kill` of `memory.events` (cgroup v2) or of
/// `memory.oom_control` (v1). 0 when unreadable.
async fn oom_kills(cgroups_path: &str) -> u64 {
    let relative = cgroups_path.trim_start_matches('/');
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers");
    let file = if tokio::fs::try_exists(unified).await.unwrap_or(false) {
        Path::new("/sys/fs/cgroup").join(relative).join("memory.events")
    } else {
        Path::new("/sys/fs/cgroup/memory").join(relative).join("memory.oom_control")
    };
    let text = tokio::fs::read_to_string(file).await.unwrap_or_default();
    parse_oom_kill(&text)
}

/// The `oom_kill N` line of a memory events / oom_control file.
fn parse_oom_kill(text: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_kill_counter_is_read_from_either_cgroup_version() {
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 2);
        assert_eq!(parse_oom_kill("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n"), 1);
        assert_eq!(parse_oom_kill(""), 0);
    }

    #[test]
    fn only_tmp_and_home_are_writable() {
        let runtime = RuncRuntime::new(RuncConfig::new("/data"));
        let path = runtime.host_path("g1", "/tmp/result.txt").expect("writable");
        assert_eq!(path, Some(PathBuf::from("/data/runc/bundles/g1/rw/tmp/result.txt")));
        assert!(runtime.host_path("g1", "/home").is_ok());
        assert!(runtime.host_path("g1", "/etc/passwd").is_err());
        assert!(runtime.host_path("g1", "/tmpfoo").is_err());
        assert!(runtime.host_path("g1", "/tmp/../etc").is_err());
    }
}
