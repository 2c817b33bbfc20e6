//! [`FakeBbs`]: the recording BBS and Locket fake with its in-memory model.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use proto::error::ErrorCode;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellId, DesiredLrp, Presence, Task, TaskState,
};
use proto::pb::rep::v1 as rep_pb;
use tokio::sync::watch;

use super::lrp_work;
use crate::bbs_client::{BbsClient, BbsError, PresenceLease, RunningLrp, TaskCompletion};

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
    /// The instance an LRP call was about.
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

    /// The RPC name, as [`BbsError::call`] spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Claim(_) => "ClaimActualLRP",
            Self::Start { .. } => "StartActualLRP",
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

/// A held presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePresence {
    /// The owner.
    pub owner: String,
    /// The value (CellPresence JSON).
    pub value: String,
    /// The TTL asked for.
    pub ttl: Duration,
    /// How many times it was locked (acquired or renewed).
    pub renewals: u64,
}

#[derive(Debug, Default)]
struct Model {
    desired: BTreeMap<String, DesiredLrp>,
    /// Keyed by (process guid, index, presence).
    lrps: BTreeMap<(String, i32, Presence), ActualLrp>,
    tasks: BTreeMap<String, Task>,
    presences: BTreeMap<String, FakePresence>,
    calls: Vec<BbsCall>,
    unreachable: bool,
    failures: HashMap<&'static str, ErrorCode>,
}

/// A BBS and Locket that keep an in-memory model and record every call.
#[derive(Debug)]
pub struct FakeBbs {
    model: Mutex<Model>,
    /// Bumped after every call and every change, so tests can wait for a condition.
    version: watch::Sender<u64>,
}

impl Default for FakeBbs {
    fn default() -> Self {
        Self::new()
    }
}

fn bad(call: &'static str, code: ErrorCode, message: impl Into<String>) -> BbsError {
    BbsError::new(call, Some(code), message)
}

fn now_ns() -> i64 {
    0
}

impl FakeBbs {
    /// An empty BBS.
    pub fn new() -> Self {
        Self { model: Mutex::new(Model::default()), version: watch::Sender::new(0) }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records `call` and applies `f` to the model unless the BBS is unreachable or `call` is
    /// set to fail.
    fn handle<T>(&self, call: BbsCall, f: impl FnOnce(&mut Model) -> Result<T, BbsError>) -> Result<T, BbsError> {
        let name = call.name();
        let result = {
            let mut model = self.model();
            model.calls.push(call);
            if model.unreachable {
                Err(bad(name, ErrorCode::Unavailable, "transport error: connection refused"))
            } else if let Some(code) = model.failures.get(name).copied() {
                Err(bad(name, code, "injected failure"))
            } else {
                f(&mut model)
            }
        };
        self.bump();
        result
    }

    // --- setup and inspection ---------------------------------------------------------------

    /// Stores a desired LRP and creates its UNCLAIMED instances.
    pub fn desire_lrp(&self, desired: DesiredLrp) {
        {
            let mut model = self.model();
            let process_guid = desired.scheduling.process_guid.clone();
            for index in 0..desired.scheduling.instances {
                let key = ActualLrpKey {
                    process_guid: process_guid.clone(),
                    index,
                    domain: desired.scheduling.domain.clone(),
                };
                model.lrps.insert(
                    (process_guid.to_string(), index, Presence::Ordinary),
                    ActualLrp::new_unclaimed(key, "epoch", now_ns()),
                );
            }
            model.desired.insert(process_guid.to_string(), desired);
        }
        self.bump();
    }

    /// Stores a PENDING task.
    pub fn desire_task(&self, task: Task) {
        self.model().tasks.insert(task.task_guid.to_string(), task);
        self.bump();
    }

    /// Every actual LRP record.
    pub fn actual_lrps(&self) -> Vec<ActualLrp> {
        self.model().lrps.values().cloned().collect()
    }

    /// The record of `(process_guid, index, presence)`.
    pub fn actual_lrp(&self, process_guid: &str, index: i32, presence: Presence) -> Option<ActualLrp> {
        self.model().lrps.get(&(process_guid.to_owned(), index, presence)).cloned()
    }

    /// Inserts (or replaces) a record as it is.
    pub fn put_actual_lrp(&self, lrp: ActualLrp) {
        let id = (lrp.key.process_guid.to_string(), lrp.key.index, lrp.presence);
        self.model().lrps.insert(id, lrp);
        self.bump();
    }

    /// Deletes every actual LRP record behind the rep's back (BBS data loss).
    pub fn delete_all_actual_lrps(&self) {
        self.model().lrps.clear();
        self.bump();
    }

    /// The task `guid`.
    pub fn task(&self, guid: &str) -> Option<Task> {
        self.model().tasks.get(guid).cloned()
    }

    /// The presence held at `key`.
    pub fn presence(&self, key: &str) -> Option<FakePresence> {
        self.model().presences.get(key).cloned()
    }

    /// Drops the presence at `key` (as a TTL expiry would).
    pub fn expire_presence(&self, key: &str) {
        self.model().presences.remove(key);
        self.bump();
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<BbsCall> {
        self.model().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.model().calls.clear();
    }

    /// While set, every call fails with UNAVAILABLE (and changes nothing).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.model().unreachable = unreachable;
        self.bump();
    }

    /// Makes every call named `call` (e.g. `"ClaimActualLRP"`) fail with `code`.
    pub fn fail(&self, call: &'static str, code: ErrorCode) {
        self.model().failures.insert(call, code);
    }

    /// Stops failing `call`.
    pub fn stop_failing(&self, call: &'static str) {
        self.model().failures.remove(call);
    }

    /// Waits until `condition` holds for this fake (re-checked after every call and change).
    /// Wrap it in a timeout.
    pub async fn wait_until(&self, mut condition: impl FnMut(&FakeBbs) -> bool) {
        let mut rx = self.version.subscribe();
        loop {
            rx.borrow_and_update();
            if condition(self) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

fn lrp_ref(key: &ActualLrpKey, instance: &ActualLrpInstanceKey) -> LrpRef {
    LrpRef {
        process_guid: key.process_guid.to_string(),
        index: key.index,
        instance_guid: instance.instance_guid.to_string(),
    }
}

fn same_instance(lrp: &ActualLrp, instance: &ActualLrpInstanceKey) -> bool {
    lrp.instance_key.as_ref() == Some(instance)
}

fn ordinary_id(key: &ActualLrpKey) -> (String, i32, Presence) {
    (key.process_guid.to_string(), key.index, Presence::Ordinary)
}

fn presence_id(key: &ActualLrpKey, presence: Presence) -> (String, i32, Presence) {
    (key.process_guid.to_string(), key.index, presence)
}

fn running_record(lrp: &RunningLrp, presence: Presence, base: Option<ActualLrp>) -> ActualLrp {
    let mut record = base.unwrap_or_else(|| ActualLrp::new_unclaimed(lrp.key.clone(), "epoch", now_ns()));
    record.key = lrp.key.clone();
    record.state = ActualLrpState::Running;
    record.instance_key = Some(lrp.instance_key.clone());
    record.net_info = Some(lrp.net_info.clone());
    record.internal_routes = lrp.internal_routes.clone();
    record.metric_tags = lrp.metric_tags.clone();
    record.routable = lrp.routable;
    record.availability_zone = lrp.availability_zone.clone();
    record.presence = presence;
    record.placement_error.clear();
    record
}

fn unclaim(record: &mut ActualLrp) {
    record.state = ActualLrpState::Unclaimed;
    record.instance_key = None;
    record.net_info = None;
    record.routable = false;
}

/// Crash rules of bbs.md 3.2, without the reset after 5 minutes: UNCLAIMED again while the new
/// count is below 3, else CRASHED.
fn crash(record: &mut ActualLrp, reason: &str) {
    record.crash_count = record.crash_count.saturating_add(1);
    record.crash_reason = reason.to_owned();
    unclaim(record);
    if record.crash_count >= 3 {
        record.state = ActualLrpState::Crashed;
    }
}

impl BbsClient for FakeBbs {
    fn claim_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let result = self.handle(BbsCall::Claim(lrp_ref(key, instance)), |m| {
            const CALL: &str = "ClaimActualLRP";
            let record = m
                .lrps
                .get_mut(&ordinary_id(key))
                .ok_or_else(|| bad(CALL, ErrorCode::ResourceNotFound, "actual lrp not found"))?;
            match record.state {
                ActualLrpState::Unclaimed => {}
                ActualLrpState::Claimed | ActualLrpState::Running if same_instance(record, instance) => {}
                _ => return Err(bad(CALL, ErrorCode::ActualLrpCannotBeClaimed, "cannot be claimed")),
            }
            record.state = ActualLrpState::Claimed;
            record.instance_key = Some(instance.clone());
            record.net_info = None;
            record.placement_error.clear();
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn start_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<(), BbsError>> {
        let ports = lrp.net_info.ports.iter().map(|p| (p.container_port, p.host_port)).collect();
        let call = BbsCall::Start { lrp: lrp_ref(&lrp.key, &lrp.instance_key), routable: lrp.routable, ports };
        let result = self.handle(call, |m| {
            let id = ordinary_id(&lrp.key);
            let existing = m.lrps.get(&id).cloned();
            if let Some(record) = &existing {
                let allowed = match record.state {
                    ActualLrpState::Unclaimed | ActualLrpState::Claimed => true,
                    ActualLrpState::Running => same_instance(record, &lrp.instance_key),
                    ActualLrpState::Crashed => false,
                };
                if !allowed {
                    return Err(bad("StartActualLRP", ErrorCode::ActualLrpCannotBeStarted, "cannot be started"));
                }
            }
            m.lrps.insert(id, running_record(lrp, Presence::Ordinary, existing));
            m.lrps.remove(&presence_id(&lrp.key, Presence::Evacuating));
            m.lrps.remove(&presence_id(&lrp.key, Presence::Suspect));
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn crash_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::Crash { lrp: lrp_ref(key, instance), reason: reason.to_owned() };
        let result = self.handle(call, |m| match m.lrps.get_mut(&ordinary_id(key)) {
            Some(record) if same_instance(record, instance) => {
                crash(record, reason);
                Ok(())
            }
            Some(_) => Err(bad("CrashActualLRP", ErrorCode::ActualLrpCannotBeCrashed, "cannot be crashed")),
            None => Err(bad("CrashActualLRP", ErrorCode::ResourceNotFound, "actual lrp not found")),
        });
        Box::pin(async move { result })
    }

    fn remove_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let result = self.handle(BbsCall::Remove(lrp_ref(key, instance)), |m| {
            let id = ordinary_id(key);
            match m.lrps.get(&id) {
                Some(record) if same_instance(record, instance) => {
                    m.lrps.remove(&id);
                    Ok(())
                }
                Some(_) => Err(bad("RemoveActualLRP", ErrorCode::ActualLrpCannotBeRemoved, "cannot be removed")),
                None => Err(bad("RemoveActualLRP", ErrorCode::ResourceNotFound, "actual lrp not found")),
            }
        });
        Box::pin(async move { result })
    }

    fn evacuate_claimed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let result = self.handle(BbsCall::EvacuateClaimed(lrp_ref(key, instance)), |m| {
            for presence in [Presence::Evacuating, Presence::Suspect] {
                let id = presence_id(key, presence);
                if m.lrps.get(&id).is_some_and(|r| same_instance(r, instance)) {
                    m.lrps.remove(&id);
                    return Ok(false);
                }
            }
            match m.lrps.get_mut(&ordinary_id(key)) {
                Some(record) if same_instance(record, instance) => {
                    unclaim(record);
                    Ok(false)
                }
                _ => Err(bad("EvacuateClaimedActualLRP", ErrorCode::ResourceNotFound, "actual lrp not found")),
            }
        });
        Box::pin(async move { result })
    }

    fn evacuate_running_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<bool, BbsError>> {
        // Mirrors the ROLLING rules of bbs.md 3.3.
        let decide = |m: &mut Model| -> bool {
            let key = &lrp.key;
            let ordinary = m.lrps.get(&ordinary_id(key)).cloned();
            let evacuating = m.lrps.get(&presence_id(key, Presence::Evacuating)).cloned();
            let ours = |r: &ActualLrp| same_instance(r, &lrp.instance_key);
            if ordinary.is_none() && evacuating.is_none() {
                return false;
            }
            match &ordinary {
                None => {
                    m.lrps.remove(&presence_id(key, Presence::Evacuating));
                    false
                }
                Some(o) if !ours(o) && matches!(o.state, ActualLrpState::Running | ActualLrpState::Crashed) => {
                    if evacuating.as_ref().is_some_and(ours) {
                        m.lrps.remove(&presence_id(key, Presence::Evacuating));
                    }
                    false
                }
                Some(o) if !ours(o) => {
                    if evacuating.as_ref().is_some_and(|e| !ours(e)) {
                        return false;
                    }
                    m.lrps.insert(
                        presence_id(key, Presence::Evacuating),
                        running_record(lrp, Presence::Evacuating, None),
                    );
                    true
                }
                Some(o) if matches!(o.state, ActualLrpState::Running | ActualLrpState::Claimed) => {
                    m.lrps.insert(
                        presence_id(key, Presence::Evacuating),
                        running_record(lrp, Presence::Evacuating, None),
                    );
                    if let Some(record) = m.lrps.get_mut(&ordinary_id(key)) {
                        unclaim(record);
                    }
                    true
                }
                Some(_) => false,
            }
        };
        let result = {
            let mut model = self.model();
            let name = "EvacuateRunningActualLRP";
            let outcome = if model.unreachable {
                Err(bad(name, ErrorCode::Unavailable, "transport error: connection refused"))
            } else if let Some(code) = model.failures.get(name).copied() {
                Err(bad(name, code, "injected failure"))
            } else {
                Ok(decide(&mut model))
            };
            let keep = *outcome.as_ref().unwrap_or(&true);
            model.calls.push(BbsCall::EvacuateRunning { lrp: lrp_ref(&lrp.key, &lrp.instance_key), keep });
            outcome
        };
        self.bump();
        Box::pin(async move { result })
    }

    fn evacuate_stopped_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let result = self.handle(BbsCall::EvacuateStopped(lrp_ref(key, instance)), |m| {
            for presence in [Presence::Evacuating, Presence::Suspect, Presence::Ordinary] {
                let id = presence_id(key, presence);
                if m.lrps.get(&id).is_some_and(|r| same_instance(r, instance)) {
                    m.lrps.remove(&id);
                    return Ok(false);
                }
            }
            Err(bad("EvacuateStoppedActualLRP", ErrorCode::ResourceNotFound, "actual lrp not found"))
        });
        Box::pin(async move { result })
    }

    fn evacuate_crashed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let call = BbsCall::EvacuateCrashed { lrp: lrp_ref(key, instance), reason: reason.to_owned() };
        let result = self.handle(call, |m| {
            for presence in [Presence::Evacuating, Presence::Suspect] {
                let id = presence_id(key, presence);
                if m.lrps.get(&id).is_some_and(|r| same_instance(r, instance)) {
                    m.lrps.remove(&id);
                    return Ok(false);
                }
            }
            match m.lrps.get_mut(&ordinary_id(key)) {
                Some(record) if same_instance(record, instance) => {
                    crash(record, reason);
                    Ok(false)
                }
                _ => Err(bad("EvacuateCrashedActualLRP", ErrorCode::ResourceNotFound, "actual lrp not found")),
            }
        });
        Box::pin(async move { result })
    }

    fn remove_evacuating_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let result = self.handle(BbsCall::RemoveEvacuating(lrp_ref(key, instance)), |m| {
            let id = presence_id(key, Presence::Evacuating);
            if m.lrps.get(&id).is_some_and(|r| same_instance(r, instance)) {
                m.lrps.remove(&id);
                Ok(())
            } else {
                Err(bad("RemoveEvacuatingActualLRP", ErrorCode::ResourceNotFound, "evacuating actual lrp not found"))
            }
        });
        Box::pin(async move { result })
    }

    fn actual_lrps_by_cell<'a>(&'a self, cell_id: &'a str) -> BoxFuture<'a, Result<Vec<ActualLrp>, BbsError>> {
        let result = self.handle(BbsCall::ActualLrps(cell_id.to_owned()), |m| {
            Ok(m.lrps
                .values()
                .filter(|r| r.instance_key.as_ref().is_some_and(|k| k.cell_id.as_str() == cell_id))
                .cloned()
                .collect())
        });
        Box::pin(async move { result })
    }

    fn desired_lrp<'a>(&'a self, process_guid: &'a str) -> BoxFuture<'a, Result<DesiredLrp, BbsError>> {
        let result = self.handle(BbsCall::DesiredLrp(process_guid.to_owned()), |m| {
            m.desired
                .get(process_guid)
                .cloned()
                .ok_or_else(|| bad("DesiredLRPByProcessGuid", ErrorCode::ResourceNotFound, "desired lrp not found"))
        });
        Box::pin(async move { result })
    }

    fn start_task<'a>(&'a self, task_guid: &'a str, cell_id: &'a str) -> BoxFuture<'a, Result<bool, BbsError>> {
        let call = BbsCall::StartTask(task_guid.to_owned(), cell_id.to_owned());
        let result = self.handle(call, |m| {
            const CALL: &str = "StartTask";
            let task =
                m.tasks.get_mut(task_guid).ok_or_else(|| bad(CALL, ErrorCode::ResourceNotFound, "task not found"))?;
            match task.state {
                TaskState::Pending => {
                    task.state = TaskState::Running;
                    task.cell_id = CellId::parse(cell_id).ok();
                    Ok(true)
                }
                TaskState::Running if task.cell_id.as_ref().is_some_and(|c| c.as_str() == cell_id) => Ok(false),
                _ => Err(bad(CALL, ErrorCode::InvalidStateTransition, "cannot start")),
            }
        });
        Box::pin(async move { result })
    }

    fn complete_task<'a>(&'a self, completion: &'a TaskCompletion) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::CompleteTask(completion.clone());
        let result = self.handle(call, |m| {
            const CALL: &str = "CompleteTask";
            let task = m
                .tasks
                .get_mut(&completion.task_guid)
                .ok_or_else(|| bad(CALL, ErrorCode::ResourceNotFound, "task not found"))?;
            if task.state != TaskState::Running {
                return Err(bad(CALL, ErrorCode::InvalidStateTransition, "not running"));
            }
            if task.cell_id.as_ref().map(CellId::as_str) != Some(completion.cell_id.as_str()) {
                return Err(bad(CALL, ErrorCode::RunningOnDifferentCell, "running on a different cell"));
            }
            task.state = TaskState::Completed;
            task.cell_id = None;
            task.failed = completion.failed;
            task.failure_reason = completion.failure_reason.clone();
            task.result = completion.result.clone();
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::RejectTask(task_guid.to_owned(), reason.to_owned());
        let result = self.handle(call, |m| {
            let task = m
                .tasks
                .get_mut(task_guid)
                .ok_or_else(|| bad("RejectTask", ErrorCode::ResourceNotFound, "task not found"))?;
            if !matches!(task.state, TaskState::Pending | TaskState::Running) {
                return Err(bad("RejectTask", ErrorCode::InvalidRequest, "not pending or running"));
            }
            task.state = TaskState::Pending;
            task.cell_id = None;
            task.rejection_count = task.rejection_count.saturating_add(1);
            task.rejection_reason = reason.to_owned();
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn tasks_by_cell<'a>(&'a self, cell_id: &'a str) -> BoxFuture<'a, Result<Vec<Task>, BbsError>> {
        let result = self.handle(BbsCall::Tasks(cell_id.to_owned()), |m| {
            Ok(m.tasks
                .values()
                .filter(|t| t.cell_id.as_ref().is_some_and(|c| c.as_str() == cell_id))
                .cloned()
                .collect())
        });
        Box::pin(async move { result })
    }

    fn task_by_guid<'a>(&'a self, task_guid: &'a str) -> BoxFuture<'a, Result<Task, BbsError>> {
        let result = self.handle(BbsCall::TaskByGuid(task_guid.to_owned()), |m| {
            m.tasks
                .get(task_guid)
                .cloned()
                .ok_or_else(|| bad("TaskByGuid", ErrorCode::ResourceNotFound, "task not found"))
        });
        Box::pin(async move { result })
    }

    fn lock_presence<'a>(&'a self, lease: &'a PresenceLease, ttl: Duration) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::Lock(lease.clone());
        let result = self.handle(call, |m| {
            let entry = m.presences.entry(lease.key.clone()).or_insert_with(|| FakePresence {
                owner: lease.owner.clone(),
                value: String::new(),
                ttl,
                renewals: 0,
            });
            if entry.owner != lease.owner {
                return Err(bad("Lock", ErrorCode::LockCollision, "held by another owner"));
            }
            entry.value = lease.value.clone();
            entry.ttl = ttl;
            entry.renewals += 1;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn release_presence<'a>(&'a self, lease: &'a PresenceLease) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::Release(lease.clone());
        let result = self.handle(call, |m| {
            if m.presences.get(&lease.key).is_some_and(|p| p.owner == lease.owner) {
                m.presences.remove(&lease.key);
            }
            Ok(())
        });
        Box::pin(async move { result })
    }
}

impl FakeBbs {
    /// Auction work for every UNCLAIMED ordinary record whose desired LRP is known: what an
    /// auctioneer would place next.
    pub fn unclaimed_work(&self) -> Vec<rep_pb::Lrp> {
        let model = self.model();
        model
            .lrps
            .values()
            .filter(|r| r.presence == Presence::Ordinary && r.state == ActualLrpState::Unclaimed)
            .filter_map(|r| model.desired.get(r.key.process_guid.as_str()).map(|d| lrp_work(d, r.key.index)))
            .collect()
    }
}
