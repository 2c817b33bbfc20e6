//! Conformance tests of the convergence store operations (bbs.md 6.2).

use std::time::Duration;

use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::convergence::{ActualSummary, LrpSnapshot};
use db::testing::TestDb;
use proto::lifecycle::crash::CrashPolicy;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellId, DesiredLrp, DomainName, InstanceGuid,
    ModificationTag, NetInfo, Presence, ProcessGuid,
};
use proto::pb::models::v1 as pb;

use super::NOW_NS;

macro_rules! convergence_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            convergence,
            [
                an_empty_store_gives_an_empty_snapshot,
                the_snapshot_reads_a_seeded_data_set_exactly,
                the_snapshot_skips_undecodable_rows,
                delete_actual_lrps_deletes_exactly_the_listed_rows,
                evacuating_rows_on_missing_cells_are_deleted_and_returned,
            ]
        );
    };
}

const SEC: i64 = 1_000_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

fn ikey(instance: &str, cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance).unwrap(),
        cell_id: CellId::parse(cell).unwrap(),
    }
}

fn start_info() -> db::sql::actual_lrps::StartInfo {
    db::sql::actual_lrps::StartInfo {
        net_info: NetInfo { address: "10.0.0.1".into(), ..Default::default() },
        routable: true,
        ..Default::default()
    }
}

/// A desired LRP built from the wire, as the BBS receives it.
fn desired(process_guid: &str, domain_name: &str, instances: i32) -> DesiredLrp {
    DesiredLrp::try_from(pb::DesiredLrp {
        process_guid: process_guid.into(),
        domain: domain_name.into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances,
        memory_mb: 256,
        disk_mb: 1024,
        max_pids: 100,
        log_guid: "log-guid".into(),
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/home/vcap/app/start".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        placement_tags: vec!["zone-a".into(), "gpu".into()],
        volume_mounts: vec![pb::VolumeMount {
            driver: "nfsv3driver".into(),
            container_dir: "/data".into(),
            mode: "rw".into(),
            shared: Some(pb::SharedDevice { volume_id: "vol-1".into(), mount_config: String::new() }),
        }],
        ..Default::default()
    })
    .unwrap()
}

/// Brings index `index` of `pg` (which exists) to RUNNING under `instance` on `cell`.
async fn run(db: &TestDb, pg: &str, index: i32, instance: &str, cell: &str, at: i64) -> ActualLrpKey {
    let k = ikey(instance, cell);
    let key = db.store.actual_lrp_index(&guid(pg), index).await.unwrap().ordinary.unwrap().key;
    db.store.claim_actual_lrp(&guid(pg), index, &k, at).await.unwrap();
    db.store.start_actual_lrp(&key, &k, &start_info(), at).await.unwrap();
    key
}

async fn add_evacuating(db: &TestDb, pg: &str, index: i32) {
    db.store
        .modify_index("test evacuate", &guid(pg), index, |rows| {
            let copy = rows.ordinary.clone().expect("ordinary row");
            rows.evacuating = Some(ActualLrp { modification_tag: ModificationTag::default(), ..copy });
            Ok(())
        })
        .await
        .unwrap();
}

fn summary(lrp: &ActualLrp) -> ActualSummary {
    ActualSummary {
        process_guid: lrp.key.process_guid.clone(),
        index: lrp.key.index,
        presence: lrp.presence,
        domain: lrp.key.domain.clone(),
        state: lrp.state,
        instance_guid: lrp.instance_key.as_ref().map(|k| k.instance_guid.clone()),
        cell_id: lrp.instance_key.as_ref().map(|k| k.cell_id.clone()),
        crash_count: lrp.crash_count,
        since: lrp.since,
        modification_tag: lrp.modification_tag.clone(),
    }
}

async fn count_rows(db: &TestDb) -> i64 {
    db.store.backend().query_scalar::<i64>("SELECT COUNT(*) FROM actual_lrps").fetch_one(db.store.pool()).await.unwrap()
}

/// Nothing stored, nothing read.
pub async fn an_empty_store_gives_an_empty_snapshot(db: &TestDb) {
    let snapshot = db.store.lrp_convergence_snapshot(NOW_NS).await.unwrap();
    assert_eq!(snapshot, LrpSnapshot::default());
}

/// 20 desired LRPs × 5 instances with a known mix of states, presences and cells, an orphan and
/// an expired domain: exact counts and exact rows.
pub async fn the_snapshot_reads_a_seeded_data_set_exactly(db: &TestDb) {
    let s = &db.store;
    s.upsert_domain(&domain("fresh-a"), Duration::ZERO, NOW_NS).await.unwrap();
    s.upsert_domain(&domain("fresh-b"), HOUR, NOW_NS).await.unwrap();
    s.upsert_domain(&domain("stale"), HOUR, NOW_NS - 2 * 3600 * SEC).await.unwrap();
    let mut stored_desired = Vec::new();
    for i in 0..20 {
        let domain_name = match i {
            0..10 => "fresh-a",
            10..15 => "fresh-b",
            _ => "stale",
        };
        let (stored, created) = s.desire_lrp(&desired(&format!("lrp-{i:02}"), domain_name, 5), NOW_NS).await.unwrap();
        assert_eq!(created.len(), 5);
        stored_desired.push(stored);
    }
    // lrp-00: index 0 CLAIMED on cell-1, index 1 RUNNING on cell-1.
    s.claim_actual_lrp(&guid("lrp-00"), 0, &ikey("i-00-0", "cell-1"), NOW_NS + SEC).await.unwrap();
    run(db, "lrp-00", 1, "i-00-1", "cell-1", NOW_NS + SEC).await;
    // lrp-01: index 0 RUNNING on cell-2, then its cell went missing: suspect + replacement.
    run(db, "lrp-01", 0, "i-01-0", "cell-2", NOW_NS + SEC).await;
    s.suspect_and_replace(&guid("lrp-01"), 0, NOW_NS + 2 * SEC).await.unwrap();
    // lrp-02: index 0 RUNNING on cell-3 with an evacuating copy.
    run(db, "lrp-02", 0, "i-02-0", "cell-3", NOW_NS + SEC).await;
    add_evacuating(db, "lrp-02", 0).await;
    // lrp-03: index 4 missing.
    s.delete_actual_lrp(&guid("lrp-03"), 4, Presence::Ordinary).await.unwrap();
    // lrp-04: index 0 crashed three times: CRASHED, count 3.
    for n in 0..3 {
        let at = NOW_NS + (10 + n) * SEC;
        let instance = format!("i-04-{n}");
        let key = run(db, "lrp-04", 0, &instance, "cell-4", at).await;
        s.crash_actual_lrp(&key, &ikey(&instance, "cell-4"), "exit 1", &CrashPolicy::default(), at).await.unwrap();
    }
    // An orphan: actual rows without a desired LRP.
    s.create_unclaimed_actual_lrps(&guid("orphan"), &domain("fresh-a"), &[0, 1], NOW_NS).await.unwrap();

    let snapshot = s.lrp_convergence_snapshot(NOW_NS + 60 * SEC).await.unwrap();

    assert_eq!(snapshot.fresh_domains, vec![domain("fresh-a"), domain("fresh-b")]);
    // Desired: all 20, sorted, from plain columns.
    assert_eq!(snapshot.desired.len(), 20);
    let names: Vec<String> = snapshot.desired.iter().map(|d| d.process_guid.to_string()).collect();
    let expected_names: Vec<String> = (0..20).map(|i| format!("lrp-{i:02}")).collect();
    assert_eq!(names, expected_names);
    let lrp07 = &snapshot.desired[7];
    assert_eq!(lrp07.domain, domain("fresh-a"));
    assert_eq!(lrp07.instances, 5);
    assert_eq!(lrp07.memory_mb, 256);
    assert_eq!(lrp07.disk_mb, 1024);
    assert_eq!(lrp07.max_pids, 100);
    assert_eq!(lrp07.rootfs, "preloaded:cflinuxfs4");
    assert_eq!(lrp07.placement_tags, vec!["zone-a".to_owned(), "gpu".to_owned()]);
    assert_eq!(lrp07.volume_placement, vec!["nfsv3driver".to_owned()]);
    assert_eq!(lrp07.modification_tag, stored_desired[7].scheduling.modification_tag);
    assert_eq!(snapshot.desired[17].domain, domain("stale"));

    // Actual: 100 - 1 missing + 1 suspect + 1 evacuating + 2 orphans.
    let actual = &snapshot.actual;
    assert_eq!(actual.len(), 103);
    let count = |f: &dyn Fn(&ActualSummary) -> bool| actual.iter().filter(|a| f(a)).count();
    assert_eq!(count(&|a| a.state == ActualLrpState::Running), 4);
    assert_eq!(count(&|a| a.state == ActualLrpState::Claimed), 1);
    assert_eq!(count(&|a| a.state == ActualLrpState::Crashed), 1);
    assert_eq!(count(&|a| a.state == ActualLrpState::Unclaimed), 97);
    assert_eq!(count(&|a| a.presence == Presence::Suspect), 1);
    assert_eq!(count(&|a| a.presence == Presence::Evacuating), 1);
    assert_eq!(count(&|a| a.cell_id.is_some()), 5);
    assert_eq!(count(&|a| a.process_guid.as_str() == "orphan"), 2);
    assert_eq!(count(&|a| a.domain.as_str() == "stale"), 25);
    assert_eq!(count(&|a| a.process_guid.as_str() == "lrp-03"), 4);

    // Exact rows.
    let find = |pg: &str, index: i32, presence: Presence| {
        actual
            .iter()
            .find(|a| a.process_guid.as_str() == pg && a.index == index && a.presence == presence)
            .unwrap_or_else(|| panic!("no row {pg} {index} {presence:?}"))
            .clone()
    };
    let suspect = find("lrp-01", 0, Presence::Suspect);
    assert_eq!(suspect.state, ActualLrpState::Running);
    assert_eq!(suspect.cell_id, Some(CellId::parse("cell-2").unwrap()));
    assert_eq!(suspect.instance_guid, Some(InstanceGuid::parse("i-01-0").unwrap()));
    let replacement = find("lrp-01", 0, Presence::Ordinary);
    assert_eq!(replacement.state, ActualLrpState::Unclaimed);
    assert_eq!(replacement.cell_id, None);
    assert_eq!(replacement.since, NOW_NS + 2 * SEC);
    let crashed = find("lrp-04", 0, Presence::Ordinary);
    assert_eq!(crashed.state, ActualLrpState::Crashed);
    assert_eq!(crashed.crash_count, 3);
    assert_eq!(crashed.since, NOW_NS + 12 * SEC);
    assert_eq!(crashed.instance_guid, None);
    let claimed = find("lrp-00", 0, Presence::Ordinary);
    assert_eq!(claimed.state, ActualLrpState::Claimed);
    assert_eq!(claimed.modification_tag.index, 1);
    let evacuating = find("lrp-02", 0, Presence::Evacuating);
    assert_eq!(evacuating.cell_id, Some(CellId::parse("cell-3").unwrap()));
    assert_eq!(evacuating.domain, domain("fresh-a"));

    // Every summary matches the full row, in the same order.
    let full = s.actual_lrps(&ActualLrpFilter::default()).await.unwrap();
    let summaries: Vec<ActualSummary> = full.iter().map(summary).collect();
    assert_eq!(*actual, summaries);
}

/// Undecodable rows are skipped, not fatal.
pub async fn the_snapshot_skips_undecodable_rows(db: &TestDb) {
    let s = &db.store;
    s.desire_lrp(&desired("good", "d", 2), NOW_NS).await.unwrap();
    s.desire_lrp(&desired("bad", "d", 1), NOW_NS).await.unwrap();
    s.backend()
        .query("UPDATE desired_lrps SET placement_tags = 'not json' WHERE process_guid = ?")
        .bind("bad")
        .execute(s.pool())
        .await
        .unwrap();
    s.backend()
        .query("UPDATE actual_lrps SET state = 'BOGUS' WHERE process_guid = ? AND instance_index = ?")
        .bind("good")
        .bind(1_i64)
        .execute(s.pool())
        .await
        .unwrap();
    let snapshot = s.lrp_convergence_snapshot(NOW_NS).await.unwrap();
    let desired: Vec<&str> = snapshot.desired.iter().map(|d| d.process_guid.as_str()).collect();
    assert_eq!(desired, vec!["good"]);
    let actual: Vec<(&str, i32)> = snapshot.actual.iter().map(|a| (a.process_guid.as_str(), a.index)).collect();
    assert_eq!(actual, vec![("bad", 0), ("good", 0)]);
}

/// Set-based deletes across several chunks; absent rows are ignored and not counted.
pub async fn delete_actual_lrps_deletes_exactly_the_listed_rows(db: &TestDb) {
    let s = &db.store;
    assert_eq!(s.delete_actual_lrps(&[]).await.unwrap(), 0);
    let indices: Vec<i32> = (0..700).collect();
    s.create_unclaimed_actual_lrps(&guid("big"), &domain("d"), &indices, NOW_NS).await.unwrap();
    s.create_unclaimed_actual_lrps(&guid("keep"), &domain("d"), &[0], NOW_NS).await.unwrap();
    let mut doomed: Vec<(ProcessGuid, i32, Presence)> =
        (0..650).map(|i| (guid("big"), i, Presence::Ordinary)).collect();
    doomed.push((guid("big"), 9999, Presence::Ordinary));
    doomed.push((guid("big"), 0, Presence::Evacuating));
    doomed.push((guid("keep"), 0, Presence::Suspect));
    assert_eq!(s.delete_actual_lrps(&doomed).await.unwrap(), 650);
    let left = s.actual_lrps(&ActualLrpFilter::default()).await.unwrap();
    assert_eq!(left.len(), 51);
    assert_eq!(left[0].key.index, 650);
    assert_eq!(left[50].key.process_guid, guid("keep"));
    assert_eq!(s.delete_actual_lrps(&doomed).await.unwrap(), 0);
}

/// Step 2 of convergence: EVACUATING rows whose cell is gone are deleted and returned.
pub async fn evacuating_rows_on_missing_cells_are_deleted_and_returned(db: &TestDb) {
    let s = &db.store;
    assert!(s.delete_evacuating_not_on_cells(&[]).await.unwrap().is_empty());
    for (pg, cell) in [("c-app", "cell-c"), ("a-app", "cell-a"), ("b-app", "cell-b"), ("d-app", "cell-d")] {
        s.create_unclaimed_actual_lrps(&guid(pg), &domain("d"), &[0], NOW_NS).await.unwrap();
        run(db, pg, 0, &format!("i-{pg}"), cell, NOW_NS).await;
        if pg != "d-app" {
            add_evacuating(db, pg, 0).await;
        }
    }
    let evacuating = |pg: &'static str| async move { s.actual_lrp_index(&guid(pg), 0).await.unwrap().evacuating };
    let (b, c) = (evacuating("b-app").await.unwrap(), evacuating("c-app").await.unwrap());
    let live = [CellId::parse("cell-a").unwrap(), CellId::parse("cell-x").unwrap()];
    let removed = s.delete_evacuating_not_on_cells(&live).await.unwrap();
    assert_eq!(removed, vec![b, c]);
    assert!(evacuating("a-app").await.is_some());
    assert_eq!(count_rows(db).await, 5, "4 ordinary rows and a-app's copy");
    // No live cells: every evacuating row goes; ordinary rows on missing cells stay.
    let removed = s.delete_evacuating_not_on_cells(&[]).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].key.process_guid, guid("a-app"));
    assert_eq!(removed[0].presence, Presence::Evacuating);
    assert_eq!(count_rows(db).await, 4);
    assert!(s.delete_evacuating_not_on_cells(&[]).await.unwrap().is_empty());
}
