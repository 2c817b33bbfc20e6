//! Table-driven tests of every `apply_*` and `apply_evacuate_*` function: which rows of the index
//! a call leaves (presence, state, instance) and what it answers, then the fields of each target
//! state.

use super::*;
use crate::error::ErrorCode;
use crate::lifecycle::crash::CrashPolicy;
use crate::models::ActualLrpState::{Claimed, Crashed, Running, Unclaimed};
use crate::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellId, DomainName, InstanceGuid, NetInfo, Presence,
    ProcessGuid,
};

const NOW: i64 = 1_000_000_000_000;
const EARLIER: i64 = NOW - 1_000_000_000;

const ORD: Presence = Presence::Ordinary;
const EVAC: Presence = Presence::Evacuating;
const SUSP: Presence = Presence::Suspect;

/// A row: presence, state and the instance holding it (on cell `cell-<instance>`).
type Spec = (Presence, ActualLrpState, Option<&'static str>);

fn guid() -> ProcessGuid {
    ProcessGuid::parse("web").unwrap()
}

fn key() -> ActualLrpKey {
    ActualLrpKey { process_guid: guid(), index: 0, domain: DomainName::parse("d").unwrap() }
}

fn ik(instance: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance).unwrap(),
        cell_id: CellId::parse(format!("cell-{instance}")).unwrap(),
    }
}

fn start_info(address: &str) -> StartInfo {
    StartInfo {
        net_info: NetInfo { address: address.into(), ..NetInfo::default() },
        internal_routes: vec!["web.internal".into()],
        metric_tags: [("app".to_owned(), "web".to_owned())].into(),
        routable: true,
        availability_zone: "z1".into(),
    }
}

fn row((presence, state, instance): Spec) -> ActualLrp {
    let mut lrp = ActualLrp::new_unclaimed(key(), "epoch", EARLIER);
    lrp.presence = presence;
    lrp.state = state;
    lrp.instance_key = instance.map(ik);
    if state == Running {
        lrp.net_info = Some(start_info("10.0.0.1").net_info);
    }
    lrp
}

fn rows(specs: &[Spec]) -> IndexRows {
    let mut out = IndexRows::default();
    for spec in specs {
        *out.slot_mut(spec.0) = Some(row(*spec));
    }
    out
}

fn specs(rows: &IndexRows) -> Vec<Spec> {
    let name = |lrp: &ActualLrp| {
        lrp.instance_key.as_ref().map(|k| -> &'static str { String::leak(k.instance_guid.to_string()) })
    };
    Presence::ALL.iter().filter_map(|p| rows.get(*p).map(|lrp| (*p, lrp.state, name(lrp)))).collect()
}

/// A call and its arguments.
#[derive(Debug, Clone, Copy)]
enum Call {
    Claim(&'static str),
    Start(&'static str),
    Crash(&'static str),
    Fail,
    Remove(Option<&'static str>),
    Unclaim,
    Delete(Presence),
    Retire,
    Suspect,
    Promote,
    EvacClaimed(&'static str),
    EvacRunning(&'static str, Desired),
    EvacStopped(&'static str),
    EvacCrashed(&'static str),
    RemoveEvacuating(&'static str),
}

/// Runs `call` on `rows`; the answer in short words, or the refusal's code.
fn run(rows: &mut IndexRows, call: Call) -> Result<String, ErrorCode> {
    let (k, policy) = (key(), CrashPolicy::default());
    let start = start_info("10.0.0.2");
    let done = |()| "ok".to_owned();
    let answer = match call {
        Call::Claim(i) => apply_claim(rows, &guid(), 0, &ik(i), NOW).map(done),
        Call::Start(i) => apply_start(rows, &k, &ik(i), &start, NOW).map(done),
        Call::Crash(i) => apply_crash(rows, &k, &ik(i), "boom", &policy, NOW)
            .map(|o| format!("{} {}", if o.restart_now { "restart" } else { "crashed" }, o.crash_count)),
        Call::Fail => apply_fail(rows, &k, "no room", NOW).map(done),
        Call::Remove(i) => apply_remove(rows, &guid(), 0, i.map(ik).as_ref()).map(done),
        Call::Unclaim => apply_unclaim(rows, &k, NOW).map(|b| b.to_string()),
        Call::Delete(p) => apply_delete(rows, &guid(), 0, p).map(done),
        Call::Retire => apply_retire(rows, &guid(), 0)
            .map(|stop| stop.map_or("deleted".to_owned(), |k| format!("stop {}", k.instance_guid))),
        Call::Suspect => apply_suspect_and_replace(rows, &guid(), 0, NOW).map(done),
        Call::Promote => apply_promote(rows, &guid(), 0).map(done),
        Call::EvacClaimed(i) => apply_evacuate_claimed(rows, &k, &ik(i), NOW).map(|b| b.to_string()),
        Call::EvacRunning(i, desired) => apply_evacuate_running(rows, &k, &ik(i), &start, desired, NOW).map(|o| {
            let keep = if o.keep { "keep" } else { "drop" };
            if o.auction { format!("{keep}+auction") } else { keep.to_owned() }
        }),
        Call::EvacStopped(i) => apply_evacuate_stopped(rows, &k, &ik(i)).map(done),
        Call::EvacCrashed(i) => apply_evacuate_crashed(rows, &k, &ik(i), "boom", &policy, NOW).map(done),
        Call::RemoveEvacuating(i) => apply_remove_evacuating(rows, &k, &ik(i)).map(done),
    };
    answer.map_err(|refusal| refusal.code())
}

const NOT_FOUND: ErrorCode = ErrorCode::ResourceNotFound;
const ROLLING: Desired = Desired::Rolling;
const GONE: Desired = Desired::Gone;
const RECREATE_READY: Desired = Desired::Recreate { all_running: true };
const RECREATE_BUSY: Desired = Desired::Recreate { all_running: false };

type Case = (&'static str, &'static [Spec], Call, Result<&'static str, ErrorCode>, &'static [Spec]);

/// (what, rows before, call, answer, rows after). On a refusal the rows after are not checked:
/// storage discards the copy.
#[rustfmt::skip]
const CASES: &[Case] = &[
    ("claim an unclaimed row", &[(ORD, Unclaimed, None)], Call::Claim("i1"), Ok("ok"), &[(ORD, Claimed, Some("i1"))]),
    ("re-claim by the same key", &[(ORD, Claimed, Some("i1"))], Call::Claim("i1"), Ok("ok"), &[(ORD, Claimed, Some("i1"))]),
    ("claim a row held by another", &[(ORD, Claimed, Some("i1"))], Call::Claim("i2"), Err(ErrorCode::ActualLrpCannotBeClaimed), &[]),
    ("claim back a running row", &[(ORD, Running, Some("i1"))], Call::Claim("i1"), Ok("ok"), &[(ORD, Claimed, Some("i1"))]),
    ("claim a crashed row", &[(ORD, Crashed, None)], Call::Claim("i1"), Err(ErrorCode::ActualLrpCannotBeClaimed), &[]),
    ("claim with no ordinary row", &[], Call::Claim("i1"), Err(NOT_FOUND), &[]),
    ("claim from the suspect's cell is ignored",
        &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))], Call::Claim("i1"), Ok("ok"),
        &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))]),

    ("start a claimed row", &[(ORD, Claimed, Some("i1"))], Call::Start("i1"), Ok("ok"), &[(ORD, Running, Some("i1"))]),
    ("start takes an unclaimed row", &[(ORD, Unclaimed, None)], Call::Start("i2"), Ok("ok"), &[(ORD, Running, Some("i2"))]),
    ("start recreates a lost row", &[], Call::Start("i1"), Ok("ok"), &[(ORD, Running, Some("i1"))]),
    ("start a row running elsewhere", &[(ORD, Running, Some("i1"))], Call::Start("i2"), Err(ErrorCode::ActualLrpCannotBeStarted), &[]),
    ("start a crashed row", &[(ORD, Crashed, None)], Call::Start("i1"), Err(ErrorCode::ActualLrpCannotBeStarted), &[]),
    ("start drops the evacuating and suspect copies",
        &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i1")), (SUSP, Running, Some("i3"))],
        Call::Start("i2"), Ok("ok"), &[(ORD, Running, Some("i2"))]),
    ("start from the suspect's cell is ignored",
        &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))], Call::Start("i1"), Ok("ok"),
        &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))]),

    ("first crash restarts at once", &[(ORD, Running, Some("i1"))], Call::Crash("i1"), Ok("restart 1"), &[(ORD, Unclaimed, None)]),
    ("crash by another instance", &[(ORD, Running, Some("i1"))], Call::Crash("i2"), Err(ErrorCode::ActualLrpCannotBeCrashed), &[]),
    ("crash an unclaimed row", &[(ORD, Unclaimed, None)], Call::Crash("i1"), Err(ErrorCode::ActualLrpCannotBeCrashed), &[]),
    ("crash with no ordinary row", &[], Call::Crash("i1"), Err(NOT_FOUND), &[]),
    ("a crashed suspect is deleted",
        &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))], Call::Crash("i1"), Ok("crashed 0"),
        &[(ORD, Unclaimed, None)]),

    ("fail an unclaimed row", &[(ORD, Unclaimed, None)], Call::Fail, Ok("ok"), &[(ORD, Unclaimed, None)]),
    ("fail a claimed row", &[(ORD, Claimed, Some("i1"))], Call::Fail, Err(ErrorCode::ActualLrpCannotBeFailed), &[]),
    ("fail with no row", &[], Call::Fail, Err(NOT_FOUND), &[]),

    ("remove by the holder", &[(ORD, Running, Some("i1"))], Call::Remove(Some("i1")), Ok("ok"), &[]),
    ("remove by another", &[(ORD, Running, Some("i1"))], Call::Remove(Some("i2")), Err(ErrorCode::ActualLrpCannotBeRemoved), &[]),
    ("remove an unclaimed row by key", &[(ORD, Unclaimed, None)], Call::Remove(Some("i1")), Err(ErrorCode::ActualLrpCannotBeRemoved), &[]),
    ("remove without a key", &[(ORD, Crashed, None), (EVAC, Running, Some("i1"))], Call::Remove(None), Ok("ok"), &[(EVAC, Running, Some("i1"))]),
    ("remove with no row", &[], Call::Remove(None), Err(NOT_FOUND), &[]),

    ("unclaim a running row", &[(ORD, Running, Some("i1"))], Call::Unclaim, Ok("true"), &[(ORD, Unclaimed, None)]),
    ("unclaim an unclaimed row", &[(ORD, Unclaimed, None)], Call::Unclaim, Ok("false"), &[(ORD, Unclaimed, None)]),
    ("unclaim with no row", &[], Call::Unclaim, Err(NOT_FOUND), &[]),

    ("delete one presence", &[(ORD, Running, Some("i2")), (EVAC, Running, Some("i1"))], Call::Delete(EVAC), Ok("ok"), &[(ORD, Running, Some("i2"))]),
    ("delete a missing presence", &[(ORD, Running, Some("i2"))], Call::Delete(SUSP), Err(NOT_FOUND), &[]),

    ("retire an unclaimed row", &[(ORD, Unclaimed, None)], Call::Retire, Ok("deleted"), &[]),
    ("retire a crashed row", &[(ORD, Crashed, None)], Call::Retire, Ok("deleted"), &[]),
    ("retire a running row asks its rep", &[(ORD, Running, Some("i1"))], Call::Retire, Ok("stop i1"), &[(ORD, Running, Some("i1"))]),
    ("retire with no row", &[], Call::Retire, Err(NOT_FOUND), &[]),

    ("suspect and replace", &[(ORD, Running, Some("i1"))], Call::Suspect, Ok("ok"), &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))]),
    ("suspect an unclaimed row", &[(ORD, Unclaimed, None)], Call::Suspect, Err(ErrorCode::InvalidStateTransition), &[]),
    ("suspect twice", &[(ORD, Claimed, Some("i2")), (SUSP, Running, Some("i1"))], Call::Suspect, Err(ErrorCode::InvalidStateTransition), &[]),
    ("suspect with no row", &[], Call::Suspect, Err(NOT_FOUND), &[]),
    ("promote replaces the ordinary row", &[(ORD, Claimed, Some("i2")), (SUSP, Running, Some("i1"))], Call::Promote, Ok("ok"), &[(ORD, Running, Some("i1"))]),
    ("promote with no suspect", &[(ORD, Running, Some("i1"))], Call::Promote, Err(NOT_FOUND), &[]),

    ("evacuate a claimed ordinary row", &[(ORD, Claimed, Some("i1"))], Call::EvacClaimed("i1"), Ok("true"), &[(ORD, Unclaimed, None)]),
    ("evacuate a claimed suspect", &[(ORD, Unclaimed, None), (SUSP, Claimed, Some("i1"))], Call::EvacClaimed("i1"), Ok("false"), &[(ORD, Unclaimed, None)]),
    ("evacuate an unknown claimed instance", &[(ORD, Claimed, Some("i1"))], Call::EvacClaimed("i2"), Err(NOT_FOUND), &[]),

    ("evacuate running with no rows", &[], Call::EvacRunning("i1", ROLLING), Ok("drop"), &[]),
    ("the evacuation dance", &[(ORD, Running, Some("i1"))], Call::EvacRunning("i1", ROLLING), Ok("keep+auction"),
        &[(ORD, Unclaimed, None), (EVAC, Running, Some("i1"))]),
    ("the dance of a claimed instance", &[(ORD, Claimed, Some("i1"))], Call::EvacRunning("i1", ROLLING), Ok("keep+auction"),
        &[(ORD, Unclaimed, None), (EVAC, Running, Some("i1"))]),
    ("the dance of a suspect", &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))], Call::EvacRunning("i1", ROLLING), Ok("keep"),
        &[(ORD, Unclaimed, None), (EVAC, Running, Some("i1"))]),
    ("keep while the replacement is pending", &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i1"))], Call::EvacRunning("i1", ROLLING), Ok("keep"),
        &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i1"))]),
    ("an evacuating row is created for an unknown instance", &[(ORD, Unclaimed, None)], Call::EvacRunning("i1", ROLLING), Ok("keep"),
        &[(ORD, Unclaimed, None), (EVAC, Running, Some("i1"))]),
    ("one evacuating copy per index", &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i3"))], Call::EvacRunning("i1", ROLLING), Ok("drop"),
        &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i3"))]),
    ("drop once the replacement runs", &[(ORD, Running, Some("i2")), (EVAC, Running, Some("i1"))], Call::EvacRunning("i1", ROLLING), Ok("drop"),
        &[(ORD, Running, Some("i2"))]),
    ("drop once the ordinary row is gone", &[(EVAC, Running, Some("i1"))], Call::EvacRunning("i1", ROLLING), Ok("drop"), &[]),
    ("drop when the desired lrp is gone", &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i1"))], Call::EvacRunning("i1", GONE), Ok("drop"),
        &[(ORD, Claimed, Some("i2"))]),
    ("a crashed ordinary row is done", &[(ORD, Crashed, None)], Call::EvacRunning("i1", ROLLING), Ok("drop"), &[(ORD, Crashed, None)]),
    ("recreate waits for every instance", &[(ORD, Running, Some("i1"))], Call::EvacRunning("i1", RECREATE_BUSY), Ok("keep"),
        &[(ORD, Running, Some("i1"))]),
    ("recreate unclaims when all run", &[(ORD, Running, Some("i1"))], Call::EvacRunning("i1", RECREATE_READY), Ok("drop+auction"),
        &[(ORD, Unclaimed, None)]),
    ("recreate keeps no copies", &[(ORD, Claimed, Some("i2")), (EVAC, Running, Some("i1"))], Call::EvacRunning("i1", RECREATE_READY), Ok("drop"),
        &[(ORD, Claimed, Some("i2"))]),
    ("recreate ignores an unknown instance", &[(ORD, Claimed, Some("i2"))], Call::EvacRunning("i1", RECREATE_READY), Ok("drop"),
        &[(ORD, Claimed, Some("i2"))]),

    ("evacuate stopped deletes the copy", &[(ORD, Running, Some("i2")), (EVAC, Running, Some("i1"))], Call::EvacStopped("i1"), Ok("ok"),
        &[(ORD, Running, Some("i2"))]),
    ("evacuate stopped removes the ordinary row", &[(ORD, Running, Some("i1"))], Call::EvacStopped("i1"), Ok("ok"), &[]),
    ("evacuate stopped of an unknown instance", &[(ORD, Running, Some("i1"))], Call::EvacStopped("i2"), Err(NOT_FOUND), &[]),

    ("evacuate crashed deletes the copy", &[(ORD, Unclaimed, None), (SUSP, Running, Some("i1"))], Call::EvacCrashed("i1"), Ok("ok"),
        &[(ORD, Unclaimed, None)]),
    ("evacuate crashed crashes the ordinary row", &[(ORD, Running, Some("i1"))], Call::EvacCrashed("i1"), Ok("ok"), &[(ORD, Unclaimed, None)]),
    ("evacuate crashed of an unknown instance", &[(ORD, Unclaimed, None)], Call::EvacCrashed("i1"), Err(NOT_FOUND), &[]),

    ("remove evacuating", &[(ORD, Running, Some("i2")), (EVAC, Running, Some("i1"))], Call::RemoveEvacuating("i1"), Ok("ok"),
        &[(ORD, Running, Some("i2"))]),
    ("remove evacuating needs an evacuating row", &[(ORD, Running, Some("i1"))], Call::RemoveEvacuating("i1"), Err(NOT_FOUND), &[]),
];

#[test]
fn every_call_leaves_the_rows_the_table_says() {
    for (what, before, call, answer, after) in CASES {
        let mut index = rows(before);
        let got = run(&mut index, *call);
        assert_eq!(got.as_deref().map_err(|c| *c), *answer, "{what}: {call:?}");
        if answer.is_ok() {
            assert_eq!(specs(&index), after.to_vec(), "{what}: rows after {call:?}");
        }
    }
}

#[test]
fn refusals_name_the_row_and_the_instances() {
    let mut index = rows(&[(ORD, Running, Some("i1"))]);
    let refusal = apply_claim(&mut index, &guid(), 0, &ik("i2"), NOW).unwrap_err();
    let message = refusal.to_string();
    for part in ["claim", "web", "index 0", "ordinary", "RUNNING", "i1", "i2"] {
        assert!(message.contains(part), "{message:?} should mention {part:?}");
    }
    let missing = apply_promote(&mut index, &guid(), 0).unwrap_err();
    assert_eq!(missing, Refusal::NotFound { key: "web index 0 (suspect)".into() });
    assert_eq!(missing.to_string(), "actual lrp not found: web index 0 (suspect)");
}

#[test]
fn running_sets_every_field_once() {
    let start = start_info("10.0.0.2");
    let mut index = rows(&[(ORD, Claimed, Some("i1"))]);
    index.ordinary.as_mut().unwrap().placement_error = "stale".into();
    apply_start(&mut index, &key(), &ik("i1"), &start, NOW).unwrap();
    let lrp = index.ordinary.clone().unwrap();
    assert_eq!(lrp.net_info, Some(start.net_info.clone()));
    assert_eq!(lrp.internal_routes, start.internal_routes);
    assert_eq!(lrp.metric_tags, start.metric_tags);
    assert!(lrp.routable);
    assert_eq!(lrp.availability_zone, "z1");
    assert_eq!(lrp.placement_error, "");
    assert_eq!(lrp.since, NOW);
    // The re-assert with every field equal changes nothing, not even `since`.
    apply_start(&mut index, &key(), &ik("i1"), &start, NOW + 1).unwrap();
    assert_eq!(index.ordinary, Some(lrp.clone()));
    // The evacuating copy of an unknown instance is built by the same function.
    let mut evacuating = rows(&[(ORD, Unclaimed, None)]);
    apply_evacuate_running(&mut evacuating, &key(), &ik("i1"), &start, Desired::Rolling, NOW).unwrap();
    let copy = evacuating.evacuating.unwrap();
    assert_eq!((copy.net_info, copy.routable, copy.since), (lrp.net_info, true, NOW));
}

#[test]
fn a_lost_row_and_a_replacement_are_new_records() {
    let mut index = IndexRows::default();
    apply_start(&mut index, &key(), &ik("i1"), &start_info("10.0.0.2"), NOW).unwrap();
    assert_eq!(index.ordinary.unwrap().modification_tag.epoch, "", "storage gives it a fresh epoch");
    let mut index = rows(&[(ORD, Running, Some("i1"))]);
    apply_suspect_and_replace(&mut index, &guid(), 0, NOW).unwrap();
    let replacement = index.ordinary.unwrap();
    assert_eq!((replacement.modification_tag.epoch.as_str(), replacement.since), ("", NOW));
    assert_eq!(index.suspect.unwrap().net_info, Some(start_info("10.0.0.1").net_info), "the suspect keeps serving");
}

#[test]
fn the_dance_keeps_a_running_rows_own_net_info_and_gives_the_copy_a_new_epoch() {
    let mut index = rows(&[(ORD, Running, Some("i1"))]);
    apply_evacuate_running(&mut index, &key(), &ik("i1"), &start_info("10.0.0.2"), Desired::Rolling, NOW).unwrap();
    let copy = index.evacuating.unwrap();
    assert_eq!(copy.net_info, Some(start_info("10.0.0.1").net_info));
    assert_eq!((copy.since, copy.modification_tag.epoch.as_str()), (EARLIER, ""));
    let ordinary = index.ordinary.unwrap();
    assert_eq!((ordinary.instance_key, ordinary.net_info, ordinary.since), (None, None, NOW));
}

#[test]
fn crashes_count_and_back_off_the_same_on_both_paths() {
    let policy = CrashPolicy::default();
    for evacuating in [false, true] {
        let mut index = rows(&[(ORD, Running, Some("i1"))]);
        index.ordinary.as_mut().unwrap().crash_count = 2;
        index.ordinary.as_mut().unwrap().since = NOW - 1;
        if evacuating {
            apply_evacuate_crashed(&mut index, &key(), &ik("i1"), "oom", &policy, NOW).unwrap();
        } else {
            let outcome = apply_crash(&mut index, &key(), &ik("i1"), "oom", &policy, NOW).unwrap();
            assert_eq!(outcome, CrashOutcome { restart_now: false, crash_count: 3 });
        }
        let lrp = index.ordinary.unwrap();
        assert_eq!((lrp.state, lrp.crash_count, lrp.crash_reason.as_str()), (Crashed, 3, "oom"), "{evacuating}");
        assert_eq!((lrp.instance_key, lrp.net_info, lrp.since), (None, None, NOW));
    }
}

#[test]
fn fail_and_claim_set_and_clear_the_placement_error() {
    let mut index = rows(&[(ORD, Unclaimed, None)]);
    apply_fail(&mut index, &key(), "insufficient resources", NOW).unwrap();
    let lrp = index.ordinary.clone().unwrap();
    assert_eq!((lrp.placement_error.as_str(), lrp.since), ("insufficient resources", NOW));
    apply_claim(&mut index, &guid(), 0, &ik("i1"), NOW + 1).unwrap();
    let lrp = index.ordinary.unwrap();
    assert_eq!((lrp.placement_error.as_str(), lrp.since, lrp.net_info), ("", NOW + 1, None));
}

#[test]
fn recreate_proceeds_only_when_every_desired_instance_runs() {
    let at = |index: i32, presence: Presence, state: ActualLrpState| ActualLrp {
        key: ActualLrpKey { index, ..key() },
        ..row((presence, state, Some("i1")))
    };
    let two = [at(0, ORD, Running), at(1, ORD, Running)];
    assert!(every_instance_running(2, &two));
    assert!(!every_instance_running(3, &two));
    assert!(!every_instance_running(2, &[at(0, ORD, Running), at(1, EVAC, Running)]));
    assert!(!every_instance_running(2, &[at(0, ORD, Running), at(1, ORD, Claimed)]));
    assert!(!every_instance_running(2, &[at(0, ORD, Running), at(5, ORD, Running)]), "beyond the desired count");
    assert!(every_instance_running(0, &[]));
}
