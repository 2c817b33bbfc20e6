//! The `sim` runtime: containers without processes, for scale tests (thousands of containers in
//! one process) and executor tests. Uses `tokio::time`, so it works under paused time.
//!
//! Behaviour:
//! - a container is healthy once `healthy_after` has passed since it was created (checks and
//!   monitor processes pass from then on), unless marked unhealthy or crashed;
//! - setup processes exit 0 at once; monitor processes exit 0 when healthy, 1 otherwise;
//! - main processes of task containers (tag `lifecycle=task`) exit 0 after `task_duration`;
//!   main processes of LRPs run until signalled or crashed through [`SimHandle::crash`];
//! - SIGTERM ends a process with 143 after `stop_delay`, SIGKILL with 137 at once;
//! - [`SimHandle::lose`] removes a container as if the runtime lost it (for the reaper).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    ContainerInfo, ContainerRuntime, ContainerSpec, ExitStatus, Probe, ProbeKind, ProcessRole, ProcessSpec,
    RuntimeError, RuntimeProcess, StopSignal, validate_guid,
};
use crate::container::PortMapping;
use crate::workload::Workload;

/// Tunables of the sim runtime.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How long after creation a container's checks start passing.
    pub healthy_after: Duration,
    /// How long a task's main process runs before exiting 0.
    pub task_duration: Duration,
    /// How long a process takes to exit after SIGTERM.
    pub stop_delay: Duration,
    /// First fake host port handed out.
    pub first_port: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            healthy_after: Duration::from_millis(100),
            task_duration: Duration::from_millis(100),
            stop_delay: Duration::ZERO,
            first_port: 40_000,
        }
    }
}

#[derive(Debug)]
struct SimContainer {
    created_at: Instant,
    is_task: bool,
    unhealthy: bool,
    crashed: Option<i32>,
    /// Exit slots of the running main processes, so a crash can end them.
    mains: Vec<watch::Sender<Option<ExitStatus>>>,
}

type Registry = Arc<Mutex<HashMap<String, SimContainer>>>;

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<String, SimContainer>> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A runtime with no processes.
#[derive(Debug)]
pub struct SimRuntime {
    config: SimConfig,
    registry: Registry,
    next_port: AtomicU32,
}

/// Test controls of a [`SimRuntime`]: crash containers, fail their checks, lose them.
#[derive(Debug, Clone)]
pub struct SimHandle {
    registry: Registry,
}

impl SimRuntime {
    /// A sim runtime with `config`.
    pub fn new(config: SimConfig) -> Self {
        let next_port = AtomicU32::new(config.first_port);
        Self { config, registry: Arc::default(), next_port }
    }

    /// Controls for tests.
    pub fn handle(&self) -> SimHandle {
        SimHandle { registry: Arc::clone(&self.registry) }
    }

    fn healthy(&self, guid: &str) -> bool {
        lock(&self.registry)
            .get(guid)
            .is_some_and(|c| !c.unhealthy && c.crashed.is_none() && c.created_at.elapsed() >= self.config.healthy_after)
    }
}

impl SimHandle {
    /// Makes the container's main processes exit with `exit_code` and its checks fail from now
    /// on. Returns whether the container exists.
    pub fn crash(&self, guid: &str, exit_code: i32) -> bool {
        let mut registry = lock(&self.registry);
        let Some(container) = registry.get_mut(guid) else { return false };
        container.crashed = Some(exit_code);
        for main in container.mains.drain(..) {
            settle(&main, ExitStatus { code: exit_code, out_of_memory: false });
        }
        true
    }

    /// Makes the container's checks fail (`false`) or pass again (`true`). Returns whether the
    /// container exists.
    pub fn set_healthy(&self, guid: &str, healthy: bool) -> bool {
        lock(&self.registry).get_mut(guid).map(|c| c.unhealthy = !healthy).is_some()
    }

    /// Forgets the container as if the runtime lost it; its processes exit 137.
    pub fn lose(&self, guid: &str) -> bool {
        let Some(container) = lock(&self.registry).remove(guid) else { return false };
        for main in container.mains {
            settle(&main, ExitStatus { code: 137, out_of_memory: false });
        }
        true
    }

    /// The guids of every container the runtime holds.
    pub fn containers(&self) -> Vec<String> {
        let mut guids: Vec<String> = lock(&self.registry).keys().cloned().collect();
        guids.sort();
        guids
    }
}

/// Records `status` as the process's exit unless it already exited.
fn settle(tx: &watch::Sender<Option<ExitStatus>>, status: ExitStatus) {
    tx.send_if_modified(|slot| {
        if slot.is_some() {
            return false;
        }
        *slot = Some(status);
        true
    });
}

/// An exit slot that a signal completes (after `stop_delay` for SIGTERM).
fn signaller_for(tx: watch::Sender<Option<ExitStatus>>, stop_delay: Duration) -> super::Signaller {
    let tx = Arc::new(tx);
    Arc::new(move |signal: StopSignal| {
        let status = match signal {
            StopSignal::Terminate => ExitStatus { code: 143, out_of_memory: false },
            StopSignal::Kill => ExitStatus { code: 137, out_of_memory: false },
        };
        if signal == StopSignal::Terminate && !stop_delay.is_zero() {
            let tx = Arc::clone(&tx);
            tokio::spawn(async move {
                tokio::time::sleep(stop_delay).await;
                settle(&tx, status);
            });
        } else {
            settle(&tx, status);
        }
        Ok(())
    })
}

impl ContainerRuntime for SimRuntime {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn create(&self, spec: ContainerSpec) -> BoxFuture<'_, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            validate_guid(&spec.guid)?;
            let mut registry = lock(&self.registry);
            if registry.contains_key(&spec.guid) {
                return Err(RuntimeError::AlreadyExists { guid: spec.guid });
            }
            let is_task = spec.workload.as_ref().is_some_and(Workload::is_task);
            registry.insert(
                spec.guid.clone(),
                SimContainer {
                    created_at: Instant::now(),
                    is_task,
                    unhealthy: false,
                    crashed: None,
                    mains: Vec::new(),
                },
            );
            let ports = spec
                .ports
                .iter()
                .map(|&container_port| PortMapping {
                    container_port,
                    host_port: self.next_port.fetch_add(1, Ordering::Relaxed),
                })
                .collect();
            Ok(ContainerInfo { host_ip: "127.0.0.1".into(), internal_ip: "127.0.0.1".into(), ports })
        })
    }

    fn spawn<'a>(&'a self, guid: &'a str, process: ProcessSpec) -> BoxFuture<'a, Result<RuntimeProcess, RuntimeError>> {
        Box::pin(async move {
            let (tx, rx) = watch::channel(None);
            let role = process.role.unwrap_or(ProcessRole::Action);
            let healthy = self.healthy(guid);
            let mut registry = lock(&self.registry);
            let container = registry.get_mut(guid).ok_or_else(|| RuntimeError::NotFound { guid: guid.to_owned() })?;
            let ok = ExitStatus { code: 0, out_of_memory: false };
            match role {
                ProcessRole::Setup => {
                    let _ = tx.send(Some(ok));
                }
                ProcessRole::Monitor => {
                    let code = if healthy { 0 } else { 1 };
                    let _ = tx.send(Some(ExitStatus { code, out_of_memory: false }));
                }
                ProcessRole::Action => {
                    if let Some(code) = container.crashed {
                        let _ = tx.send(Some(ExitStatus { code, out_of_memory: false }));
                    } else if container.is_task {
                        let tx = tx.clone();
                        let duration = self.config.task_duration;
                        tokio::spawn(async move {
                            tokio::time::sleep(duration).await;
                            settle(&tx, ok);
                        });
                    } else {
                        container.mains.retain(|m| m.borrow().is_none());
                        container.mains.push(tx.clone());
                    }
                }
            }
            Ok(RuntimeProcess::new(signaller_for(tx, self.config.stop_delay), rx))
        })
    }

    fn destroy<'a>(&'a self, guid: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if let Some(container) = lock(&self.registry).remove(guid) {
                for main in container.mains {
                    settle(&main, ExitStatus { code: 137, out_of_memory: false });
                }
            }
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        let guids = self.handle().containers();
        Box::pin(async move { Ok(guids) })
    }

    fn host_path(&self, _guid: &str, _container_path: &str) -> Result<Option<PathBuf>, RuntimeError> {
        Ok(None)
    }

    fn probe<'a>(&'a self, guid: &'a str, probe: Probe) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.healthy(guid) {
                return Ok(());
            }
            Err(match probe.kind {
                ProbeKind::Tcp => {
                    format!("Failed to make TCP connection to port {}: connection refused", probe.container_port)
                }
                ProbeKind::Http { path } => {
                    format!(
                        "Failed to make HTTP request to '{path}' on port {}: connection refused",
                        probe.container_port
                    )
                }
            })
        })
    }
}
