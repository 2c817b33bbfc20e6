//! Availability of the store under load and outage (issue 12):
//!
//! - lease renewals through a dedicated pool keep working while the request pool is fully
//!   checked out and more requests queue for it (every backend);
//! - while the database cannot be reached, requests fail at once with UNAVAILABLE naming
//!   "database unreachable since", and work again once it is back, without a new store
//!   (PostgreSQL and MySQL, reached through a loopback TCP proxy the test stops and restarts;
//!   the shared servers are never stopped. SQLite is a local file and has no network to lose);
//! - a URL naming several servers moves every pool to the next one when the first goes away,
//!   and back (PostgreSQL and MySQL, two proxies to one server; the real primary / standby and
//!   Galera failovers are in tests/tests/multihost).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use db::sql::leases::LeaseType;
use db::testing::TestDb;
use db::{Backend, Error, StoreOptions};
use proto::error::ErrorCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

const LEASE_TTL: Duration = Duration::from_secs(2);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_pool_renews_leases_while_the_request_pool_is_exhausted() {
    for backend in Backend::ALL {
        let options =
            StoreOptions { max_connections: 3, acquire_timeout: Duration::from_secs(60), ..Default::default() };
        let Some(db) = TestDb::create_with(backend, options).await else { continue };
        let leases = db.store.dedicated(2, LEASE_TTL / 3).await.expect("open the lease pool").ungated();
        let first = leases.acquire_lease("bbs", "leader", "addr", LeaseType::Lock, LEASE_TTL).await.unwrap();

        // Saturate the request pool for three TTLs: one connection checked out and idle, the
        // others running slow queries back to back, and 40 more requests queueing for them.
        let held = db.store.pool().acquire().await.expect("check out a request connection");
        let until = Instant::now() + LEASE_TTL * 3;
        let mut load = JoinSet::new();
        for _ in 0..42 {
            let store = db.store.clone();
            load.spawn(async move {
                while Instant::now() < until {
                    let _ = store.backend().query(slow_query(store.backend())).execute(store.pool()).await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The request pool really is exhausted: a request waits.
        let queued = tokio::time::timeout(LEASE_TTL / 3, db.store.now_ms()).await;
        assert!(queued.is_err(), "{backend:?}: the request pool should be exhausted, but a request got through");

        let mut renewals = 0;
        while Instant::now() < until {
            let renewed = tokio::time::timeout(
                LEASE_TTL / 3,
                leases.acquire_lease("bbs", "leader", "addr", LeaseType::Lock, LEASE_TTL),
            )
            .await
            .unwrap_or_else(|_| panic!("{backend:?}: a renewal waited behind the request load"))
            .unwrap_or_else(|e| panic!("{backend:?}: a renewal failed under load: {e}"));
            assert_eq!((renewed.owner.as_str(), renewed.term), ("leader", first.term), "{backend:?}");
            renewals += 1;
            tokio::time::sleep(LEASE_TTL / 3).await;
        }
        assert!(renewals >= 6, "{backend:?}: only {renewals} renewals in three ttls");
        // Slow requests woke the probe, but a busy pool is not an unreachable database.
        assert_eq!(db.store.unreachable_since(), None, "{backend:?}: a busy pool was taken for an outage");
        let lease = leases.fetch_lease("bbs").await.unwrap();
        assert_eq!((lease.owner.as_str(), lease.term), ("leader", first.term), "{backend:?}");

        drop(held);
        load.abort_all();
        while load.join_next().await.is_some() {}
        leases.close().await;
    }
}

/// A loopback TCP proxy to `upstream` that can be stopped (closing every proxied connection)
/// and started again on the same port.
struct Proxy {
    address: SocketAddr,
    upstream: SocketAddr,
    tasks: Option<JoinSet<()>>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let mut proxy =
            Proxy { address: "127.0.0.1:0".parse().unwrap(), upstream, tasks: None, accepted: Default::default() };
        proxy.resume().await;
        proxy
    }

    async fn resume(&mut self) {
        let listener = TcpListener::bind(self.address).await.expect("bind the proxy");
        self.address = listener.local_addr().unwrap();
        let upstream = self.upstream;
        let mut tasks = JoinSet::new();
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let accepted = connections.clone();
        let count = self.accepted.clone();
        tasks.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                accepted.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        // Aborting this task drops the set, which aborts (and closes) every connection.
        tasks.spawn(async move {
            let _keep = connections;
            std::future::pending::<()>().await
        });
        self.tasks = Some(tasks);
    }

    async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// `url` with its `host:port` replaced by `address`.
fn through(url: &str, address: SocketAddr) -> String {
    let start = url.find("://").unwrap() + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host_start = url[start..authority_end].rfind('@').map_or(start, |i| start + i + 1);
    format!("{}{address}{}", &url[..host_start], &url[authority_end..])
}

/// The `host:port` of `url`.
async fn server_address(url: &str) -> SocketAddr {
    let start = url.find("://").unwrap() + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let authority = &url[start..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    tokio::net::lookup_host(host_port).await.unwrap().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_fast_while_the_database_is_unreachable_and_work_again_when_it_is_back() {
    for backend in [Backend::Postgres, Backend::Mysql] {
        let Some(db) = TestDb::create(backend).await else { continue };
        let mut proxy = Proxy::start(server_address(&db.url).await).await;
        // A long acquire timeout: without failing fast, every request would wait this long.
        let options = StoreOptions {
            acquire_timeout: Duration::from_secs(30),
            probe_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let store =
            db::Store::connect(&through(&db.url, proxy.address), options).await.expect("connect through the proxy");
        store.now_ms().await.expect("the database answers through the proxy");

        proxy.stop().await;
        // The first requests find their pooled connections gone, which wakes the probe; within
        // a few seconds the store knows and fails requests at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            match tokio::time::timeout(Duration::from_secs(5), store.now_ms()).await {
                Ok(Err(e)) if e.to_string().contains("database unreachable since") => break e,
                other => eprintln!("{backend:?}: {other:?}"),
            }
            assert!(Instant::now() < deadline, "{backend:?}: the store never noticed the database is unreachable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(matches!(error, Error::Unavailable { .. }), "{backend:?}: {error:?}");
        assert_eq!(error.code(), ErrorCode::Unavailable);
        assert!(store.unreachable_since().is_some(), "{backend:?}");
        // Every kind of request fails at once (well inside the 30 s acquire timeout): reads,
        // listings and writes.
        for _ in 0..5 {
            let started = Instant::now();
            let read = store.now_ms().await.unwrap_err();
            let list = store.fetch_leases(LeaseType::Presence).await.unwrap_err();
            let write = store
                .acquire_lease("cell-1", "rep-1", "{}", LeaseType::Presence, Duration::from_secs(15))
                .await
                .unwrap_err();
            for e in [&read, &list, &write] {
                assert!(e.to_string().contains("database unreachable since"), "{backend:?}: {e}");
                assert_eq!(e.code(), ErrorCode::Unavailable, "{backend:?}: {e}");
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{backend:?}: requests waited {:?}", started.elapsed());
        }

        // The database comes back: the same store works again without a restart.
        proxy.resume().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.now_ms().await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "{backend:?}: the store never recovered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(store.unreachable_since().is_none(), "{backend:?}");
        store
            .acquire_lease("cell-1", "rep-1", "{}", LeaseType::Presence, Duration::from_secs(15))
            .await
            .expect("writes work again");
        store.close().await;
        proxy.stop().await;
    }
}

/// `url` naming the servers `addresses`, in order (a multi-host URL).
fn through_all(url: &str, addresses: &[SocketAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
    through(url, addresses[0]).replacen(&addresses[0].to_string(), &list.join(","), 1)
}

/// Retries `op` until it succeeds, for at most `limit`; returns how long that took.
async fn until_ok<T, F: std::future::Future<Output = db::Result<T>>>(
    what: &str,
    limit: Duration,
    mut op: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), op()).await {
            Ok(Ok(_)) => return started.elapsed(),
            other => {
                assert!(
                    started.elapsed() < limit,
                    "{what}: still failing after {limit:?}: {:?}",
                    other.map(|r| r.err())
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A URL naming two servers (here two proxies to the same database server): the store uses the
/// first, moves every pool (the lease pool too) to the second when the first goes away, says
/// which hosts it tried while neither answers, and comes back when one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_url_moves_to_the_next_server_when_one_goes_away() {
    use std::sync::atomic::Ordering::Relaxed;
    for backend in [Backend::Postgres, Backend::Mysql] {
        let Some(db) = TestDb::create(backend).await else { continue };
        let server = server_address(&db.url).await;
        let mut first = Proxy::start(server).await;
        let mut second = Proxy::start(server).await;
        let options = StoreOptions {
            acquire_timeout: Duration::from_secs(30),
            probe_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let url = through_all(&db.url, &[first.address, second.address]);
        let store = db::Store::connect(&url, options).await.expect("connect to the first host");
        let leases = store.dedicated(1, Duration::from_secs(2)).await.expect("a lease pool").ungated();
        store.now_ms().await.expect("the first host answers");
        leases.acquire_lease("bbs", "leader", "a", LeaseType::Lock, LEASE_TTL * 10).await.expect("a lease");
        assert!(first.accepted.load(Relaxed) > 0, "{backend:?}: nothing went to the first host");
        assert_eq!(second.accepted.load(Relaxed), 0, "{backend:?}: the second host was used before it was needed");

        first.stop().await;
        let moved =
            until_ok("requests after the first host went away", Duration::from_secs(15), || store.now_ms()).await;
        until_ok("lease renewals after the first host went away", Duration::from_secs(15), || {
            leases.acquire_lease("bbs", "leader", "a", LeaseType::Lock, LEASE_TTL * 10)
        })
        .await;
        eprintln!("{backend:?}: requests served by the second host {moved:?} after the first went away");
        assert!(second.accepted.load(Relaxed) > 0, "{backend:?}");
        store
            .acquire_lease("cell-1", "rep-1", "{}", LeaseType::Presence, Duration::from_secs(15))
            .await
            .expect("writes go to the second host");

        // Neither answers: requests fail at once, naming the hosts the probe tried.
        second.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.unreachable_since().is_none() {
            let _ = tokio::time::timeout(Duration::from_secs(2), store.now_ms()).await;
            assert!(Instant::now() < deadline, "{backend:?}: the store never noticed both hosts are gone");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let error = store.now_ms().await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::Unavailable, "{backend:?}: {error}");

        // The first comes back (the second stays away): the store goes back to it on its own.
        first.resume().await;
        until_ok("requests after the first host came back", Duration::from_secs(15), || store.now_ms()).await;
        until_ok("lease renewals after the first host came back", Duration::from_secs(15), || {
            leases.acquire_lease("bbs", "leader", "a", LeaseType::Lock, LEASE_TTL * 10)
        })
        .await;
        assert!(store.unreachable_since().is_none(), "{backend:?}");
        store.close().await;
        leases.close().await;
        first.stop().await;
    }
}

#[test]
fn multi_host_urls_list_every_proxy() {
    let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:4001".parse().unwrap();
    assert_eq!(
        through_all("postgres://postgres@127.0.0.1:5432/x?y=z", &[a, b]),
        "postgres://postgres@127.0.0.1:4000,127.0.0.1:4001/x?y=z"
    );
}

#[test]
fn urls_are_rerouted_through_the_proxy() {
    let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    assert_eq!(through("postgres://postgres@127.0.0.1:5432/x", proxy), "postgres://postgres@127.0.0.1:4000/x");
    assert_eq!(through("mysql://root@127.0.0.1:3306/x?a=b", proxy), "mysql://root@127.0.0.1:4000/x?a=b");
}
