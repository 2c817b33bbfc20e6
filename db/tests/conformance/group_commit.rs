//! Group commit (`db::group_commit`): concurrent single-record writes share a transaction, a
//! refused write fails alone, and a write abandoned half-way commits nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use db::testing::{TestDb, test_keys};
use db::{Error, Fence, Store, StoreOptions};
use proto::error::ErrorCode;
use proto::models::{ActualLrpInstanceKey, ActualLrpState, CellId, DomainName, InstanceGuid, ProcessGuid, TaskGuid};

use super::NOW_NS;
use super::tasks::definition;

macro_rules! group_commit_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            group_commit,
            [
                concurrent_writes_commit_together_and_a_refused_one_fails_alone,
                a_write_dropped_in_its_body_commits_nothing_and_its_neighbour_commits,
                a_write_dropped_in_its_body_alone_releases_its_locks_at_once,
                a_member_whose_batch_was_poisoned_after_its_body_runs_again_and_commits,
                concurrent_index_writes_share_a_transaction_and_a_refused_one_fails_alone,
                concurrent_writes_of_one_index_apply_in_turn,
                concurrent_index_writes_of_a_fenced_out_store_are_all_fenced_out,
                task_writes_of_one_batch_apply_in_turn,
                the_next_batch_begins_while_the_lane_is_busy,
                a_retried_batch_does_not_hold_the_lane_while_it_waits_for_a_connection,
                a_batch_long_waiting_for_the_turn_does_not_wait_in_an_open_transaction,
            ]
        );
    };
}

const WAIT: Duration = Duration::from_secs(20);

fn task_guid(s: String) -> TaskGuid {
    TaskGuid::parse(s).unwrap()
}

async fn domain_names(store: &Store) -> Vec<String> {
    let mut names: Vec<String> =
        store.fresh_domains(0).await.unwrap().into_iter().map(|d| d.name.as_str().to_owned()).collect();
    names.sort();
    names
}

/// A grouped write whose body inserts domain `name` (expiring far in the future) and, when
/// `stall` is set, then waits forever (a caller cancelled or stuck in the middle of its body).
async fn insert_domain(store: Store, name: &'static str, stall: Option<Arc<AtomicBool>>) -> db::Result<()> {
    store
        .write_grouped("test insert domain", move |tx| {
            let stall = stall.clone();
            Box::pin(async move {
                tx.execute_for_test(&format!(
                    "INSERT INTO domains (domain, expire_time) VALUES ('{name}', {})",
                    i64::MAX
                ))
                .await?;
                // Stalls only on the first run (`swap` clears it): a re-run after a retry goes on.
                if stall.is_some_and(|s| s.swap(false, Ordering::SeqCst)) {
                    futures::future::pending::<()>().await;
                }
                Ok(())
            })
        })
        .await
}

/// 40 concurrent task desires, 8 of them for guids that exist: those 8 fail with `Exists`, the
/// 32 others are all stored, and they were committed in fewer transactions than writes.
pub async fn concurrent_writes_commit_together_and_a_refused_one_fails_alone(db: &TestDb) {
    let domain = DomainName::parse("grouped").unwrap();
    for i in 0..8 {
        db.store.desire_task(&task_guid(format!("taken-{i}")), &domain, &definition(), NOW_NS).await.unwrap();
    }
    let before = db.store.group_commit_stats();
    let guids: Vec<TaskGuid> =
        (0..32).map(|i| task_guid(format!("new-{i}"))).chain((0..8).map(|i| task_guid(format!("taken-{i}")))).collect();
    let writes = guids.iter().map(|g| {
        let store = db.store.clone();
        let (g, domain) = (g.clone(), domain.clone());
        tokio::spawn(async move { store.desire_task(&g, &domain, &definition(), NOW_NS).await })
    });
    let results: Vec<_> = futures::future::join_all(writes).await.into_iter().map(Result::unwrap).collect();
    for (guid, result) in guids.iter().zip(&results) {
        if guid.as_str().starts_with("taken-") {
            assert!(matches!(result, Err(Error::Exists { .. })), "{guid}: {result:?}");
        } else {
            assert!(result.is_ok(), "{guid}: {result:?}");
        }
    }
    let stored = db.store.tasks(&Default::default()).await.unwrap();
    assert_eq!(stored.len(), 40, "8 taken and 32 new");
    let after = db.store.group_commit_stats();
    let (batches, members) = (after.batches - before.batches, after.members - before.members);
    assert_eq!(members, 40, "every write went through a committed batch");
    assert!(batches < members, "{batches} batches for {members} concurrent writes");
}

/// A store on `db` with one group-commit lane, so that the writes of a test share its batches.
async fn one_lane(db: &TestDb) -> Store {
    let options = StoreOptions { keys: test_keys(), group_commit_lanes: 1, ..StoreOptions::default() };
    Store::connect(&db.url, options).await.unwrap()
}

/// A write whose caller goes away in the middle of its body (after its INSERT) commits nothing,
/// and the write queued behind it commits.
pub async fn a_write_dropped_in_its_body_commits_nothing_and_its_neighbour_commits(db: &TestDb) {
    let store = one_lane(db).await;
    let stalled = tokio::spawn(insert_domain(store.clone(), "abandoned", Some(Arc::new(AtomicBool::new(true)))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let neighbour = tokio::spawn(insert_domain(store.clone(), "neighbour", None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!neighbour.is_finished(), "the neighbour waits for the slot");
    stalled.abort();
    let outcome = tokio::time::timeout(WAIT, neighbour).await.expect("the neighbour finishes").unwrap();
    outcome.expect("the neighbour commits");
    assert_eq!(domain_names(&db.store).await, ["neighbour"]);
    store.close().await;
}

/// A write whose caller goes away in the middle of its body, with no other write coming, is
/// rolled back at once: its row lock does not outlive it (a write of the same row by another
/// store, one transaction each, goes through).
pub async fn a_write_dropped_in_its_body_alone_releases_its_locks_at_once(db: &TestDb) {
    let store = one_lane(db).await;
    let stalled = tokio::spawn(insert_domain(store.clone(), "abandoned", Some(Arc::new(AtomicBool::new(true)))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stalled.abort();
    // The same key, from the test database's own store: it waits for the abandoned batch's lock
    // until that batch is rolled back (well before the server's idle-transaction timeout).
    let again = tokio::time::timeout(Duration::from_secs(3), insert_domain(db.store.clone(), "abandoned", None)).await;
    again.expect("the abandoned batch still holds its lock").expect("the second insert commits");
    assert_eq!(domain_names(&db.store).await, ["abandoned"]);
    store.close().await;
}

/// A member that finished its body waits for the next member to commit the batch; that member
/// goes away in the middle of its body. The batch is rolled back, and the first member runs its
/// body again in a new batch and commits: nothing of the abandoned write, all of the other.
pub async fn a_member_whose_batch_was_poisoned_after_its_body_runs_again_and_commits(db: &TestDb) {
    let store = one_lane(db).await;
    // The blocker holds the slot, stalled in its body, while `first` and `second` queue.
    let blocker = tokio::spawn(insert_domain(store.clone(), "blocker", Some(Arc::new(AtomicBool::new(true)))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Queued behind the blocker, in this order.
    let first = tokio::spawn(insert_domain(store.clone(), "first", None));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(insert_domain(store.clone(), "second", Some(Arc::new(AtomicBool::new(true)))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The blocker goes away: its batch is rolled back; `first` runs in a new batch and, with
    // `second` queued, leaves the commit to it; `second` stalls in its body.
    blocker.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!first.is_finished(), "first waits for its batch to end");
    second.abort();
    let outcome = tokio::time::timeout(WAIT, first).await.expect("first finishes").unwrap();
    outcome.expect("first commits after running again");
    assert_eq!(domain_names(&db.store).await, ["first"]);
    store.close().await;
}

fn instance(guid: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(guid).unwrap(),
        cell_id: CellId::parse("cell-1").unwrap(),
    }
}

/// `count` UNCLAIMED instances of LRP `guid`.
async fn unclaimed(db: &TestDb, guid: &str, count: i32) -> ProcessGuid {
    let (guid, domain) = (ProcessGuid::parse(guid).unwrap(), DomainName::parse("grouped").unwrap());
    let indices: Vec<i32> = (0..count).collect();
    db.store.create_unclaimed_actual_lrps(&guid, &domain, &indices, NOW_NS).await.unwrap();
    guid
}

/// 42 concurrent claims of 42 indices: 8 of them held by another instance (refused), 2 of
/// them missing (not found). Those fail alone; the 32 others are stored CLAIMED and answered
/// with the rows before and after; and they were committed in fewer transactions than writes.
pub async fn concurrent_index_writes_share_a_transaction_and_a_refused_one_fails_alone(db: &TestDb) {
    let guid = unclaimed(db, "coalesced", 40).await;
    for i in 0..8 {
        db.store.claim_actual_lrp(&guid, i, &instance("held"), NOW_NS).await.unwrap();
    }
    let before = db.store.group_commit_stats();
    let indices: Vec<i32> = (0..40).chain([100, 101]).collect();
    let writes = indices.iter().map(|&i| {
        let (store, guid) = (db.store.clone(), guid.clone());
        tokio::spawn(async move { store.claim_actual_lrp(&guid, i, &instance(&format!("ig-{i}")), NOW_NS).await })
    });
    let results: Vec<_> = futures::future::join_all(writes).await.into_iter().map(Result::unwrap).collect();
    for (&i, result) in indices.iter().zip(&results) {
        match i {
            0..8 => assert!(
                matches!(result, Err(Error::Refused { code: ErrorCode::ActualLrpCannotBeClaimed, .. })),
                "{i}: {result:?}"
            ),
            100.. => assert!(matches!(result, Err(Error::NotFound { .. })), "{i}: {result:?}"),
            _ => {
                let change = result.as_ref().unwrap_or_else(|e| panic!("{i}: {e}"));
                let (old, new) = (change.before.ordinary.as_ref().unwrap(), change.after.ordinary.as_ref().unwrap());
                assert_eq!((old.state, new.state), (ActualLrpState::Unclaimed, ActualLrpState::Claimed), "{i}");
                assert_eq!(new.modification_tag.index, old.modification_tag.index + 1, "{i}");
            }
        }
    }
    for i in 0..40 {
        let row = db.store.actual_lrp_index(&guid, i).await.unwrap().ordinary.unwrap();
        let holder = if i < 8 { "held".to_owned() } else { format!("ig-{i}") };
        assert_eq!(row.state, ActualLrpState::Claimed, "{i}");
        assert_eq!(row.instance_key.unwrap().instance_guid.as_str(), holder, "{i}");
    }
    let after = db.store.group_commit_stats();
    let (batches, members) = (after.batches - before.batches, after.members - before.members);
    assert_eq!(members, 42, "every write went through a committed batch");
    assert!(batches < members, "{batches} batches for {members} concurrent writes");
}

/// Runs `statements` in a transaction of `db`'s own store (whose batches are not the test's)
/// and holds it, with its locks, until `release` is notified.
fn hold(db: &TestDb, statements: Vec<String>, release: Arc<tokio::sync::Notify>) -> tokio::task::JoinHandle<()> {
    let store = db.store.clone();
    tokio::spawn(async move {
        store
            .write("test hold", move |tx| {
                let (release, statements) = (release.clone(), statements.clone());
                Box::pin(async move {
                    for sql in &statements {
                        tx.execute_for_test(sql).await?;
                    }
                    release.notified().await;
                    Ok(())
                })
            })
            .await
            .unwrap();
    })
}

/// Locks the rows of index (`guid`, `index`) from a transaction of `db`'s own store until
/// `release` is notified.
fn lock_rows(
    db: &TestDb,
    guid: &ProcessGuid,
    index: i32,
    release: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    let sql =
        format!("UPDATE actual_lrps SET since = since WHERE process_guid = '{guid}' AND instance_index = {index}");
    hold(db, vec![sql], release)
}

/// 20 concurrent claims of one index by 20 instances, queued behind a busy lane so that they
/// share one batch: each is decided on the rows the writes before it left, so exactly one
/// wins, the row carries the winner's key, and it was written once.
pub async fn concurrent_writes_of_one_index_apply_in_turn(db: &TestDb) {
    let guid = unclaimed(db, "contended", 2).await;
    let store = one_lane(db).await;
    // The lane's first batch, a write of index 1 that changes nothing, waits for a lock of
    // another transaction; the claims arrive meanwhile and wait for the next batch, together.
    let release = Arc::new(tokio::sync::Notify::new());
    let lock = lock_rows(db, &guid, 1, release.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = store.group_commit_stats();
    let (held, at) = (store.clone(), guid.clone());
    let holder = tokio::spawn(async move { held.modify_index("test hold", &at, 1, |_| Ok(())).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let (store, guid) = (store.clone(), guid.clone());
            tokio::spawn(async move { store.claim_actual_lrp(&guid, 0, &instance(&format!("ig-{i}")), NOW_NS).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    lock.await.unwrap();
    let results: Vec<_> = futures::future::join_all(writes).await.into_iter().map(Result::unwrap).collect();
    let winners: Vec<usize> = (0..20).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        if i != winners[0] {
            assert!(
                matches!(result, Err(Error::Refused { code: ErrorCode::ActualLrpCannotBeClaimed, .. })),
                "{i}: {result:?}"
            );
        }
    }
    let row = db.store.actual_lrp_index(&guid, 0).await.unwrap().ordinary.unwrap();
    assert_eq!(row.instance_key.unwrap().instance_guid.as_str(), format!("ig-{}", winners[0]));
    assert_eq!(row.modification_tag.index, 1, "one write of the row");
    holder.await.unwrap();
    let after = store.group_commit_stats();
    // Coalesced: the hold's batch, then one of the 20. MySQL's savepoint batch takes them all.
    let (batches, members) = (after.batches - before.batches, after.members - before.members);
    assert_eq!(members, 21);
    assert!(batches <= 2, "{batches} batches");
    store.close().await;
}

/// Concurrent claims through a store whose lease is not held are all fenced out, and nothing
/// is written.
pub async fn concurrent_index_writes_of_a_fenced_out_store_are_all_fenced_out(db: &TestDb) {
    let guid = unclaimed(db, "fenced", 10).await;
    let fenced = db.store.fenced(Fence { key: "bbs".into(), owner: "nobody".into(), term: 1 });
    let writes = (0..10).map(|i| {
        let (store, guid) = (fenced.clone(), guid.clone());
        tokio::spawn(async move { store.claim_actual_lrp(&guid, i, &instance(&format!("ig-{i}")), NOW_NS).await })
    });
    for result in futures::future::join_all(writes).await.into_iter().map(Result::unwrap) {
        assert!(matches!(result, Err(Error::Fenced { .. })), "{result:?}");
    }
    for i in 0..10 {
        let row = db.store.actual_lrp_index(&guid, i).await.unwrap().ordinary.unwrap();
        assert_eq!(row.state, ActualLrpState::Unclaimed, "{i}");
    }
}

/// Task writes queued behind a busy lane share one batch and apply in arrival order, each on
/// the task as the writes before it left it: a desire, its start, its completion, a second
/// desire of the same guid (refused, it exists), a cancel of a missing task (not found). The
/// task is stored as the last of them left it.
pub async fn task_writes_of_one_batch_apply_in_turn(db: &TestDb) {
    let domain = DomainName::parse("grouped").unwrap();
    let blocker = task_guid("blocker".into());
    db.store.desire_task(&blocker, &domain, &definition(), NOW_NS).await.unwrap();
    let store = one_lane(db).await;
    // The lane's first batch, a start of `blocker`, waits for a lock of another transaction.
    let release = Arc::new(tokio::sync::Notify::new());
    let lock =
        hold(db, vec!["UPDATE tasks SET updated_at = updated_at WHERE guid = 'blocker'".into()], release.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = store.group_commit_stats();
    let cell = CellId::parse("cell-1").unwrap();
    let (s, c) = (store.clone(), cell.clone());
    let first = tokio::spawn(async move { s.start_task(&task_guid("blocker".into()), &c, NOW_NS + 1).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let guid = task_guid("t1".into());
    // In this order, each queued before the next is sent.
    let mut queued = Vec::new();
    for step in 0..5 {
        let (s, g, c, d) = (store.clone(), guid.clone(), cell.clone(), domain.clone());
        queued.push(tokio::spawn(async move {
            match step {
                0 => s.desire_task(&g, &d, &definition(), NOW_NS).await.map(|_| "desired".to_owned()),
                1 => s.start_task(&g, &c, NOW_NS + 2).await.map(|change| format!("started {}", change.should_start)),
                2 => s.complete_task(&g, &c, false, "", "done", NOW_NS + 3).await.map(|_| "completed".to_owned()),
                3 => s.desire_task(&g, &d, &definition(), NOW_NS).await.map(|_| "desired again".to_owned()),
                _ => s.cancel_task(&task_guid("missing".into()), NOW_NS).await.map(|_| "cancelled".to_owned()),
            }
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.notify_one();
    lock.await.unwrap();
    let started = first.await.unwrap().unwrap();
    assert!(started.should_start);
    let results: Vec<_> = futures::future::join_all(queued).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(results[0].as_deref().unwrap(), "desired");
    assert_eq!(results[1].as_deref().unwrap(), "started true");
    assert_eq!(results[2].as_deref().unwrap(), "completed");
    assert!(matches!(results[3], Err(Error::Exists { .. })), "{:?}", results[3]);
    assert!(matches!(results[4], Err(Error::NotFound { .. })), "{:?}", results[4]);
    let stored = db.store.task(&guid).await.unwrap();
    assert_eq!(stored.state, proto::models::TaskState::Completed);
    assert_eq!((stored.result.as_str(), stored.cell_id, stored.first_completed_at), ("done", None, NOW_NS + 3));
    let after = store.group_commit_stats();
    // Coalesced: the start's batch, then one of the 5. MySQL's savepoint batch takes them all.
    let (batches, members) = (after.batches - before.batches, after.members - before.members);
    assert_eq!(members, 6);
    assert!(batches <= 2, "{batches} batches");
    store.close().await;
}

/// Claims index 0 of `guid` for instance `ig-0` through `store`, on a task of its own.
fn claim_first(
    store: &Store,
    guid: &ProcessGuid,
) -> tokio::task::JoinHandle<db::Result<db::sql::actual_lrps::IndexChange<()>>> {
    let (store, guid) = (store.clone(), guid.clone());
    tokio::spawn(async move { store.claim_actual_lrp(&guid, 0, &instance("ig-0"), NOW_NS).await })
}

/// On PostgreSQL a batch begins its transaction before the lane's turn is its: while the
/// lane's batch waits (here for a lock of another transaction), a write that arrives meanwhile
/// already has an open transaction waiting for the turn, so the busy batch's successor sends
/// its read the moment the turn is passed, not a `BEGIN` first. (SQLite takes the turn first,
/// and MySQL has no lane: see `db::coalesce`.)
pub async fn the_next_batch_begins_while_the_lane_is_busy(db: &TestDb) {
    if db.store.backend() != db::Backend::Postgres {
        return;
    }
    let guid = unclaimed(db, "prebegun", 2).await;
    let store = one_lane(db).await;
    let idle_in_transaction = || async {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND state = 'idle in transaction'";
        sqlx::query_scalar::<_, i64>(sql).fetch_one(db.store.pool()).await.unwrap()
    };
    let release = Arc::new(tokio::sync::Notify::new());
    let lock = lock_rows(db, &guid, 1, release.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idle_in_transaction().await, 1, "the lock's transaction");
    let (held, at) = (store.clone(), guid.clone());
    let holder = tokio::spawn(async move { held.modify_index("test hold", &at, 1, |_| Ok(())).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let claim = claim_first(&store, &guid);
    let mut begun = 0;
    for _ in 0..50 {
        begun = idle_in_transaction().await;
        if begun == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = !claim.is_finished();
    // Everything is let go before any assertion, so that a failure does not leave the lock held.
    release.notify_one();
    lock.await.unwrap();
    holder.await.unwrap();
    let claimed = tokio::time::timeout(WAIT, claim).await.unwrap().unwrap().unwrap();
    store.close().await;
    assert_eq!(begun, 2, "the lock's transaction and the next batch's, begun while the lane is busy");
    assert!(waited, "the claim waited for the busy lane");
    assert_eq!(claimed.after.ordinary.unwrap().state, ActualLrpState::Claimed);
}

/// On PostgreSQL, a store whose pool has one connection: a batch that must be retried (its
/// insert met a row another transaction inserted meanwhile) gives the lane's turn up before it
/// waits for the connection again, which the next batch's runner, begun while the lane was
/// busy, holds while it waits for the turn. Both writes succeed, the retried one on the row the
/// other transaction committed. (Holding the turn, the retry waited for the pool's timeout and
/// failed.)
pub async fn a_retried_batch_does_not_hold_the_lane_while_it_waits_for_a_connection(db: &TestDb) {
    if db.store.backend() != db::Backend::Postgres {
        return;
    }
    let source = unclaimed(db, "retried-source", 1).await;
    let other = unclaimed(db, "retried-other", 1).await;
    let options = StoreOptions {
        keys: test_keys(),
        group_commit_lanes: 1,
        max_connections: 1,
        acquire_timeout: Duration::from_secs(3),
        ..StoreOptions::default()
    };
    let store = Store::connect(&db.url, options).await.unwrap();
    // Another transaction inserts index 0 of `retried` (a copy of the source's row) and holds it.
    let release = Arc::new(tokio::sync::Notify::new());
    let insert = hold(
        db,
        vec![
            format!(
                "CREATE TEMP TABLE copied ON COMMIT DROP AS SELECT * FROM actual_lrps WHERE process_guid = '{source}'"
            ),
            "UPDATE copied SET process_guid = 'retried'".into(),
            "INSERT INTO actual_lrps SELECT * FROM copied".into(),
        ],
        release.clone(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The lane's batch creates the same row: its insert waits for the other transaction.
    let retried = ProcessGuid::parse("retried").unwrap();
    let (creator, at) = (store.clone(), retried.clone());
    let create = tokio::spawn(async move {
        creator
            .modify_index("test create", &at, 0, |rows| {
                let created = rows.ordinary.is_none();
                if created {
                    let key = proto::models::ActualLrpKey {
                        process_guid: ProcessGuid::parse("retried").unwrap(),
                        index: 0,
                        domain: DomainName::parse("grouped").unwrap(),
                    };
                    rows.ordinary = Some(proto::models::ActualLrp::new_unclaimed(key, "", NOW_NS));
                }
                Ok(created)
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next batch's runner waits for the pool's one connection, then for the turn.
    let claim = claim_first(&store, &other);
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.notify_one();
    insert.await.unwrap();
    let created = tokio::time::timeout(WAIT, create).await.unwrap().unwrap();
    let claimed = tokio::time::timeout(WAIT, claim).await.unwrap().unwrap();
    store.close().await;
    let created = created.expect("the retried batch's write");
    assert!(!created.value, "the retry found the row the other transaction committed");
    assert!(created.before.ordinary.is_some());
    assert_eq!(claimed.expect("the next batch's write").after.ordinary.unwrap().state, ActualLrpState::Claimed);
}

/// On PostgreSQL, the next batch's runner waits for the lane's turn in an open transaction only
/// for a while (a quarter of the idle-transaction timeout): here the lane's batch waits two
/// seconds for another transaction's lock, twice the store's idle-transaction timeout, and the
/// write queued behind it still commits. (Waiting in its transaction, the server ended it after
/// one second and the write failed as UNAVAILABLE.)
pub async fn a_batch_long_waiting_for_the_turn_does_not_wait_in_an_open_transaction(db: &TestDb) {
    if db.store.backend() != db::Backend::Postgres {
        return;
    }
    let guid = unclaimed(db, "long-wait", 2).await;
    let options = StoreOptions {
        keys: test_keys(),
        group_commit_lanes: 1,
        idle_transaction_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let store = Store::connect(&db.url, options).await.unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let lock = lock_rows(db, &guid, 1, release.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (held, at) = (store.clone(), guid.clone());
    let holder = tokio::spawn(async move { held.modify_index("test hold", &at, 1, |_| Ok(())).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let claim = claim_first(&store, &guid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    release.notify_one();
    lock.await.unwrap();
    let held = tokio::time::timeout(WAIT, holder).await.unwrap().unwrap();
    let claimed = tokio::time::timeout(WAIT, claim).await.unwrap().unwrap();
    store.close().await;
    held.expect("the lane's batch");
    assert_eq!(claimed.expect("the write queued behind it").after.ordinary.unwrap().state, ActualLrpState::Claimed);
}
