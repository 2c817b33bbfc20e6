//! The BBS leader keeps its lease under load (issue 12): seeding 50,000 LRPs once starved the
//! lease renewal behind request work until the leader lost its own lease. Here the request pool
//! is fully checked out, more requests queue for it, and busy tasks keep the runtime's workers
//! occupied, for three lease TTLs, on every backend; the leader must keep its lease at the same
//! term throughout.

use std::time::Duration;

use bbs::leader::{BBS_LOCK_KEY, LeaderState, Leadership};
use db::testing::TestDb;
use db::{Backend, StoreOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(2);

/// A query that keeps a connection busy for about a second.
fn slow_query(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "SELECT CAST(1 AS BIGINT) FROM (SELECT pg_sleep(1)) AS s",
        Backend::Mysql => "SELECT CAST(SLEEP(1) AS SIGNED)",
        // No sleep function: count a few million rows instead.
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c"
        }
    }
}

/// Keeps a worker thread busy until `until`, yielding every 20 ms like a CPU-heavy request.
async fn burn_cpu(until: Instant) {
    while Instant::now() < until {
        let slice = Instant::now();
        while slice.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_keeps_its_lease_and_term_while_requests_and_cpu_are_saturated() {
    for backend in Backend::ALL {
        let options =
            StoreOptions { max_connections: 3, acquire_timeout: Duration::from_secs(60), ..Default::default() };
        let Some(db) = TestDb::create_with(backend, options).await else { continue };
        let leadership = Leadership::new(db.store.clone(), "leader".into(), "127.0.0.1:8889".into(), TTL, TTL / 3);
        let stop = CancellationToken::new();
        let election = leadership.clone().spawn(stop.clone());
        let mut changes = leadership.subscribe();
        tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|s| matches!(s, LeaderState::Leading { .. })))
            .await
            .expect("the bbs should win the free lease")
            .expect("the election runs");
        let LeaderState::Leading { fence } = leadership.state() else { unreachable!() };
        changes.mark_unchanged();

        // Three TTLs of load: one request connection checked out and idle, the others running
        // slow queries back to back with 40 more requests queueing for them, and 16 busy tasks
        // on the two runtime workers.
        let held = db.store.pool().acquire().await.expect("check out a request connection");
        let until = Instant::now() + TTL * 3;
        let mut load = JoinSet::new();
        for _ in 0..42 {
            let store = db.store.clone();
            load.spawn(async move {
                while Instant::now() < until {
                    let _ = store.backend().query(slow_query(store.backend())).execute(store.pool()).await;
                }
            });
        }
        for _ in 0..16 {
            load.spawn(burn_cpu(until));
        }
        // Meanwhile the lease, read on a connection of the test's own, is never found expired
        // or taken over (a leader stuck in a renewal would still believe it leads).
        let checker = db.store.dedicated(1, Duration::from_secs(30)).await.expect("open the checker pool").ungated();
        let mut checks = 0;
        while Instant::now() < until {
            match checker.fetch_lease(BBS_LOCK_KEY).await {
                Ok(lease) => assert_eq!((lease.owner.as_str(), lease.term), ("leader", fence.term), "{backend:?}"),
                Err(e) => panic!("{backend:?}: the bbs lease lapsed under load after {checks} checks: {e}"),
            }
            checks += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        checker.close().await;

        assert!(
            !changes.has_changed().unwrap(),
            "{backend:?}: leadership changed under load: {:?}",
            leadership.state()
        );
        assert_eq!(leadership.state(), LeaderState::Leading { fence: fence.clone() }, "{backend:?}");
        drop(held);
        load.abort_all();
        while load.join_next().await.is_some() {}
        let lease = db.store.fetch_lease(BBS_LOCK_KEY).await.expect("the lease is held");
        assert_eq!((lease.owner.as_str(), lease.term), ("leader", fence.term), "{backend:?}");
        // And its fenced writes still commit.
        let writer = leadership.writer().expect("still the leader");
        writer
            .upsert_domain(&proto::models::DomainName::parse("after-load").unwrap(), Duration::ZERO, 1)
            .await
            .unwrap();

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), election).await.expect("the election should stop");
        assert!(
            matches!(db.store.fetch_lease(BBS_LOCK_KEY).await, Err(db::Error::NotFound { .. })),
            "{backend:?}: the lease is released on the way out"
        );
    }
}
