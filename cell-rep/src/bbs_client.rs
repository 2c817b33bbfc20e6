//! The BBS as the rep sees it: the actual-LRP and task lifecycle calls a cell makes, the reads
//! bulk sync and container runs need, and the Locket calls of the cell presence.
//!
//! Everything else in the crate sees only the [`BbsClient`] trait (usable as
//! `Arc<dyn BbsClient>`); [`GrpcBbsClient`] is the tonic implementation and
//! `testing::FakeBbs` (feature `testing`) the recording fake with an in-memory model.
//! Requests and answers are the domain types of `proto::models`; `bbs_client/grpc.rs` is the
//! only place that turns them into `pb` messages and back.

mod batch;
mod coalesce;
mod grpc;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::error::ErrorCode;
use proto::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, CellPresence, DesiredLrp, NetInfo, Task};

pub(crate) use batch::{BatchAnswer, BatchSupport, START_ACTUAL_LRPS};
pub use coalesce::StartReports;
pub use grpc::GrpcBbsClient;

/// A failed BBS or Locket call: which call, the Diego error type when the server named one
/// (or the status code implies one), and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bbs {call}: {message}")]
pub struct BbsError {
    /// The RPC, e.g. `ClaimActualLRP`.
    pub call: &'static str,
    /// The Diego error type, when known.
    pub code: Option<ErrorCode>,
    /// What went wrong.
    pub message: String,
}

impl BbsError {
    /// An error of `call` with `code`.
    pub fn new(call: &'static str, code: Option<ErrorCode>, message: impl Into<String>) -> Self {
        Self { call, code, message: message.into() }
    }

    /// The error a status carries.
    pub fn from_status(call: &'static str, status: &tonic::Status) -> Self {
        Self::new(call, ErrorCode::from_status(status), status.message().to_owned())
    }

    /// Whether the server answered with `code`.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == Some(code)
    }
}

/// The start (or evacuation) report of a running instance: where it is reachable and how
/// routers should treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningLrp {
    /// Which index of which desired LRP.
    pub key: ActualLrpKey,
    /// Which container on which cell.
    pub instance_key: ActualLrpInstanceKey,
    /// Host address and port mappings.
    pub net_info: NetInfo,
    /// Internal route hostnames.
    pub internal_routes: Vec<String>,
    /// Resolved metric tags.
    pub metric_tags: BTreeMap<String, String>,
    /// Whether routers may send it traffic (false until readiness checks pass).
    pub routable: bool,
    /// The cell's zone.
    pub availability_zone: String,
}

/// A task's completion report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCompletion {
    /// The task.
    pub task_guid: String,
    /// The cell it ran on.
    pub cell_id: String,
    /// Whether it failed.
    pub failed: bool,
    /// Why it failed (empty on success).
    pub failure_reason: String,
    /// The first 10 KB of its result file.
    pub result: String,
}

/// A Locket presence this process keeps alive: the cell's [`CellPresence`], keyed by its cell
/// id and sent as JSON, owned by `owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceLease {
    /// The owner, one per process; under mutual TLS the cell's own identity and an instance
    /// (`svc::lease::owner`), or the Locket refuses it.
    pub owner: String,
    /// What the cell announces; its `cell_id` is the lease key.
    pub presence: CellPresence,
}

impl PresenceLease {
    /// The lease key: the cell id.
    pub fn key(&self) -> &str {
        self.presence.cell_id.as_str()
    }

    /// The lease value: the presence as JSON. A `CellPresence` is plain strings and numbers, so
    /// this cannot fail; if it somehow did, the lease still names the cell.
    pub fn value(&self) -> String {
        serde_json::to_string(&self.presence).unwrap_or_default()
    }
}

/// The BBS and Locket calls the rep makes. Implementations must be cheap to call concurrently.
pub trait BbsClient: Send + Sync + 'static {
    /// `ClaimActualLRP`: marks the instance CLAIMED by `instance` (idempotent).
    fn claim_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `StartActualLRP`: marks the instance RUNNING (creating the record when it is missing).
    fn start_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `StartActualLRPs`: [`BbsClient::start_actual_lrp`] of every instance in `lrps`, in calls
    /// of at most [`proto::limits::MAX_BATCH_ITEMS`] starts (one `StartActualLRP` each on a BBS
    /// that does not serve the batch call). The outer error: the (first) call failed as a whole
    /// and nothing was reported. Otherwise one result per instance, in order, each the error
    /// type and message the single call would have failed with.
    fn start_actual_lrps<'a>(
        &'a self,
        lrps: &'a [RunningLrp],
    ) -> BoxFuture<'a, Result<Vec<Result<(), BbsError>>, BbsError>>;

    /// `CrashActualLRP` with the reason.
    fn crash_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `RemoveActualLRP` of the ordinary record this instance holds.
    fn remove_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `EvacuateClaimedActualLRP`; answers whether to keep the container.
    fn evacuate_claimed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>>;

    /// `EvacuateRunningActualLRP`; answers whether to keep the container (true until the
    /// replacement runs).
    fn evacuate_running_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<bool, BbsError>>;

    /// `EvacuateStoppedActualLRP`; answers whether to keep the container.
    fn evacuate_stopped_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>>;

    /// `EvacuateCrashedActualLRP` with the reason; answers whether to keep the container.
    fn evacuate_crashed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, BbsError>>;

    /// `RemoveEvacuatingActualLRP`.
    fn remove_evacuating_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `ActualLRPs` filtered by cell: every record (any presence) on `cell_id`.
    fn actual_lrps_by_cell<'a>(&'a self, cell_id: &'a str) -> BoxFuture<'a, Result<Vec<ActualLrp>, BbsError>>;

    /// `DesiredLRPByProcessGuid`: the run info of a claimed instance.
    fn desired_lrp<'a>(&'a self, process_guid: &'a str) -> BoxFuture<'a, Result<DesiredLrp, BbsError>>;

    /// `StartTask`: answers `should_start` (false when it already runs on this cell).
    fn start_task<'a>(&'a self, task_guid: &'a str, cell_id: &'a str) -> BoxFuture<'a, Result<bool, BbsError>>;

    /// `CompleteTask`.
    fn complete_task<'a>(&'a self, completion: &'a TaskCompletion) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `RejectTask`: hands the task back for another placement.
    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), BbsError>>;

    /// `Tasks` filtered by cell.
    fn tasks_by_cell<'a>(&'a self, cell_id: &'a str) -> BoxFuture<'a, Result<Vec<Task>, BbsError>>;

    /// `TaskByGuid`.
    fn task_by_guid<'a>(&'a self, task_guid: &'a str) -> BoxFuture<'a, Result<Task, BbsError>>;

    /// Locket `Lock` of a presence with `ttl`: acquires or renews it.
    fn lock_presence<'a>(&'a self, lease: &'a PresenceLease, ttl: Duration) -> BoxFuture<'a, Result<(), BbsError>>;

    /// Locket `Release` of a presence.
    fn release_presence<'a>(&'a self, lease: &'a PresenceLease) -> BoxFuture<'a, Result<(), BbsError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_diego_type_of_the_status() {
        let status = ErrorCode::ActualLrpCannotBeClaimed.to_status("claimed elsewhere");
        let error = BbsError::from_status("ClaimActualLRP", &status);
        assert!(error.is(ErrorCode::ActualLrpCannotBeClaimed));
        assert_eq!(error.to_string(), "bbs ClaimActualLRP: claimed elsewhere");
    }
}
