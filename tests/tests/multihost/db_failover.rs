//! The BBS on a replicated database (issue 15): a PostgreSQL primary with a synchronous
//! streaming standby, and a three-node MariaDB Galera cluster, each server in its own host, the
//! BBS given every server in one multi-host URL. A server dies under a stream of writes through
//! the BBS; the BBS moves to a server that takes writes on its own, no acknowledged write is
//! lost, and the cluster goes on placing work. Each test prints its figures (`multihost: ...`).

use std::collections::BTreeSet;
use std::time::Duration;

use db::{Error, StoreOptions};
use proto::models::DomainName;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use tests::hosts::Network;
use tests::hosts::deployment::{Deployment, Timings};
use tests::hosts::galera::GaleraCluster;
use tests::hosts::postgres::{self, PgCluster};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support::{OPS, Sampler, desire, lrp, wait_running};

/// The BBS's database on the replicated servers.
const DATABASE: &str = "diego";

/// Leases and presences as long as Diego's defaults: a server's loss stalls commits for a few
/// seconds (a Galera cluster waits that long before it leaves a dead node out), which must not
/// depose the BBS or expire the cell.
fn timings() -> Timings {
    Timings {
        bbs_lock_ttl: Duration::from_secs(15),
        auctioneer_lock_ttl: Duration::from_secs(15),
        lock_retry_interval: Duration::from_secs(1),
        presence_ttl: Duration::from_secs(15),
        presence_retry_interval: Duration::from_secs(1),
        ..Timings::fast()
    }
}

/// One write through the BBS: its domain, and when it was acknowledged.
#[derive(Debug)]
struct Write {
    domain: String,
    acked: Option<Instant>,
}

/// `WRITERS` streams of `UpsertDomain` through the BBS, each write its own domain, back to back.
struct WriteLoad {
    stop: CancellationToken,
    writers: Vec<JoinHandle<Vec<Write>>>,
}

const WRITERS: usize = 4;

impl WriteLoad {
    fn start(bbs: &BbsClient<Channel>) -> WriteLoad {
        let stop = CancellationToken::new();
        let writers = (0..WRITERS)
            .map(|w| {
                let (bbs, stop) = (bbs.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut writes = Vec::new();
                    for n in 0.. {
                        if stop.is_cancelled() {
                            break;
                        }
                        let mut client = bbs.clone();
                        let domain = format!("w-{w}-{n}");
                        let call = client.upsert_domain(api::UpsertDomainRequest { domain: domain.clone(), ttl: 0 });
                        let acked = match tokio::time::timeout(Duration::from_secs(10), call).await {
                            Ok(Ok(_)) => Some(Instant::now()),
                            _ => {
                                // Refused or timed out: the client retries after a pause, as
                                // every diego-rs client does.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                None
                            }
                        };
                        writes.push(Write { domain, acked });
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    writes
                })
            })
            .collect();
        WriteLoad { stop, writers }
    }

    async fn finish(self) -> Vec<Write> {
        self.stop.cancel();
        let mut writes = Vec::new();
        for writer in self.writers {
            writes.extend(writer.await.expect("a writer"));
        }
        writes
    }
}

/// What a failover did to the writes.
#[derive(Debug)]
struct Outcome {
    acknowledged: usize,
    lost: usize,
    /// The longest time without any acknowledgement that spans `at`.
    outage: Duration,
    /// When writes were acknowledged again, after `at`.
    resumed: Duration,
}

/// Reads every domain through the BBS and checks the writes against them: every acknowledged
/// one must be there. `at` is the instant the server died.
async fn outcome(bbs: &BbsClient<Channel>, writes: &[Write], at: Instant) -> Outcome {
    let mut reader = bbs.clone();
    let stored: BTreeSet<String> = reader
        .domains(api::DomainsRequest::default())
        .await
        .expect("domains")
        .into_inner()
        .domains
        .into_iter()
        .collect();
    let acked: Vec<&Write> = writes.iter().filter(|w| w.acked.is_some()).collect();
    let lost = acked.iter().filter(|w| !stored.contains(&w.domain)).count();
    let mut times: Vec<Instant> = acked.iter().filter_map(|w| w.acked).collect();
    times.sort();
    let last_before = times.iter().rev().find(|t| **t <= at).copied().unwrap_or(at);
    let first_after = times.iter().find(|t| **t > at).copied();
    let first_after = first_after.unwrap_or_else(|| panic!("no write was acknowledged after the server died"));
    Outcome { acknowledged: acked.len(), lost, outage: first_after - last_before, resumed: first_after - at }
}

/// Starts the BBS, an auctioneer and a cell on `d`, runs an LRP of 2, and returns the operator's
/// client of the BBS.
async fn start_diego(d: &Deployment) -> BbsClient<Channel> {
    crate::support::start_cluster(d, "bbs", &["auctioneer"], &["cell-1"]).await;
    let bbs = d.bbs(OPS, "bbs").await;
    desire(&bbs, lrp("before", 2)).await;
    wait_running(&bbs, "before", 2, |_| true).await;
    bbs
}

/// After a failover: the LRP desired before still runs, and a new one is placed and runs.
async fn still_places(bbs: &BbsClient<Channel>) {
    wait_running(bbs, "before", 2, |_| true).await;
    desire(bbs, lrp("after", 2)).await;
    wait_running(bbs, "after", 2, |_| true).await;
}

/// PostgreSQL: the primary is killed under the write stream and, a second later, the standby
/// promoted, as an operator or Patroni would. The BBS finds the new primary on its own (it was
/// given both in its URL) and serves again within one retry of the promotion; every
/// acknowledged write is there (synchronous replication); placements go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bbs_follows_a_postgres_failover_and_loses_no_acknowledged_write() {
    if !postgres::available("bbs_on_postgres_ha") {
        return;
    }
    let hosts = ["pg-1", "pg-2", OPS, "bbs", "auctioneer", "cell-1"];
    let Some(net) = Network::start("bbs_on_postgres_ha", &hosts, 23) else { return };
    let mut cluster = PgCluster::start(&net, "pg-1", "pg-2").await;
    cluster.create_database(&net, DATABASE).await;
    let d = Deployment::on_network(net, None, cluster.url(DATABASE), timings());
    let bbs = start_diego(&d).await;

    let load = WriteLoad::start(&bbs);
    let sampler = Sampler::start(bbs.clone(), "before");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill_primary();
    let killed_at = Instant::now();
    // The operator notices, then promotes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promotion = cluster.promote_standby(&d.net).await;
    let promoted_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let writes = load.finish().await;
    let outcome = outcome(&bbs, &writes, killed_at).await;
    sampler.check("bbs on postgres, primary killed", outcome.resumed).await;
    still_places(&bbs).await;
    let after_promotion = outcome.resumed.saturating_sub(promoted_at - killed_at);
    eprintln!(
        "multihost: bbs on postgres, primary killed and standby promoted {:?} later (promotion took {promotion:?}): \
         {} acknowledged writes, {} lost; writes acknowledged again {:?} after the kill, {after_promotion:?} after \
         the promotion",
        promoted_at - killed_at,
        outcome.acknowledged,
        outcome.lost,
        outcome.resumed,
    );
    assert_eq!(outcome.lost, 0, "acknowledged writes are in the database");
    assert!(outcome.acknowledged > 50, "writes were acknowledged: {}", outcome.acknowledged);
    assert!(d.alive("bbs"), "the BBS kept running");
    // One retry: the store's probe runs every 500 ms while the database is down; the writers
    // pause 100 ms after a refusal. A wide margin for a loaded 2-core machine.
    let bound = Duration::from_secs(5);
    assert!(after_promotion <= bound, "writes resumed {after_promotion:?} after the promotion, over {bound:?}");
    drop(d);
    drop(cluster);
}

/// Galera: the node the BBS is connected to (the first of its URL) is killed under the write
/// stream. The BBS moves to another node on its own and keeps serving; every acknowledged
/// write is in the database; placements go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bbs_keeps_serving_through_the_other_galera_nodes_when_one_dies() {
    const NODES: [&str; 3] = ["galera-1", "galera-2", "galera-3"];
    if !GaleraCluster::available("bbs_on_galera") {
        return;
    }
    let hosts = [NODES[0], NODES[1], NODES[2], OPS, "bbs", "auctioneer", "cell-1"];
    let Some(net) = Network::start("bbs_on_galera", &hosts, 21) else { return };
    let mut cluster = GaleraCluster::start(&net, NODES).await;
    cluster.create_database(&net, DATABASE).await;
    let d = Deployment::on_network(net, None, cluster.url(DATABASE), timings());
    let bbs = start_diego(&d).await;

    let load = WriteLoad::start(&bbs);
    let sampler = Sampler::start(bbs.clone(), "before");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(NODES[0]);
    let killed_at = Instant::now();
    // Writes resume through another node; keep writing a while after.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let writes = load.finish().await;
    let outcome = outcome(&bbs, &writes, killed_at).await;
    sampler.check("bbs on galera, node killed", outcome.resumed).await;
    still_places(&bbs).await;
    let log = std::fs::read_to_string(d.net.scratch().join("bbs.log")).unwrap_or_default();
    let moved = log.lines().any(|l| l.contains("database server changed"));
    eprintln!(
        "multihost: bbs on galera, node killed: {} acknowledged writes, {} lost; writes acknowledged again \
         {:?} after the kill (longest gap {:?}); the bbs moved to another node: {moved}",
        outcome.acknowledged, outcome.lost, outcome.resumed, outcome.outage
    );
    assert_eq!(outcome.lost, 0, "acknowledged writes are in the database");
    assert!(moved, "the BBS says it moved to another node");
    assert!(outcome.acknowledged > 50, "writes were acknowledged: {}", outcome.acknowledged);
    assert!(d.alive("bbs"), "the BBS kept running");
    drop(d);
    drop(cluster);
}

/// Galera reports a transaction that lost certification to a conflicting one committed
/// through another node as a deadlock (1213); the store retries it like one. Two stores, each
/// on its own node, upsert the same domain at once: with one attempt, some writes fail with
/// `Deadlock`; with retries, every write commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn galera_certification_conflicts_are_retried_like_deadlocks() {
    const NODES: [&str; 3] = ["galera-1", "galera-2", "galera-3"];
    if !GaleraCluster::available("galera_conflicts") {
        return;
    }
    let Some(net) = Network::start("galera_conflicts", &[NODES[0], NODES[1], NODES[2], OPS], 22) else { return };
    let cluster = GaleraCluster::start(&net, NODES).await;
    cluster.create_database(&net, DATABASE).await;
    let url_of = |local: std::net::SocketAddr| format!("mysql://root@{local}/{DATABASE}");
    let first = url_of(net.reach(OPS, cluster.node(NODES[0]).addr()).await.expect("reach galera-1"));
    let second = url_of(net.reach(OPS, cluster.node(NODES[1]).addr()).await.expect("reach galera-2"));
    let domain = DomainName::parse("contended".to_owned()).expect("a domain name");

    let run = |attempts: u32| {
        let (first, second, domain) = (first.clone(), second.clone(), domain.clone());
        async move {
            let options = StoreOptions { max_attempts: attempts, ..StoreOptions::default() };
            let a = db::Store::connect(&first, options.clone()).await.expect("a store on galera-1");
            let b = db::Store::connect(&second, options).await.expect("a store on galera-2");
            let mut tasks = Vec::new();
            for store in [a, b] {
                for _ in 0..4 {
                    let (store, domain) = (store.clone(), domain.clone());
                    tasks.push(tokio::spawn(async move {
                        let (mut ok, mut conflicts, mut other) = (0usize, 0usize, Vec::new());
                        for n in 0..40 {
                            match store.upsert_domain(&domain, Duration::from_secs(60 + n), 0).await {
                                Ok(()) => ok += 1,
                                Err(Error::Deadlock { .. }) => conflicts += 1,
                                Err(e) => other.push(e.to_string()),
                            }
                        }
                        (ok, conflicts, other)
                    }));
                }
            }
            let (mut ok, mut conflicts, mut other) = (0, 0, Vec::new());
            for task in tasks {
                let (o, c, e) = task.await.expect("a writer");
                ok += o;
                conflicts += c;
                other.extend(e);
            }
            (ok, conflicts, other)
        }
    };
    let (ok_once, conflicts_once, other_once) = run(1).await;
    let (ok_retried, conflicts_retried, other_retried) = run(30).await;
    eprintln!(
        "multihost: galera certification conflicts: one attempt: {ok_once} committed, {conflicts_once} failed as \
         deadlocks; retried: {ok_retried} committed, {conflicts_retried} failed"
    );
    assert!(other_once.is_empty() && other_retried.is_empty(), "{other_once:?} {other_retried:?}");
    assert!(conflicts_once > 0, "concurrent upserts through two nodes conflict in certification");
    assert_eq!((ok_retried, conflicts_retried), (320, 0), "retried, every upsert commits");
    drop(cluster);
    drop(net);
}
