//! The transition table written out by hand: every (presence, state, command, key relation).

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
            let (_, _, valid) =
                expected.iter().find(|(p, s, _)| (*p, *s) == (presence, state)).expect("every combination is listed");
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
