//! [`FakeBbs`]: the recording BBS and Locket fake with its in-memory model.
//!
//! The fake keeps storage and recording only: every ActualLRP call runs the same
//! [`proto::lifecycle::actual_lrp`] function the BBS runs (with Diego's default crash policy and
//! a clock stuck at 0), and every task call the same [`proto::lifecycle::task`] rules.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use proto::error::ErrorCode;
use proto::lifecycle::actual_lrp::{
    StartInfo, apply_claim, apply_crash, apply_evacuate_claimed, apply_evacuate_crashed, apply_evacuate_running,
    apply_evacuate_stopped, apply_remove, apply_remove_evacuating, apply_start,
};
use proto::lifecycle::crash::CrashPolicy;
use proto::lifecycle::task::{TaskCall, TaskVerdict};
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellId, DesiredLrp, Presence, Task, TaskState,
};
use proto::pb::rep::v1 as rep_pb;
use tokio::sync::watch;

mod calls;
mod model;

pub use self::calls::{BbsCall, LrpRef};
use self::model::{Model, bad, now_ns};
use super::lrp_work;
use crate::bbs_client::{
    BatchAnswer, BatchSupport, BbsClient, BbsError, PresenceLease, RunningLrp, START_ACTUAL_LRPS, TaskCompletion,
};

/// The single start's name, as [`BbsError::call`] spells it.
const START_ACTUAL_LRP: &str = "StartActualLRP";

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

/// A BBS and Locket that keep an in-memory model and record every call.
#[derive(Debug)]
pub struct FakeBbs {
    model: Mutex<Model>,
    /// Bumped after every call and every change, so tests can wait for a condition.
    version: watch::Sender<u64>,
    /// Whether `StartActualLRPs` is served, as the rep's gRPC client remembers it.
    batch: BatchSupport,
    /// While true, `StartActualLRP` answers wait.
    starts_held: watch::Sender<bool>,
}

impl Default for FakeBbs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBbs {
    /// An empty BBS.
    pub fn new() -> Self {
        Self {
            model: Mutex::new(Model::default()),
            version: watch::Sender::new(0),
            batch: BatchSupport::default(),
            starts_held: watch::Sender::new(false),
        }
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

    /// While set, `StartActualLRPs` answers UNIMPLEMENTED (and changes nothing), as a BBS from
    /// before the call existed; the call is still recorded.
    pub fn set_batch_unimplemented(&self, unimplemented: bool) {
        self.model().batch_unimplemented = unimplemented;
    }

    /// While `held`, a `StartActualLRP` is recorded and applied at once but answers only once
    /// released, so the container operation that made it stays in flight.
    pub fn hold_starts(&self, held: bool) {
        self.starts_held.send_replace(held);
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

/// What the rep reported, as the lifecycle functions take it.
fn start_info(lrp: &RunningLrp) -> StartInfo {
    StartInfo {
        net_info: lrp.net_info.clone(),
        internal_routes: lrp.internal_routes.clone(),
        metric_tags: lrp.metric_tags.clone(),
        routable: lrp.routable,
        availability_zone: lrp.availability_zone.clone(),
    }
}

/// A start applied to the model, as `call` (alone or as an item of the batch).
fn start(model: &mut Model, call: &'static str, lrp: &RunningLrp) -> Result<(), BbsError> {
    model
        .modify_index(call, &lrp.key, |rows| apply_start(rows, &lrp.key, &lrp.instance_key, &start_info(lrp), now_ns()))
}

impl FakeBbs {
    /// One `StartActualLRPs` call: recorded, then refused as a whole when the BBS is unreachable
    /// or the call is set to fail, else each start applied on its own (refused with the code set
    /// by `fail("StartActualLRP", ..)`, if any, as the single call would be).
    fn start_chunk(&self, lrps: &[RunningLrp]) -> BatchAnswer {
        let call = BbsCall::StartBatch(lrps.iter().map(|lrp| lrp_ref(&lrp.key, &lrp.instance_key)).collect());
        if self.model().batch_unimplemented {
            self.model().calls.push(call);
            self.bump();
            return BatchAnswer::Unimplemented;
        }
        let answer = self.handle(call, |m| {
            let single_failure = m.failures.get(START_ACTUAL_LRP).copied();
            Ok(lrps
                .iter()
                .map(|lrp| match single_failure {
                    Some(code) => Err(bad(START_ACTUAL_LRPS, code, "injected failure")),
                    None => start(m, START_ACTUAL_LRPS, lrp),
                })
                .collect())
        });
        match answer {
            Ok(results) => BatchAnswer::Results(results),
            Err(e) => BatchAnswer::Failed(e),
        }
    }
}

fn parse_cell(call: &'static str, cell_id: &str) -> Result<CellId, BbsError> {
    CellId::parse(cell_id).map_err(|e| bad(call, ErrorCode::InvalidRequest, e.to_string()))
}

impl BbsClient for FakeBbs {
    fn claim_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let result = self.handle(BbsCall::Claim(lrp_ref(key, instance)), |m| {
            m.modify_index("ClaimActualLRP", key, |rows| {
                apply_claim(rows, &key.process_guid, key.index, instance, now_ns())
            })
        });
        Box::pin(async move { result })
    }

    fn start_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<(), BbsError>> {
        let ports = lrp.net_info.ports.iter().map(|p| (p.container_port, p.host_port)).collect();
        let call = BbsCall::Start { lrp: lrp_ref(&lrp.key, &lrp.instance_key), routable: lrp.routable, ports };
        let result = self.handle(call, |m| start(m, START_ACTUAL_LRP, lrp));
        let mut held = self.starts_held.subscribe();
        Box::pin(async move {
            let _ = held.wait_for(|held| !held).await;
            result
        })
    }

    fn start_actual_lrps<'a>(
        &'a self,
        lrps: &'a [RunningLrp],
    ) -> BoxFuture<'a, Result<Vec<Result<(), BbsError>>, BbsError>> {
        Box::pin(self.batch.start_actual_lrps(self, lrps, |chunk| std::future::ready(self.start_chunk(chunk))))
    }

    fn crash_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::Crash { lrp: lrp_ref(key, instance), reason: reason.to_owned() };
        let result = self.handle(call, |m| {
            m.modify_index("CrashActualLRP", key, |rows| {
                apply_crash(rows, key, instance, reason, &CrashPolicy::default(), now_ns()).map(|_| ())
            })
        });
        Box::pin(async move { result })
    }

    fn remove_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let result = self.handle(BbsCall::Remove(lrp_ref(key, instance)), |m| {
            m.modify_index("RemoveActualLRP", key, |rows| {
                apply_remove(rows, &key.process_guid, key.index, Some(instance))
            })
        });
        Box::pin(async move { result })
    }

    fn evacuate_claimed_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<bool, BbsError>> {
        let result = self.handle(BbsCall::EvacuateClaimed(lrp_ref(key, instance)), |m| {
            m.modify_index("EvacuateClaimedActualLRP", key, |rows| {
                apply_evacuate_claimed(rows, key, instance, now_ns())
            })
            .map(|_| false)
        });
        Box::pin(async move { result })
    }

    fn evacuate_running_actual_lrp<'a>(&'a self, lrp: &'a RunningLrp) -> BoxFuture<'a, Result<bool, BbsError>> {
        let result = {
            let mut model = self.model();
            let name = "EvacuateRunningActualLRP";
            let outcome = if model.unreachable {
                Err(bad(name, ErrorCode::Unavailable, "transport error: connection refused"))
            } else if let Some(code) = model.failures.get(name).copied() {
                Err(bad(name, code, "injected failure"))
            } else {
                let desired = model.desired_for_evacuation(lrp.key.process_guid.as_str());
                model
                    .modify_index(name, &lrp.key, |rows| {
                        apply_evacuate_running(rows, &lrp.key, &lrp.instance_key, &start_info(lrp), desired, now_ns())
                    })
                    .map(|outcome| outcome.keep)
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
            m.modify_index("EvacuateStoppedActualLRP", key, |rows| apply_evacuate_stopped(rows, key, instance))
                .map(|()| false)
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
            m.modify_index("EvacuateCrashedActualLRP", key, |rows| {
                apply_evacuate_crashed(rows, key, instance, reason, &CrashPolicy::default(), now_ns())
            })
            .map(|()| false)
        });
        Box::pin(async move { result })
    }

    fn remove_evacuating_actual_lrp<'a>(
        &'a self,
        key: &'a ActualLrpKey,
        instance: &'a ActualLrpInstanceKey,
    ) -> BoxFuture<'a, Result<(), BbsError>> {
        let result = self.handle(BbsCall::RemoveEvacuating(lrp_ref(key, instance)), |m| {
            m.modify_index("RemoveEvacuatingActualLRP", key, |rows| apply_remove_evacuating(rows, key, instance))
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
            let call = TaskCall::Start { cell_id: parse_cell("StartTask", cell_id)? };
            let verdict = m.transition_task("StartTask", task_guid, &call)?;
            Ok(verdict == TaskVerdict::Write(TaskState::Running))
        });
        Box::pin(async move { result })
    }

    fn complete_task<'a>(&'a self, completion: &'a TaskCompletion) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::CompleteTask(completion.clone());
        let result = self.handle(call, |m| {
            let call = TaskCall::Complete {
                cell_id: parse_cell("CompleteTask", &completion.cell_id)?,
                failed: completion.failed,
                failure_reason: completion.failure_reason.clone(),
                result: completion.result.clone(),
            };
            m.transition_task("CompleteTask", &completion.task_guid, &call).map(|_| ())
        });
        Box::pin(async move { result })
    }

    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::RejectTask(task_guid.to_owned(), reason.to_owned());
        let result = self.handle(call, |m| {
            // The fake never fails a task for its rejections: tests see every rejection returned.
            let call = TaskCall::Reject { reason: reason.to_owned(), max_retries: i32::MAX };
            m.transition_task("RejectTask", task_guid, &call).map(|_| ())
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
            let entry = m.presences.entry(lease.key().to_owned()).or_insert_with(|| FakePresence {
                owner: lease.owner.clone(),
                value: String::new(),
                ttl,
                renewals: 0,
            });
            if entry.owner != lease.owner {
                return Err(bad("Lock", ErrorCode::LockCollision, "held by another owner"));
            }
            entry.value = lease.value();
            entry.ttl = ttl;
            entry.renewals += 1;
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn release_presence<'a>(&'a self, lease: &'a PresenceLease) -> BoxFuture<'a, Result<(), BbsError>> {
        let call = BbsCall::Release(lease.clone());
        let result = self.handle(call, |m| {
            if m.presences.get(lease.key()).is_some_and(|p| p.owner == lease.owner) {
                m.presences.remove(lease.key());
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
