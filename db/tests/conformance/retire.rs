//! Conformance tests of retiring the instances of a scaled-down or removed LRP in bounded
//! batches (`db::sql::retire`, issue 17 item 1).

use std::collections::BTreeSet;
use std::time::Duration;

use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::leases::LeaseType;
use db::sql::retire::{RETIRE_BATCH, Retired};
use db::testing::TestDb;
use db::{Error, Fence};
use proto::lifecycle::crash::CrashPolicy;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpState, CellId, DesiredLrp, DesiredLrpUpdate, DomainName, InstanceGuid,
    ModificationTag, NetInfo, Presence, ProcessGuid,
};
use proto::pb::models::v1 as pb;

use super::NOW_NS;

macro_rules! retire_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            retire,
            [
                unplaced_rows_past_the_index_go_in_bounded_batches_and_nothing_else_does,
                placed_rows_past_the_index_are_listed_for_their_stops,
                retirement_never_goes_below_the_desired_count_and_takes_all_of_a_removed_lrp,
                a_store_whose_lease_was_lost_retires_nothing,
            ]
        );
    };
}

const SEC: i64 = 1_000_000_000;

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn ikey(instance: &str, cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance).unwrap(),
        cell_id: CellId::parse(cell).unwrap(),
    }
}

fn desired(process_guid: &str, instances: i32) -> DesiredLrp {
    DesiredLrp::try_from(pb::DesiredLrp {
        process_guid: process_guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances,
        memory_mb: 256,
        disk_mb: 1024,
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/home/vcap/app/start".into(),
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    })
    .unwrap()
}

async fn scale(db: &TestDb, pg: &str, instances: i32) {
    let update = DesiredLrpUpdate { instances: Some(instances), ..Default::default() };
    db.store.update_desired_lrp(&guid(pg), &update, NOW_NS).await.unwrap();
}

async fn claim(db: &TestDb, pg: &str, index: i32) -> ActualLrpInstanceKey {
    let k = ikey(&format!("i-{pg}-{index}"), "cell-1");
    db.store.claim_actual_lrp(&guid(pg), index, &k, NOW_NS + SEC).await.unwrap();
    k
}

/// Brings index `index` of `pg` to RUNNING on cell-1 and returns its instance key.
async fn run(db: &TestDb, pg: &str, index: i32) -> ActualLrpInstanceKey {
    let k = claim(db, pg, index).await;
    let key = ordinary(db, pg, index).await.key;
    let start = db::sql::actual_lrps::StartInfo {
        net_info: NetInfo { address: "10.0.0.1".into(), ..Default::default() },
        routable: true,
        ..Default::default()
    };
    db.store.start_actual_lrp(&key, &k, &start, NOW_NS + SEC).await.unwrap();
    k
}

async fn ordinary(db: &TestDb, pg: &str, index: i32) -> ActualLrp {
    db.store.actual_lrp_index(&guid(pg), index).await.unwrap().ordinary.expect("an ordinary row")
}

/// Gives index `index` of `pg` an EVACUATING copy of its (placed) ordinary row.
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

/// Crashes index `index` of `pg` until it stays CRASHED.
async fn crash_for_good(db: &TestDb, pg: &str, index: i32) {
    for n in 0..3 {
        let k = run(db, pg, index).await;
        let key = ordinary(db, pg, index).await.key;
        db.store.crash_actual_lrp(&key, &k, "exit 1", &CrashPolicy::default(), NOW_NS + (2 + n) * SEC).await.unwrap();
    }
    assert_eq!(ordinary(db, pg, index).await.state, ActualLrpState::Crashed);
}

/// (index, presence, state) of every row of `pg`, sorted.
async fn rows_of(db: &TestDb, pg: &str) -> Vec<(i32, Presence, ActualLrpState)> {
    let filter = ActualLrpFilter { process_guid: Some(guid(pg)), ..Default::default() };
    db.store.actual_lrps(&filter).await.unwrap().into_iter().map(|l| (l.key.index, l.presence, l.state)).collect()
}

/// Retires and returns what the callback saw, batch by batch.
async fn retire(db: &TestDb, pg: &str, from: i32) -> (Retired, Vec<Vec<ActualLrp>>) {
    let mut batches = Vec::new();
    let retired = db
        .store
        .retire_unplaced_actual_lrps(&guid(pg), from, |batch| {
            batches.push(batch);
            async {}
        })
        .await
        .unwrap();
    (retired, batches)
}

/// "big": 5,000 instances scaled down to 5, with CLAIMED, RUNNING and CRASHED rows past index 5,
/// an EVACUATING copy and a SUSPECT row with their UNCLAIMED ordinary replacements; "other"
/// beside it.
async fn seed_big(db: &TestDb) {
    db.store.desire_lrp(&desired("big", 5_000), NOW_NS).await.unwrap();
    db.store.desire_lrp(&desired("other", 10), NOW_NS).await.unwrap();
    claim(db, "big", 1).await;
    run(db, "big", 2).await;
    claim(db, "big", 7).await;
    run(db, "big", 8).await;
    crash_for_good(db, "big", 9).await;
    // 10: RUNNING with an evacuating copy. 11: the evacuating copy stays, the ordinary row was
    // unclaimed. 12: a suspect and its UNCLAIMED replacement.
    run(db, "big", 10).await;
    add_evacuating(db, "big", 10).await;
    run(db, "big", 11).await;
    add_evacuating(db, "big", 11).await;
    let key = ordinary(db, "big", 11).await.key;
    db.store.unclaim_actual_lrp(&key, NOW_NS + 5 * SEC).await.unwrap();
    run(db, "big", 12).await;
    db.store.suspect_and_replace(&guid("big"), 12, NOW_NS + 5 * SEC).await.unwrap();
    scale(db, "big", 5).await;
}

/// Every UNCLAIMED and CRASHED ordinary row at index >= 5 goes, in batches of at most
/// RETIRE_BATCH rows in index order; CLAIMED, RUNNING, EVACUATING, SUSPECT rows, the rows below
/// index 5 and another LRP's rows stay. A second run finds nothing.
pub async fn unplaced_rows_past_the_index_go_in_bounded_batches_and_nothing_else_does(db: &TestDb) {
    seed_big(db).await;
    let (retired, batches) = retire(db, "big", 5).await;

    // 4,995 ordinary rows at 5..5000, of which 7, 8 and 10 have a container.
    assert_eq!(retired, Retired { deleted: 4_992, batches: batches.len() as u32 });
    assert!(batches.len() >= 4_992_usize.div_ceil(RETIRE_BATCH), "{} batches", batches.len());
    assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= RETIRE_BATCH), "batches are bounded");
    let deleted: Vec<&ActualLrp> = batches.iter().flatten().collect();
    assert!(deleted.windows(2).all(|w| w[0].key.index < w[1].key.index), "in index order, each once");
    assert!(deleted.iter().all(|l| l.presence == Presence::Ordinary && l.key.process_guid == guid("big")));
    assert!(deleted.iter().all(|l| matches!(l.state, ActualLrpState::Unclaimed | ActualLrpState::Crashed)));
    let crashed = deleted.iter().find(|l| l.key.index == 9).expect("the crashed row is retired");
    assert_eq!((crashed.state, crashed.crash_count), (ActualLrpState::Crashed, 3));
    let indices: BTreeSet<i32> = deleted.iter().map(|l| l.key.index).collect();
    let expected: BTreeSet<i32> = (5..5_000).filter(|i| ![7, 8, 10].contains(i)).collect();
    assert_eq!(indices, expected);

    use ActualLrpState::{Claimed, Running, Unclaimed};
    use Presence::{Evacuating, Ordinary, Suspect};
    assert_eq!(
        rows_of(db, "big").await,
        vec![
            (0, Ordinary, Unclaimed),
            (1, Ordinary, Claimed),
            (2, Ordinary, Running),
            (3, Ordinary, Unclaimed),
            (4, Ordinary, Unclaimed),
            (7, Ordinary, Claimed),
            (8, Ordinary, Running),
            (10, Ordinary, Running),
            (10, Evacuating, Running),
            (11, Evacuating, Running),
            (12, Suspect, Running),
        ]
    );
    assert_eq!(rows_of(db, "other").await.len(), 10);
    assert_eq!(retire(db, "big", 5).await, (Retired::default(), Vec::new()));
}

/// The rows with a container at index >= `from`, every presence, for the rep stops.
pub async fn placed_rows_past_the_index_are_listed_for_their_stops(db: &TestDb) {
    seed_big(db).await;
    let placed = |from: i32| async move {
        let rows = db.store.placed_actual_lrps(&guid("big"), from).await.unwrap();
        assert!(rows.iter().all(|l| l.instance_key.is_some()), "every placed row has its instance key");
        rows.into_iter().map(|l| (l.key.index, l.presence, l.state)).collect::<Vec<_>>()
    };
    use ActualLrpState::{Claimed, Running};
    use Presence::{Evacuating, Ordinary, Suspect};
    let past_5 = vec![
        (7, Ordinary, Claimed),
        (8, Ordinary, Running),
        (10, Ordinary, Running),
        (10, Evacuating, Running),
        (11, Evacuating, Running),
        (12, Suspect, Running),
    ];
    assert_eq!(placed(5).await, past_5);
    let mut all = vec![(1, Ordinary, Claimed), (2, Ordinary, Running)];
    all.extend(past_5);
    assert_eq!(placed(0).await, all);
    assert_eq!(placed(13).await, vec![]);
    assert!(db.store.placed_actual_lrps(&guid("nothing"), 0).await.unwrap().is_empty());
}

/// A batch never deletes below the desired LRP's current count (a scale-up or a re-desire that
/// overtook the cleanup keeps its instances); once the LRP is removed, every unplaced row goes.
pub async fn retirement_never_goes_below_the_desired_count_and_takes_all_of_a_removed_lrp(db: &TestDb) {
    db.store.desire_lrp(&desired("web", 20), NOW_NS).await.unwrap();
    run(db, "web", 3).await;
    // Still desired at 20: a cleanup from 5 (a scale-down overtaken by a scale-up) keeps all.
    let (retired, _) = retire(db, "web", 5).await;
    assert_eq!(retired, Retired::default());
    assert_eq!(rows_of(db, "web").await.len(), 20);
    scale(db, "web", 10).await;
    let (retired, batches) = retire(db, "web", 5).await;
    assert_eq!(retired, Retired { deleted: 10, batches: 1 });
    let indices: Vec<i32> = batches.concat().iter().map(|l| l.key.index).collect();
    assert_eq!(indices, (10..20).collect::<Vec<_>>());
    db.store.remove_desired_lrp(&guid("web")).await.unwrap();
    let (retired, _) = retire(db, "web", 0).await;
    assert_eq!(retired.deleted, 9, "all but the running index 3");
    assert_eq!(rows_of(db, "web").await, vec![(3, Presence::Ordinary, ActualLrpState::Running)]);
    // Rows with no desired LRP at all (left by an older removal) go too.
    db.store
        .create_unclaimed_actual_lrps(&guid("orphan"), &DomainName::parse("apps").unwrap(), &[0, 1, 2], NOW_NS)
        .await
        .unwrap();
    assert_eq!(retire(db, "orphan", 1).await.0.deleted, 2);
    assert_eq!(rows_of(db, "orphan").await.len(), 1);
}

/// Every batch is a fenced write: a store whose lease was released (or taken) deletes nothing
/// and says it is fenced.
pub async fn a_store_whose_lease_was_lost_retires_nothing(db: &TestDb) {
    db.store.desire_lrp(&desired("web", 1_500), NOW_NS).await.unwrap();
    scale(db, "web", 1).await;
    let lease = db.store.acquire_lease("bbs", "bbs-a", "", LeaseType::Lock, Duration::from_secs(60)).await.unwrap();
    let leader = db.store.fenced(Fence { key: "bbs".into(), owner: "bbs-a".into(), term: lease.term });
    db.store.release_lease("bbs", "bbs-a").await.unwrap();
    let mut calls = 0;
    let err = leader
        .retire_unplaced_actual_lrps(&guid("web"), 1, |_| {
            calls += 1;
            async {}
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert_eq!(calls, 0);
    assert_eq!(rows_of(db, "web").await.len(), 1_500);
    // Held again (a new term), the same leader's fence is stale; a fence of the new term works.
    let lease = db.store.acquire_lease("bbs", "bbs-a", "", LeaseType::Lock, Duration::from_secs(60)).await.unwrap();
    assert!(matches!(
        leader.retire_unplaced_actual_lrps(&guid("web"), 1, |_| async {}).await,
        Err(Error::Fenced { .. })
    ));
    let current = db.store.fenced(Fence { key: "bbs".into(), owner: "bbs-a".into(), term: lease.term });
    let retired = current.retire_unplaced_actual_lrps(&guid("web"), 1, |_| async {}).await.unwrap();
    assert_eq!(retired, Retired { deleted: 1_499, batches: 2 });
    assert_eq!(rows_of(db, "web").await.len(), 1);
}
