//! `plan` case by case, one rule per test (bbs.md 6.2, 3.2, 3.4; issue 6 acceptance).

use std::collections::BTreeSet;
use std::time::Duration;

use db::sql::convergence::{ActualSummary, DesiredSummary, LrpSnapshot};
use proto::models::{ActualLrpState, CellId, DomainName, InstanceGuid, ModificationTag, Presence, ProcessGuid};

use super::*;
use crate::cells::{CellSet, GuardReason};

const SEC: i64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600_000_000_000;

use ActualLrpState::{Claimed, Crashed, Running, Unclaimed};
use Presence::{Evacuating, Ordinary, Suspect};

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn cell(s: &str) -> CellId {
    CellId::parse(s).unwrap()
}

fn desired(process_guid: &str, domain: &str, instances: i32) -> DesiredSummary {
    DesiredSummary {
        process_guid: guid(process_guid),
        domain: DomainName::parse(domain).unwrap(),
        instances,
        memory_mb: 256,
        disk_mb: 1024,
        max_pids: 100,
        rootfs: "preloaded:cflinuxfs4".into(),
        placement_tags: vec![],
        volume_placement: vec![],
        modification_tag: ModificationTag::new("d"),
    }
}

/// A row of `process_guid` in domain `fresh` (the tests' fresh domain) unless changed.
fn row(process_guid: &str, index: i32, presence: Presence, state: ActualLrpState, on: Option<&str>) -> ActualSummary {
    let placed = matches!(state, Claimed | Running);
    let cell_id = if placed { Some(cell(on.unwrap_or("cell-1"))) } else { None };
    ActualSummary {
        process_guid: guid(process_guid),
        index,
        presence,
        domain: DomainName::parse("fresh").unwrap(),
        state,
        instance_guid: cell_id
            .as_ref()
            .map(|_| InstanceGuid::parse(format!("ig-{process_guid}-{index}-{}", presence.as_i32())).unwrap()),
        cell_id,
        crash_count: 0,
        since: NOW,
        modification_tag: ModificationTag::new("e"),
    }
}

fn with(mut r: ActualSummary, f: impl FnOnce(&mut ActualSummary)) -> ActualSummary {
    f(&mut r);
    r
}

fn snapshot(desired: Vec<DesiredSummary>, actual: Vec<ActualSummary>) -> LrpSnapshot {
    LrpSnapshot { desired, actual, fresh_domains: vec![DomainName::parse("fresh").unwrap()] }
}

fn live(cells: &[&str]) -> CellSet {
    CellSet::of(cells.iter().map(|c| cell(c)))
}

fn plan_at(s: &LrpSnapshot, cells: &CellSet, now: i64) -> LrpPlan {
    plan(s, cells, now, &ConvergenceConfig::default())
}

/// The actions other than the domain prune every unguarded pass has.
fn acted(p: &LrpPlan) -> Vec<LrpAction> {
    p.actions.iter().filter(|a| **a != LrpAction::PruneExpiredDomains).cloned().collect()
}

fn rowref(r: &ActualSummary) -> RowRef {
    RowRef {
        process_guid: r.process_guid.clone(),
        index: r.index,
        presence: r.presence,
        modification_tag: r.modification_tag.clone(),
    }
}

fn create(process_guid: &str, domain: &str, indices: &[i32]) -> LrpAction {
    LrpAction::CreateMissing {
        process_guid: guid(process_guid),
        domain: DomainName::parse(domain).unwrap(),
        indices: indices.to_vec(),
    }
}

fn stop_at(r: &ActualSummary) -> Option<Placement> {
    Some(Placement { cell_id: r.cell_id.clone().unwrap(), instance_guid: r.instance_guid.clone().unwrap() })
}

#[test]
fn an_empty_world_only_prunes_domains() {
    let p = plan_at(&LrpSnapshot::default(), &live(&["cell-1"]), NOW);
    assert_eq!(p.actions, vec![LrpAction::PruneExpiredDomains]);
    assert_eq!(p.guard, None);
    assert_eq!(p.counts.present_cells, 1);
}

#[test]
fn missing_indices_are_created_in_fresh_and_expired_domains_alike() {
    for domain in ["fresh", "expired"] {
        let s = snapshot(
            vec![desired("web", domain, 4), desired("api", domain, 2)],
            vec![row("web", 1, Ordinary, Running, None)],
        );
        let p = plan_at(&s, &live(&["cell-1"]), NOW);
        assert_eq!(acted(&p), vec![create("api", domain, &[0, 1]), create("web", domain, &[0, 2, 3])], "{domain}");
        assert_eq!(p.counts.missing, 5);
        assert_eq!(p.counts.desired_instances, 6);
    }
}

#[test]
fn an_index_with_only_a_suspect_or_evacuating_row_is_missing_its_ordinary_row() {
    let s = snapshot(
        vec![desired("web", "fresh", 2)],
        vec![row("web", 0, Suspect, Running, Some("gone")), row("web", 1, Evacuating, Running, Some("cell-1"))],
    );
    let p = plan_at(&s, &live(&["cell-1"]), NOW);
    assert_eq!(acted(&p), vec![create("web", "fresh", &[0, 1])]);
}

#[test]
fn extra_placed_indices_are_retired_only_in_fresh_domains() {
    let rows = |domain: &str| {
        let d = DomainName::parse(domain).unwrap();
        vec![
            with(row("web", 0, Ordinary, Running, None), |r| r.domain = d.clone()),
            with(row("web", 1, Ordinary, Running, None), |r| r.domain = d.clone()),
            with(row("web", 2, Ordinary, Unclaimed, None), |r| r.domain = d.clone()),
            with(row("web", 3, Ordinary, Claimed, Some("gone")), |r| r.domain = d.clone()),
        ]
    };
    let fresh_rows = rows("fresh");
    let p = plan_at(&snapshot(vec![desired("web", "fresh", 2)], fresh_rows.clone()), &live(&["cell-1"]), NOW);
    assert_eq!(
        acted(&p),
        vec![
            LrpAction::Retire { row: rowref(&fresh_rows[2]), reason: RetireReason::Extra, delete: true, stop: None },
            LrpAction::Retire { row: rowref(&fresh_rows[3]), reason: RetireReason::Extra, delete: true, stop: None },
        ]
    );
    assert_eq!(p.counts.extra, 2);

    // In a stale domain the CLAIMED row stays; the UNCLAIMED one has no container and goes.
    let stale_rows = rows("expired");
    let p = plan_at(&snapshot(vec![desired("web", "expired", 2)], stale_rows.clone()), &live(&["cell-1"]), NOW);
    assert_eq!(
        acted(&p),
        vec![LrpAction::Retire { row: rowref(&stale_rows[2]), reason: RetireReason::Extra, delete: true, stop: None }]
    );
    assert_eq!(p.counts.extra, 1);
}

/// Issue 17 item 1: the rows without a container that a scale-down or a removal left behind (the
/// BBS died or lost its lease half-way) are deleted by convergence, whatever their domain's
/// freshness and however many; those below `instances` and the placed ones in a stale domain stay.
#[test]
fn unclaimed_and_crashed_leftovers_of_a_scale_down_or_removal_are_deleted_in_any_domain() {
    let in_domain = |r: ActualSummary| with(r, |r| r.domain = DomainName::parse("expired").unwrap());
    let mut actual: Vec<ActualSummary> =
        (0..200).map(|i| in_domain(row("web", i, Ordinary, Unclaimed, None))).collect();
    actual[7] = in_domain(with(row("web", 7, Ordinary, Crashed, None), |r| r.crash_count = 3));
    actual[8] = in_domain(row("web", 8, Ordinary, Running, Some("cell-1")));
    actual.push(in_domain(row("web", 9, Evacuating, Running, Some("cell-1"))));
    // A removed LRP's leftovers: no desired LRP.
    actual.extend((0..3).map(|i| in_domain(row("gone", i, Ordinary, Unclaimed, None))));
    actual.push(in_domain(row("gone", 3, Ordinary, Running, Some("cell-1"))));
    let p = plan_at(&snapshot(vec![desired("web", "expired", 5)], actual.clone()), &live(&["cell-1"]), NOW);

    let retired: Vec<(String, i32, RetireReason, bool)> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            LrpAction::Retire { row, reason, delete, stop: None } => {
                Some((row.process_guid.to_string(), row.index, *reason, *delete))
            }
            _ => None,
        })
        .collect();
    let mut expected: Vec<(String, i32, RetireReason, bool)> =
        (0..3).map(|i| ("gone".to_owned(), i, RetireReason::Orphan, true)).collect();
    expected.extend((5..200).filter(|&i| i != 8).map(|i| ("web".to_owned(), i, RetireReason::Extra, true)));
    let mut sorted = retired.clone();
    sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(sorted, expected);
    assert_eq!(p.counts.extra, expected.len());
    assert!(
        p.actions.iter().all(|a| !matches!(a, LrpAction::Retire { stop: Some(_), .. })),
        "no placed row of a stale domain is stopped"
    );
}

#[test]
fn an_extra_index_running_on_a_live_cell_is_stopped_not_deleted() {
    let running = row("web", 5, Ordinary, Running, Some("cell-1"));
    let p = plan_at(&snapshot(vec![desired("web", "fresh", 5)], vec![running.clone()]), &live(&["cell-1"]), NOW);
    assert!(acted(&p).contains(&LrpAction::Retire {
        row: rowref(&running),
        reason: RetireReason::Extra,
        delete: false,
        stop: stop_at(&running),
    }));
}

#[test]
fn orphans_are_retired_only_when_their_domain_is_fresh() {
    let orphan = row("gone", 0, Ordinary, Running, Some("cell-1"));
    let crashed_orphan = row("gone", 1, Ordinary, Crashed, None);
    let p = plan_at(&snapshot(vec![], vec![orphan.clone(), crashed_orphan.clone()]), &live(&["cell-1"]), NOW);
    assert_eq!(
        acted(&p),
        vec![
            LrpAction::Retire {
                row: rowref(&orphan),
                reason: RetireReason::Orphan,
                delete: false,
                stop: stop_at(&orphan)
            },
            LrpAction::Retire { row: rowref(&crashed_orphan), reason: RetireReason::Orphan, delete: true, stop: None },
        ]
    );
    let stale_domain = with(orphan, |r| r.domain = DomainName::parse("expired").unwrap());
    let p = plan_at(&snapshot(vec![], vec![stale_domain]), &live(&["cell-1"]), NOW);
    assert_eq!(acted(&p), vec![]);
}

#[test]
fn unclaimed_instances_are_auctioned_again_strictly_after_the_stale_duration() {
    let at = |since: i64| {
        let s = snapshot(
            vec![desired("web", "fresh", 1)],
            vec![with(row("web", 0, Ordinary, Unclaimed, None), |r| r.since = since)],
        );
        acted(&plan_at(&s, &live(&["cell-1"]), NOW))
    };
    let stale = vec![LrpAction::AuctionStaleUnclaimed { process_guid: guid("web"), index: 0 }];
    assert_eq!(at(NOW), vec![]);
    assert_eq!(at(NOW - 30 * SEC), vec![], "exactly 30 s old is not stale yet");
    assert_eq!(at(NOW - 30 * SEC - 1), stale);
    assert_eq!(at(NOW - 3600 * SEC), stale);

    let shorter = ConvergenceConfig { stale_unclaimed: Duration::from_secs(5), ..Default::default() };
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![with(row("web", 0, Ordinary, Unclaimed, None), |r| r.since = NOW - 6 * SEC)],
    );
    assert_eq!(plan(&s, &live(&["cell-1"]), NOW, &shorter).actions.len(), 2);
}

#[test]
fn crashed_instances_restart_by_the_backoff_table() {
    // (crash count, back-off): bbs.md 3.2. Below 3 restarts at once; 200 never.
    let table: &[(i32, Option<i64>)] = &[
        (1, Some(0)),
        (2, Some(0)),
        (3, Some(30 * SEC)),
        (4, Some(60 * SEC)),
        (5, Some(120 * SEC)),
        (6, Some(240 * SEC)),
        (7, Some(480 * SEC)),
        (8, Some(960 * SEC)),
        (9, Some(960 * SEC)),
        (200, None),
    ];
    let decide = |count: i32, elapsed: i64| {
        let crashed = with(row("web", 0, Ordinary, Crashed, None), |r| {
            r.crash_count = count;
            r.since = NOW - elapsed;
        });
        let p = plan_at(&snapshot(vec![desired("web", "fresh", 1)], vec![crashed]), &live(&["cell-1"]), NOW);
        assert_eq!(p.counts.crashed, 1);
        assert_eq!(p.counts.crashing_desired, 1);
        acted(&p)
    };
    for &(count, backoff) in table {
        let restart = vec![LrpAction::RestartCrashed { process_guid: guid("web"), index: 0, crash_count: count }];
        match backoff {
            Some(0) => assert_eq!(decide(count, 0), restart, "count {count}"),
            Some(wait) => {
                assert_eq!(decide(count, wait - 1), vec![], "count {count} one ns early");
                assert_eq!(decide(count, wait), restart, "count {count} at its back-off");
            }
            None => {
                assert_eq!(decide(count, 0), vec![], "count {count}");
                assert_eq!(decide(count, 365 * 24 * 3600 * SEC), vec![], "count {count} never restarts");
            }
        }
    }
}

#[test]
fn crashed_instances_restart_whatever_the_domain_freshness_but_not_beyond_instances() {
    let crashed = |index| with(row("web", index, Ordinary, Crashed, None), |r| r.crash_count = 1);
    let mut s = snapshot(vec![desired("web", "expired", 1)], vec![crashed(0), crashed(1)]);
    s.actual[0].domain = DomainName::parse("expired").unwrap();
    s.actual[1].domain = DomainName::parse("expired").unwrap();
    let p = plan_at(&s, &live(&["cell-1"]), NOW);
    // Index 1 is not restarted; having no container, it is retired even in a stale domain.
    let extra = LrpAction::Retire { row: rowref(&s.actual[1]), reason: RetireReason::Extra, delete: true, stop: None };
    assert_eq!(
        acted(&p),
        vec![LrpAction::RestartCrashed { process_guid: guid("web"), index: 0, crash_count: 1 }, extra]
    );
}

#[test]
fn an_instance_on_a_lost_cell_becomes_suspect_and_is_replaced() {
    for state in [Running, Claimed] {
        let s = snapshot(vec![desired("web", "fresh", 1)], vec![row("web", 0, Ordinary, state, Some("lost"))]);
        let p = plan_at(&s, &live(&["cell-1"]), NOW);
        assert_eq!(
            acted(&p),
            vec![LrpAction::SuspectAndReplace { process_guid: guid("web"), index: 0, cell_id: cell("lost") }],
            "{state:?}"
        );
        assert_eq!(p.counts.suspect_cells, 1);
    }
}

#[test]
fn a_replacement_whose_own_cell_is_lost_is_unclaimed_while_the_suspect_stays() {
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![row("web", 0, Ordinary, Running, Some("lost-2")), row("web", 0, Suspect, Running, Some("lost-1"))],
    );
    let p = plan_at(&s, &live(&["cell-1"]), NOW);
    assert_eq!(
        acted(&p),
        vec![LrpAction::UnclaimReplacement { process_guid: guid("web"), index: 0, cell_id: cell("lost-2") }]
    );
    assert_eq!(p.counts.suspect_cells, 2);
    assert_eq!(p.counts.suspect_running, 1);
}

#[test]
fn a_suspect_whose_cell_came_back_is_promoted_and_nothing_else_happens_to_its_index() {
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![
            with(row("web", 0, Ordinary, Unclaimed, None), |r| r.since = NOW - 3600 * SEC),
            row("web", 0, Suspect, Running, Some("back")),
        ],
    );
    let p = plan_at(&s, &live(&["back"]), NOW);
    assert_eq!(acted(&p), vec![LrpAction::Promote { process_guid: guid("web"), index: 0, cell_id: cell("back") }]);
}

#[test]
fn a_suspect_without_an_ordinary_row_is_promoted_instead_of_creating_one() {
    let s = snapshot(vec![desired("web", "fresh", 1)], vec![row("web", 0, Suspect, Claimed, Some("back"))]);
    let p = plan_at(&s, &live(&["back"]), NOW);
    assert_eq!(acted(&p), vec![LrpAction::Promote { process_guid: guid("web"), index: 0, cell_id: cell("back") }]);
    assert_eq!(p.counts.missing, 0);
    assert_eq!(p.counts.suspect_claimed, 1);
}

#[test]
fn an_extra_suspect_is_retired_before_promote_is_considered() {
    // Both RUNNING, the suspect's cell is back too: "extra suspect" wins, no promote.
    let suspect = row("web", 0, Suspect, Running, Some("back"));
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![row("web", 0, Ordinary, Running, Some("cell-1")), suspect.clone()],
    );
    let p = plan_at(&s, &live(&["cell-1", "back"]), NOW);
    assert_eq!(
        acted(&p),
        vec![LrpAction::Retire {
            row: rowref(&suspect),
            reason: RetireReason::SuspectReplaced,
            delete: true,
            stop: stop_at(&suspect)
        }]
    );

    // The suspect's cell still lost: deleted without a stop.
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![row("web", 0, Ordinary, Running, Some("cell-1")), row("web", 0, Suspect, Running, Some("lost"))],
    );
    let p = plan_at(&s, &live(&["cell-1"]), NOW);
    assert!(matches!(
        acted(&p).as_slice(),
        [LrpAction::Retire { reason: RetireReason::SuspectReplaced, delete: true, stop: None, .. }]
    ));
}

#[test]
fn a_running_replacement_on_a_lost_cell_does_not_make_the_suspect_extra() {
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![row("web", 0, Ordinary, Running, Some("lost")), row("web", 0, Suspect, Running, Some("back"))],
    );
    let p = plan_at(&s, &live(&["back"]), NOW);
    assert_eq!(acted(&p), vec![LrpAction::Promote { process_guid: guid("web"), index: 0, cell_id: cell("back") }]);
}

#[test]
fn a_suspect_on_a_still_lost_cell_lives_on() {
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![row("web", 0, Ordinary, Unclaimed, None), row("web", 0, Suspect, Running, Some("lost"))],
    );
    assert_eq!(acted(&plan_at(&s, &live(&["cell-1"]), NOW)), vec![]);
}

#[test]
fn orphaned_and_scaled_down_suspects_are_retired_only_in_fresh_domains() {
    let orphan = row("gone", 0, Suspect, Running, Some("cell-1"));
    let beyond = row("web", 3, Suspect, Running, Some("lost"));
    let s = snapshot(
        vec![desired("web", "fresh", 1)],
        vec![orphan.clone(), row("web", 0, Ordinary, Unclaimed, None), beyond.clone()],
    );
    let p = plan_at(&s, &live(&["cell-1"]), NOW);
    assert_eq!(
        acted(&p),
        vec![
            LrpAction::Retire {
                row: rowref(&orphan),
                reason: RetireReason::SuspectOrphaned,
                delete: true,
                stop: stop_at(&orphan)
            },
            LrpAction::Retire { row: rowref(&beyond), reason: RetireReason::SuspectOrphaned, delete: true, stop: None },
        ]
    );
    let stale = with(orphan, |r| r.domain = DomainName::parse("expired").unwrap());
    assert_eq!(acted(&plan_at(&snapshot(vec![], vec![stale]), &live(&["cell-1"]), NOW)), vec![]);
}

#[test]
fn evacuating_rows_on_lost_cells_are_pruned() {
    let on_lost = row("web", 0, Evacuating, Running, Some("lost"));
    let on_live = row("web", 1, Evacuating, Running, Some("cell-1"));
    let s = snapshot(
        vec![desired("web", "fresh", 2)],
        vec![
            row("web", 0, Ordinary, Unclaimed, None),
            on_lost.clone(),
            row("web", 1, Ordinary, Unclaimed, None),
            on_live,
        ],
    );
    let p = plan_at(&s, &live(&["cell-1"]), NOW);
    assert_eq!(acted(&p), vec![LrpAction::PruneEvacuating { rows: vec![rowref(&on_lost)] }]);
    assert_eq!(p.counts.evacuating, 2);
}

/// A world with one thing of every kind to do, on cells `cell-1` (live) and `lost`.
fn busy_world() -> LrpSnapshot {
    snapshot(
        vec![desired("web", "fresh", 4)],
        vec![
            row("web", 0, Ordinary, Running, Some("lost")),
            with(row("web", 1, Ordinary, Unclaimed, None), |r| r.since = NOW - 60 * SEC),
            with(row("web", 2, Ordinary, Crashed, None), |r| r.crash_count = 1),
            row("web", 5, Ordinary, Running, Some("cell-1")),
            row("web", 6, Evacuating, Running, Some("lost")),
            row("gone", 0, Suspect, Running, Some("lost")),
        ],
    )
}

fn constructive() -> Vec<LrpAction> {
    vec![
        LrpAction::AuctionStaleUnclaimed { process_guid: guid("web"), index: 1 },
        LrpAction::RestartCrashed { process_guid: guid("web"), index: 2, crash_count: 1 },
        create("web", "fresh", &[3]),
    ]
}

#[test]
fn with_live_cells_every_rule_fires() {
    let p = plan_at(&busy_world(), &live(&["cell-1"]), NOW);
    assert_eq!(p.guard, None);
    assert!(p.withheld.is_empty());
    assert_eq!(p.actions.len(), 8, "{:#?}", p.actions);
    assert_eq!(p.actions[0], LrpAction::PruneExpiredDomains);
    for action in constructive() {
        assert!(p.actions.contains(&action), "{action:?}");
    }
}

#[test]
fn an_empty_cell_set_withholds_every_destructive_action() {
    let p = plan_at(&busy_world(), &CellSet::default(), NOW);
    assert_eq!(p.guard, Some(GuardReason::NoCells));
    assert_eq!(p.actions, constructive());
    assert_eq!(p.withheld.len(), 5, "{:#?}", p.withheld);
    assert!(p.withheld.iter().all(LrpAction::is_destructive));
    assert!(p.withheld.contains(&LrpAction::PruneExpiredDomains));
    assert!(p.withheld.iter().any(|a| matches!(a, LrpAction::SuspectAndReplace { .. })));
}

#[test]
fn an_unreadable_cell_set_withholds_every_destructive_action() {
    let cells = CellSet { read_error: Some("timeout".into()), ..CellSet::default() };
    let p = plan_at(&busy_world(), &cells, NOW);
    assert!(matches!(p.guard, Some(GuardReason::Unreadable { .. })));
    assert_eq!(p.actions, constructive());
    assert_eq!(p.counts.suspect_cells, 0, "no cell is judged from an unreadable set");
}

#[test]
fn a_sharp_unexplained_shrink_withholds_destructive_actions_and_known_losses_do_not() {
    let mut cells = live(&["cell-1"]);
    cells.previous_count = Some(3);
    let p = plan_at(&busy_world(), &cells, NOW);
    assert_eq!(p.guard, Some(GuardReason::Shrunk { previous: 3, present: 1, unexplained: 2 }));
    assert_eq!(p.actions, constructive());

    // The same shrink, but the missing cells' presences are known to have expired.
    cells.lost = BTreeSet::from([cell("lost"), cell("cell-2")]);
    let p = plan_at(&busy_world(), &cells, NOW);
    assert_eq!(p.guard, None);
    assert!(p.actions.iter().any(|a| matches!(a, LrpAction::SuspectAndReplace { .. })));
}

#[test]
fn counts_describe_the_snapshot() {
    let s = snapshot(
        vec![desired("web", "fresh", 3), desired("api", "fresh", 1)],
        vec![
            row("api", 0, Ordinary, Crashed, None),
            row("web", 0, Ordinary, Running, None),
            row("web", 1, Ordinary, Claimed, None),
            row("web", 1, Suspect, Claimed, Some("lost")),
            row("web", 2, Ordinary, Unclaimed, None),
            row("web", 7, Ordinary, Running, None),
        ],
    );
    let c = plan_at(&s, &live(&["cell-1", "cell-2"]), NOW).counts;
    assert_eq!(
        c,
        LrpCounts {
            desired_lrps: 2,
            desired_instances: 4,
            missing: 0,
            extra: 1,
            unclaimed: 1,
            claimed: 1,
            running: 2,
            crashed: 1,
            crashing_desired: 1,
            suspect_running: 0,
            suspect_claimed: 1,
            evacuating: 0,
            present_cells: 2,
            suspect_cells: 1,
            fresh_domains: 1,
            recovered: 0,
            orphaned: 0,
        }
    );
}

#[test]
fn the_plan_does_not_depend_on_row_order() {
    let world = busy_world();
    let mut reversed = world.clone();
    reversed.actual.reverse();
    reversed.desired.reverse();
    let cells = live(&["cell-1"]);
    assert_eq!(plan_at(&world, &cells, NOW), plan_at(&reversed, &cells, NOW));
}

mod hold;
