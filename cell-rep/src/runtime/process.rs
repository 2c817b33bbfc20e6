//! The `process` runtime: each container is a directory `<data_dir>/containers/<guid>` and each
//! process a child process group (`process_group(0)`) running on the host, with stdout / stderr
//! captured to `<dir>/<process id>.stdout.log` / `.stderr.log` and logged.
//!
//! There is no isolation: no memory limit, no rootfs, host networking. Container paths map into
//! the container directory (`/tmp/app` is `<dir>/tmp/app`), so downloads land there and the
//! working directory is there; an absolute executable path is looked up in the container
//! directory first and on the host otherwise. Process groups are recorded in `<dir>/pgids`, so a
//! destroy after a rep restart still kills what the previous rep started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;

use super::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ExitStatus, PortAllocator, ProcessSpec, RuntimeError,
    RuntimeProcess, StopSignal, exit_code, join_inside, pump_output, validate_guid,
};
use crate::container::PortMapping;

/// The default `PATH` of processes whose environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs containers as host process groups in per-container directories.
#[derive(Debug)]
pub struct ProcessRuntime {
    root: PathBuf,
    ports: PortAllocator,
    containers: Mutex<HashMap<String, ProcContainer>>,
}

#[derive(Debug, Default)]
struct ProcContainer {
    ports: Vec<PortMapping>,
    pgids: Vec<i32>,
}

impl ProcessRuntime {
    /// A runtime keeping its containers under `<data_dir>/containers`.
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        Self {
            root: data_dir.as_ref().join("containers"),
            ports: PortAllocator::default(),
            containers: Mutex::new(HashMap::new()),
        }
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
        let cwd = if spec.dir.is_empty() { Some(dir.clone()) } else { join_inside(&dir, &spec.dir) };
        let cwd = cwd.ok_or_else(|| RuntimeError::Unsupported {
            runtime: "process",
            what: format!("working directory {:?}", spec.dir),
        })?;
        tokio::fs::create_dir_all(&cwd).await.map_err(Self::io("create working directory", guid))?;

        let program = resolve_program(&dir, &spec.path).await;
        let mut command = Command::new(&program);
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

        let mut child = command.spawn().map_err(Self::io("spawn process", guid))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        if pid > 0 {
            if let Some(container) = self.lock().get_mut(guid) {
                container.pgids.push(pid);
            }
            record_pgid(&dir, pid).await;
        }
        let id = if spec.id.is_empty() { format!("process-{pid}") } else { spec.id.clone() };
        if let Some(stdout) = child.stdout.take() {
            pump_output(
                stdout,
                dir.join(format!("{id}.stdout.log")),
                guid.to_owned(),
                spec.log_source.clone(),
                "stdout",
                spec.suppress_output,
            );
        }
        if let Some(stderr) = child.stderr.take() {
            pump_output(
                stderr,
                dir.join(format!("{id}.stderr.log")),
                guid.to_owned(),
                spec.log_source.clone(),
                "stderr",
                spec.suppress_output,
            );
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
            tracing::debug!(container_guid = %guid_owned, pid, code, "process exited");
            let _ = tx.send(Some(ExitStatus { code, out_of_memory: false }));
        });
        let signaller = Arc::new(move |signal: StopSignal| signal_group(pid, signal));
        Ok(RuntimeProcess::new(signaller, rx))
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
        }
    }
}

impl ContainerRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn create(&self, spec: ContainerSpec) -> BoxFuture<'_, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            validate_guid(&spec.guid)?;
            let guid = spec.guid.as_str();
            if self.lock().contains_key(guid) {
                return Err(RuntimeError::AlreadyExists { guid: guid.to_owned() });
            }
            let dir = self.container_dir(guid);
            for sub in ["tmp", "home"] {
                tokio::fs::create_dir_all(dir.join(sub)).await.map_err(Self::io("create container directory", guid))?;
            }
            let ports = self.ports.allocate(&spec.ports).map_err(Self::io("allocate host ports", guid))?;
            self.lock().insert(guid.to_owned(), ProcContainer { ports: ports.clone(), pgids: Vec::new() });
            Ok(ContainerInfo { host_ip: "127.0.0.1".into(), internal_ip: "127.0.0.1".into(), ports })
        })
    }

    fn spawn<'a>(&'a self, guid: &'a str, process: ProcessSpec) -> BoxFuture<'a, Result<RuntimeProcess, RuntimeError>> {
        Box::pin(self.spawn_inner(guid, process))
    }

    fn destroy<'a>(&'a self, guid: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            validate_guid(guid)?;
            let dir = self.container_dir(guid);
            let removed = self.lock().remove(guid);
            let mut pgids = removed.as_ref().map(|c| c.pgids.clone()).unwrap_or_default();
            pgids.extend(read_pgids(&dir).await);
            pgids.sort_unstable();
            pgids.dedup();
            for pgid in pgids {
                let _ = signal_group(pgid, StopSignal::Kill);
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

async fn record_pgid(dir: &Path, pgid: i32) {
    let file = tokio::fs::OpenOptions::new().create(true).append(true).open(dir.join("pgids")).await;
    if let Ok(mut file) = file {
        let _ = file.write_all(format!("{pgid}\n").as_bytes()).await;
    }
}

async fn read_pgids(dir: &Path) -> Vec<i32> {
    let text = tokio::fs::read_to_string(dir.join("pgids")).await.unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).filter(|p: &i32| *p > 0).collect()
}
