//! The evacuation calls (bbs.md 3.3, 4.2 "Evacuation") as pure functions on the [`IndexRows`]
//! of one index: what a draining rep reports about each of its containers, and whether it should
//! keep the container (`keep_container`). Mirrors `bbs/controllers/evacuation_controller.go`,
//! except that each decision and its writes are one transaction instead of a read followed by
//! separate writes.
//!
//! Each call addresses the row carrying the request's instance key ([`IndexRows::carrier`]);
//! none carrying it is [`Refusal::NotFound`] (ResourceNotFound), except for EvacuateRunning,
//! which answers `keep_container` instead.

use crate::lifecycle::actual_lrp::apply::{apply_remove, crash_ordinary, unclaim_row};
use crate::lifecycle::actual_lrp::instance::{self, StartInfo};
use crate::lifecycle::actual_lrp::refusal::{Refusal, judge};
use crate::lifecycle::actual_lrp::rows::IndexRows;
use crate::lifecycle::actual_lrp::table::{Command, Verdict};
use crate::lifecycle::crash::CrashPolicy;
use crate::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, ModificationTag, Presence};

/// What EvacuateRunning knows about the desired LRP, read before the index is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// The desired LRP no longer exists.
    Gone,
    /// ROLLING: keep an evacuating copy until the replacement runs.
    Rolling,
    /// RECREATE, and whether every desired instance is RUNNING right now.
    Recreate {
        /// Every desired instance has a RUNNING ordinary row.
        all_running: bool,
    },
}

/// What EvacuateRunning decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningOutcome {
    /// The rep keeps the container.
    pub keep: bool,
    /// The ordinary row was unclaimed: request its auction.
    pub auction: bool,
}

/// Whether every one of the `instances` desired instances has a RUNNING ordinary row among
/// `lrps` (the rows of one desired LRP): RECREATE's condition for taking one more instance down
/// ([`Desired::Recreate`]).
pub fn every_instance_running<'a>(instances: i32, lrps: impl IntoIterator<Item = &'a ActualLrp>) -> bool {
    let running = lrps
        .into_iter()
        .filter(|lrp| {
            lrp.presence == Presence::Ordinary && lrp.state == ActualLrpState::Running && lrp.key.index < instances
        })
        .count();
    i64::try_from(running).unwrap_or(i64::MAX) >= i64::from(instances)
}

const KEEP: RunningOutcome = RunningOutcome { keep: true, auction: false };
const DROP: RunningOutcome = RunningOutcome { keep: false, auction: false };

/// Deletes the instance's evacuating or suspect row. The evacuating row goes through the table's
/// Remove rule (it must carry the key); the table has no evacuation rule for suspect rows, which
/// bbs.md 3.3 deletes outright.
fn delete_copy(rows: &mut IndexRows, presence: Presence, instance_key: &ActualLrpInstanceKey) -> Result<(), Refusal> {
    let slot = rows.slot_mut(presence);
    let Some(row) = slot.as_ref() else { return Ok(()) };
    if presence == Presence::Evacuating {
        match judge(Command::Remove, row, Some(instance_key))? {
            Verdict::Delete => {}
            other => return Err(Refusal::unexpected(Command::Remove, row, other)),
        }
    }
    *slot = None;
    Ok(())
}

/// Unclaims the ordinary row, if any; whether it was unclaimed (and needs an auction).
fn unclaim_ordinary(rows: &mut IndexRows, instance_key: &ActualLrpInstanceKey, now_ns: i64) -> Result<bool, Refusal> {
    match rows.ordinary.as_mut() {
        Some(row) => unclaim_row(row, Some(instance_key), now_ns),
        None => Ok(false),
    }
}

/// EvacuateClaimedActualLRP: a draining rep gives up a container that is not running yet. The
/// instance's EVACUATING or SUSPECT row is deleted (`Ok(false)`); its ORDINARY row is unclaimed
/// (`Ok(true)`: request its auction; `Ok(false)` when it already was UNCLAIMED).
pub fn apply_evacuate_claimed(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    now_ns: i64,
) -> Result<bool, Refusal> {
    match rows.carrier(instance_key) {
        None => Err(Refusal::no_instance(key, instance_key)),
        Some(presence @ (Presence::Evacuating | Presence::Suspect)) => {
            delete_copy(rows, presence, instance_key)?;
            Ok(false)
        }
        Some(Presence::Ordinary) => unclaim_ordinary(rows, instance_key, now_ns),
    }
}

/// EvacuateRunningActualLRP: a draining rep asks whether to keep a running container.
///
/// ROLLING (the default):
/// - no rows at all: drop;
/// - the ordinary row is gone (desired LRP removed), or another instance's ordinary row is
///   RUNNING or CRASHED (the replacement is done): this instance's evacuating (or suspect) row is
///   deleted, drop;
/// - the desired LRP is gone: likewise;
/// - this instance has no row or only an evacuating one: drop if another instance already holds
///   the evacuating slot, otherwise its evacuating row is created or refreshed from the request
///   ([`instance::run`]), keep;
/// - this instance is the ordinary or suspect row, CLAIMED or RUNNING: the evacuation dance (an
///   EVACUATING RUNNING copy keeps serving; the suspect row is deleted, or the ordinary row
///   unclaimed and auctioned), keep.
///
/// RECREATE: no evacuating copies are kept (an existing one is deleted, drop); a suspect row is
/// deleted (drop); a CLAIMED or RUNNING ordinary row is unclaimed and auctioned (drop) only while
/// every desired instance is RUNNING, otherwise keep and the rep asks again, so instances are
/// replaced one at a time.
pub fn apply_evacuate_running(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    start: &StartInfo,
    desired: Desired,
    now_ns: i64,
) -> Result<RunningOutcome, Refusal> {
    if rows.is_empty() {
        return Ok(DROP);
    }
    let target = rows.carrier(instance_key);
    let replacement_done = rows.ordinary.as_ref().is_none_or(|ordinary| {
        target != Some(Presence::Ordinary)
            && matches!(ordinary.state, ActualLrpState::Running | ActualLrpState::Crashed)
    });
    if replacement_done || desired == Desired::Gone {
        // Nothing needs this container any more; its copy goes (the ordinary row is stopped
        // through the desired LRP's removal or is the replacement).
        if let Some(presence @ (Presence::Evacuating | Presence::Suspect)) = target {
            delete_copy(rows, presence, instance_key)?;
        }
        return Ok(DROP);
    }
    if let Desired::Recreate { all_running } = desired {
        return match target {
            None => Ok(DROP),
            Some(presence @ (Presence::Evacuating | Presence::Suspect)) => {
                delete_copy(rows, presence, instance_key)?;
                Ok(DROP)
            }
            Some(Presence::Ordinary) if !all_running => Ok(KEEP),
            Some(Presence::Ordinary) => {
                let auction = unclaim_ordinary(rows, instance_key, now_ns)?;
                Ok(RunningOutcome { keep: false, auction })
            }
        };
    }
    match target {
        None | Some(Presence::Evacuating) => {
            if rows.evacuating.as_ref().is_some_and(|e| e.instance_key.as_ref() != Some(instance_key)) {
                // Another instance already evacuates this index; at most one copy is kept.
                return Ok(DROP);
            }
            let mut copy = rows.evacuating.clone().unwrap_or_else(|| ActualLrp {
                presence: Presence::Evacuating,
                ..ActualLrp::new_unclaimed(key.clone(), String::new(), now_ns)
            });
            // Refreshes only what changed; an identical report writes nothing.
            instance::run(&mut copy, instance_key, start, now_ns);
            rows.evacuating = Some(copy);
            Ok(KEEP)
        }
        Some(presence @ (Presence::Ordinary | Presence::Suspect)) => {
            let Some(row) = rows.get(presence).cloned() else { return Ok(DROP) };
            if !matches!(row.state, ActualLrpState::Running | ActualLrpState::Claimed) {
                return Ok(DROP);
            }
            // The dance: an EVACUATING RUNNING copy of this instance keeps serving. A RUNNING
            // row keeps its own net info and `since`; a CLAIMED one (the rep's start was not
            // recorded yet) takes what the rep reports now.
            let mut copy = ActualLrp { presence: Presence::Evacuating, ..row };
            if copy.state == ActualLrpState::Claimed {
                instance::run(&mut copy, instance_key, start, now_ns);
            }
            // The copy is a new record: a fresh epoch, or the slot's own tag when it replaces
            // another instance's copy.
            copy.modification_tag = rows
                .evacuating
                .as_ref()
                .map(|e| e.modification_tag.clone())
                .unwrap_or_else(|| ModificationTag::new(""));
            rows.evacuating = Some(copy);
            if presence == Presence::Suspect {
                // The ordinary row already is the replacement.
                rows.suspect = None;
                return Ok(KEEP);
            }
            let auction = unclaim_ordinary(rows, instance_key, now_ns)?;
            Ok(RunningOutcome { keep: true, auction })
        }
    }
}

/// EvacuateStoppedActualLRP: a draining rep's container stopped. The instance's evacuating or
/// suspect row is deleted, otherwise its ordinary row (RemoveActualLRP with the instance key).
pub fn apply_evacuate_stopped(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
) -> Result<(), Refusal> {
    match rows.carrier(instance_key) {
        None => Err(Refusal::no_instance(key, instance_key)),
        Some(presence @ (Presence::Evacuating | Presence::Suspect)) => delete_copy(rows, presence, instance_key),
        Some(Presence::Ordinary) => apply_remove(rows, &key.process_guid, key.index, Some(instance_key)),
    }
}

/// EvacuateCrashedActualLRP: a draining rep's container crashed. The instance's evacuating or
/// suspect row is deleted; otherwise its ordinary row crashes with the usual counting
/// ([`instance::crash`]), refused ([`ErrorCode::ActualLrpCannotBeCrashed`](crate::error::ErrorCode))
/// when it cannot crash. No auction follows: an instance that went UNCLAIMED is re-auctioned by
/// convergence's stale-unclaimed path.
pub fn apply_evacuate_crashed(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    reason: &str,
    policy: &CrashPolicy,
    now_ns: i64,
) -> Result<(), Refusal> {
    match rows.carrier(instance_key) {
        None => Err(Refusal::no_instance(key, instance_key)),
        Some(presence @ (Presence::Evacuating | Presence::Suspect)) => delete_copy(rows, presence, instance_key),
        Some(Presence::Ordinary) => crash_ordinary(rows, key, instance_key, reason, policy, now_ns).map(|_| ()),
    }
}

/// RemoveEvacuatingActualLRP: a rep cleans up an evacuating row it has no container for. The row
/// carrying the instance key must exist and be EVACUATING, otherwise [`Refusal::NotFound`].
pub fn apply_remove_evacuating(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
) -> Result<(), Refusal> {
    match rows.carrier(instance_key) {
        Some(Presence::Evacuating) => delete_copy(rows, Presence::Evacuating, instance_key),
        _ => Err(Refusal::no_instance(key, instance_key)),
    }
}
