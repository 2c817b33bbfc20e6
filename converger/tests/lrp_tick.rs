//! `LrpConvergence::tick` against the store on every backend: resulting rows, and the start and
//! stop requests the fake `Effects` recorded.

#[path = "support/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use converger::{Error, GuardReason};
use db::Backend;
use db::Fence;
use proto::models::ActualLrpState::{Claimed, Crashed, Running, Unclaimed};
use proto::models::Presence::{Evacuating, Ordinary, Suspect};

use harness::{NOW, SEC, World, domain, running_on};

on_every_backend!(
    missing_instances_are_created_and_started_in_one_auction_call,
    stale_unclaimed_instances_are_auctioned_again_without_a_write,
    crashed_instances_restart_once_their_backoff_elapsed,
    instances_on_a_lost_cell_become_suspect_and_are_replaced,
    a_returning_cell_promotes_its_suspect_and_stops_the_placed_replacement,
    a_replacement_on_a_lost_cell_is_unclaimed_while_the_suspect_stays,
    an_extra_suspect_is_deleted_and_stopped,
    extra_and_orphaned_instances_are_retired_the_placed_ones_in_fresh_domains_only,
    evacuating_rows_on_lost_cells_and_expired_domains_are_pruned,
    an_empty_cell_set_does_nothing_destructive,
    a_sharp_shrink_is_held_until_the_lost_cells_are_reported,
    a_fenced_store_stops_the_pass,
    a_pass_without_a_store_is_skipped,
    a_failed_auction_is_reported_and_not_fatal,
    a_converged_world_needs_no_second_pass,
);

async fn missing_instances_are_created_and_started_in_one_auction_call(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 3).await;
    w.desire("api", "fresh", 1).await;
    w.store()
        .delete_actual_lrps(&[
            (harness::guid("web"), 1, Ordinary),
            (harness::guid("web"), 2, Ordinary),
            (harness::guid("api"), 0, Ordinary),
        ])
        .await
        .unwrap();

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.counts.missing, 3);
    assert_eq!(report.created, 3);
    assert_eq!(w.row("web", 1, Ordinary).await, Some((Unclaimed, String::new())));
    assert_eq!(w.row("web", 2, Ordinary).await, Some((Unclaimed, String::new())));
    assert_eq!(w.row("api", 0, Ordinary).await, Some((Unclaimed, String::new())));
    let rec = w.effects.recorded();
    assert_eq!(rec.lrp_auctions.len(), 1, "one auction call per pass");
    assert_eq!(rec.started(), vec![("api".into(), 0), ("web".into(), 1), ("web".into(), 2)]);
    // Grouped per process guid, with the desired LRP's requirements.
    let web = rec.lrp_auctions[0].iter().find(|s| s.process_guid.as_str() == "web").unwrap();
    assert_eq!(web.indices, vec![1, 2]);
    assert_eq!((web.memory_mb, web.disk_mb, web.max_pids), (256, 1024, 100));
    assert_eq!(web.placement_tags, vec!["zone-a".to_string()]);
    assert_eq!(rec.index_changes.len(), 3, "a created event per new row");
}

async fn stale_unclaimed_instances_are_auctioned_again_without_a_write(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 2).await;
    w.clock.set(NOW + 30 * SEC);
    w.lrp().tick().await.unwrap();
    assert!(w.effects.recorded().lrp_auctions.is_empty(), "30 s old is not stale yet");

    w.clock.set(NOW + 31 * SEC);
    let before = w.rows("web", 0).await;
    let report = w.lrp().tick().await.unwrap();
    assert_eq!(report.stale_auctioned, 2);
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 0), ("web".into(), 1)]);
    assert_eq!(w.rows("web", 0).await, before, "re-auctioning writes nothing");
}

async fn crashed_instances_restart_once_their_backoff_elapsed(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 3).await;
    w.crash("web", 0, 3, NOW).await; // back-off 30 s
    w.crash("web", 1, 8, NOW).await; // back-off 16 min
    w.crash("web", 2, 200, NOW - 3600 * SEC).await; // never

    w.clock.set(NOW + 30 * SEC - 1);
    let report = w.lrp().tick().await.unwrap();
    assert_eq!(report.restarted, 0);
    assert_eq!(report.counts.crashed, 3);

    w.clock.set(NOW + 30 * SEC);
    let report = w.lrp().tick().await.unwrap();
    assert_eq!(report.restarted, 1);
    assert_eq!(w.row("web", 0, Ordinary).await, Some((Unclaimed, String::new())));
    assert_eq!(w.rows("web", 0).await.ordinary.unwrap().crash_count, 3, "the count is kept");
    assert_eq!(w.row("web", 1, Ordinary).await.unwrap().0, Crashed);
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 0)]);

    w.clock.set(NOW + 16 * 60 * SEC);
    w.effects.clear();
    w.lrp().tick().await.unwrap();
    assert_eq!(w.row("web", 1, Ordinary).await.unwrap().0, Unclaimed);
    assert_eq!(w.row("web", 2, Ordinary).await.unwrap().0, Crashed, "200 crashes: given up");
    assert!(w.effects.recorded().started().contains(&("web".into(), 1)));
}

async fn instances_on_a_lost_cell_become_suspect_and_are_replaced(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.cell_up("cell-2").await;
    w.desire("web", "fresh", 3).await;
    w.run("web", 0, "cell-1").await;
    w.run("web", 1, "cell-2").await;
    w.claim("web", 2, "cell-2").await;
    w.cell_down("cell-2", true).await;

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.guard, None);
    assert_eq!(report.suspected, 2);
    assert_eq!(report.counts.suspect_cells, 1);
    assert_eq!(w.row("web", 0, Ordinary).await, Some((Running, "cell-1".into())));
    assert_eq!(w.row("web", 1, Suspect).await, Some((Running, "cell-2".into())));
    assert_eq!(w.row("web", 1, Ordinary).await, Some((Unclaimed, String::new())));
    assert_eq!(w.row("web", 2, Suspect).await, Some((Claimed, "cell-2".into())));
    assert_eq!(w.row("web", 2, Ordinary).await, Some((Unclaimed, String::new())));
    let rec = w.effects.recorded();
    assert_eq!(rec.started(), vec![("web".into(), 1), ("web".into(), 2)]);
    assert!(rec.stops.is_empty(), "a lost cell is never asked to stop anything");
    assert_eq!(rec.index_changes.len(), 2);
    assert!(rec.locks >= 2, "each per-index write holds its key lock");
}

async fn a_returning_cell_promotes_its_suspect_and_stops_the_placed_replacement(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    for c in ["cell-1", "cell-2", "cell-3"] {
        w.cell_up(c).await;
    }
    w.desire("web", "fresh", 2).await;
    w.run("web", 0, "cell-2").await;
    w.run("web", 1, "cell-2").await;
    w.cell_down("cell-2", true).await;
    w.lrp().tick().await.unwrap();
    // Index 0's replacement got placed on cell-3; index 1's is still waiting.
    w.claim("web", 0, "cell-3").await;

    w.cell_up("cell-2").await;
    w.effects.clear();
    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.promoted, 2);
    for index in [0, 1] {
        assert_eq!(w.row("web", index, Ordinary).await, Some((Running, "cell-2".into())), "index {index}");
        assert_eq!(w.row("web", index, Suspect).await, None);
    }
    let rec = w.effects.recorded();
    assert_eq!(rec.stopped(), vec![("cell-3".into(), "web".into(), 0)]);
    assert!(rec.lrp_auctions.is_empty());
}

async fn a_replacement_on_a_lost_cell_is_unclaimed_while_the_suspect_stays(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    for c in ["cell-1", "cell-2", "cell-3"] {
        w.cell_up(c).await;
    }
    w.desire("web", "fresh", 1).await;
    w.run("web", 0, "cell-2").await;
    w.cell_down("cell-2", true).await;
    w.lrp().tick().await.unwrap();
    w.claim("web", 0, "cell-3").await;
    w.cell_down("cell-3", true).await;
    w.effects.clear();

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.unclaimed, 1);
    assert_eq!(w.row("web", 0, Ordinary).await, Some((Unclaimed, String::new())));
    assert_eq!(w.row("web", 0, Suspect).await, Some((Running, "cell-2".into())));
    assert!(w.effects.recorded().lrp_auctions.is_empty(), "the stale-unclaimed rule starts it later");
}

async fn an_extra_suspect_is_deleted_and_stopped(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.cell_up("cell-2").await;
    w.desire("web", "fresh", 1).await;
    w.run("web", 0, "cell-1").await;
    // A suspect still RUNNING on cell-2, which is live again.
    w.set("web", 0, |rows| {
        let o = rows.ordinary.clone().unwrap();
        rows.suspect = Some(running_on(&o, "cell-2"));
    })
    .await;

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.retired_deleted, 1);
    assert_eq!(report.promoted, 0, "extra suspect before promote");
    assert_eq!(w.row("web", 0, Suspect).await, None);
    assert_eq!(w.row("web", 0, Ordinary).await, Some((Running, "cell-1".into())));
    let rec = w.effects.recorded();
    assert_eq!(rec.stopped(), vec![("cell-2".into(), "web".into(), 0)]);
    assert_eq!(rec.removed.len(), 1);
    assert_eq!(rec.removed[0].presence, Suspect);
}

async fn extra_and_orphaned_instances_are_retired_the_placed_ones_in_fresh_domains_only(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.store().upsert_domain(&domain("stale"), Duration::from_secs(1), NOW - 10 * SEC).await.unwrap();
    for d in ["fresh", "stale"] {
        let web = format!("web-{d}");
        w.desire(&web, d, 1).await;
        w.store().create_unclaimed_actual_lrps(&harness::guid(&web), &domain(d), &[1, 2], NOW).await.unwrap();
        w.claim(&web, 2, "cell-1").await;
        w.store()
            .create_unclaimed_actual_lrps(&harness::guid(&format!("gone-{d}")), &domain(d), &[0], NOW)
            .await
            .unwrap();
    }
    let rows_before = w.count_rows().await;

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.counts.extra, 5);
    assert_eq!(report.retired_deleted, 4, "the unclaimed extras and the orphans, whatever the domain");
    assert_eq!(w.row("web-fresh", 1, Ordinary).await, None);
    assert_eq!(w.row("gone-fresh", 0, Ordinary).await, None);
    assert_eq!(
        w.row("web-fresh", 2, Ordinary).await,
        Some((Claimed, "cell-1".into())),
        "the rep removes it after the stop"
    );
    // Rows without a container go in a stale domain too (issue 17 item 1); placed ones stay.
    assert_eq!(w.row("web-stale", 1, Ordinary).await, None);
    assert_eq!(w.row("gone-stale", 0, Ordinary).await, None);
    assert_eq!(w.row("web-stale", 2, Ordinary).await, Some((Claimed, "cell-1".into())));
    assert_eq!(w.count_rows().await, rows_before - 4);
    let rec = w.effects.recorded();
    assert_eq!(rec.stopped(), vec![("cell-1".into(), "web-fresh".into(), 2)]);
    assert_eq!(rec.removed.len(), 4);
}

async fn evacuating_rows_on_lost_cells_and_expired_domains_are_pruned(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.store().upsert_domain(&domain("stale"), Duration::from_secs(1), NOW - 10 * SEC).await.unwrap();
    w.desire("web", "fresh", 2).await;
    for (index, cell) in [(0, "cell-1"), (1, "gone")] {
        w.set("web", index, move |rows| {
            let o = rows.ordinary.clone().unwrap();
            rows.evacuating = Some(running_on(&o, cell));
        })
        .await;
    }

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.domains_pruned, 1);
    assert_eq!(report.evacuating_pruned, 1);
    assert_eq!(w.row("web", 0, Evacuating).await, Some((Running, "cell-1".into())));
    assert_eq!(w.row("web", 1, Evacuating).await, None);
    let fresh: Vec<String> =
        w.store().fresh_domains(NOW - 20 * SEC).await.unwrap().into_iter().map(|d| d.name.to_string()).collect();
    assert_eq!(fresh, vec!["fresh".to_string()], "the expired domain row is gone");
    assert_eq!(w.effects.recorded().removed.len(), 1);
}

async fn an_empty_cell_set_does_nothing_destructive(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 3).await;
    w.run("web", 0, "cell-1").await;
    w.run("web", 1, "cell-1").await;
    w.store().delete_actual_lrps(&[(harness::guid("web"), 2, Ordinary)]).await.unwrap();
    w.cell_down("cell-1", true).await;

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.guard, Some(GuardReason::NoCells));
    assert!(report.withheld >= 2);
    assert_eq!(report.suspected, 0);
    assert_eq!(w.row("web", 0, Ordinary).await, Some((Running, "cell-1".into())));
    assert_eq!(w.row("web", 0, Suspect).await, None);
    // Constructive work still happens.
    assert_eq!(report.created, 1);
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 2)]);
}

async fn a_sharp_shrink_is_held_until_the_lost_cells_are_reported(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    let cells = ["cell-1", "cell-2", "cell-3", "cell-4"];
    for c in cells {
        w.cell_up(c).await;
    }
    w.desire("web", "fresh", 4).await;
    for (i, c) in cells.iter().enumerate() {
        w.run("web", i as i32, c).await;
    }
    let mut lrp = w.lrp();
    assert_eq!(lrp.tick().await.unwrap().guard, None);
    assert_eq!(lrp.baseline().count, Some(4));

    // Three of four presences vanish without being reported as expired.
    for c in &cells[1..] {
        w.cell_down(c, false).await;
    }
    let report = lrp.tick().await.unwrap();
    assert_eq!(report.guard, Some(GuardReason::Shrunk { previous: 4, present: 1, unexplained: 3 }));
    assert_eq!(report.suspected, 0);
    assert_eq!(w.row("web", 3, Ordinary).await, Some((Running, "cell-4".into())));
    // The baseline holds: the next pass is held too.
    assert!(lrp.tick().await.unwrap().guard.is_some());

    // The BBS reports the expiries: the losses are explained and acted on.
    for c in &cells[1..] {
        w.lost.report(proto::models::CellId::parse(*c).unwrap());
    }
    let report = lrp.tick().await.unwrap();
    assert_eq!(report.guard, None);
    assert_eq!(report.suspected, 3);
    assert_eq!(w.row("web", 3, Suspect).await, Some((Running, "cell-4".into())));
}

async fn a_fenced_store_stops_the_pass(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 2).await;
    w.store()
        .delete_actual_lrps(&[(harness::guid("web"), 0, Ordinary), (harness::guid("web"), 1, Ordinary)])
        .await
        .unwrap();
    // A store fenced by a lease nobody holds: a deposed leader.
    let deposed = w.store().fenced(Fence { key: "bbs".into(), owner: "old-leader".into(), term: 7 });
    let mut lrp = w.lrp_with(converger::fixed_store(deposed));

    let err = lrp.tick().await.unwrap_err();

    assert!(err.is_fenced(), "{err}");
    assert_eq!(w.count_rows().await, 0, "nothing was written");
    assert!(w.effects.recorded().lrp_auctions.is_empty(), "nothing was started");
}

async fn a_pass_without_a_store_is_skipped(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    let mut lrp = w.lrp_with(Arc::new(|| None));
    assert!(matches!(lrp.tick().await, Err(Error::NotLeading)));
}

async fn a_failed_auction_is_reported_and_not_fatal(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 1).await;
    w.store().delete_actual_lrps(&[(harness::guid("web"), 0, Ordinary)]).await.unwrap();
    w.effects.fail_auctions(true);

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.created, 1);
    assert!(report.auction_error.as_deref().is_some_and(|e| e.contains("failed")));
    // The row is there; the stale-unclaimed rule re-auctions it later.
    w.effects.fail_auctions(false);
    w.clock.set(NOW + 31 * SEC);
    w.lrp().tick().await.unwrap();
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 0), ("web".into(), 0)]);
}

async fn a_converged_world_needs_no_second_pass(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.cell_up("cell-2").await;
    w.desire("web", "fresh", 3).await;
    w.run("web", 0, "cell-1").await;
    w.run("web", 1, "cell-2").await;
    w.run("web", 2, "cell-2").await;
    w.cell_down("cell-2", true).await;
    w.lrp().tick().await.unwrap();
    w.run("web", 1, "cell-1").await;
    w.run("web", 2, "cell-1").await;
    w.effects.clear();

    let report = w.lrp().tick().await.unwrap();

    assert_eq!(report.counts.running, 3);
    assert_eq!(report.counts.suspect_running, 0, "starting the replacements deleted the suspects");
    let rec = w.effects.recorded();
    assert!(
        rec.lrp_auctions.is_empty() && rec.stops.is_empty() && rec.index_changes.is_empty() && rec.removed.is_empty()
    );
}
