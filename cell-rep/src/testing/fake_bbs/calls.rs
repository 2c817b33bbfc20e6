//! What the fake records: one [`BbsCall`] per call, with the arguments tests assert on.

use crate::bbs_client::{PresenceLease, TaskCompletion};

/// Which instance a recorded LRP call was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LrpRef {
    /// The process guid.
    pub process_guid: String,
    /// The index.
    pub index: i32,
    /// The instance guid.
    pub instance_guid: String,
}

/// One recorded call, with the arguments tests assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BbsCall {
    /// `ClaimActualLRP`.
    Claim(LrpRef),
    /// `StartActualLRP`.
    Start {
        /// The instance.
        lrp: LrpRef,
        /// The routable flag sent.
        routable: bool,
        /// The (container, host) port mappings sent.
        ports: Vec<(u32, u32)>,
    },
    /// `StartActualLRPs`: the instances of its starts, in order.
    StartBatch(Vec<LrpRef>),
    /// `CrashActualLRP`.
    Crash {
        /// The instance.
        lrp: LrpRef,
        /// The crash reason sent.
        reason: String,
    },
    /// `RemoveActualLRP`.
    Remove(LrpRef),
    /// `EvacuateClaimedActualLRP`.
    EvacuateClaimed(LrpRef),
    /// `EvacuateRunningActualLRP`.
    EvacuateRunning {
        /// The instance.
        lrp: LrpRef,
        /// The answer (`keep_container`); true when the call failed.
        keep: bool,
    },
    /// `EvacuateStoppedActualLRP`.
    EvacuateStopped(LrpRef),
    /// `EvacuateCrashedActualLRP`.
    EvacuateCrashed {
        /// The instance.
        lrp: LrpRef,
        /// The crash reason sent.
        reason: String,
    },
    /// `RemoveEvacuatingActualLRP`.
    RemoveEvacuating(LrpRef),
    /// `ActualLRPs` by cell.
    ActualLrps(String),
    /// `DesiredLRPByProcessGuid`.
    DesiredLrp(String),
    /// `StartTask` (task guid, cell id).
    StartTask(String, String),
    /// `CompleteTask`.
    CompleteTask(TaskCompletion),
    /// `RejectTask` (task guid, reason).
    RejectTask(String, String),
    /// `Tasks` by cell.
    Tasks(String),
    /// `TaskByGuid`.
    TaskByGuid(String),
    /// Locket `Lock`.
    Lock(PresenceLease),
    /// Locket `Release`.
    Release(PresenceLease),
}

impl BbsCall {
    /// The instance an LRP call was about (none for a batch: see [`BbsCall::started`]).
    pub fn lrp(&self) -> Option<&LrpRef> {
        match self {
            Self::Claim(lrp)
            | Self::Remove(lrp)
            | Self::EvacuateClaimed(lrp)
            | Self::EvacuateStopped(lrp)
            | Self::RemoveEvacuating(lrp)
            | Self::Start { lrp, .. }
            | Self::Crash { lrp, .. }
            | Self::EvacuateRunning { lrp, .. }
            | Self::EvacuateCrashed { lrp, .. } => Some(lrp),
            _ => None,
        }
    }

    /// The instances a `StartActualLRP` or `StartActualLRPs` reported running.
    pub fn started(&self) -> &[LrpRef] {
        match self {
            Self::Start { lrp, .. } => std::slice::from_ref(lrp),
            Self::StartBatch(lrps) => lrps,
            _ => &[],
        }
    }

    /// The RPC name, as [`BbsError::call`] spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Claim(_) => "ClaimActualLRP",
            Self::Start { .. } => "StartActualLRP",
            Self::StartBatch(_) => "StartActualLRPs",
            Self::Crash { .. } => "CrashActualLRP",
            Self::Remove(_) => "RemoveActualLRP",
            Self::EvacuateClaimed(_) => "EvacuateClaimedActualLRP",
            Self::EvacuateRunning { .. } => "EvacuateRunningActualLRP",
            Self::EvacuateStopped(_) => "EvacuateStoppedActualLRP",
            Self::EvacuateCrashed { .. } => "EvacuateCrashedActualLRP",
            Self::RemoveEvacuating(_) => "RemoveEvacuatingActualLRP",
            Self::ActualLrps(_) => "ActualLRPs",
            Self::DesiredLrp(_) => "DesiredLRPByProcessGuid",
            Self::StartTask(..) => "StartTask",
            Self::CompleteTask(_) => "CompleteTask",
            Self::RejectTask(..) => "RejectTask",
            Self::Tasks(_) => "Tasks",
            Self::TaskByGuid(_) => "TaskByGuid",
            Self::Lock(_) => "Lock",
            Self::Release(_) => "Release",
        }
    }
}
