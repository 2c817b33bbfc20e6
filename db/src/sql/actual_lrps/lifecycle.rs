//! The actual LRP lifecycle calls (bbs.md 3.1, 3.2, 3.4) on top of [`Store::modify_index`].
//!
//! Each call is a pure function on the [`IndexRows`] of the index (so it re-runs cleanly when the
//! transaction is retried) plus a thin [`Store`] method. The rules come from
//! [`proto::lifecycle::actual_lrp::decide`]; these functions pick the row a request addresses and
//! set the fields a transition sets or clears.
//!
//! Which row a request addresses, as in Diego: a request whose instance key equals the SUSPECT
//! row's addresses the suspect row, anything else the ORDINARY row.

use std::collections::BTreeMap;

use proto::error::ErrorCode;
use proto::lifecycle::actual_lrp::{Command, KeyMatch, Verdict, decide};
use proto::lifecycle::crash::CrashPolicy;
use proto::models::validation::truncate_reason;
use proto::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, NetInfo, Presence, ProcessGuid};

use super::index::{IndexChange, IndexRows};
use super::row::{WHAT, presence_name, row_key};
use crate::{Error, Result, Store};

/// What a rep reports when an instance's container is up (StartActualLRP).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StartInfo {
    /// Where the instance is reachable; its address must not be empty.
    pub net_info: NetInfo,
    /// Internal route host names.
    pub internal_routes: Vec<String>,
    /// Resolved metric tags.
    pub metric_tags: BTreeMap<String, String>,
    /// Whether routers may send traffic to it (a request without the field means `true`).
    pub routable: bool,
    /// The cell's availability zone.
    pub availability_zone: String,
}

/// What [`Store::crash_actual_lrp`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashOutcome {
    /// The row was written UNCLAIMED: the caller requests an auction now.
    pub restart_now: bool,
    /// The crash count stored (a crashed suspect row is deleted and reports its own count).
    pub crash_count: i32,
}

impl Store {
    /// ClaimActualLRP: a rep reserved a container for the instance. The ordinary row becomes
    /// CLAIMED by `instance_key`; its placement error and net info are cleared.
    ///
    /// - CLAIMED by the same key: success, nothing written.
    /// - The suspect row carries `instance_key`: success, silently ignored.
    /// - Refused ([`ErrorCode::ActualLrpCannotBeClaimed`]) when the row is held by another key
    ///   or CRASHED.
    /// - No ordinary row: [`Error::NotFound`].
    pub async fn claim_actual_lrp(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        instance_key: &ActualLrpInstanceKey,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        self.modify_index("claim actual lrp", process_guid, index, |rows| {
            apply_claim(rows, process_guid, index, instance_key, now_ns)
        })
        .await
    }

    /// StartActualLRP: the instance's container is healthy. The ordinary row becomes RUNNING
    /// with `instance_key` and everything in `start`; the placement error is cleared.
    ///
    /// - No ordinary row: a RUNNING one is created.
    /// - RUNNING by the same key with every field equal (the rep's periodic re-assert): nothing
    ///   is written; this case is answered from an unlocked read without a write transaction.
    /// - Once the ordinary row is RUNNING, the EVACUATING and SUSPECT rows of the index are
    ///   deleted in the same transaction.
    /// - The suspect row carries `instance_key`: success, silently ignored.
    /// - Refused ([`ErrorCode::ActualLrpCannotBeStarted`]) when the row is RUNNING or CRASHED
    ///   under another key; UNCLAIMED and CLAIMED rows accept any key (bbs.md 3.1).
    /// - An empty net info address is [`Error::Invalid`].
    pub async fn start_actual_lrp(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        start: &StartInfo,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        // Fast path for the re-assert: if applying the start to the current rows changes
        // nothing, answer without locking. A concurrent writer makes this the same as the
        // re-assert having arrived just before it.
        let current = self.actual_lrp_index(&key.process_guid, key.index).await?;
        let mut probe = current.clone();
        if apply_start(&mut probe, key, instance_key, start, now_ns).is_ok() && probe == current {
            return Ok(IndexChange { value: (), before: current.clone(), after: current });
        }
        self.modify_index("start actual lrp", &key.process_guid, key.index, |rows| {
            apply_start(rows, key, instance_key, start, now_ns)
        })
        .await
    }

    /// CrashActualLRP (bbs.md 3.2): the instance's container exited.
    ///
    /// On the ordinary row: the crash count becomes `policy.next_crash_count(..)`, the instance
    /// key and net info are cleared, the reason is stored (truncated to 1024 characters) and
    /// `since = now_ns`; the state is UNCLAIMED when `policy.restart_immediately(count)` (the
    /// caller auctions it, `restart_now`), CRASHED otherwise.
    ///
    /// A crash reported by the suspect row's instance deletes the suspect row, with no restart.
    /// Refused ([`ErrorCode::ActualLrpCannotBeCrashed`]) unless the row is CLAIMED or RUNNING by
    /// `instance_key`. No ordinary row: [`Error::NotFound`].
    pub async fn crash_actual_lrp(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        reason: &str,
        policy: &CrashPolicy,
        now_ns: i64,
    ) -> Result<IndexChange<CrashOutcome>> {
        self.modify_index("crash actual lrp", &key.process_guid, key.index, |rows| {
            apply_crash(rows, key, instance_key, reason, policy, now_ns)
        })
        .await
    }

    /// FailActualLRP: the auctioneer could not place the instance. Only an UNCLAIMED ordinary
    /// row accepts it: the placement error is stored (truncated to 1024 characters) and `since`
    /// bumped, which restarts the stale-unclaimed timer. Otherwise refused
    /// ([`ErrorCode::ActualLrpCannotBeFailed`]); no ordinary row: [`Error::NotFound`].
    pub async fn fail_actual_lrp(
        &self,
        key: &ActualLrpKey,
        placement_error: &str,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        self.modify_index("fail actual lrp", &key.process_guid, key.index, |rows| {
            apply_fail(rows, key, placement_error, now_ns)
        })
        .await
    }

    /// RemoveActualLRP: deletes the ordinary row. With an instance key, only when the row
    /// carries that key (refused with [`ErrorCode::ActualLrpCannotBeRemoved`] otherwise, an
    /// UNCLAIMED or CRASHED row included); without one, whatever its state. No ordinary row:
    /// [`Error::NotFound`].
    pub async fn remove_actual_lrp(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        instance_key: Option<&ActualLrpInstanceKey>,
    ) -> Result<IndexChange<()>> {
        self.modify_index("remove actual lrp", process_guid, index, |rows| {
            apply_remove(rows, process_guid, index, instance_key)
        })
        .await
    }

    /// Internal unclaim (evacuation, convergence): the ordinary row goes back to UNCLAIMED with
    /// its instance key and net info cleared and `since = now_ns`; the crash count is kept. An
    /// UNCLAIMED row is left as it is. No ordinary row: [`Error::NotFound`].
    pub async fn unclaim_actual_lrp(&self, key: &ActualLrpKey, now_ns: i64) -> Result<IndexChange<()>> {
        self.modify_index("unclaim actual lrp", &key.process_guid, key.index, |rows| apply_unclaim(rows, key, now_ns))
            .await
    }

    /// Deletes the row with `presence` unconditionally (retirement of rows with no container,
    /// convergence clean-ups). No such row: [`Error::NotFound`].
    pub async fn delete_actual_lrp(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        presence: Presence,
    ) -> Result<IndexChange<()>> {
        self.modify_index("delete actual lrp", process_guid, index, |rows| {
            apply_delete(rows, process_guid, index, presence)
        })
        .await
    }

    /// Convergence found the ordinary row's cell missing (bbs.md 3.4): the RUNNING or CLAIMED
    /// ordinary row moves to presence SUSPECT (keeping its state, instance key and net info),
    /// and a new UNCLAIMED ordinary row with a fresh epoch replaces it, in one transaction. The
    /// caller requests the replacement's auction.
    ///
    /// Refused with [`ErrorCode::InvalidStateTransition`] when the ordinary row is UNCLAIMED or
    /// CRASHED, or when the index already has a suspect row (then the ordinary row is itself
    /// the replacement; the caller unclaims it instead). No ordinary row: [`Error::NotFound`].
    pub async fn suspect_and_replace(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        self.modify_index("suspect actual lrp", process_guid, index, |rows| {
            apply_suspect_and_replace(rows, process_guid, index, now_ns)
        })
        .await
    }

    /// The suspect's cell came back (bbs.md 3.4, promote): the ordinary replacement is deleted
    /// whatever its state, and the SUSPECT row becomes ORDINARY (state, instance key and `since`
    /// kept: a presence move is not a state write, so `now_ns` is not stored). No suspect row:
    /// [`Error::NotFound`].
    pub async fn promote_suspect(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        now_ns: i64,
    ) -> Result<IndexChange<()>> {
        let _ = now_ns;
        self.modify_index("promote suspect actual lrp", process_guid, index, |rows| {
            apply_promote(rows, process_guid, index)
        })
        .await
    }
}

/// How the request's instance key relates to the row's.
fn key_match(row: &ActualLrp, requested: &ActualLrpInstanceKey) -> KeyMatch {
    match &row.instance_key {
        None => KeyMatch::Absent,
        Some(stored) if stored == requested => KeyMatch::Same,
        Some(_) => KeyMatch::Different,
    }
}

/// The presence a request with `instance_key` addresses.
fn addressed(rows: &IndexRows, instance_key: &ActualLrpInstanceKey) -> Presence {
    match &rows.suspect {
        Some(suspect) if suspect.instance_key.as_ref() == Some(instance_key) => Presence::Suspect,
        _ => Presence::Ordinary,
    }
}

fn verb(cmd: Command) -> &'static str {
    match cmd {
        Command::Claim => "claim",
        Command::Start => "start",
        Command::Crash => "crash",
        Command::Fail => "fail",
        Command::Remove => "remove",
        Command::Unclaim => "unclaim",
        Command::Retire => "retire",
        Command::Suspect => "suspect",
        Command::Promote => "promote",
    }
}

/// A refusal naming the process guid, index, presence and state of the row, and the instance
/// keys involved.
fn refusal(
    code: ErrorCode,
    cmd: Command,
    row: &ActualLrp,
    requested: Option<&ActualLrpInstanceKey>,
    why: &str,
) -> Error {
    let held = match &row.instance_key {
        Some(k) => format!(" held by instance {} on cell {}", k.instance_guid, k.cell_id),
        None => String::new(),
    };
    let by = match requested {
        Some(k) => format!(" (requested by instance {} on cell {})", k.instance_guid, k.cell_id),
        None => String::new(),
    };
    Error::refused(
        code,
        format!(
            "cannot {} actual lrp {} index {}: {} row is {}{held}{by}{why}",
            verb(cmd),
            row.key.process_guid,
            row.key.index,
            presence_name(row.presence),
            row.state.as_str(),
        ),
    )
}

/// Asks the transition table what `cmd` does to `row`.
fn judge(cmd: Command, row: &ActualLrp, requested: Option<&ActualLrpInstanceKey>) -> Result<Verdict> {
    let km = requested.map_or(KeyMatch::Same, |k| key_match(row, k));
    decide(row.state, row.presence, km, cmd).map_err(|code| refusal(code, cmd, row, requested, ""))
}

fn not_found(process_guid: &ProcessGuid, index: i32, presence: Presence) -> Error {
    Error::NotFound { what: WHAT, key: row_key(process_guid.as_str(), index, presence) }
}

/// A verdict the table never gives for this command on this presence.
fn unexpected(cmd: Command, row: &ActualLrp, verdict: Verdict) -> Error {
    refusal(ErrorCode::InvalidStateTransition, cmd, row, None, &format!(" (unexpected verdict {verdict:?})"))
}

fn ordinary_mut<'r>(rows: &'r mut IndexRows, process_guid: &ProcessGuid, index: i32) -> Result<&'r mut ActualLrp> {
    rows.ordinary.as_mut().ok_or_else(|| not_found(process_guid, index, Presence::Ordinary))
}

pub(super) fn apply_claim(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    instance_key: &ActualLrpInstanceKey,
    now_ns: i64,
) -> Result<()> {
    if let (Presence::Suspect, Some(suspect)) = (addressed(rows, instance_key), &rows.suspect) {
        return match judge(Command::Claim, suspect, Some(instance_key))? {
            Verdict::Ignore | Verdict::Unchanged => Ok(()),
            other => Err(unexpected(Command::Claim, suspect, other)),
        };
    }
    let row = ordinary_mut(rows, process_guid, index)?;
    match judge(Command::Claim, row, Some(instance_key))? {
        Verdict::Write(state) => {
            row.state = state;
            row.instance_key = Some(instance_key.clone());
            row.placement_error.clear();
            row.net_info = None;
            row.since = now_ns;
            Ok(())
        }
        Verdict::Unchanged | Verdict::Ignore => Ok(()),
        other @ Verdict::Delete => Err(unexpected(Command::Claim, row, other)),
    }
}

pub(super) fn apply_start(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    start: &StartInfo,
    now_ns: i64,
) -> Result<()> {
    if let (Presence::Suspect, Some(suspect)) = (addressed(rows, instance_key), &rows.suspect) {
        return match judge(Command::Start, suspect, Some(instance_key))? {
            Verdict::Ignore | Verdict::Unchanged => Ok(()),
            other => Err(unexpected(Command::Start, suspect, other)),
        };
    }
    let running = |base: ActualLrp| ActualLrp {
        state: ActualLrpState::Running,
        instance_key: Some(instance_key.clone()),
        net_info: Some(start.net_info.clone()),
        internal_routes: start.internal_routes.clone(),
        metric_tags: start.metric_tags.clone(),
        routable: start.routable,
        availability_zone: start.availability_zone.clone(),
        placement_error: String::new(),
        ..base
    };
    match rows.ordinary.as_mut() {
        None => {
            // The BBS lost the row (purged, or unclaimed and removed): recreate it RUNNING.
            let fresh = ActualLrp::new_unclaimed(key.clone(), String::new(), now_ns);
            rows.ordinary = Some(running(fresh));
        }
        Some(row) => match judge(Command::Start, row, Some(instance_key))? {
            Verdict::Write(_) => {
                let next = running(row.clone());
                // A RUNNING row re-asserted with every field equal is not written at all.
                if !(row.state == ActualLrpState::Running && next == *row) {
                    *row = ActualLrp { since: now_ns, ..next };
                }
            }
            Verdict::Unchanged | Verdict::Ignore => {}
            other @ Verdict::Delete => return Err(unexpected(Command::Start, row, other)),
        },
    }
    // The ordinary row runs: the copies kept alive meanwhile are no longer needed.
    rows.evacuating = None;
    rows.suspect = None;
    Ok(())
}

pub(super) fn apply_crash(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    reason: &str,
    policy: &CrashPolicy,
    now_ns: i64,
) -> Result<CrashOutcome> {
    if let (Presence::Suspect, Some(suspect)) = (addressed(rows, instance_key), &rows.suspect) {
        return match judge(Command::Crash, suspect, Some(instance_key))? {
            Verdict::Delete => {
                let crash_count = suspect.crash_count;
                rows.suspect = None;
                Ok(CrashOutcome { restart_now: false, crash_count })
            }
            other => Err(unexpected(Command::Crash, suspect, other)),
        };
    }
    let row = ordinary_mut(rows, &key.process_guid, key.index)?;
    match judge(Command::Crash, row, Some(instance_key))? {
        Verdict::Write(_) => {
            let was_running = row.state == ActualLrpState::Running;
            let crash_count = policy.next_crash_count(was_running, row.crash_count, row.since, now_ns);
            let restart_now = policy.restart_immediately(crash_count);
            row.state = if restart_now { ActualLrpState::Unclaimed } else { ActualLrpState::Crashed };
            row.instance_key = None;
            row.net_info = None;
            row.crash_count = crash_count;
            row.crash_reason = truncate_reason(reason);
            row.since = now_ns;
            Ok(CrashOutcome { restart_now, crash_count })
        }
        other => Err(unexpected(Command::Crash, row, other)),
    }
}

pub(super) fn apply_fail(rows: &mut IndexRows, key: &ActualLrpKey, placement_error: &str, now_ns: i64) -> Result<()> {
    let row = ordinary_mut(rows, &key.process_guid, key.index)?;
    match judge(Command::Fail, row, None)? {
        Verdict::Write(_) => {
            row.placement_error = truncate_reason(placement_error);
            row.since = now_ns;
            Ok(())
        }
        other => Err(unexpected(Command::Fail, row, other)),
    }
}

pub(super) fn apply_remove(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    instance_key: Option<&ActualLrpInstanceKey>,
) -> Result<()> {
    let row = ordinary_mut(rows, process_guid, index)?;
    match judge(Command::Remove, row, instance_key)? {
        Verdict::Delete => {
            rows.ordinary = None;
            Ok(())
        }
        other => Err(unexpected(Command::Remove, row, other)),
    }
}

pub(super) fn apply_unclaim(rows: &mut IndexRows, key: &ActualLrpKey, now_ns: i64) -> Result<()> {
    let row = ordinary_mut(rows, &key.process_guid, key.index)?;
    match judge(Command::Unclaim, row, None)? {
        Verdict::Write(state) => {
            row.state = state;
            row.instance_key = None;
            row.net_info = None;
            row.since = now_ns;
            Ok(())
        }
        Verdict::Unchanged => Ok(()),
        other => Err(unexpected(Command::Unclaim, row, other)),
    }
}

pub(super) fn apply_delete(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    presence: Presence,
) -> Result<()> {
    rows.slot_mut(presence).take().map(|_| ()).ok_or_else(|| not_found(process_guid, index, presence))
}

pub(super) fn apply_suspect_and_replace(
    rows: &mut IndexRows,
    process_guid: &ProcessGuid,
    index: i32,
    now_ns: i64,
) -> Result<()> {
    let Some(row) = rows.ordinary.as_ref() else {
        return Err(not_found(process_guid, index, Presence::Ordinary));
    };
    if rows.suspect.is_some() {
        return Err(refusal(
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
        other => Err(unexpected(Command::Suspect, row, other)),
    }
}

pub(super) fn apply_promote(rows: &mut IndexRows, process_guid: &ProcessGuid, index: i32) -> Result<()> {
    let suspect = rows.suspect.as_ref().ok_or_else(|| not_found(process_guid, index, Presence::Suspect))?;
    match judge(Command::Promote, suspect, None)? {
        Verdict::Write(_) => {
            let promoted = rows.suspect.take().map(|s| ActualLrp { presence: Presence::Ordinary, ..s });
            rows.ordinary = promoted;
            Ok(())
        }
        other => Err(unexpected(Command::Promote, suspect, other)),
    }
}
