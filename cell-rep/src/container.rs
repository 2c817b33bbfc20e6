//! The container record the executor keeps per guid, and its lifecycle state machine.
//!
//! States: `reserved → initializing → created → running → completed`. Only forward single-step
//! transitions are allowed, except that *completed* can be reached from any state but itself
//! (mirrors `executor/resources.go` and `depot/containerstore/storenode.go`). The transition
//! function is pure; the executor checks it, acts, then stores the new state.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use proto::pb::models::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::resources::Resources;
use crate::workload::Workload;

/// Where a container is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContainerState {
    /// Resources are reserved; nothing exists in the runtime yet.
    Reserved,
    /// `run` was called; the runtime container is being created.
    Initializing,
    /// The runtime container exists and its processes are starting.
    Created,
    /// The startup checks passed (or there are none and the main process started).
    Running,
    /// The container finished; its `RunResult` is set. It still holds resources until deleted.
    Completed,
}

impl ContainerState {
    /// Every state, in lifecycle order.
    pub const ALL: [ContainerState; 5] = [
        ContainerState::Reserved,
        ContainerState::Initializing,
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Completed,
    ];

    /// The lowercase name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Reserved => "reserved",
            ContainerState::Initializing => "initializing",
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Completed => "completed",
        }
    }

    /// `IsCreated` of the Go executor: not reserved, not initializing and not completed.
    pub fn is_created(self) -> bool {
        matches!(self, ContainerState::Created | ContainerState::Running)
    }

    /// Whether the container still counts as starting (reserved, initializing or created).
    pub fn is_starting(self) -> bool {
        matches!(self, ContainerState::Reserved | ContainerState::Initializing | ContainerState::Created)
    }

    /// The single transition function: the state after `event`, or why it is not allowed.
    pub fn apply(self, event: LifecycleEvent) -> Result<ContainerState, InvalidTransition> {
        use ContainerState as S;
        use LifecycleEvent as E;
        match (self, event) {
            (S::Reserved, E::Initialize) => Ok(S::Initializing),
            (S::Initializing, E::Create) => Ok(S::Created),
            (S::Created, E::Run) => Ok(S::Running),
            (S::Reserved | S::Initializing | S::Created | S::Running, E::Complete) => Ok(S::Completed),
            (from, event) => Err(InvalidTransition { from, event }),
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a container, as input to [`ContainerState::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleEvent {
    /// `run` attached a run request.
    Initialize,
    /// The runtime created the container.
    Create,
    /// The step tree signalled ready (healthy).
    Run,
    /// The step tree exited, the container was stopped before running, its reservation expired,
    /// or the runtime lost it.
    Complete,
}

impl LifecycleEvent {
    /// Every event.
    pub const ALL: [LifecycleEvent; 4] =
        [LifecycleEvent::Initialize, LifecycleEvent::Create, LifecycleEvent::Run, LifecycleEvent::Complete];
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid container transition: {event:?} in state {from}")]
pub struct InvalidTransition {
    /// The state the container was in.
    pub from: ContainerState,
    /// The event that was refused.
    pub event: LifecycleEvent,
}

/// One mapped port: the container port the app declared and the host port allocated for it.
/// With host networking the app listens on `host_port` (it gets it as `PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port the desired LRP declared.
    pub container_port: u32,
    /// The host port allocated for it.
    pub host_port: u32,
}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// Whether the step tree failed (or the container was lost, expired or never created).
    pub failed: bool,
    /// Why it failed, at most 10,000 characters; empty when it did not fail.
    pub failure_reason: String,
    /// Whether `stop` (or `delete`) was requested before it ended.
    pub stopped: bool,
    /// The task result file's contents, at most `max_result_bytes`; empty otherwise.
    pub result: String,
    /// Whether the failure happened while creating the container, before anything ran, so a task
    /// may be re-auctioned elsewhere (reference §3.6).
    pub retryable: bool,
}

/// Longest failure reason kept, as in the Go executor.
pub const MAX_FAILURE_REASON_CHARS: usize = 10_000;

impl RunResult {
    /// A failed result with `reason` truncated to [`MAX_FAILURE_REASON_CHARS`].
    pub fn failure(reason: impl Into<String>, stopped: bool, retryable: bool) -> Self {
        let mut reason: String = reason.into();
        if let Some((cut, _)) = reason.char_indices().nth(MAX_FAILURE_REASON_CHARS) {
            reason.truncate(cut);
        }
        RunResult { failed: true, failure_reason: reason, stopped, result: String::new(), retryable }
    }
}

/// A snapshot of one container as the executor knows it.
#[derive(Debug, Clone)]
pub struct Container {
    /// The container guid (instance guid for LRPs, task guid for tasks).
    pub guid: String,
    /// Its lifecycle state.
    pub state: ContainerState,
    /// What it runs: an LRP instance or a task, set at reservation.
    pub workload: Workload,
    /// The reserved memory, disk and one slot.
    pub allocation: Resources,
    /// Host ports allocated for the run request's container ports, once created.
    pub ports: Vec<PortMapping>,
    /// The host IP the container is reachable at (`127.0.0.1` for local runtimes).
    pub address: String,
    /// The container's own IP; equal to `address` with host networking.
    pub internal_address: String,
    /// Whether the instance should receive traffic: true once running, unless readiness checks
    /// exist, in which case it follows them.
    pub routable: bool,
    /// How it ended, once completed.
    pub result: Option<RunResult>,
    /// When the reservation was made.
    pub reserved_at: Instant,
    /// The run request, once `run` was called.
    pub run_request: Option<Arc<RunRequest>>,
}

/// How to run a reserved container.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// `preloaded:<name>` (resolved through the rootfs map) or any URL the runtime accepts.
    pub rootfs: String,
    /// The desired LRP's / task's environment, after the instance variables.
    pub env: Vec<(String, String)>,
    /// Runs first; a failure completes the container.
    pub setup: Option<pb::Action>,
    /// The main action.
    pub action: pb::Action,
    /// Legacy health monitor, used when there are no `checks`.
    pub monitor: Option<pb::Action>,
    /// Declarative startup + liveness checks.
    pub checks: Vec<pb::Check>,
    /// Declarative readiness checks (toggle `routable`).
    pub readiness_checks: Vec<pb::Check>,
    /// Container ports; each gets a host port.
    pub ports: Vec<u32>,
    /// How long startup checks may take (0 = forever).
    pub start_timeout: Duration,
    /// Privileged container.
    pub privileged: bool,
    /// CPU weight 1-100.
    pub cpu_weight: u32,
    /// Pids limit (0 = unlimited).
    pub max_pids: i32,
    /// Task result file path inside the container (tasks only).
    pub result_file: String,
    /// Log source of steps that name none.
    pub log_source: String,
    /// How long a stopped instance that is running and routable is reported unroutable before
    /// its processes are stopped, so routers take it out of their tables first (zero: stop at
    /// once; tasks and unrouted LRPs).
    pub drain: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerState as S;
    use LifecycleEvent as E;

    /// Every (state, event) pair and its expected outcome (`None` = refused).
    #[test]
    fn every_state_and_event_pair_has_the_expected_outcome() {
        let table: [(S, E, Option<S>); 20] = [
            (S::Reserved, E::Initialize, Some(S::Initializing)),
            (S::Reserved, E::Create, None),
            (S::Reserved, E::Run, None),
            (S::Reserved, E::Complete, Some(S::Completed)),
            (S::Initializing, E::Initialize, None),
            (S::Initializing, E::Create, Some(S::Created)),
            (S::Initializing, E::Run, None),
            (S::Initializing, E::Complete, Some(S::Completed)),
            (S::Created, E::Initialize, None),
            (S::Created, E::Create, None),
            (S::Created, E::Run, Some(S::Running)),
            (S::Created, E::Complete, Some(S::Completed)),
            (S::Running, E::Initialize, None),
            (S::Running, E::Create, None),
            (S::Running, E::Run, None),
            (S::Running, E::Complete, Some(S::Completed)),
            (S::Completed, E::Initialize, None),
            (S::Completed, E::Create, None),
            (S::Completed, E::Run, None),
            (S::Completed, E::Complete, None),
        ];
        // The table covers the full product, so a new state or event fails here until listed.
        assert_eq!(table.len(), S::ALL.len() * E::ALL.len());
        for state in S::ALL {
            for event in E::ALL {
                let row = table.iter().find(|(s, e, _)| *s == state && *e == event);
                let (_, _, expected) = row.expect("every pair is listed");
                match (state.apply(event), expected) {
                    (Ok(next), Some(want)) => assert_eq!(next, *want, "{state:?} + {event:?}"),
                    (Err(err), None) => assert_eq!(err, InvalidTransition { from: state, event }),
                    (got, want) => panic!("{state:?} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn created_means_created_or_running() {
        let created: Vec<S> = S::ALL.into_iter().filter(|s| s.is_created()).collect();
        assert_eq!(created, vec![S::Created, S::Running]);
        let starting: Vec<S> = S::ALL.into_iter().filter(|s| s.is_starting()).collect();
        assert_eq!(starting, vec![S::Reserved, S::Initializing, S::Created]);
    }

    #[test]
    fn failure_reasons_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_FAILURE_REASON_CHARS + 5);
        let result = RunResult::failure(long, false, false);
        assert_eq!(result.failure_reason.chars().count(), MAX_FAILURE_REASON_CHARS);
        assert!(result.failed);
    }
}
