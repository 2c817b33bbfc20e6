//! The ordinary lifecycle calls (bbs.md 3.1, 3.2, 3.4) as pure functions on the [`IndexRows`] of
//! one index: each picks the row the request addresses, asks the transition table
//! ([`judge`]) and sets the fields of the target state ([`super::instance`]). Storage locks the
//! rows, runs one of these and writes the difference, so a retried transaction re-runs cleanly.
//!
//! Which row a request addresses, as in Diego: a request whose instance key equals the SUSPECT
//! row's addresses the suspect row, anything else the ORDINARY row.

use crate::error::ErrorCode;
use crate::lifecycle::actual_lrp::instance::{self, CrashOutcome, StartInfo};
use crate::lifecycle::actual_lrp::refusal::{Refusal, judge};
use crate::lifecycle::actual_lrp::rows::IndexRows;
use crate::lifecycle::actual_lrp::table::{Command, Verdict};
use crate::lifecycle::crash::CrashPolicy;
use crate::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, Presence, ProcessGuid};

fn ordinary_mut<'r>(
    rows: &'r mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
) -> Result<&'r mut ActualLrp, Refusal> {
    rows.ordinary.as_mut().ok_or_else(|| Refusal::not_found(process_guid, index, Presence::Ordinary))
}

/// The suspect row when `instance_key` addresses it, for claim and start: acknowledged, ignored.
fn ignored_by_suspect(
    rows: &IndexRows,
    cmd: Command,
    instance_key: &ActualLrpInstanceKey,
) -> Option<Result<(), Refusal>> {
    let suspect = rows.suspect.as_ref().filter(|_| rows.addressed(instance_key) == Presence::Suspect)?;
    Some(match judge(cmd, suspect, Some(instance_key)) {
        Ok(Verdict::Ignore | Verdict::Unchanged) => Ok(()),
        Ok(other) => Err(Refusal::unexpected(cmd, suspect, other)),
        Err(refusal) => Err(refusal),
    })
}

/// ClaimActualLRP: the ordinary row becomes CLAIMED by `instance_key`.
///
/// - CLAIMED by the same key: success, nothing changed.
/// - The suspect row carries `instance_key`: success, silently ignored.
/// - Refused ([`ErrorCode::ActualLrpCannotBeClaimed`]) when the row is held by another key or
///   CRASHED; no ordinary row: [`Refusal::NotFound`].
pub fn apply_claim(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    instance_key: &ActualLrpInstanceKey,
    now_ns: i64,
) -> Result<(), Refusal> {
    if let Some(outcome) = ignored_by_suspect(rows, Command::Claim, instance_key) {
        return outcome;
    }
    let row = ordinary_mut(rows, process_guid, index)?;
    match judge(Command::Claim, row, Some(instance_key))? {
        Verdict::Write(_) => {
            instance::claim(row, instance_key, now_ns);
            Ok(())
        }
        Verdict::Unchanged | Verdict::Ignore => Ok(()),
        other @ Verdict::Delete => Err(Refusal::unexpected(Command::Claim, row, other)),
    }
}

/// StartActualLRP: the ordinary row becomes RUNNING with `instance_key` and everything in
/// `start` ([`instance::run`]).
///
/// - No ordinary row: a RUNNING one is created (with an empty epoch: storage gives it a fresh one).
/// - RUNNING by the same key with every field equal (the rep's periodic re-assert): unchanged.
/// - Once the ordinary row is RUNNING, the EVACUATING and SUSPECT rows are deleted.
/// - The suspect row carries `instance_key`: success, silently ignored.
/// - Refused ([`ErrorCode::ActualLrpCannotBeStarted`]) when the row is RUNNING or CRASHED under
///   another key; UNCLAIMED and CLAIMED rows accept any key (bbs.md 3.1).
pub fn apply_start(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    start: &StartInfo,
    now_ns: i64,
) -> Result<(), Refusal> {
    if let Some(outcome) = ignored_by_suspect(rows, Command::Start, instance_key) {
        return outcome;
    }
    match rows.ordinary.as_mut() {
        None => {
            // The BBS lost the row (purged, or unclaimed and removed): recreate it RUNNING.
            let mut fresh = ActualLrp::new_unclaimed(key.clone(), String::new(), now_ns);
            instance::run(&mut fresh, instance_key, start, now_ns);
            rows.ordinary = Some(fresh);
        }
        Some(row) => match judge(Command::Start, row, Some(instance_key))? {
            Verdict::Write(_) => instance::run(row, instance_key, start, now_ns),
            Verdict::Unchanged | Verdict::Ignore => {}
            other @ Verdict::Delete => return Err(Refusal::unexpected(Command::Start, row, other)),
        },
    }
    // The ordinary row runs: the copies kept alive meanwhile are no longer needed.
    rows.evacuating = None;
    rows.suspect = None;
    Ok(())
}

/// CrashActualLRP (bbs.md 3.2): the ordinary row crashes ([`instance::crash`]). A crash reported
/// by the suspect row's instance deletes the suspect row, with no restart. Refused
/// ([`ErrorCode::ActualLrpCannotBeCrashed`]) unless the row is CLAIMED or RUNNING by
/// `instance_key`; no ordinary row: [`Refusal::NotFound`].
pub fn apply_crash(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    reason: &str,
    policy: &CrashPolicy,
    now_ns: i64,
) -> Result<CrashOutcome, Refusal> {
    if let (Presence::Suspect, Some(suspect)) = (rows.addressed(instance_key), &rows.suspect) {
        return match judge(Command::Crash, suspect, Some(instance_key))? {
            Verdict::Delete => {
                let crash_count = suspect.crash_count;
                rows.suspect = None;
                Ok(CrashOutcome { restart_now: false, crash_count })
            }
            other => Err(Refusal::unexpected(Command::Crash, suspect, other)),
        };
    }
    crash_ordinary(rows, key, instance_key, reason, policy, now_ns)
}

/// A crash of the ordinary row's instance (CrashActualLRP, EvacuateCrashedActualLRP).
pub(super) fn crash_ordinary(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    reason: &str,
    policy: &CrashPolicy,
    now_ns: i64,
) -> Result<CrashOutcome, Refusal> {
    let row = ordinary_mut(rows, &key.process_guid, key.index)?;
    match judge(Command::Crash, row, Some(instance_key))? {
        Verdict::Write(_) => Ok(instance::crash(row, reason, policy, now_ns)),
        other => Err(Refusal::unexpected(Command::Crash, row, other)),
    }
}

/// FailActualLRP: only an UNCLAIMED ordinary row accepts it ([`instance::fail`]). Otherwise
/// refused ([`ErrorCode::ActualLrpCannotBeFailed`]); no ordinary row: [`Refusal::NotFound`].
pub fn apply_fail(rows: &mut IndexRows, key: &ActualLrpKey, placement_error: &str, now_ns: i64) -> Result<(), Refusal> {
    let row = ordinary_mut(rows, &key.process_guid, key.index)?;
    match judge(Command::Fail, row, None)? {
        Verdict::Write(_) => {
            instance::fail(row, placement_error, now_ns);
            Ok(())
        }
        other => Err(Refusal::unexpected(Command::Fail, row, other)),
    }
}

/// RemoveActualLRP: deletes the ordinary row. With an instance key, only when the row carries
/// that key (refused with [`ErrorCode::ActualLrpCannotBeRemoved`] otherwise, an UNCLAIMED or
/// CRASHED row included); without one, whatever its state. No ordinary row:
/// [`Refusal::NotFound`].
pub fn apply_remove(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    instance_key: Option<&ActualLrpInstanceKey>,
) -> Result<(), Refusal> {
    let row = ordinary_mut(rows, process_guid, index)?;
    match judge(Command::Remove, row, instance_key)? {
        Verdict::Delete => {
            rows.ordinary = None;
            Ok(())
        }
        other => Err(Refusal::unexpected(Command::Remove, row, other)),
    }
}

/// Internal unclaim (convergence): the ordinary row goes back to UNCLAIMED
/// ([`instance::unclaim`]); an UNCLAIMED row is left as it is. Returns whether the row was
/// unclaimed. No ordinary row: [`Refusal::NotFound`].
pub fn apply_unclaim(rows: &mut IndexRows, key: &ActualLrpKey, now_ns: i64) -> Result<bool, Refusal> {
    let row = ordinary_mut(rows, &key.process_guid, key.index)?;
    unclaim_row(row, None, now_ns)
}

/// Unclaims `row` as `requested` asks (the evacuation calls name the instance, the internal
/// unclaim does not); `Ok(false)` when it already was UNCLAIMED.
pub(super) fn unclaim_row(
    row: &mut ActualLrp,
    requested: Option<&ActualLrpInstanceKey>,
    now_ns: i64,
) -> Result<bool, Refusal> {
    match judge(Command::Unclaim, row, requested)? {
        Verdict::Write(_) => {
            instance::unclaim(row, now_ns);
            Ok(true)
        }
        Verdict::Unchanged => Ok(false),
        other => Err(Refusal::unexpected(Command::Unclaim, row, other)),
    }
}

/// Deletes the row with `presence` unconditionally (retirement of rows with no container,
/// convergence clean-ups). No such row: [`Refusal::NotFound`].
pub fn apply_delete(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    presence: Presence,
) -> Result<(), Refusal> {
    rows.slot_mut(presence).take().map(|_| ()).ok_or_else(|| Refusal::not_found(process_guid, index, presence))
}

/// RetireActualLRP's decision (bbs.md 4.2): an UNCLAIMED or CRASHED ordinary row is deleted
/// (`Ok(None)`); a CLAIMED or RUNNING one is left for its rep to stop, and its instance key is
/// returned. No ordinary row: [`Refusal::NotFound`].
pub fn apply_retire(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
) -> Result<Option<ActualLrpInstanceKey>, Refusal> {
    let row = ordinary_mut(rows, process_guid, index)?;
    match judge(Command::Retire, row, None)? {
        Verdict::Delete => {
            rows.ordinary = None;
            Ok(None)
        }
        Verdict::Unchanged => Ok(row.instance_key.clone()),
        other => Err(Refusal::unexpected(Command::Retire, row, other)),
    }
}

/// Convergence found the ordinary row's cell missing (bbs.md 3.4): the RUNNING or CLAIMED
/// ordinary row moves to presence SUSPECT (keeping its state, instance key and net info), and a
/// new UNCLAIMED ordinary row with an empty epoch (a fresh one once stored) replaces it.
///
/// Refused with [`ErrorCode::InvalidStateTransition`] when the ordinary row is UNCLAIMED or
/// CRASHED, or when the index already has a suspect row (then the ordinary row is itself the
/// replacement; the caller unclaims it instead). No ordinary row: [`Refusal::NotFound`].
pub fn apply_suspect_and_replace(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    now_ns: i64,
) -> Result<(), Refusal> {
    let Some(row) = rows.ordinary.as_ref() else {
        return Err(Refusal::not_found(process_guid, index, Presence::Ordinary));
    };
    if rows.suspect.is_some() {
        return Err(Refusal::refused(
            ErrorCode::InvalidStateTransition,
            Command::Suspect,
            row,
            None,
            "; the index already has a suspect row",
        ));
    }
    match judge(Command::Suspect, row, None)? {
        Verdict::Write(_) => {
            let replacement = ActualLrp::new_unclaimed(row.key.clone(), String::new(), now_ns);
            let suspect = rows.ordinary.replace(replacement);
            rows.suspect = suspect.map(|s| ActualLrp { presence: Presence::Suspect, ..s });
            Ok(())
        }
        other => Err(Refusal::unexpected(Command::Suspect, row, other)),
    }
}

/// The suspect's cell came back (bbs.md 3.4, promote): the ordinary replacement is deleted
/// whatever its state, and the SUSPECT row becomes ORDINARY (state, instance key and `since`
/// kept: a presence move is not a state write). No suspect row: [`Refusal::NotFound`].
pub fn apply_promote(rows: &mut IndexRows, process_guid: &ProcessGuid, index: i32) -> Result<(), Refusal> {
    let suspect = rows.suspect.as_ref().ok_or_else(|| Refusal::not_found(process_guid, index, Presence::Suspect))?;
    match judge(Command::Promote, suspect, None)? {
        Verdict::Write(_) => {
            rows.ordinary = rows.suspect.take().map(|s| ActualLrp { presence: Presence::Ordinary, ..s });
            Ok(())
        }
        other => Err(Refusal::unexpected(Command::Promote, suspect, other)),
    }
}
