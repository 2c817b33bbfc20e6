//! ActualLRP transition rules with presence and instance-key fencing (bbs.md 3.1, 3.3, 3.4).
//!
//! [`decide`] answers one question: given the stored row's state and presence, how the instance
//! key of the request compares with the row's, and the command, what must the caller do to that
//! row? It returns a [`Verdict`] or the Diego error to send back.
//!
//! What does not live here:
//! - choosing *which* row (ordinary, evacuating or suspect) a request addresses; the caller picks
//!   the row and calls [`decide`] once per row it touches;
//! - the fields a write sets or clears (instance key, net info, `since`, placement error,
//!   modification tag); a [`Verdict::Write`] names only the target state;
//! - the crash count and whether a crash restarts at once, see [`crate::lifecycle::crash`];
//! - side effects such as auctions, rep stop requests and events.
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
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::models::ActualLrpState::{Claimed, Crashed, Running, Unclaimed};
    use crate::models::{ActualLrpState, Presence};
    use Command::{Claim, Crash, Fail, Promote, Remove, Retire, Start, Unclaim};

    type Outcome = Result<Verdict, ErrorCode>;

    const ORD: Presence = Presence::Ordinary;
    const EVAC: Presence = Presence::Evacuating;
    const SUSP: Presence = Presence::Suspect;
    // `Command::Suspect` would clash with `Presence::Suspect` in a glob import.
    const SUSPECT: Command = Command::Suspect;

    const W_UNCLAIMED: Outcome = Ok(Verdict::Write(Unclaimed));
    const W_CLAIMED: Outcome = Ok(Verdict::Write(Claimed));
    const W_RUNNING: Outcome = Ok(Verdict::Write(Running));
    const W_CRASHED: Outcome = Ok(Verdict::Write(Crashed));
    const NOOP: Outcome = Ok(Verdict::Unchanged);
    const IGNORE: Outcome = Ok(Verdict::Ignore);
    const DELETE: Outcome = Ok(Verdict::Delete);
    const NO_CLAIM: Outcome = Err(ErrorCode::ActualLrpCannotBeClaimed);
    const NO_START: Outcome = Err(ErrorCode::ActualLrpCannotBeStarted);
    const NO_CRASH: Outcome = Err(ErrorCode::ActualLrpCannotBeCrashed);
    const NO_FAIL: Outcome = Err(ErrorCode::ActualLrpCannotBeFailed);
    const NO_REMOVE: Outcome = Err(ErrorCode::ActualLrpCannotBeRemoved);
    const NO_UNCLAIM: Outcome = Err(ErrorCode::ActualLrpCannotBeUnclaimed);
    const NO_MOVE: Outcome = Err(ErrorCode::InvalidStateTransition);
    const BAD: Outcome = Err(ErrorCode::InvalidRecord);

    /// Expected outcome of every (presence, state, command), one column per key relation in the
    /// order [Same, Different, Absent]. Written by hand from bbs.md 3.1, 3.3 and 3.4.
    #[rustfmt::skip]
    const TABLE: &[(Presence, ActualLrpState, Command, [Outcome; 3])] = &[
        // ORDINARY: the table of 3.1.
        (ORD, Unclaimed, Claim,   [W_CLAIMED, W_CLAIMED, W_CLAIMED]),
        (ORD, Unclaimed, Start,   [W_RUNNING, W_RUNNING, W_RUNNING]),
        (ORD, Unclaimed, Crash,   [NO_CRASH, NO_CRASH, NO_CRASH]),
        (ORD, Unclaimed, Fail,    [W_UNCLAIMED, W_UNCLAIMED, W_UNCLAIMED]),
        (ORD, Unclaimed, Remove,  [DELETE, NO_REMOVE, NO_REMOVE]),
        (ORD, Unclaimed, Unclaim, [NOOP, NOOP, NOOP]),
        (ORD, Unclaimed, Retire,  [DELETE, DELETE, DELETE]),
        (ORD, Unclaimed, SUSPECT, [NO_MOVE, NO_MOVE, NO_MOVE]),
        (ORD, Unclaimed, Promote, [NO_MOVE, NO_MOVE, NO_MOVE]),

        (ORD, Claimed, Claim,     [NOOP, NO_CLAIM, NO_CLAIM]),
        (ORD, Claimed, Start,     [W_RUNNING, W_RUNNING, W_RUNNING]),
        (ORD, Claimed, Crash,     [W_CRASHED, NO_CRASH, NO_CRASH]),
        (ORD, Claimed, Fail,      [NO_FAIL, NO_FAIL, NO_FAIL]),
        (ORD, Claimed, Remove,    [DELETE, NO_REMOVE, NO_REMOVE]),
        (ORD, Claimed, Unclaim,   [W_UNCLAIMED, W_UNCLAIMED, W_UNCLAIMED]),
        (ORD, Claimed, Retire,    [NOOP, NOOP, NOOP]),
        (ORD, Claimed, SUSPECT,   [W_CLAIMED, W_CLAIMED, W_CLAIMED]),
        (ORD, Claimed, Promote,   [NO_MOVE, NO_MOVE, NO_MOVE]),

        (ORD, Running, Claim,     [W_CLAIMED, NO_CLAIM, NO_CLAIM]),
        (ORD, Running, Start,     [W_RUNNING, NO_START, NO_START]),
        (ORD, Running, Crash,     [W_CRASHED, NO_CRASH, NO_CRASH]),
        (ORD, Running, Fail,      [NO_FAIL, NO_FAIL, NO_FAIL]),
        (ORD, Running, Remove,    [DELETE, NO_REMOVE, NO_REMOVE]),
        (ORD, Running, Unclaim,   [W_UNCLAIMED, W_UNCLAIMED, W_UNCLAIMED]),
        (ORD, Running, Retire,    [NOOP, NOOP, NOOP]),
        (ORD, Running, SUSPECT,   [W_RUNNING, W_RUNNING, W_RUNNING]),
        (ORD, Running, Promote,   [NO_MOVE, NO_MOVE, NO_MOVE]),

        (ORD, Crashed, Claim,     [W_CLAIMED, NO_CLAIM, NO_CLAIM]),
        (ORD, Crashed, Start,     [W_RUNNING, NO_START, NO_START]),
        (ORD, Crashed, Crash,     [NO_CRASH, NO_CRASH, NO_CRASH]),
        (ORD, Crashed, Fail,      [NO_FAIL, NO_FAIL, NO_FAIL]),
        (ORD, Crashed, Remove,    [DELETE, NO_REMOVE, NO_REMOVE]),
        (ORD, Crashed, Unclaim,   [W_UNCLAIMED, W_UNCLAIMED, W_UNCLAIMED]),
        (ORD, Crashed, Retire,    [DELETE, DELETE, DELETE]),
        (ORD, Crashed, SUSPECT,   [NO_MOVE, NO_MOVE, NO_MOVE]),
        (ORD, Crashed, Promote,   [NO_MOVE, NO_MOVE, NO_MOVE]),

        // SUSPECT: only CLAIMED and RUNNING rows can exist (3.4).
        (SUSP, Unclaimed, Claim,   [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Start,   [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Crash,   [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Fail,    [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Remove,  [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Unclaim, [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Retire,  [BAD, BAD, BAD]),
        (SUSP, Unclaimed, SUSPECT, [BAD, BAD, BAD]),
        (SUSP, Unclaimed, Promote, [BAD, BAD, BAD]),

        (SUSP, Claimed, Claim,     [IGNORE, NO_CLAIM, NO_CLAIM]),
        (SUSP, Claimed, Start,     [IGNORE, NO_START, NO_START]),
        (SUSP, Claimed, Crash,     [DELETE, NO_CRASH, NO_CRASH]),
        (SUSP, Claimed, Fail,      [NO_FAIL, NO_FAIL, NO_FAIL]),
        (SUSP, Claimed, Remove,    [NO_REMOVE, NO_REMOVE, NO_REMOVE]),
        (SUSP, Claimed, Unclaim,   [NO_UNCLAIM, NO_UNCLAIM, NO_UNCLAIM]),
        (SUSP, Claimed, Retire,    [NO_REMOVE, NO_REMOVE, NO_REMOVE]),
        (SUSP, Claimed, SUSPECT,   [NO_MOVE, NO_MOVE, NO_MOVE]),
        (SUSP, Claimed, Promote,   [W_CLAIMED, W_CLAIMED, W_CLAIMED]),

        (SUSP, Running, Claim,     [IGNORE, NO_CLAIM, NO_CLAIM]),
        (SUSP, Running, Start,     [IGNORE, NO_START, NO_START]),
        (SUSP, Running, Crash,     [DELETE, NO_CRASH, NO_CRASH]),
        (SUSP, Running, Fail,      [NO_FAIL, NO_FAIL, NO_FAIL]),
        (SUSP, Running, Remove,    [NO_REMOVE, NO_REMOVE, NO_REMOVE]),
        (SUSP, Running, Unclaim,   [NO_UNCLAIM, NO_UNCLAIM, NO_UNCLAIM]),
        (SUSP, Running, Retire,    [NO_REMOVE, NO_REMOVE, NO_REMOVE]),
        (SUSP, Running, SUSPECT,   [NO_MOVE, NO_MOVE, NO_MOVE]),
        (SUSP, Running, Promote,   [W_RUNNING, W_RUNNING, W_RUNNING]),

        (SUSP, Crashed, Claim,     [BAD, BAD, BAD]),
        (SUSP, Crashed, Start,     [BAD, BAD, BAD]),
        (SUSP, Crashed, Crash,     [BAD, BAD, BAD]),
        (SUSP, Crashed, Fail,      [BAD, BAD, BAD]),
        (SUSP, Crashed, Remove,    [BAD, BAD, BAD]),
        (SUSP, Crashed, Unclaim,   [BAD, BAD, BAD]),
        (SUSP, Crashed, Retire,    [BAD, BAD, BAD]),
        (SUSP, Crashed, SUSPECT,   [BAD, BAD, BAD]),
        (SUSP, Crashed, Promote,   [BAD, BAD, BAD]),

        // EVACUATING: only RUNNING rows can exist (3.3).
        (EVAC, Unclaimed, Claim,   [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Start,   [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Crash,   [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Fail,    [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Remove,  [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Unclaim, [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Retire,  [BAD, BAD, BAD]),
        (EVAC, Unclaimed, SUSPECT, [BAD, BAD, BAD]),
        (EVAC, Unclaimed, Promote, [BAD, BAD, BAD]),

        (EVAC, Claimed, Claim,     [BAD, BAD, BAD]),
        (EVAC, Claimed, Start,     [BAD, BAD, BAD]),
        (EVAC, Claimed, Crash,     [BAD, BAD, BAD]),
        (EVAC, Claimed, Fail,      [BAD, BAD, BAD]),
        (EVAC, Claimed, Remove,    [BAD, BAD, BAD]),
        (EVAC, Claimed, Unclaim,   [BAD, BAD, BAD]),
        (EVAC, Claimed, Retire,    [BAD, BAD, BAD]),
        (EVAC, Claimed, SUSPECT,   [BAD, BAD, BAD]),
        (EVAC, Claimed, Promote,   [BAD, BAD, BAD]),

        (EVAC, Running, Claim,     [NO_CLAIM, NO_CLAIM, NO_CLAIM]),
        (EVAC, Running, Start,     [NO_START, NO_START, NO_START]),
        (EVAC, Running, Crash,     [NO_CRASH, NO_CRASH, NO_CRASH]),
        (EVAC, Running, Fail,      [NO_FAIL, NO_FAIL, NO_FAIL]),
        (EVAC, Running, Remove,    [DELETE, NO_REMOVE, NO_REMOVE]),
        (EVAC, Running, Unclaim,   [NO_UNCLAIM, NO_UNCLAIM, NO_UNCLAIM]),
        (EVAC, Running, Retire,    [NO_REMOVE, NO_REMOVE, NO_REMOVE]),
        (EVAC, Running, SUSPECT,   [NO_MOVE, NO_MOVE, NO_MOVE]),
        (EVAC, Running, Promote,   [NO_MOVE, NO_MOVE, NO_MOVE]),

        (EVAC, Crashed, Claim,     [BAD, BAD, BAD]),
        (EVAC, Crashed, Start,     [BAD, BAD, BAD]),
        (EVAC, Crashed, Crash,     [BAD, BAD, BAD]),
        (EVAC, Crashed, Fail,      [BAD, BAD, BAD]),
        (EVAC, Crashed, Remove,    [BAD, BAD, BAD]),
        (EVAC, Crashed, Unclaim,   [BAD, BAD, BAD]),
        (EVAC, Crashed, Retire,    [BAD, BAD, BAD]),
        (EVAC, Crashed, SUSPECT,   [BAD, BAD, BAD]),
        (EVAC, Crashed, Promote,   [BAD, BAD, BAD]),
    ];

    fn key_column(key: KeyMatch) -> usize {
        match key {
            KeyMatch::Same => 0,
            KeyMatch::Different => 1,
            KeyMatch::Absent => 2,
        }
    }

    #[test]
    fn table_lists_every_presence_state_and_command_once() {
        let rows = Presence::ALL.len() * ActualLrpState::ALL.len() * Command::ALL.len();
        assert_eq!(TABLE.len(), rows);
        for (i, (p, s, c, _)) in TABLE.iter().enumerate() {
            let duplicates = TABLE[i + 1..].iter().filter(|(p2, s2, c2, _)| (p2, s2, c2) == (p, s, c)).count();
            assert_eq!(duplicates, 0, "row {p:?} {s:?} {c:?} is listed twice");
        }
    }

    #[test]
    fn decide_matches_the_table_for_every_state_presence_key_and_command() {
        let mut checked = 0;
        for presence in Presence::ALL {
            for state in ActualLrpState::ALL {
                for cmd in Command::ALL {
                    let (_, _, _, expected) = TABLE
                        .iter()
                        .find(|(p, s, c, _)| (*p, *s, *c) == (presence, state, cmd))
                        .unwrap_or_else(|| panic!("no row for {presence:?} {state:?} {cmd:?}"));
                    for key in KeyMatch::ALL {
                        assert_eq!(
                            decide(state, presence, key, cmd),
                            expected[key_column(key)],
                            "decide({state:?}, {presence:?}, {key:?}, {cmd:?})"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 324);
    }

    #[test]
    fn valid_combination_matches_the_validation_invariants() {
        #[rustfmt::skip]
        let expected = [
            (ORD, Unclaimed, true),   (ORD, Claimed, true),   (ORD, Running, true),   (ORD, Crashed, true),
            (EVAC, Unclaimed, false), (EVAC, Claimed, false), (EVAC, Running, true),  (EVAC, Crashed, false),
            (SUSP, Unclaimed, false), (SUSP, Claimed, true),  (SUSP, Running, true),  (SUSP, Crashed, false),
        ];
        assert_eq!(expected.len(), Presence::ALL.len() * ActualLrpState::ALL.len());
        for presence in Presence::ALL {
            for state in ActualLrpState::ALL {
                let (_, _, valid) = expected
                    .iter()
                    .find(|(p, s, _)| (*p, *s) == (presence, state))
                    .expect("every combination is listed");
                assert_eq!(valid_combination(state, presence), *valid, "{presence:?} {state:?}");
            }
        }
    }

    #[test]
    fn writes_never_produce_a_row_that_cannot_exist() {
        for presence in Presence::ALL {
            for state in ActualLrpState::ALL {
                for cmd in Command::ALL {
                    for key in KeyMatch::ALL {
                        let Ok(Verdict::Write(next)) = decide(state, presence, key, cmd) else {
                            continue;
                        };
                        let next_presence = match cmd {
                            Command::Suspect => Presence::Suspect,
                            Command::Promote => Presence::Ordinary,
                            _ => presence,
                        };
                        assert!(
                            valid_combination(next, next_presence),
                            "{cmd:?} on {presence:?} {state:?} wrote {next_presence:?} {next:?}"
                        );
                    }
                }
            }
        }
    }
}
