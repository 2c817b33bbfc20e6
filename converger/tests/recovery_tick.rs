//! `LrpConvergence::tick` with the cells' reports (issue 19) on every backend: after the actual
//! LRPs were wiped, the instances the cells run are left for their reps and only a real loss is
//! created; after the desired LRPs were wiped, they are rebuilt from the cells' run info, marked
//! recovered, and nothing is stopped.

#[path = "support/harness.rs"]
mod harness;

use converger::effects::{CellReport, ReportedInstance};
use converger::lrp::recovery::RECOVERED_PREFIX;
use proto::models::{CellId, InstanceGuid, Presence};

use harness::{NOW, World, desired, guid};

on_every_backend!(
    after_a_wipe_of_the_actual_lrps_only_what_no_cell_runs_is_created,
    a_cell_that_does_not_answer_holds_every_creation,
    after_a_wipe_of_the_desired_lrps_they_are_rebuilt_from_the_cells,
    a_desired_lrp_removed_lately_is_not_rebuilt_from_the_cells,
    an_instance_no_cell_places_is_asked_about_once,
);

fn instance(process_guid: &str, index: i32) -> ReportedInstance {
    ReportedInstance {
        process_guid: guid(process_guid),
        index,
        instance_guid: InstanceGuid::parse(format!("ig-{process_guid}-{index}")).unwrap(),
    }
}

fn cell(s: &str) -> CellId {
    CellId::parse(s).unwrap()
}

async fn after_a_wipe_of_the_actual_lrps_only_what_no_cell_runs_is_created(backend: db::Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 3).await;
    let mut lrp = w.lrp();
    lrp.tick().await.unwrap();
    w.effects.clear();
    w.store()
        .delete_actual_lrps(&[
            (guid("web"), 0, Presence::Ordinary),
            (guid("web"), 1, Presence::Ordinary),
            (guid("web"), 2, Presence::Ordinary),
        ])
        .await
        .unwrap();
    w.effects.set_cell_report(
        cell("cell-1"),
        Some(CellReport { instances: vec![instance("web", 0), instance("web", 1)], desired: vec![] }),
    );

    let report = lrp.tick().await.unwrap();

    assert_eq!(report.created, 1);
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 2)], "only the index no cell runs");
    assert!(w.rows("web", 0).await.ordinary.is_none(), "left for the rep to re-adopt");
    assert_eq!(report.hold.map(|h| h.adopting), Some(2));
    assert_eq!(w.effects.recorded().cell_reports, vec![(cell("cell-1"), vec![])]);
    assert_eq!(w.effects.recorded().cell_syncs, vec![cell("cell-1")], "asked to re-adopt them at once");
}

async fn a_cell_that_does_not_answer_holds_every_creation(backend: db::Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.cell_up("cell-2").await;
    w.desire("web", "fresh", 2).await;
    let mut lrp = w.lrp();
    lrp.tick().await.unwrap();
    w.store()
        .delete_actual_lrps(&[(guid("web"), 0, Presence::Ordinary), (guid("web"), 1, Presence::Ordinary)])
        .await
        .unwrap();
    w.effects.set_cell_report(cell("cell-2"), None);
    w.effects.clear();

    let report = lrp.tick().await.unwrap();
    assert_eq!(report.created, 0);
    assert!(w.effects.recorded().lrp_auctions.is_empty());
    assert!(w.effects.recorded().cell_syncs.is_empty(), "no cell reported anything to re-adopt");

    // One rep sync later the grace period is over: the database is believed.
    w.clock.set(NOW + w.config.cell_sync_grace.as_nanos() as i64);
    let report = lrp.tick().await.unwrap();
    assert_eq!(report.created, 2);
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 0), ("web".into(), 1)]);
}

/// `web`'s three instances running on `cell-1`, converged once; then its desired record is
/// gone from the database while `cell-1` still reports the instances and the run info it keeps.
async fn web_running_then_its_record_gone(backend: db::Backend) -> Option<(World, converger::LrpConvergence)> {
    let w = World::new(backend).await?;
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 3).await;
    for index in 0..3 {
        w.run("web", index, "cell-1").await;
    }
    let mut lrp = w.lrp();
    lrp.tick().await.unwrap();
    w.store().remove_desired_lrp(&guid("web")).await.unwrap();
    w.effects.clear();
    w.effects.set_cell_report(
        cell("cell-1"),
        Some(CellReport {
            instances: (0..3).map(|i| instance("web", i)).collect(),
            desired: vec![desired("web", "fresh", 1)],
        }),
    );
    Some((w, lrp))
}

async fn after_a_wipe_of_the_desired_lrps_they_are_rebuilt_from_the_cells(backend: db::Backend) {
    let Some((w, mut lrp)) = web_running_then_its_record_gone(backend).await else { return };

    let report = lrp.tick().await.unwrap();

    assert_eq!(report.recovered, 1);
    let rebuilt = w.store().desired_lrp(&guid("web")).await.unwrap();
    assert_eq!(rebuilt.scheduling.instances, 3, "the highest index seen plus one");
    assert!(rebuilt.scheduling.annotation.starts_with(RECOVERED_PREFIX), "{}", rebuilt.scheduling.annotation);
    let rec = w.effects.recorded();
    assert!(rec.stops.is_empty(), "no instance stopped");
    assert!(rec.lrp_auctions.is_empty(), "no instance started");
    assert_eq!(rec.recovered.len(), 1, "the recovery is published");
    assert_eq!(rec.cell_reports, vec![(cell("cell-1"), vec![]), (cell("cell-1"), vec![guid("web")])]);
    // The next pass sees a converged world.
    w.effects.clear();
    let report = lrp.tick().await.unwrap();
    assert_eq!((report.recovered, report.created, report.stops), (0, 0, 0));
}

/// A desired LRP an operator removed while its instances still run (their stops not yet at the
/// reps) is reported by the cells like a lost one; it is not rebuilt.
async fn a_desired_lrp_removed_lately_is_not_rebuilt_from_the_cells(backend: db::Backend) {
    let Some((w, mut lrp)) = web_running_then_its_record_gone(backend).await else { return };
    w.effects.set_removed_lately(guid("web"));

    let report = lrp.tick().await.unwrap();

    assert_eq!(report.recovered, 0);
    assert!(w.store().desired_lrp(&guid("web")).await.is_err(), "the removed desired lrp was rebuilt");
    let rec = w.effects.recorded();
    assert!(rec.recovered.is_empty(), "a recovery was published");
    assert!(rec.lrp_auctions.is_empty(), "no instance started");
}

/// The cost bound of the hold: an instance no cell can place is re-auctioned every pass once it
/// is stale, but the cells are asked about it once, not on every pass.
async fn an_instance_no_cell_places_is_asked_about_once(backend: db::Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 1).await;
    w.effects.set_cell_report(cell("cell-1"), Some(CellReport::default()));
    let mut lrp = w.lrp();
    lrp.tick().await.unwrap();
    w.effects.clear();
    let stale = w.config.stale_unclaimed.as_nanos() as i64 + 1;
    for pass in 1..=3 {
        w.clock.set(NOW + pass * stale);
        lrp.tick().await.unwrap();
    }
    let rec = w.effects.recorded();
    assert_eq!(rec.started(), vec![("web".into(), 0); 3], "re-auctioned on every pass");
    assert_eq!(rec.cell_reports, vec![(cell("cell-1"), vec![])], "the cells asked once");

    // A cell joins: it may run anything, so it is asked again, once.
    w.cell_up("cell-2").await;
    w.effects.clear();
    for pass in 4..=5 {
        w.clock.set(NOW + pass * stale);
        lrp.tick().await.unwrap();
    }
    assert_eq!(w.effects.recorded().cell_reports.len(), 2, "both live cells, one round");
}
