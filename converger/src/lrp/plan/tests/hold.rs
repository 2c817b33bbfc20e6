//! The hold (issue 19): what convergence leaves alone while the cells have not said what they
//! run, and what it rebuilds from their reports.

use super::*;

use crate::lrp::recovery::{CellReports, Hold};

fn reports(running: &[(&str, i32, &str)], unanswered: &[&str], held_since: Option<i64>) -> CellReports {
    CellReports {
        running: running.iter().map(|(g, i, c)| ((guid(g), *i), cell(c))).collect(),
        unanswered: unanswered.iter().map(|c| cell(c)).collect(),
        recoverable: Default::default(),
        held_since,
    }
}

fn plan_reported(s: &LrpSnapshot, cells: &CellSet, r: &CellReports, now: i64) -> LrpPlan {
    plan_with(s, cells, Some(r), now, &ConvergenceConfig::default())
}

/// After the actual LRPs were wiped, the indices a cell still runs are left for its rep to
/// re-adopt; the one no cell runs is created at once.
#[test]
fn after_a_wipe_the_indices_cells_report_running_are_not_created_again() {
    let s = snapshot(vec![desired("web", "fresh", 3)], vec![]);
    let r = reports(&[("web", 0, "cell-1"), ("web", 1, "cell-2")], &[], None);
    let p = plan_reported(&s, &live(&["cell-1", "cell-2"]), &r, NOW);
    assert_eq!(acted(&p), vec![create("web", "fresh", &[2])]);
    assert_eq!(p.withheld, vec![create("web", "fresh", &[0, 1])]);
    assert_eq!(p.hold, Some(Hold { adopting: 2, ..Hold::default() }));
    // Without the reports (or with the hold over), all three would be started again.
    assert_eq!(acted(&plan_at(&s, &live(&["cell-1", "cell-2"]), NOW)), vec![create("web", "fresh", &[0, 1, 2])]);
}

/// A live cell that has not answered may run any missing index: nothing is created until it
/// answers or the grace period (one rep sync) is over.
#[test]
fn nothing_is_created_while_a_live_cell_has_not_answered_within_the_grace_period() {
    let s = snapshot(vec![desired("web", "fresh", 2)], vec![]);
    let cells = live(&["cell-1", "cell-2"]);
    let p = plan_reported(&s, &cells, &reports(&[], &["cell-2"], None), NOW);
    assert_eq!(acted(&p), vec![]);
    assert_eq!(p.hold, Some(Hold { unanswered: 1, creations: 2, ..Hold::default() }));

    let grace = ConvergenceConfig::default().cell_sync_grace.as_nanos() as i64;
    let p = plan_reported(&s, &cells, &reports(&[], &["cell-2"], Some(NOW - grace + 1)), NOW);
    assert_eq!(acted(&p), vec![], "still within the grace period");
    let p = plan_reported(&s, &cells, &reports(&[("web", 0, "cell-1")], &["cell-2"], Some(NOW - grace)), NOW);
    assert_eq!(acted(&p), vec![create("web", "fresh", &[0, 1])], "the grace period is over");
    assert_eq!(p.hold, None);
}

/// A real loss (an instance gone from a live cell that did report) is repaired in the same pass.
#[test]
fn a_real_loss_on_a_cell_that_reported_is_replaced_at_once() {
    let s = snapshot(
        vec![desired("web", "fresh", 3)],
        vec![row("web", 0, Ordinary, Running, Some("cell-1")), row("web", 1, Ordinary, Running, Some("cell-1"))],
    );
    let r = reports(&[("web", 0, "cell-1"), ("web", 1, "cell-1")], &[], None);
    let p = plan_reported(&s, &live(&["cell-1"]), &r, NOW);
    assert_eq!(acted(&p), vec![create("web", "fresh", &[2])]);
    assert_eq!(p.hold, None);
    assert!(p.withheld.is_empty());
}

/// A stale UNCLAIMED row (created when the desired LRP was rebuilt) whose instance a cell runs is
/// not auctioned again while the cells are heard.
#[test]
fn a_stale_unclaimed_index_a_cell_runs_is_not_auctioned_again() {
    let stale = with(row("web", 0, Ordinary, Unclaimed, None), |r| r.since = NOW - 3600 * SEC);
    let s = snapshot(vec![desired("web", "fresh", 1)], vec![stale]);
    let p = plan_reported(&s, &live(&["cell-1"]), &reports(&[("web", 0, "cell-1")], &[], None), NOW);
    assert_eq!(acted(&p), vec![]);
    assert_eq!(p.withheld, vec![LrpAction::AuctionStaleUnclaimed { process_guid: guid("web"), index: 0 }]);
}

/// After the desired LRPs were wiped: a process guid whose run info a cell reported is rebuilt
/// (highest index seen plus one) and none of its instances is touched; an orphan no cell can
/// rebuild is not stopped during the grace period, and is retired after it.
#[test]
fn lost_desired_lrps_are_rebuilt_from_the_cells_and_orphans_are_not_stopped_meanwhile() {
    let web = [
        row("web", 0, Ordinary, Running, Some("cell-1")),
        row("web", 4, Ordinary, Running, Some("cell-2")),
        with(row("web", 2, Ordinary, Crashed, None), |r| r.crash_count = 1),
    ];
    let gone = row("gone", 0, Ordinary, Running, Some("cell-1"));
    let mut actual = web.to_vec();
    actual.push(gone.clone());
    let s = snapshot(vec![], actual);
    let cells = live(&["cell-1", "cell-2"]);
    let mut r = reports(&[("web", 0, "cell-1"), ("web", 4, "cell-2"), ("web", 5, "cell-2")], &[], None);
    r.recoverable.insert(guid("web"), DomainName::parse("fresh").unwrap());
    let p = plan_reported(&s, &cells, &r, NOW);
    assert_eq!(
        acted(&p),
        vec![LrpAction::RecoverDesired { process_guid: guid("web"), instances: 6, running: vec![0, 4, 5] }]
    );
    assert_eq!(p.counts.recovered, 1);
    let retire_gone =
        LrpAction::Retire { row: rowref(&gone), reason: RetireReason::Orphan, delete: false, stop: stop_at(&gone) };
    assert_eq!(p.withheld, vec![retire_gone.clone()]);
    assert_eq!(p.hold, Some(Hold { orphans: 1, ..Hold::default() }));

    let grace = ConvergenceConfig::default().cell_sync_grace.as_nanos() as i64;
    r.held_since = Some(NOW - grace);
    let p = plan_reported(&s, &cells, &r, NOW);
    assert_eq!(
        acted(&p),
        vec![
            retire_gone,
            LrpAction::RecoverDesired { process_guid: guid("web"), instances: 6, running: vec![0, 4, 5] }
        ],
        "past the grace period the orphan is retired; the rebuild goes on"
    );
}
