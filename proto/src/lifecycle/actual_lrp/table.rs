//! The transition table (bbs.md 3.1, 3.3, 3.4): [`decide`] answers one question: given the
//! stored row's state and presence, how the instance key of the request compares with the row's,
//! and the command, what must the caller do to that row? It returns a [`Verdict`] or the Diego
//! error to send back.
//!
//! Not here (see the sibling modules): which row of the index a request addresses and the fields
//! a write sets or clears ([`super::apply`], [`super::evacuate`], [`super::instance`]); the crash
//! count, see [`crate::lifecycle::crash`]; side effects such as auctions, rep stop requests and
//! events, which belong to the BBS.
//!
//! Ordinary rows mirror `ActualLRP.AllowsTransitionTo` and the guards in
//! `bbs/db/sqldb/actual_lrp_db.go`. Suspect and evacuating rows follow bbs.md 3.3 and 3.4.

use crate::error::ErrorCode;
use crate::models::{ActualLrpState, Presence};

/// How the instance key in a request relates to the key stored on the row.
///
/// The caller computes this by comparing `(instance_guid, cell_id)` of the request with the row.
/// A request that carries no instance key where Diego treats that as "match anything" (for
/// example RemoveActualLRP without a key) is passed as [`KeyMatch::Same`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// The request names the instance key stored on the row.
    Same,
    /// The row has an instance key and the request names another one.
    Different,
    /// The row has no instance key (UNCLAIMED and CRASHED rows) and the request names one.
    Absent,
}

impl KeyMatch {
    /// Every key relation, for exhaustive tests.
    pub const ALL: [KeyMatch; 3] = [KeyMatch::Same, KeyMatch::Different, KeyMatch::Absent];
}

/// A lifecycle command addressed to one stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ClaimActualLRP from a rep that reserved a container (target CLAIMED).
    Claim,
    /// StartActualLRP from a rep whose container is healthy (target RUNNING).
    Start,
    /// CrashActualLRP from a rep (target CRASHED, or UNCLAIMED for an immediate restart).
    Crash,
    /// FailActualLRP from the auctioneer that could not place the instance (UNCLAIMED to
    /// UNCLAIMED with a placement error).
    Fail,
    /// RemoveActualLRP from a rep after a stop or a failed run, and the evacuation endpoints
    /// that delete an evacuating row.
    Remove,
    /// Internal unclaim with an empty key: evacuation, convergence restarting a CRASHED row,
    /// convergence unclaiming a replacement on a missing cell.
    Unclaim,
    /// RetireActualLRP, scale-down and DesiredLRP removal.
    Retire,
    /// Convergence found the row's cell missing: presence ORDINARY becomes SUSPECT.
    Suspect,
    /// Convergence saw the suspect's cell come back: presence SUSPECT becomes ORDINARY.
    Promote,
}

impl Command {
    /// Every command, for exhaustive tests.
    pub const ALL: [Command; 9] = [
        Command::Claim,
        Command::Start,
        Command::Crash,
        Command::Fail,
        Command::Remove,
        Command::Unclaim,
        Command::Retire,
        Command::Suspect,
        Command::Promote,
    ];

    /// The error returned when this command is refused on a well-formed row.
    ///
    /// Retire shares RemoveActualLRP's error because it removes the instance. Suspect and Promote
    /// are internal to convergence and have no dedicated Diego error, so they report
    /// [`ErrorCode::InvalidStateTransition`].
    pub const fn refusal(self) -> ErrorCode {
        match self {
            Command::Claim => ErrorCode::ActualLrpCannotBeClaimed,
            Command::Start => ErrorCode::ActualLrpCannotBeStarted,
            Command::Crash => ErrorCode::ActualLrpCannotBeCrashed,
            Command::Fail => ErrorCode::ActualLrpCannotBeFailed,
            Command::Remove | Command::Retire => ErrorCode::ActualLrpCannotBeRemoved,
            Command::Unclaim => ErrorCode::ActualLrpCannotBeUnclaimed,
            Command::Suspect | Command::Promote => ErrorCode::InvalidStateTransition,
        }
    }
}

/// What the caller must do to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Update the row into this state (set `since`, bump the modification tag, and set or clear
    /// the fields the target state requires).
    ///
    /// Some writes keep the state and change something else:
    /// - Start on a RUNNING row is a heartbeat; the caller skips the write when every field is
    ///   equal;
    /// - Fail on an UNCLAIMED row stores the placement error;
    /// - Suspect writes the same state with presence SUSPECT, Promote writes it with presence
    ///   ORDINARY; the caller changes the presence.
    Write(ActualLrpState),
    /// Success, nothing to write.
    ///
    /// For Retire on a CLAIMED or RUNNING row this means "do not touch the row": the caller must
    /// ask the rep to stop the instance, and the rep then removes the row.
    Unchanged,
    /// Success, silently ignored: Claim or Start from the cell of a suspect instance.
    Ignore,
    /// Delete the row.
    Delete,
}

/// Whether a row in `state` may exist with `presence` (bbs.md 2.2).
///
/// Ordinary rows may hold any state, an evacuating row is always RUNNING and a suspect row is
/// RUNNING or CLAIMED.
pub fn valid_combination(state: ActualLrpState, presence: Presence) -> bool {
    match presence {
        Presence::Ordinary => true,
        Presence::Evacuating => state == ActualLrpState::Running,
        Presence::Suspect => matches!(state, ActualLrpState::Running | ActualLrpState::Claimed),
    }
}

/// Decides what `cmd` does to a stored row in `state` with `presence`.
///
/// Errors:
/// - [`ErrorCode::InvalidRecord`] for any command when the row's state cannot exist with its
///   presence (see [`valid_combination`]);
/// - otherwise the command's own error (see [`Command::refusal`]) when the transition or the
///   instance-key fence refuses it.
///
/// Crash answers `Write(Crashed)` on an ordinary row. Whether the row is instead written
/// UNCLAIMED for an immediate restart is decided by
/// [`CrashPolicy::restart_immediately`](crate::lifecycle::crash::CrashPolicy::restart_immediately)
/// on the new crash count.
pub fn decide(state: ActualLrpState, presence: Presence, key: KeyMatch, cmd: Command) -> Result<Verdict, ErrorCode> {
    if !valid_combination(state, presence) {
        return Err(ErrorCode::InvalidRecord);
    }
    let verdict = match presence {
        Presence::Ordinary => decide_ordinary(state, key, cmd),
        Presence::Suspect => decide_suspect(state, key, cmd),
        Presence::Evacuating => decide_evacuating(key, cmd),
    };
    verdict.ok_or(cmd.refusal())
}

/// The table of bbs.md 3.1 (`ActualLRP.AllowsTransitionTo`) plus Fail, Remove, Unclaim, Retire
/// and Suspect on an ordinary row. `None` means the command is refused.
fn decide_ordinary(state: ActualLrpState, key: KeyMatch, cmd: Command) -> Option<Verdict> {
    use ActualLrpState::{Claimed, Crashed, Running, Unclaimed};
    let same = key == KeyMatch::Same;
    match (cmd, state) {
        // "any key": an UNCLAIMED row has no key to fence on.
        (Command::Claim, Unclaimed) => Some(Verdict::Write(Claimed)),
        // Mirrors ClaimActualLRP: re-claiming with the same key is a no-op.
        (Command::Claim, Claimed) if same => Some(Verdict::Unchanged),
        // CRASHED rows have an empty key, so in practice only `Absent` reaches them and is
        // refused; `Same` follows the table literally.
        (Command::Claim, Running | Crashed) if same => Some(Verdict::Write(Claimed)),

        // Mirrors AllowsTransitionTo: UNCLAIMED and CLAIMED to RUNNING do not check the key.
        (Command::Start, Unclaimed | Claimed) => Some(Verdict::Write(Running)),
        (Command::Start, Running | Crashed) if same => Some(Verdict::Write(Running)),

        (Command::Crash, Claimed | Running) if same => Some(Verdict::Write(Crashed)),

        // FailActualLRP carries no instance key and only applies while unplaced.
        (Command::Fail, Unclaimed) => Some(Verdict::Write(Unclaimed)),

        // An internal unclaim of an already UNCLAIMED row has nothing to clear.
        (Command::Unclaim, Unclaimed) => Some(Verdict::Unchanged),
        (Command::Unclaim, Claimed | Running | Crashed) => Some(Verdict::Write(Unclaimed)),

        // Mirrors RemoveActualLRP: delete only when the key fence holds (or no key was given,
        // which the caller passes as `Same`).
        (Command::Remove, _) if same => Some(Verdict::Delete),

        // Rows with no container are deleted directly; live ones need a rep stop first.
        (Command::Retire, Unclaimed | Crashed) => Some(Verdict::Delete),
        (Command::Retire, Claimed | Running) => Some(Verdict::Unchanged),

        // Convergence only suspects instances that hold a cell.
        (Command::Suspect, Claimed | Running) => Some(Verdict::Write(state)),

        _ => None,
    }
}

/// Rules for a SUSPECT row, which is RUNNING or CLAIMED (bbs.md 3.4).
fn decide_suspect(state: ActualLrpState, key: KeyMatch, cmd: Command) -> Option<Verdict> {
    match (cmd, key) {
        // Calls from the suspect's cell are acknowledged but change nothing.
        (Command::Claim | Command::Start, KeyMatch::Same) => Some(Verdict::Ignore),
        // A crash of a suspect instance deletes it with no restart (bbs.md 3.2); the
        // ordinary replacement already exists.
        (Command::Crash, KeyMatch::Same) => Some(Verdict::Delete),
        // The cell came back: keep the state, the caller flips presence to ORDINARY.
        (Command::Promote, _) => Some(Verdict::Write(state)),
        _ => None,
    }
}

/// Rules for an EVACUATING row, which is always RUNNING (bbs.md 3.3).
///
/// Lifecycle commands address the ordinary row, never the evacuating copy; only removal by the
/// evacuating instance itself (RemoveEvacuatingActualLRP, EvacuateStopped) deletes it.
fn decide_evacuating(key: KeyMatch, cmd: Command) -> Option<Verdict> {
    match (cmd, key) {
        (Command::Remove, KeyMatch::Same) => Some(Verdict::Delete),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
