//! The `ContainerRuntime` seam: what the executor needs from whatever runs containers.
//!
//! A runtime prepares a container (a directory, an OCI bundle, or nothing at all), allocates a host
//! port per container port (host networking everywhere), spawns processes inside it with an
//! environment and a working directory, signals them, reports how they exited (including whether
//! the kernel killed them for memory), maps container paths to host paths for downloads and task
//! result files, probes health checks, destroys containers and lists what it holds for the reaper.
//!
//! Implementations:
//! - [`process::ProcessRuntime`]: each container is a directory under the data dir and each
//!   process a child process group; no filesystem or network isolation, but memory, pids and CPU
//!   weight are limited (a cgroup v2 per container where usable, rlimits otherwise).
//! - [`runc::RuncRuntime`]: an OCI bundle per container run with the `runc` binary, with memory,
//!   pids and CPU-share limits in cgroups.
//! - [`sim::SimRuntime`]: no processes at all; for scale tests and unit tests of the executor.
//!
//! What does not live here: the action tree (see `actions`), the check loops (see `checks`), the
//! network probe itself (see `probe`) and the registry (see `executor`).

pub mod exec_limits;
pub mod process;
pub mod runc;
pub mod sim;

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::container::PortMapping;
pub use crate::probe::{Probe, ProbeKind};
use crate::workload::Workload;

/// What to create: the parts of a run request a runtime needs before any process starts.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The container guid; already validated by the executor (see [`validate_guid`]).
    pub guid: String,
    /// The rootfs as requested, e.g. `preloaded:cflinuxfs4` or `docker:///busybox`.
    pub rootfs: String,
    /// The host directory of a `preloaded:<name>` rootfs from the executor's rootfs map.
    pub rootfs_path: Option<PathBuf>,
    /// Memory limit in MB (0 = unlimited).
    pub memory_mb: i32,
    /// Disk limit in MB (0 = unlimited; not enforced by the local runtimes).
    pub disk_mb: i32,
    /// Container ports to map, deduplicated, in request order.
    pub ports: Vec<u32>,
    /// Whether the container may run privileged.
    pub privileged: bool,
    /// CPU weight, 1-100; shares = 1024 × weight / 100.
    pub cpu_weight: u32,
    /// Pids limit (0 = unlimited).
    pub max_pids: i32,
    /// What the container runs; `None` for a bare container (runtime tests).
    pub workload: Option<Workload>,
}

/// What a runtime reports after creating a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The host IP the container is reachable at.
    pub host_ip: String,
    /// The container's own IP (equal to `host_ip` with host networking).
    pub internal_ip: String,
    /// One mapping per requested container port.
    pub ports: Vec<PortMapping>,
}

/// Which part of the container's steps a process belongs to; the sim runtime uses it to decide
/// how a process behaves, the others only log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessRole {
    /// A setup action's process.
    Setup,
    /// The main action's process (the app or the task).
    Action,
    /// A legacy monitor action's process (a health check).
    Monitor,
}

/// One process to start in a container.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    /// Unique within the container, e.g. `action-3`; names log files and runc process specs.
    pub id: String,
    /// The executable, resolved inside the container.
    pub path: String,
    /// Its arguments (not including the executable).
    pub args: Vec<String>,
    /// The complete environment, in order; a later duplicate wins.
    pub env: Vec<(String, String)>,
    /// The working directory inside the container; empty = the container's root (or home).
    pub dir: String,
    /// The user to run as; honoured only when the rep runs as root and the user exists.
    pub user: String,
    /// The open-files limit, where the runtime can apply it.
    pub nofile: Option<u64>,
    /// The log source its output is tagged with.
    pub log_source: String,
    /// Whether its output is dropped instead of logged (it is still written to the log files).
    pub suppress_output: bool,
    /// Which part of the steps it belongs to.
    pub role: Option<ProcessRole>,
}

/// A signal to deliver to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM: ask it to exit.
    Terminate,
    /// SIGKILL: end it now.
    Kill,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 128 + N when a signal N ended it.
    pub code: i32,
    /// Whether the kernel's OOM killer ended it because the container hit its memory limit.
    pub out_of_memory: bool,
}

/// Delivers signals to one process.
pub type Signaller = Arc<dyn Fn(StopSignal) -> Result<(), RuntimeError> + Send + Sync>;

/// A started process: signal it, wait for it. Cheap to clone; every clone sees the same exit.
#[derive(Clone)]
pub struct RuntimeProcess {
    signaller: Signaller,
    exit: watch::Receiver<Option<ExitStatus>>,
}

impl std::fmt::Debug for RuntimeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeProcess").field("exit", &*self.exit.borrow()).finish()
    }
}

impl RuntimeProcess {
    /// A process from its signaller and the receiving end of its exit slot. The runtime sends
    /// `Some(status)` exactly once; dropping the sender without a status reads as exit 255.
    pub fn new(signaller: Signaller, exit: watch::Receiver<Option<ExitStatus>>) -> Self {
        Self { signaller, exit }
    }

    /// Delivers `signal`; a process that already exited is not an error.
    pub fn signal(&self, signal: StopSignal) -> Result<(), RuntimeError> {
        if self.exit.borrow().is_some() {
            return Ok(());
        }
        (self.signaller)(signal)
    }

    /// Waits until the process exits.
    pub async fn wait(&mut self) -> ExitStatus {
        let waited = self.exit.wait_for(Option::is_some).await.map(|status| *status);
        match waited {
            Ok(status) => status.unwrap_or(LOST_EXIT),
            Err(_) => (*self.exit.borrow()).unwrap_or(LOST_EXIT),
        }
    }

    /// The exit status if it already exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }
}

/// What a process whose runtime dropped it without a status reads as.
const LOST_EXIT: ExitStatus = ExitStatus { code: 255, out_of_memory: false };

/// An error from a runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime has no container with this guid.
    #[error("container not found: {guid}")]
    NotFound {
        /// The guid asked for.
        guid: String,
    },
    /// A container with this guid already exists in the runtime.
    #[error("container already exists: {guid}")]
    AlreadyExists {
        /// The guid asked for.
        guid: String,
    },
    /// The guid cannot name a container (empty, too long, or unsafe in a path).
    #[error("invalid container guid {guid:?}: {reason}")]
    InvalidGuid {
        /// The guid asked for.
        guid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request asks for something this runtime cannot do.
    #[error("unsupported by the {runtime} runtime: {what}")]
    Unsupported {
        /// The runtime's name.
        runtime: &'static str,
        /// What was asked.
        what: String,
    },
    /// The process was not started: its command line or environment cannot be exec'd, or the
    /// container's limits allow no more processes. The reason is what users see.
    #[error("{reason}")]
    Refused {
        /// The container guid.
        guid: String,
        /// Why, e.g. `environment too large to exec: ...` or `max_pids 10 reached: ...`.
        reason: String,
    },
    /// A filesystem or process operation failed.
    #[error("{op} for {guid}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The container guid.
        guid: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An external command (runc) failed.
    #[error("{op} for {guid} failed: {message}")]
    Command {
        /// What was being done.
        op: &'static str,
        /// The container guid.
        guid: String,
        /// Its stderr or exit status.
        message: String,
    },
}

/// The contract between the executor and whatever runs containers.
///
/// Every method may be called concurrently for different containers. `destroy` must be
/// idempotent: destroying an unknown container is `Ok`.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The runtime's name (`process`, `runc`, `sim`), for logs.
    fn name(&self) -> &'static str;

    /// Prepares a container and allocates its host ports.
    fn create(&self, spec: ContainerSpec) -> BoxFuture<'_, Result<ContainerInfo, RuntimeError>>;

    /// Starts a process in a created container.
    fn spawn<'a>(&'a self, guid: &'a str, process: ProcessSpec) -> BoxFuture<'a, Result<RuntimeProcess, RuntimeError>>;

    /// Kills everything in the container and removes it; `Ok` when it does not exist.
    fn destroy<'a>(&'a self, guid: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// The guids of every container the runtime holds (for the reaper).
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>>;

    /// The host path backing `container_path` in the container, for downloads and result files.
    /// `Ok(None)` means the runtime has no filesystem (the sim): downloads are fetched, verified
    /// and discarded, and result files read as empty.
    fn host_path(&self, guid: &str, container_path: &str) -> Result<Option<PathBuf>, RuntimeError>;

    /// The store this runtime captures its processes' output into (`None`: it captures none).
    fn logs(&self) -> Option<crate::logs::LogStore> {
        None
    }

    /// Starts a command in a running container for an operator (`diego ssh`, see
    /// [`crate::exec`]), with the given environment and working directory, on pipes or a
    /// terminal. The default refuses (the sim runs no processes).
    fn exec<'a>(
        &'a self,
        guid: &'a str,
        spec: crate::exec::ExecSpec,
    ) -> BoxFuture<'a, Result<crate::exec::ExecSession, RuntimeError>> {
        let _ = (guid, spec);
        Box::pin(
            async move { Err(RuntimeError::Unsupported { runtime: self.name(), what: "exec (diego ssh)".into() }) },
        )
    }

    /// Runs one health probe. The default connects from the host to the probe's host port; the
    /// sim overrides it.
    fn probe<'a>(&'a self, guid: &'a str, probe: Probe) -> BoxFuture<'a, Result<(), String>> {
        let _ = guid;
        Box::pin(async move { crate::probe::probe_network(&probe).await })
    }
}

/// Longest guid accepted; guids name directories and runc container ids.
pub const MAX_GUID_LEN: usize = 128;

/// Checks that a guid can name a directory and a runc container: 1-128 characters of
/// `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn validate_guid(guid: &str) -> Result<(), RuntimeError> {
    let invalid = |reason| Err(RuntimeError::InvalidGuid { guid: guid.to_owned(), reason });
    if guid.is_empty() {
        return invalid("empty");
    }
    if guid.len() > MAX_GUID_LEN {
        return invalid("longer than 128 characters");
    }
    if guid == "." || guid == ".." {
        return invalid("a relative path component");
    }
    if !guid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return invalid("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// Joins an absolute or relative container path under `root`, refusing `..` components so the
/// result never escapes `root`.
pub fn join_inside(root: &Path, container_path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for component in Path::new(container_path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Hands out free host ports and remembers which are taken so two containers never share one.
#[derive(Debug, Default)]
pub struct PortAllocator {
    in_use: Mutex<HashSet<u16>>,
}

impl PortAllocator {
    /// Allocates one free port per entry of `container_ports` ([`svc::ports::free_port`]: below
    /// the kernel's ephemeral range, so no outgoing connection takes it before the container
    /// binds it), in order.
    pub fn allocate(&self, container_ports: &[u32]) -> std::io::Result<Vec<PortMapping>> {
        let mut taken = self.in_use.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut mappings = Vec::with_capacity(container_ports.len());
        let mut fresh = Vec::new();
        for &container_port in container_ports {
            let mut attempts = 0;
            let port = loop {
                attempts += 1;
                let port = svc::ports::free_port()?;
                if !taken.contains(&port) || attempts > 50 {
                    break port;
                }
            };
            taken.insert(port);
            fresh.push(port);
            mappings.push(PortMapping { container_port, host_port: u32::from(port) });
        }
        Ok(mappings)
    }

    /// Returns the host ports of `mappings` to the pool.
    pub fn release(&self, mappings: &[PortMapping]) {
        let mut taken = self.in_use.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for mapping in mappings {
            if let Ok(port) = u16::try_from(mapping.host_port) {
                taken.remove(&port);
            }
        }
    }
}

/// A process's exit code from a std exit status: its code, or 128 + the signal that ended it.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

/// Looks a user up in a passwd file and returns its uid and gid.
pub(crate) fn lookup_passwd(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        if name != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_that_could_escape_a_directory_are_refused() {
        assert!(validate_guid("abc-123_x.y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(validate_guid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn container_paths_stay_inside_the_root() {
        let root = Path::new("/data/c1");
        assert_eq!(join_inside(root, "/tmp/app"), Some(PathBuf::from("/data/c1/tmp/app")));
        assert_eq!(join_inside(root, "home/./vcap"), Some(PathBuf::from("/data/c1/home/vcap")));
        assert_eq!(join_inside(root, "/"), Some(PathBuf::from("/data/c1")));
        assert_eq!(join_inside(root, "/tmp/../../etc"), None);
    }

    #[test]
    fn allocated_ports_are_distinct_until_released() {
        let ports = PortAllocator::default();
        let first = ports.allocate(&[8080, 9090]).expect("ports");
        let second = ports.allocate(&[8080]).expect("ports");
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].container_port, 8080);
        assert_ne!(first[0].host_port, first[1].host_port);
        assert!(first.iter().all(|m| m.host_port != second[0].host_port));
        ports.release(&first);
        assert_eq!(ports.in_use.lock().expect("lock").len(), 1);
    }

    #[test]
    fn passwd_lookup_finds_uid_and_gid() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nvcap:x:2000:2001::/home/vcap:/bin/sh\n";
        assert_eq!(lookup_passwd(passwd, "vcap"), Some((2000, 2001)));
        assert_eq!(lookup_passwd(passwd, "nobody"), None);
        assert_eq!(lookup_passwd("broken", "broken"), None);
    }
}
