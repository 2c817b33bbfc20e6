//! The fake's in-memory storage and its one write path for actual LRPs, the in-memory
//! `modify_index`: the rules themselves are proto's.

use std::collections::{BTreeMap, HashMap};

use proto::error::ErrorCode;
use proto::lifecycle::actual_lrp::{Desired, IndexRows, Refusal, every_instance_running};
use proto::lifecycle::task::{TaskCall, TaskVerdict};
use proto::models::{ActualLrp, ActualLrpKey, DesiredLrp, ModificationTag, Presence, Task, UpdateStrategy};

use super::{BbsCall, FakePresence};
use crate::bbs_client::BbsError;

/// The fake's storage: what a BBS and Locket hold, the recorded calls and the injected faults.
#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) desired: BTreeMap<String, DesiredLrp>,
    /// Keyed by (process guid, index, presence).
    pub(super) lrps: BTreeMap<(String, i32, Presence), ActualLrp>,
    pub(super) tasks: BTreeMap<String, Task>,
    pub(super) presences: BTreeMap<String, FakePresence>,
    pub(super) calls: Vec<BbsCall>,
    pub(super) unreachable: bool,
    pub(super) failures: HashMap<&'static str, ErrorCode>,
    /// Whether `StartActualLRPs` answers UNIMPLEMENTED.
    pub(super) batch_unimplemented: bool,
}

/// An error of `call` with `code`.
pub(super) fn bad(call: &'static str, code: ErrorCode, message: impl Into<String>) -> BbsError {
    BbsError::new(call, Some(code), message)
}

/// The fake's clock, stuck at 0 (so crash counts never reset).
pub(super) fn now_ns() -> i64 {
    0
}

fn refused(call: &'static str, refusal: &Refusal) -> BbsError {
    bad(call, refusal.code(), refusal.to_string())
}

impl Model {
    /// The in-memory `modify_index`: runs `f` (one of proto's lifecycle functions) on a copy of
    /// the rows of `key`'s index and, when it succeeds, stores what changed. As the database does,
    /// a row's presence is its slot's and a changed row's modification tag is bumped (a fresh
    /// epoch for a new record).
    pub(super) fn modify_index<T>(
        &mut self,
        call: &'static str,
        key: &ActualLrpKey,
        f: impl FnOnce(&mut IndexRows) -> Result<T, Refusal>,
    ) -> Result<T, BbsError> {
        let id = |presence| (key.process_guid.to_string(), key.index, presence);
        let mut before = IndexRows::default();
        for presence in Presence::ALL {
            *before.slot_mut(presence) = self.lrps.get(&id(presence)).cloned();
        }
        let mut after = before.clone();
        let value = f(&mut after).map_err(|refusal| refused(call, &refusal))?;
        for presence in Presence::ALL {
            match after.slot_mut(presence).take() {
                None => {
                    self.lrps.remove(&id(presence));
                }
                Some(lrp) if before.get(presence) == Some(&lrp) => {}
                Some(mut lrp) => {
                    lrp.presence = presence;
                    lrp.modification_tag = if lrp.modification_tag.epoch.is_empty() {
                        ModificationTag::new("epoch")
                    } else {
                        lrp.modification_tag.incremented()
                    };
                    self.lrps.insert(id(presence), lrp);
                }
            }
        }
        Ok(value)
    }

    /// Runs a task call (proto's task rules) on the stored task `task_guid`.
    pub(super) fn transition_task(
        &mut self,
        call: &'static str,
        task_guid: &str,
        task_call: &TaskCall,
    ) -> Result<TaskVerdict, BbsError> {
        let task =
            self.tasks.get_mut(task_guid).ok_or_else(|| bad(call, ErrorCode::ResourceNotFound, "task not found"))?;
        let verdict =
            task_call.transition(task, now_ns()).map_err(|refusal| bad(call, refusal.code, refusal.message))?;
        if verdict == TaskVerdict::Delete {
            self.tasks.remove(task_guid);
        }
        Ok(verdict)
    }

    /// What EvacuateRunning knows about the desired LRP.
    pub(super) fn desired_for_evacuation(&self, process_guid: &str) -> Desired {
        match self.desired.get(process_guid) {
            None => Desired::Gone,
            Some(desired) if desired.scheduling.update_strategy == UpdateStrategy::Recreate => {
                let lrps = self.lrps.values().filter(|lrp| lrp.key.process_guid.as_str() == process_guid);
                Desired::Recreate { all_running: every_instance_running(desired.scheduling.instances, lrps) }
            }
            Some(_) => Desired::Rolling,
        }
    }
}
