//! Conformance tests of the batch writes: `desire_lrps` (DesireLRPs) and `start_actual_lrps`
//! (StartActualLRPs). Each item is refused on its own, its neighbours are stored, and what is
//! stored is what the single call stores.

use std::collections::BTreeMap;

use db::sql::actual_lrps::{ActualLrpFilter, IndexChange, IndexRows};
use db::testing::TestDb;
use db::{Error, Fence};
use proto::error::ErrorCode;
use proto::models::{ActualLrp, ActualLrpKey, ActualLrpState, DomainName, ModificationTag, Presence, ProcessGuid};

use super::NOW_NS;
use super::actual_lrps::{ikey, start_info};
use super::desired_lrps::desired;

macro_rules! batches_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            batches,
            [
                desire_lrps_stores_each_item_and_refuses_duplicates_alone,
                desire_lrps_stores_what_the_single_desire_stores,
                desire_lrps_keeps_instances_a_removed_lrp_left_behind,
                desire_lrps_spans_several_statements,
                a_fenced_out_batch_writes_nothing,
                start_actual_lrps_applies_each_start_in_order_and_refuses_alone,
                start_actual_lrps_writes_nothing_for_a_re_assert,
                start_actual_lrps_answers_a_re_assert_without_waiting_for_row_locks,
                start_actual_lrps_answers_re_asserts_without_a_write_transaction,
                start_actual_lrps_plans_again_on_rows_written_since_its_read,
                start_actual_lrps_writes_more_rows_than_one_statement_holds,
                start_actual_lrps_mixes_refused_unchanged_and_repeated_starts,
                start_actual_lrps_refuses_an_invalid_index_alone,
            ]
        );
    };
}

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

pub fn key(process_guid: &str, index: i32) -> ActualLrpKey {
    ActualLrpKey { process_guid: guid(process_guid), index, domain: DomainName::parse("cf-apps").unwrap() }
}

async fn count(db: &TestDb, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    db.store.backend().query_scalar::<i64>(&sql).fetch_one(db.store.pool()).await.unwrap()
}

/// A guid already stored and a guid repeated in the request are `Exists`; the items around
/// them are stored with their instances, and the stored LRP is untouched.
pub async fn desire_lrps_stores_each_item_and_refuses_duplicates_alone(db: &TestDb) {
    let (taken, _) = db.store.desire_lrp(&desired("taken", "cf-apps", 1), NOW_NS).await.unwrap();
    let batch = [
        desired("a", "cf-apps", 2),
        desired("taken", "other", 4),
        desired("b", "cf-apps", 0),
        desired("a", "cf-apps", 5),
        desired("c", "cf-apps", 3),
    ];
    let outcomes = db.store.desire_lrps(batch.to_vec(), NOW_NS).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let created: Vec<Option<usize>> = outcomes.iter().map(|(_, o)| o.as_ref().ok().map(Vec::len)).collect();
    assert_eq!(created, [Some(2), None, Some(0), None, Some(3)]);
    let items: Vec<(&str, i32)> =
        outcomes.iter().map(|(lrp, _)| (lrp.scheduling.process_guid.as_str(), lrp.scheduling.instances)).collect();
    assert_eq!(items, [("a", 2), ("taken", 4), ("b", 0), ("a", 5), ("c", 3)], "every item comes back in order");
    let err = outcomes[1].1.as_ref().unwrap_err();
    assert!(matches!(err, Error::Exists { key, .. } if key == "taken"), "{err}");
    let err = outcomes[3].1.as_ref().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ResourceExists);
    assert!(err.to_string().contains("repeated"), "{err}");

    assert_eq!(db.store.desired_lrp(&guid("taken")).await.unwrap(), taken);
    assert_eq!(db.store.desired_lrp(&guid("a")).await.unwrap().scheduling.instances, 2);
    assert_eq!(count(db, "desired_lrps").await, 4);
    assert_eq!(count(db, "actual_lrps").await, 1 + 2 + 3);
}

/// Each stored record equals what `desire_lrp` would store (fresh tag, created_at) and reads
/// back equal; its instances are UNCLAIMED ordinary rows at `now`.
pub async fn desire_lrps_stores_what_the_single_desire_stores(db: &TestDb) {
    let lrp = desired("web", "cf-apps", 3);
    let (single, _) = db.store.desire_lrp(&desired("single", "cf-apps", 3), NOW_NS).await.unwrap();
    let outcomes = db.store.desire_lrps(vec![lrp.clone()], NOW_NS).await.unwrap();
    let (stored, created) = outcomes.into_iter().next().unwrap();
    let created = created.unwrap();
    assert_eq!(stored.scheduling.modification_tag.index, 0);
    assert_eq!(stored.scheduling.modification_tag.epoch.len(), 36, "a uuid epoch");
    assert_ne!(stored.scheduling.modification_tag.epoch, single.scheduling.modification_tag.epoch);
    assert_eq!(stored.run_info.as_pb().created_at, NOW_NS);
    let mut expected = lrp.clone();
    expected.scheduling.modification_tag = stored.scheduling.modification_tag.clone();
    expected.run_info = stored.run_info.clone();
    assert_eq!(stored, expected);
    assert_eq!(db.store.desired_lrp(&guid("web")).await.unwrap(), stored);
    let indices: Vec<i32> = created.iter().map(|a| a.key.index).collect();
    assert_eq!(indices, [0, 1, 2]);
    for actual in &created {
        assert_eq!(
            (actual.state, actual.presence, actual.since),
            (ActualLrpState::Unclaimed, Presence::Ordinary, NOW_NS)
        );
        assert_eq!(
            db.store.actual_lrp_index(&guid("web"), actual.key.index).await.unwrap().ordinary.as_ref(),
            Some(actual)
        );
    }
}

/// Ordinary rows a removed LRP of the same guid left behind are kept, not duplicated (as the
/// single desire keeps them).
pub async fn desire_lrps_keeps_instances_a_removed_lrp_left_behind(db: &TestDb) {
    let domain = DomainName::parse("cf-apps").unwrap();
    db.store.create_unclaimed_actual_lrps(&guid("left"), &domain, &[1], NOW_NS - 5).await.unwrap();
    let outcomes = db.store.desire_lrps(vec![desired("left", "cf-apps", 3)], NOW_NS).await.unwrap();
    let created = outcomes.into_iter().next().unwrap().1.unwrap();
    let indices: Vec<i32> = created.iter().map(|a| a.key.index).collect();
    assert_eq!(indices, [0, 2]);
    assert_eq!(count(db, "actual_lrps").await, 3);
}

/// More items than one statement binds: every one is stored once.
pub async fn desire_lrps_spans_several_statements(db: &TestDb) {
    let batch: Vec<_> = (0..620).map(|i| desired(&format!("many-{i:04}"), "cf-apps", 1)).collect();
    let outcomes = db.store.desire_lrps(batch, NOW_NS).await.unwrap();
    assert!(outcomes.iter().all(|(_, o)| o.is_ok()));
    assert_eq!(count(db, "desired_lrps").await, 620);
    assert_eq!(count(db, "actual_lrps").await, 620);
}

/// A store whose lease is not held writes nothing of either batch.
pub async fn a_fenced_out_batch_writes_nothing(db: &TestDb) {
    db.store.desire_lrp(&desired("web", "cf-apps", 1), NOW_NS).await.unwrap();
    let fenced = db.store.fenced(Fence { key: "bbs".into(), owner: "nobody".into(), term: 1 });
    let err = fenced.desire_lrps(vec![desired("x", "cf-apps", 2)], NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    let start = (key("web", 0), ikey("i-1", "cell-1"), start_info("10.0.0.1"));
    let err = fenced.start_actual_lrps(&[start], NOW_NS).await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert_eq!(count(db, "desired_lrps").await, 1);
    let row = db.store.actual_lrp_index(&guid("web"), 0).await.unwrap().ordinary.unwrap();
    assert_eq!(row.state, ActualLrpState::Unclaimed);
}

/// Starts apply in request order, each on the rows the earlier ones left: a second instance's
/// start of a RUNNING index is refused alone; a missing row is created RUNNING; the after rows
/// are as stored.
pub async fn start_actual_lrps_applies_each_start_in_order_and_refuses_alone(db: &TestDb) {
    db.store.desire_lrps(vec![desired("p0", "cf-apps", 2), desired("p1", "cf-apps", 1)], NOW_NS).await.unwrap();
    let starts = [
        (key("p0", 0), ikey("i-a", "cell-1"), start_info("10.0.0.1")),
        (key("p0", 0), ikey("i-b", "cell-1"), start_info("10.0.0.1")),
        (key("p1", 0), ikey("i-c", "cell-1"), start_info("10.0.0.1")),
        (key("p9", 0), ikey("i-d", "cell-1"), start_info("10.0.0.1")),
        (key("p0", 1), ikey("i-e", "cell-1"), start_info("10.0.0.1")),
    ];
    let outcomes = db.store.start_actual_lrps(&starts, NOW_NS + 10).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let err = outcomes[1].as_ref().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ActualLrpCannotBeStarted, "{err}");
    for (i, (k, instance, _)) in starts.iter().enumerate().filter(|(i, _)| *i != 1) {
        let change = written(&outcomes[i]);
        assert!(change.changed(), "start {i}");
        let stored = db.store.actual_lrp_index(&k.process_guid, k.index).await.unwrap();
        assert_eq!(change.after, stored, "start {i}");
        let row = stored.ordinary.unwrap();
        assert_eq!((row.state, row.instance_key.as_ref()), (ActualLrpState::Running, Some(instance)));
        assert_eq!(row.since, NOW_NS + 10);
    }
    assert_eq!(written(&outcomes[3]).before.ordinary, None, "p9 had no row");
    assert_eq!(written(&outcomes[0]).after.ordinary.as_ref().unwrap().modification_tag.index, 1);
}

/// A start that changes nothing (the same instance with the same fields) writes nothing: its
/// outcome says so and the row's tag does not move.
pub async fn start_actual_lrps_writes_nothing_for_a_re_assert(db: &TestDb) {
    db.store.desire_lrps(vec![desired("p0", "cf-apps", 1)], NOW_NS).await.unwrap();
    let start = (key("p0", 0), ikey("i-a", "cell-1"), start_info("10.0.0.1"));
    db.store.start_actual_lrps(std::slice::from_ref(&start), NOW_NS + 1).await.unwrap();
    let before = db.store.actual_lrp_index(&guid("p0"), 0).await.unwrap();
    let outcomes = db.store.start_actual_lrps(&[start.clone(), start], NOW_NS + 2).await.unwrap();
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), None, "a re-assert changes nothing");
    }
    assert_eq!(db.store.actual_lrp_index(&guid("p0"), 0).await.unwrap(), before);
}

/// Where the database locks rows (not SQLite: every write waits for its one writer), `p0`
/// index 0 RUNNING on `cell-1`, and the start that made it so.
async fn running_where_rows_lock(
    db: &TestDb,
) -> Option<(ActualLrpKey, proto::models::ActualLrpInstanceKey, db::sql::actual_lrps::StartInfo)> {
    if db.store.backend() == db::Backend::Sqlite {
        return None;
    }
    db.store.desire_lrps(vec![desired("p0", "cf-apps", 1)], NOW_NS).await.unwrap();
    let start = (key("p0", 0), ikey("i-a", "cell-1"), start_info("10.0.0.1"));
    db.store.start_actual_lrps(std::slice::from_ref(&start), NOW_NS + 1).await.unwrap();
    Some(start)
}

/// A re-assert reads its index without locking it, so it is answered while another
/// transaction holds the row locked; a start that changes the row waits for the lock. (SQLite
/// has no row locks: every write waits for the database's one writer, so this checks nothing
/// there.)
pub async fn start_actual_lrps_answers_a_re_assert_without_waiting_for_row_locks(db: &TestDb) {
    let Some(start) = running_where_rows_lock(db).await else {
        return;
    };

    let mut holder = db.store.pool().begin().await.unwrap();
    db.store
        .backend()
        .query("SELECT process_guid FROM actual_lrps WHERE process_guid = ? FOR UPDATE")
        .bind("p0")
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    re_assert_answered_and_change_waits(&db.store, &start, holder, "the row another transaction locked").await;
}

/// While `holder` is open, the re-assert `start` through `store` is answered without changing
/// anything, and a start that moves the instance waits; once `holder` rolls back, that start
/// changes the row. `held` names what `holder` holds, for the failure messages.
async fn re_assert_answered_and_change_waits(
    store: &db::Store,
    start: &(ActualLrpKey, proto::models::ActualLrpInstanceKey, db::sql::actual_lrps::StartInfo),
    holder: sqlx::Transaction<'static, sqlx::Any>,
    held: &str,
) {
    // Bounds a wait that never ends without the holder's end, not a speed.
    let bound = std::time::Duration::from_secs(30);
    let reassert = tokio::time::timeout(bound, store.start_actual_lrps(std::slice::from_ref(start), NOW_NS + 2));
    let reassert = reassert.await;
    let moved = (key("p0", 0), ikey("i-a", "cell-1"), start_info("10.0.0.2"));
    let mut change = Box::pin(store.start_actual_lrps(std::slice::from_ref(&moved), NOW_NS + 3));
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut change).await.is_err();
    holder.rollback().await.unwrap();

    let outcomes = reassert.unwrap_or_else(|_| panic!("the re-assert waited for {held}")).unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap(), &None, "the re-assert changed nothing");
    assert!(waited, "a start that changes the row did not wait for {held}");
    let outcomes = change.await.unwrap();
    assert!(written(&outcomes[0]).changed());
}

/// A batch of re-asserts is a read, not a write transaction: it is answered while the writers
/// are held up (here the leader's lease row locked, as its renewal locks it; on SQLite the one
/// write transaction taken), where a start that changes its row waits for them: it checks the
/// fence, which reads that row, before it commits.
pub async fn start_actual_lrps_answers_re_asserts_without_a_write_transaction(db: &TestDb) {
    db.store.desire_lrps(vec![desired("p0", "cf-apps", 1)], NOW_NS).await.unwrap();
    let start = (key("p0", 0), ikey("i-a", "cell-1"), start_info("10.0.0.1"));
    db.store.start_actual_lrps(std::slice::from_ref(&start), NOW_NS + 1).await.unwrap();
    let ttl = std::time::Duration::from_secs(600);
    let lease = db.store.acquire_lease("bbs", "bbs-a", "", db::sql::leases::LeaseType::Lock, ttl).await.unwrap();
    let leader = db.store.fenced(Fence { key: "bbs".into(), owner: "bbs-a".into(), term: lease.term });

    let mut holder = db.store.pool().begin().await.unwrap();
    let hold = match db.store.backend() {
        db::Backend::Sqlite => "UPDATE leases SET value = value WHERE lease_key = ?",
        db::Backend::Postgres | db::Backend::Mysql => "SELECT term FROM leases WHERE lease_key = ? FOR UPDATE",
    };
    db.store.backend().query(hold).bind("bbs").execute(&mut *holder).await.unwrap();
    re_assert_answered_and_change_waits(&leader, &start, holder, "the writers (the fence)").await;
}

/// A start plans on rows read without locks, then locks them: when another transaction wrote
/// them in between (here: gave the instance to another cell), the start is planned again on
/// the rows as locked and refused, instead of overwriting them. (SQLite: see above.)
pub async fn start_actual_lrps_plans_again_on_rows_written_since_its_read(db: &TestDb) {
    if running_where_rows_lock(db).await.is_none() {
        return;
    }

    // Written, not yet committed: the batch's first read still sees the instance on cell-1.
    let mut writer = db.store.pool().begin().await.unwrap();
    db.store
        .backend()
        .query(
            "UPDATE actual_lrps SET instance_guid = 'i-b', cell_id = 'cell-2', \
             modification_tag_index = modification_tag_index + 1 WHERE process_guid = ?",
        )
        .bind("p0")
        .execute(&mut *writer)
        .await
        .unwrap();
    let moved = (key("p0", 0), ikey("i-a", "cell-1"), start_info("10.0.0.2"));
    let mut batch = Box::pin(db.store.start_actual_lrps(std::slice::from_ref(&moved), NOW_NS + 2));
    // The batch waits for the writer's lock (on a slow machine it may not have read yet; the
    // outcome is the same then).
    assert!(tokio::time::timeout(std::time::Duration::from_millis(300), &mut batch).await.is_err());
    writer.commit().await.unwrap();

    let outcomes = batch.await.unwrap();
    assert!(outcomes[0].is_err(), "the start overwrote the row another cell holds: {:?}", outcomes[0]);
    let row = db.store.actual_lrp_index(&guid("p0"), 0).await.unwrap().ordinary.unwrap();
    assert_eq!(row.instance_key.as_ref().map(|k| k.cell_id.as_str()), Some("cell-2"));
}

/// The change of a start that wrote its index (a refusal or a re-assert fails the test).
fn written(outcome: &db::sql::actual_lrps::StartOutcome) -> &IndexChange<()> {
    match outcome {
        Ok(Some(change)) => change,
        Ok(None) => panic!("the start changed nothing"),
        Err(e) => panic!("the start was refused: {e}"),
    }
}

/// Every row of the table, by primary key.
async fn all_rows(db: &TestDb) -> BTreeMap<(String, i32, Presence), ActualLrp> {
    let rows = db.store.actual_lrps(&ActualLrpFilter::default()).await.unwrap();
    rows.into_iter().map(|r| ((r.key.process_guid.as_str().to_owned(), r.key.index, r.presence), r)).collect()
}

/// The start of `many` index `n`: every field the start writes differs from one index to the
/// next, so a value bound to the wrong row or column shows.
fn numbered_start(n: i32) -> (ActualLrpKey, proto::models::ActualLrpInstanceKey, db::sql::actual_lrps::StartInfo) {
    let mut info = start_info(&format!("10.1.{}.{}", n / 200, n % 200));
    info.net_info.ports[0].host_port = 61000 + n as u32;
    info.internal_routes = vec![format!("r{n}.apps.internal")];
    info.metric_tags = BTreeMap::from([("index".to_owned(), n.to_string())]);
    info.routable = n % 3 != 0;
    info.availability_zone = format!("z{n}");
    (key("many", n), ikey(&format!("i-{n}"), &format!("cell-{}", n % 7)), info)
}

/// Gives the index an EVACUATING RUNNING copy of its UNCLAIMED ordinary row.
async fn add_evacuating(db: &TestDb, process_guid: &str, index: i32) {
    db.store
        .modify_index("test evacuate", &guid(process_guid), index, |rows| {
            let mut copy = rows.ordinary.clone().expect("an ordinary row");
            copy.state = ActualLrpState::Running;
            copy.instance_key = Some(ikey("i-old", "cell-old"));
            copy.net_info = Some(start_info("10.9.9.9").net_info);
            copy.modification_tag = ModificationTag::default();
            rows.evacuating = Some(copy);
            Ok(())
        })
        .await
        .unwrap();
}

/// 450 starts (the updates span three statements) of UNCLAIMED rows, 210 of them with an
/// EVACUATING copy (the deletes span two): each row is stored RUNNING with its own instance key
/// and fields and the next modification tag, exactly as its outcome says; its copy is gone;
/// the rows no start names are untouched.
pub async fn start_actual_lrps_writes_more_rows_than_one_statement_holds(db: &TestDb) {
    let domain = DomainName::parse("cf-apps").unwrap();
    let indices: Vec<i32> = (0..460).collect();
    db.store.create_unclaimed_actual_lrps(&guid("many"), &domain, &indices, NOW_NS).await.unwrap();
    db.store.create_unclaimed_actual_lrps(&guid("other"), &domain, &[0, 1, 2], NOW_NS).await.unwrap();
    // The EVACUATING copies, in one statement rather than 210 transactions.
    let copy = format!(
        "INSERT INTO actual_lrps SELECT process_guid, instance_index, {}, domain, 'RUNNING', 'i-old', 'cell-old', \
         placement_error, crash_count, crash_reason, since, net_info, internal_routes, metric_tags, routable, \
         availability_zone, modification_tag_epoch, modification_tag_index FROM actual_lrps \
         WHERE process_guid = 'many' AND instance_index < 420 AND instance_index % 2 = 0",
        Presence::Evacuating.as_i32()
    );
    db.store.backend().query(&copy).execute(db.store.pool()).await.unwrap();
    let before = all_rows(db).await;
    assert_eq!(before.len(), 460 + 3 + 210);

    let starts: Vec<_> = (0..450).map(numbered_start).collect();
    let outcomes = db.store.start_actual_lrps(&starts, NOW_NS + 10).await.unwrap();
    let after = all_rows(db).await;
    assert_eq!(after.len(), 460 + 3, "every EVACUATING copy is deleted");
    for (n, ((k, instance, info), outcome)) in starts.iter().zip(&outcomes).enumerate() {
        let change = outcome.as_ref().unwrap_or_else(|e| panic!("start {n}: {e}"));
        let change = change.as_ref().unwrap_or_else(|| panic!("start {n} changed nothing"));
        let stored = &after[&("many".to_owned(), k.index, Presence::Ordinary)];
        let old = &before[&("many".to_owned(), k.index, Presence::Ordinary)];
        assert_eq!(change.after, IndexRows { ordinary: Some(stored.clone()), ..Default::default() }, "start {n}");
        assert_eq!(change.before.ordinary.as_ref(), Some(old), "start {n}");
        assert_eq!(change.before.evacuating.is_some(), n < 420 && n % 2 == 0, "start {n}");
        assert_eq!((stored.state, stored.instance_key.as_ref()), (ActualLrpState::Running, Some(instance)));
        assert_eq!(stored.net_info.as_ref(), Some(&info.net_info), "start {n}");
        assert_eq!(
            (&stored.internal_routes, &stored.metric_tags, stored.routable, &stored.availability_zone),
            (&info.internal_routes, &info.metric_tags, info.routable, &info.availability_zone),
            "start {n}"
        );
        assert_eq!(stored.since, NOW_NS + 10);
        assert_eq!(stored.modification_tag, old.modification_tag.incremented(), "start {n}");
    }
    for (pk, row) in &after {
        if pk.0 != "many" || pk.1 >= 450 {
            assert_eq!(Some(row), before.get(pk), "{pk:?} is untouched");
        }
    }
}

/// A refused start, a re-assert and two starts of the same index in one batch: the refused and
/// the unchanged index are not written; the second start of an index applies on the first's
/// rows, and what is stored is the last one's after (two modification-tag steps).
pub async fn start_actual_lrps_mixes_refused_unchanged_and_repeated_starts(db: &TestDb) {
    db.store.desire_lrps(vec![desired("p", "cf-apps", 4)], NOW_NS).await.unwrap();
    let running = [
        (key("p", 1), ikey("i-1", "cell-1"), start_info("10.0.0.1")),
        (key("p", 2), ikey("i-2", "cell-1"), start_info("10.0.0.2")),
    ];
    db.store.start_actual_lrps(&running, NOW_NS + 1).await.unwrap();
    add_evacuating(db, "p", 3).await;
    let before = all_rows(db).await;

    let starts = [
        (key("p", 0), ikey("i-a", "cell-1"), start_info("10.0.0.5")),
        (key("p", 1), ikey("i-x", "cell-1"), start_info("10.0.0.6")),
        running[1].clone(),
        (key("p", 0), ikey("i-a", "cell-1"), start_info("10.0.0.9")),
        (key("p", 3), ikey("i-c", "cell-1"), start_info("10.0.0.3")),
    ];
    let outcomes = db.store.start_actual_lrps(&starts, NOW_NS + 10).await.unwrap();
    let err = outcomes[1].as_ref().unwrap_err();
    assert_eq!(err.code(), ErrorCode::ActualLrpCannotBeStarted, "{err}");
    assert_eq!(outcomes[2].as_ref().unwrap(), &None, "a re-assert");
    let (first, second) = (written(&outcomes[0]), written(&outcomes[3]));
    assert_eq!(second.before, first.after, "the second start sees the first's rows");
    let stored = db.store.actual_lrp_index(&guid("p"), 0).await.unwrap();
    assert_eq!(stored, second.after);
    let row = stored.ordinary.unwrap();
    assert_eq!(row.net_info.unwrap().address, "10.0.0.9");
    let old = &before[&("p".to_owned(), 0, Presence::Ordinary)];
    assert_eq!(row.modification_tag, old.modification_tag.incremented().incremented());
    let third = db.store.actual_lrp_index(&guid("p"), 3).await.unwrap();
    assert_eq!(third, written(&outcomes[4]).after);
    assert_eq!(third.evacuating, None);
    assert_eq!(third.ordinary.unwrap().instance_key, Some(ikey("i-c", "cell-1")));

    let after = all_rows(db).await;
    for index in [1, 2] {
        let pk = ("p".to_owned(), index, Presence::Ordinary);
        assert_eq!(after.get(&pk), before.get(&pk), "index {index} is not written");
    }
}

/// A start whose index would be stored invalid (RUNNING without an address) is refused with
/// `Invalid` alone: nothing of its index is written (its EVACUATING copy stays), and the starts
/// around it are stored.
pub async fn start_actual_lrps_refuses_an_invalid_index_alone(db: &TestDb) {
    db.store.desire_lrps(vec![desired("p", "cf-apps", 3)], NOW_NS).await.unwrap();
    add_evacuating(db, "p", 1).await;
    let before = db.store.actual_lrp_index(&guid("p"), 1).await.unwrap();
    let starts = [
        (key("p", 0), ikey("i-a", "cell-1"), start_info("10.0.0.1")),
        (key("p", 1), ikey("i-b", "cell-1"), start_info("")),
        (key("p", 2), ikey("i-c", "cell-1"), start_info("10.0.0.3")),
    ];
    let outcomes = db.store.start_actual_lrps(&starts, NOW_NS + 10).await.unwrap();
    let err = outcomes[1].as_ref().unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert_eq!(db.store.actual_lrp_index(&guid("p"), 1).await.unwrap(), before);
    for index in [0, 2] {
        let stored = db.store.actual_lrp_index(&guid("p"), index).await.unwrap();
        assert_eq!(stored, written(&outcomes[index as usize]).after);
        assert_eq!(stored.ordinary.unwrap().state, ActualLrpState::Running);
    }
}
