//! The executor's public types: configuration, requests, events and errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::container::{Container, ContainerState};
use crate::resources::{Resources, Shortfall};
use crate::runtime::RuntimeError;
use crate::workload::Workload;

/// Configuration of the executor. Build it with [`ExecutorConfig::new`] or `Default` and
/// override fields; every interval is a field so tests shorten them.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Total capacity: memory MB, disk MB, container slots.
    pub total: Resources,
    /// Scratch space for downloads (`<data_dir>/executor`).
    pub data_dir: PathBuf,
    /// A reservation not run within this is completed (`expired container`) and deleted (60 s).
    pub reservation_timeout: Duration,
    /// SIGTERM → SIGKILL interval when stopping (10 s).
    pub graceful_stop: Duration,
    /// Polling interval of startup and readiness checks and of the monitor until healthy.
    pub healthcheck_interval: Duration,
    /// Largest task result file read (10 KiB); larger fails the task.
    pub max_result_bytes: usize,
    /// Preloaded rootfs name → host directory, for `preloaded:<name>` (runc).
    pub rootfs: BTreeMap<String, PathBuf>,
    /// Liveness interval of the monitor action and of checks without `interval_ms` (30 s).
    pub healthy_interval: Duration,
    /// Timeout of checks without a timeout of their own (1 s).
    pub check_timeout: Duration,
    /// How often the reaper compares the registry with the runtime (60 s).
    pub reap_interval: Duration,
    /// Concurrent downloads across all containers (5).
    pub max_concurrent_downloads: usize,
    /// Events buffered per subscriber before a slow one lags (1024).
    pub event_buffer: usize,
    /// The drain of routed LRP instances (the rep's `route_drain`, 5 s): the generator copies it
    /// into their run requests ([`RunRequest::drain`](crate::container::RunRequest::drain)).
    pub route_drain: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            total: Resources::new(0, 0, 0),
            data_dir: PathBuf::from("/var/vcap/data/rep"),
            reservation_timeout: Duration::from_secs(60),
            graceful_stop: Duration::from_secs(10),
            healthcheck_interval: Duration::from_millis(500),
            max_result_bytes: 10 * 1024,
            rootfs: BTreeMap::new(),
            healthy_interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(1),
            reap_interval: Duration::from_secs(60),
            max_concurrent_downloads: 5,
            event_buffer: 1024,
            route_drain: Duration::from_secs(5),
        }
    }
}

impl ExecutorConfig {
    /// The defaults with `total` capacity and `data_dir`.
    pub fn new(total: Resources, data_dir: impl Into<PathBuf>) -> Self {
        Self { total, data_dir: data_dir.into(), ..Self::default() }
    }
}

/// What to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    /// Memory MB (≥ 0).
    pub memory_mb: i32,
    /// Disk MB (≥ 0).
    pub disk_mb: i32,
    /// What the container will run, kept on it.
    pub workload: Workload,
}

/// A lifecycle event, carrying the container as it was right after the change.
#[derive(Debug, Clone)]
pub enum ContainerEvent {
    /// Resources reserved.
    Reserved(Container),
    /// The runtime container exists; processes are starting.
    Created(Container),
    /// Healthy: startup checks passed (or the main process started when there are none).
    Running(Container),
    /// `routable` flipped (readiness checks).
    Readiness(Container),
    /// The result is set; for LRPs this is a crash, an exit or a stop.
    Completed(Container),
    /// Removed from the registry; its resources are free.
    Deleted(String),
}

impl ContainerEvent {
    /// The container guid the event is about.
    pub fn guid(&self) -> &str {
        match self {
            ContainerEvent::Reserved(c)
            | ContainerEvent::Created(c)
            | ContainerEvent::Running(c)
            | ContainerEvent::Readiness(c)
            | ContainerEvent::Completed(c) => &c.guid,
            ContainerEvent::Deleted(guid) => guid,
        }
    }

    /// The container snapshot, for every event but `Deleted`.
    pub fn container(&self) -> Option<&Container> {
        match self {
            ContainerEvent::Reserved(c)
            | ContainerEvent::Created(c)
            | ContainerEvent::Running(c)
            | ContainerEvent::Readiness(c)
            | ContainerEvent::Completed(c) => Some(c),
            ContainerEvent::Deleted(_) => None,
        }
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// A container with this guid is already in the registry.
    #[error("container guid not available: {guid}")]
    GuidNotAvailable {
        /// The guid asked for.
        guid: String,
    },
    /// Not enough memory, disk or slots remain.
    #[error("insufficient resources available for {guid}: {shortfall}")]
    InsufficientResources {
        /// The guid asked for.
        guid: String,
        /// What is short.
        shortfall: Shortfall,
    },
    /// The guid or the amounts are unusable.
    #[error("invalid allocation request for {guid:?}: {reason}")]
    InvalidRequest {
        /// The guid asked for.
        guid: String,
        /// What is wrong.
        reason: String,
    },
    /// The executor is shutting down.
    #[error("executor is shutting down")]
    ShuttingDown,
}

/// An error from `run`, `stop` or `delete`.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// No container with this guid.
    #[error("container not found: {guid}")]
    NotFound {
        /// The guid asked for.
        guid: String,
    },
    /// The container is not in a state that allows the operation.
    #[error("cannot {operation} container {guid} in state {state}")]
    InvalidState {
        /// The guid asked for.
        guid: String,
        /// Its state.
        state: ContainerState,
        /// What was asked.
        operation: &'static str,
    },
    /// The run request is unusable.
    #[error("invalid run request for {guid}: {reason}")]
    InvalidRequest {
        /// The guid asked for.
        guid: String,
        /// What is wrong.
        reason: String,
    },
    /// The executor is shutting down.
    #[error("executor is shutting down")]
    ShuttingDown,
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}
