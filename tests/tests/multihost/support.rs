//! What the multi-host scenarios share: the hosts they name, the LRPs they desire, waiting for
//! instances and locks, and the operator's sampler of doubled instances.

use db::Backend;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tests::eventually::eventually;
use tests::fixtures::{plain_lrp, shell};
use tests::hosts::deployment::Deployment;
use tests::probe;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The database the scenarios run on. Hosts must share one database server, so not SQLite;
/// PostgreSQL is the one CI always has. The BBS leader's cut runs on MySQL too.
pub(crate) const BACKEND: Backend = Backend::Postgres;

/// The host serving the database.
pub(crate) const DB: &str = "db";
/// The host the test acts from as the operator.
pub(crate) const OPS: &str = "ops";
/// How long any wait may take before the scenario fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// An LRP of `instances` for the sim cells.
pub(crate) fn lrp(guid: &str, instances: i32) -> pb::DesiredLrp {
    plain_lrp(guid, instances, shell("sleep 3600"))
}

pub(crate) fn index(lrp: &pb::ActualLrp) -> i32 {
    lrp.actual_lrp_key.as_ref().map_or(-1, |k| k.index)
}

pub(crate) fn ordinary_running(lrp: &pb::ActualLrp) -> bool {
    lrp.state == pb::ActualLrpState::Running as i32 && lrp.presence == pb::Presence::Ordinary as i32
}

pub(crate) async fn desire(client: &BbsClient<Channel>, lrp: pb::DesiredLrp) {
    let mut client = client.clone();
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.expect("desire lrp");
}

/// Waits until `guid` has exactly `n` instances, every one ordinary and RUNNING, one per index,
/// where `accept` accepts them all; returns them.
pub(crate) async fn wait_running(
    client: &BbsClient<Channel>,
    guid: &str,
    n: usize,
    accept: impl Fn(&[pb::ActualLrp]) -> bool,
) -> Vec<pb::ActualLrp> {
    wait_running_within(PATIENCE, client, guid, n, accept).await
}

/// [`wait_running`], waiting at most `limit`.
pub(crate) async fn wait_running_within(
    limit: Duration,
    client: &BbsClient<Channel>,
    guid: &str,
    n: usize,
    accept: impl Fn(&[pb::ActualLrp]) -> bool,
) -> Vec<pb::ActualLrp> {
    eventually(&format!("{n} RUNNING instances of {guid}"), limit, || {
        let client = client.clone();
        let accept = &accept;
        async move {
            let all = probe::instances(&client, guid).await;
            let indexes: BTreeSet<i32> = all.iter().map(index).collect();
            (all.len() == n && indexes.len() == n && all.iter().all(ordinary_running) && accept(&all)).then_some(all)
        }
    })
    .await
}

/// The LRP instances of `guid` the rep on `cell` holds, as its `State` says (asked from inside
/// the cell, so it answers while the cell is cut off).
pub(crate) async fn rep_holds(d: &Deployment, cell: &str, guid: &str) -> Option<usize> {
    let mut client = d.rep(cell, cell).await;
    let state = client.state(rep::StateRequest::default()).await.ok()?.into_inner();
    Some(state.lrps.iter().filter(|l| l.actual_lrp_key.as_ref().is_some_and(|k| k.process_guid == guid)).count())
}

/// Starts a BBS on `bbs`, the auctioneers and `cells` talking to it, and waits until the BBS
/// leads, the first auctioneer holds the lock and every cell is present.
pub(crate) async fn start_cluster(d: &Deployment, bbs: &str, auctioneers: &[&str], cells: &[&str]) {
    d.start_bbs(bbs);
    d.wait_leading(OPS, bbs).await;
    if let Some(first) = auctioneers.first() {
        d.start_auctioneer(first, bbs);
        wait_lock(d, bbs, first).await;
    }
    for other in auctioneers.iter().skip(1) {
        d.start_auctioneer(other, bbs);
    }
    for cell in cells {
        d.start_cell(cell, bbs);
    }
    d.wait_cells(OPS, bbs, cells).await;
}

/// Waits until the auctioneer on `holder` holds the `auctioneer` lock (its value is the address
/// it advertises), as the Locket of the BBS on `bbs` says; returns the lock's owner.
pub(crate) async fn wait_lock(d: &Deployment, bbs: &str, holder: &str) -> String {
    let address = d.auctioneer_address(holder);
    eventually(&format!("the auctioneer on {holder} to hold the lock"), PATIENCE, || {
        let address = address.clone();
        async move { d.lock_holder(OPS, bbs, "auctioneer").await.filter(|r| r.value == address).map(|r| r.owner) }
    })
    .await
}

/// What the operator saw of one LRP while sampling: indexes that had two ordinary RUNNING
/// instances, and the longest time one of them did.
#[derive(Debug, Default)]
pub(crate) struct Doubles {
    pub(crate) samples: usize,
    pub(crate) indexes: BTreeSet<i32>,
    pub(crate) longest: Duration,
}

/// Samples `guid`'s instances every 100 ms, as an operator, until stopped.
pub(crate) struct Sampler {
    stop: CancellationToken,
    task: JoinHandle<Doubles>,
}

impl Sampler {
    pub(crate) fn start(client: BbsClient<Channel>, guid: &str) -> Sampler {
        let stop = CancellationToken::new();
        let (token, guid) = (stop.clone(), guid.to_owned());
        let task = tokio::spawn(async move {
            let mut doubles = Doubles::default();
            let mut since: HashMap<i32, Instant> = HashMap::new();
            while !token.is_cancelled() {
                let read = tokio::time::timeout(Duration::from_secs(2), probe::instances(&client, &guid)).await;
                if let Ok(all) = read
                    && !all.is_empty()
                {
                    doubles.samples += 1;
                    let now = Instant::now();
                    let mut running: BTreeMap<i32, usize> = BTreeMap::new();
                    for lrp in all.iter().filter(|l| ordinary_running(l)) {
                        *running.entry(index(lrp)).or_default() += 1;
                    }
                    for (&i, &count) in &running {
                        if count >= 2 {
                            let start = *since.entry(i).or_insert(now);
                            doubles.indexes.insert(i);
                            doubles.longest = doubles.longest.max(now - start);
                        }
                    }
                    since.retain(|i, _| running.get(i).is_some_and(|&c| c >= 2));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            doubles
        });
        Sampler { stop, task }
    }

    pub(crate) async fn finish(self) -> Doubles {
        self.stop.cancel();
        self.task.await.expect("the sampler")
    }

    /// Stops sampling, prints what was seen (`multihost: <scenario>: ...`) and asserts that no
    /// index of the LRP had two ordinary RUNNING instances for as long as `partition` (the time
    /// the network or the database was broken).
    pub(crate) async fn check(self, scenario: &str, partition: Duration) -> Doubles {
        let doubles = self.finish().await;
        eprintln!(
            "multihost: {scenario}: indexes with two RUNNING instances: {} {:?}, longest {:?} ({} samples, \
             partition {partition:?})",
            doubles.indexes.len(),
            doubles.indexes,
            doubles.longest,
            doubles.samples
        );
        assert!(doubles.samples >= 3, "{scenario}: the operator could read the instances throughout: {doubles:?}");
        assert!(
            doubles.longest < partition,
            "{scenario}: an index had two RUNNING instances for {:?}, as long as the partition ({partition:?})",
            doubles.longest
        );
        doubles
    }
}
