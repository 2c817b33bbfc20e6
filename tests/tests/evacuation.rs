//! End to end, on every backend: an evacuating cell hands its instances over before the old ones
//! stop (E36).
//!
//! Timings are shortened by config (convergence every 1 s, stale unclaimed after 2 s, crash backoff
//! from 1 s, presence TTL 3 s); each test names the checklist items of docs/reference/auction-rep.md §5
//! it covers.

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::steps::{desire, wait_running};
use tests::{fixtures, probe};

tests::on_every_backend!(e36_evacuation_hands_instances_over_before_the_old_ones_stop);

async fn e36_evacuation_hands_instances_over_before_the_old_ones_stop(backend: Backend) {
    let Some(mut cluster) = Cluster::start(backend, 2, RuntimeKind::Process, |_| {}).await else { return };
    desire(&cluster, fixtures::http_lrp("web", 4)).await;
    let before = wait_running(&cluster, "web", 4).await;
    let leaving = probe::cell(&before[0]).to_owned();
    let index = cluster.reps.iter().position(|r| r.cell_id == leaving).unwrap();
    cluster.evacuate_rep(index).await.expect("the rep evacuates and exits cleanly");
    // Once the evacuating rep has exited, every instance runs on the other cell.
    let running = probe::running(&cluster.bbs(), "web").await;
    assert_eq!(running.len(), 4, "{running:?}");
    assert!(running.iter().all(|a| probe::cell(a) != leaving), "{running:?}");
    let all = probe::instances(&cluster.bbs(), "web").await;
    assert!(all.iter().all(|a| a.presence == pb::Presence::Ordinary as i32), "no evacuating rows remain: {all:?}");
    cluster.shutdown().await;
}
