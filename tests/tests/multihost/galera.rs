//! A MariaDB Galera cluster across three hosts (tests/src/hosts/galera.rs), driven by an
//! operator on a fourth: what a client sees when a node dies under load, and when the two that
//! are left are cut apart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::{ConnectOptions, Connection, Executor, Row};
use tests::eventually::eventually;
use tests::hosts::Network;
use tests::hosts::galera::GaleraCluster;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::{OPS, PATIENCE};

/// The Galera nodes' hosts; the first bootstraps the cluster.
const NODES: [&str; 3] = ["galera-1", "galera-2", "galera-3"];
/// The test's database.
const DB: &str = "galera_test";
/// How long one statement may take before the client gives up on its connection (longer than
/// the cluster needs to leave a dead node out of its view).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);
/// What Galera returns for a transaction that lost certification to a conflicting one committed
/// through another node, or that such a one aborted: MariaDB's "Deadlock found when trying to
/// get lock" (`ER_LOCK_DEADLOCK`, 1213), SQLSTATE 40001.
const CONFLICT: &str = "1213 (40001)";
/// What a node outside the primary component returns for a query: "WSREP has not yet prepared
/// node for application use" (`ER_UNKNOWN_COM_ERROR`, 1047), SQLSTATE 08S01.
const NOT_READY: &str = "1047 (08S01)";

/// `1213 (40001)` for a server error (its number and SQLSTATE), else what failed in the client.
fn kind(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<MySqlDatabaseError>() {
            Some(my) => format!("{} ({})", my.number(), my.code().unwrap_or("-")),
            None => format!("database ({})", db.code().unwrap_or_default()),
        },
        sqlx::Error::Io(io) => format!("io {:?}", io.kind()),
        other => format!("{other:?}").split(['(', ' ', '{']).next().unwrap_or("other").to_owned(),
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Its acknowledged operations: the sequence number (inserts) and when.
    acked: Vec<(i64, Instant)>,
    /// The errors it got by [`kind`], each with its count and first message.
    errors: BTreeMap<String, (usize, String)>,
    /// Operations it gave up on after [`STATEMENT_TIMEOUT`].
    timeouts: usize,
    /// Operations that failed in the client (the connection broke) rather than being refused
    /// by the server.
    broken: usize,
    /// Connection attempts that failed (within 5 s).
    failed_connects: usize,
}

impl Seen {
    fn note(&mut self, e: &sqlx::Error) {
        self.errors.entry(kind(e)).or_insert_with(|| (0, e.to_string())).0 += 1;
    }

    fn count(&self, kind: &str) -> usize {
        self.errors.get(kind).map_or(0, |c| c.0)
    }

    /// Operations whose outcome the client does not know: timed out, or broken.
    fn in_doubt(&self) -> usize {
        self.timeouts + self.broken
    }
}

/// Runs `operation` over one connection made with `options` until `stop`, reconnecting when the
/// connection fails (a server error leaves it open); counts acknowledgements in `progress`.
fn start_client<F>(
    options: MySqlConnectOptions,
    progress: Arc<AtomicUsize>,
    stop: CancellationToken,
    operation: F,
) -> JoinHandle<Seen>
where
    F: for<'c> Fn(&'c mut MySqlConnection, i64) -> futures::future::BoxFuture<'c, Result<(), sqlx::Error>>
        + Send
        + 'static,
{
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut conn: Option<MySqlConnection> = None;
        let mut seq = 0i64;
        while !stop.is_cancelled() {
            let Some(c) = conn.as_mut() else {
                match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
                    Ok(Ok(c)) => conn = Some(c),
                    _ => {
                        seen.failed_connects += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            };
            seq += 1;
            match tokio::time::timeout(STATEMENT_TIMEOUT, operation(c, seq)).await {
                Ok(Ok(())) => {
                    seen.acked.push((seq, Instant::now()));
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    seen.note(&e);
                    if !matches!(e, sqlx::Error::Database(_)) {
                        seen.broken += 1;
                        conn = None;
                    }
                }
                Err(_) => {
                    seen.timeouts += 1;
                    conn = None;
                }
            }
        }
        seen
    })
}

/// Inserts `(writer, 1)`, `(writer, 2)`, ..., one autocommitted row at a time.
fn start_writer(
    writer: i32,
    options: MySqlConnectOptions,
    progress: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> JoinHandle<Seen> {
    start_client(options, progress, stop, move |c, seq| {
        Box::pin(async move {
            sqlx::query("INSERT INTO written (writer, seq) VALUES (?, ?)").bind(writer).bind(seq).execute(c).await?;
            Ok(())
        })
    })
}

/// Increments the one row of `hot` in explicit transactions (`BEGIN; UPDATE; COMMIT`: Galera
/// retries an autocommitted statement that loses certification, `wsrep_retry_autocommit`, but
/// not a transaction).
fn start_updater(
    options: MySqlConnectOptions,
    progress: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> JoinHandle<Seen> {
    start_client(options, progress, stop, |c, _| {
        Box::pin(async move {
            let mut tx = c.begin().await?;
            sqlx::query("UPDATE hot SET n = n + 1 WHERE id = 1").execute(&mut *tx).await?;
            tx.commit().await
        })
    })
}

/// What the node on `host` holds once every write set it has received is applied
/// (`wsrep_sync_wait`): the rows of `written` and the counter of `hot`.
async fn read_back(cluster: &GaleraCluster, net: &Network, host: &str) -> (BTreeSet<(i32, i64)>, i64) {
    let mut conn = cluster.connect(net, OPS, host, DB).await.unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    conn.execute("SET SESSION wsrep_sync_wait = 1").await.unwrap_or_else(|e| panic!("wsrep_sync_wait on {host}: {e}"));
    let rows = sqlx::query("SELECT writer, seq FROM written")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("reading the rows on {host}: {e}"));
    let written = rows.iter().map(|r| (r.get::<i32, _>(0), r.get::<i64, _>(1))).collect();
    let n: i64 = sqlx::query("SELECT n FROM hot WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("reading the counter on {host}: {e}"))
        .get(0);
    let _ = conn.close().await;
    (written, n)
}

/// The error kind a query gets through the node on `host`, asked from inside host `from`
/// (`ok` when it succeeds).
async fn query_outcome(cluster: &GaleraCluster, net: &Network, from: &str, host: &str) -> String {
    let attempt = async {
        let mut conn = cluster.connect(net, from, host, DB).await?;
        let result = conn.execute("SELECT COUNT(*) FROM written").await.map(|_| ());
        let _ = conn.close().await;
        result
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, attempt).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => kind(&e),
        Err(_) => "timeout".into(),
    }
}

/// Three writers insert rows through the three nodes, and two updaters increment one row through
/// galera-2 and galera-3 (where their transactions conflict); the bootstrap node is killed
/// (SIGKILL) mid-load and the load goes on through the other two. Every insert and increment that
/// was acknowledged is on both survivors, which agree on every row and see a cluster of 2; no
/// increment that failed is. Conflicts surface as error 1213 (SQLSTATE 40001) at the losing
/// client. Then the two survivors are cut apart: neither has a majority of their view of 2, both
/// refuse queries with 1047 (SQLSTATE 08S01), and after healing they form a primary component
/// again and take writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galera_keeps_every_acknowledged_commit_when_a_node_dies() {
    let test = "galera_node_loss";
    if !GaleraCluster::available(test) {
        return;
    }
    let Some(net) = Network::start(test, &[NODES[0], NODES[1], NODES[2], OPS], 21) else { return };
    let net = &net;
    let started = Instant::now();
    let mut cluster = GaleraCluster::start(net, NODES).await;
    eprintln!("multihost: galera cluster of 3 synced in {} ms", started.elapsed().as_millis());
    cluster.create_database(net, DB).await;
    let mut conn = cluster.connect(net, OPS, NODES[1], DB).await.expect("connecting to galera-2");
    for sql in [
        "CREATE TABLE written (writer INT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (writer, seq))",
        "CREATE TABLE hot (id INT PRIMARY KEY, n BIGINT NOT NULL)",
        "INSERT INTO hot (id, n) VALUES (1, 0)",
    ] {
        conn.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let _ = conn.close().await;
    // Every node has the tables and the row before the load starts.
    for host in NODES {
        let (_, n) = read_back(&cluster, net, host).await;
        assert_eq!(n, 0, "the counter on {host}");
    }

    let stop = CancellationToken::new();
    let mut writers = Vec::new();
    let mut inserted = Vec::new();
    for (i, host) in NODES.iter().enumerate() {
        let options = cluster.connect_options(net, OPS, host, DB).await.expect("relay");
        let count = Arc::new(AtomicUsize::new(0));
        writers.push(start_writer(i as i32 + 1, options, count.clone(), stop.clone()));
        inserted.push(count);
    }
    let mut updaters = Vec::new();
    for host in &NODES[1..] {
        let options = cluster.connect_options(net, OPS, host, DB).await.expect("relay");
        updaters.push(start_updater(options, Arc::new(AtomicUsize::new(0)), stop.clone()));
    }
    // Mid-load: every writer has had inserts acknowledged.
    eventually("200 acknowledged inserts through every node", PATIENCE, || {
        let done = inserted.iter().all(|p| p.load(Ordering::Relaxed) >= 200);
        async move { done.then_some(()) }
    })
    .await;

    let killed_at = Instant::now();
    cluster.kill(NODES[0]);
    let survivors = &cluster;
    eventually("galera-2 and galera-3 to see a cluster of 2", PATIENCE, || async move {
        let sizes = (survivors.cluster_size(net, NODES[1]).await, survivors.cluster_size(net, NODES[2]).await);
        (sizes == (Some(2), Some(2))).then_some(())
    })
    .await;
    let new_view_after = killed_at.elapsed();
    // More load after the new view, through the two survivors.
    let at_new_view = (inserted[1].load(Ordering::Relaxed), inserted[2].load(Ordering::Relaxed));
    eventually("200 more acknowledged inserts through galera-2 and galera-3", PATIENCE, || {
        let done = inserted[1].load(Ordering::Relaxed) >= at_new_view.0 + 200
            && inserted[2].load(Ordering::Relaxed) >= at_new_view.1 + 200;
        async move { done.then_some(()) }
    })
    .await;
    stop.cancel();
    let mut writes = Vec::new();
    for writer in writers {
        writes.push(writer.await.expect("writer"));
    }
    let mut updates = Vec::new();
    for updater in updaters {
        updates.push(updater.await.expect("updater"));
    }

    // Every acknowledged insert and increment is on both survivors, and they agree.
    cluster.wait_cluster_size(net, 2, PATIENCE).await;
    assert_eq!(cluster.cluster_size(net, NODES[0]).await, None, "the killed node answers");
    let (rows_2, n_2) = read_back(&cluster, net, NODES[1]).await;
    let (rows_3, n_3) = read_back(&cluster, net, NODES[2]).await;
    let acked: BTreeSet<(i32, i64)> =
        writes.iter().enumerate().flat_map(|(i, w)| w.acked.iter().map(move |(seq, _)| (i as i32 + 1, *seq))).collect();
    let lost: Vec<&(i32, i64)> = acked.iter().filter(|k| !rows_2.contains(k) || !rows_3.contains(k)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged inserts missing on a survivor: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert_eq!(rows_2, rows_3, "the survivors disagree on the rows");
    assert_eq!(n_2, n_3, "the survivors disagree on the counter");
    let increments: usize = updates.iter().map(|u| u.acked.len()).sum();
    let in_doubt: usize = updates.iter().map(Seen::in_doubt).sum();
    assert!(
        (increments..=increments + in_doubt).contains(&(n_2 as usize)),
        "counter {n_2}: {increments} increments acknowledged, {in_doubt} in doubt"
    );
    let conflicts: usize = updates.iter().map(|u| u.count(CONFLICT)).sum();
    assert!(conflicts > 0, "no certification conflict between the updaters of galera-2 and galera-3: {updates:?}");
    for (u, host) in updates.iter().zip(&NODES[1..]) {
        assert!(
            u.errors.keys().all(|k| k == CONFLICT),
            "the updater through {host} (which stayed up) got other errors than conflicts: {:?}",
            u.errors
        );
    }

    // When acknowledgements through the survivors resumed: the end of the longest pause after
    // the kill.
    let mut acks_after: Vec<Instant> =
        writes[1..].iter().flat_map(|w| w.acked.iter().map(|(_, at)| *at)).filter(|at| *at > killed_at).collect();
    acks_after.sort();
    let (mut previous, mut longest, mut resumed) = (killed_at, Duration::ZERO, killed_at);
    for at in acks_after {
        if at - previous > longest {
            longest = at - previous;
            resumed = at;
        }
        previous = at;
    }
    let mut errors: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for seen in writes.iter().chain(&updates) {
        for (k, (n, message)) in &seen.errors {
            errors.entry(k.clone()).or_insert_with(|| (0, message.clone())).0 += n;
        }
    }
    eprintln!(
        "multihost: galera clients' errors: {}; timeouts: {}; failed connection attempts (to the dead node): {}",
        errors.iter().map(|(k, (n, m))| format!("{k} x{n} ({m})")).collect::<Vec<_>>().join("; "),
        writes.iter().chain(&updates).map(|s| s.timeouts).sum::<usize>(),
        writes.iter().chain(&updates).map(|s| s.failed_connects).sum::<usize>(),
    );
    eprintln!(
        "multihost: galera inserts acknowledged per node: {}; increments acknowledged {increments}, counter {n_2}; \
         new view of 2 seen {} ms after the kill",
        writes.iter().map(|w| w.acked.len().to_string()).collect::<Vec<_>>().join("/"),
        new_view_after.as_millis(),
    );
    eprintln!(
        "multihost: galera node loss: {} acknowledged writes, 0 lost, certification conflicts seen: {conflicts}, \
         writes resumed after {} ms",
        acked.len(),
        (resumed - killed_at).as_millis()
    );

    // The two survivors cut apart: each is half of the last primary component, so neither
    // keeps a quorum; both refuse queries until the link is back.
    let survivors = &cluster;
    let cut_at = Instant::now();
    net.cut(NODES[2]);
    for host in &NODES[1..] {
        eventually(&format!("{host} to leave the primary component"), PATIENCE, || async move {
            (survivors.status(net, host, "wsrep_cluster_status").await.as_deref() == Some("non-Primary")).then_some(())
        })
        .await;
    }
    let non_primary_after = cut_at.elapsed();
    for host in &NODES[1..] {
        let outcome = query_outcome(&cluster, net, host, host).await;
        assert_eq!(outcome, NOT_READY, "a query on {host} outside the primary component");
    }
    let healed_at = Instant::now();
    net.heal(NODES[2]);
    cluster.wait_cluster_size(net, 2, PATIENCE).await;
    let primary_after = healed_at.elapsed();
    let mut conn = cluster.connect(net, OPS, NODES[2], DB).await.expect("connecting to galera-3");
    conn.execute("INSERT INTO written (writer, seq) VALUES (9, 1)").await.expect("an insert after healing");
    let _ = conn.close().await;
    let (rows_2, _) = read_back(&cluster, net, NODES[1]).await;
    assert!(rows_2.contains(&(9, 1)), "the insert through galera-3 after healing is not on galera-2");
    eprintln!(
        "multihost: galera survivors cut apart: both non-Primary {} ms after the cut, queries refused with {NOT_READY}; \
         primary again {} ms after healing",
        non_primary_after.as_millis(),
        primary_after.as_millis()
    );
}
