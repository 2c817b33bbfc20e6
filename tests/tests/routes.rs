//! End to end, on every backend (issue 18 item 2, routes): the HTTP router of the cluster sends a
//! route's requests to every ready instance; an instance whose readiness check fails stops
//! receiving them; during a scale-down no request fails, because the rep reports a retired
//! instance unroutable and stops it only after its route drain (docs/router.md, "Draining"; 1 s
//! with the test timings); after the BBS restarts, the router keeps serving the routes it knew
//! and learns new ones (it subscribes and syncs again).
//!
//! The LRP is busybox httpd serving `instance N` at `/` and a readiness page at `/ready`; a test
//! makes instance N unready by deleting that page from its container's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::cluster::RouterConfig;
use db::Backend;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::routing::{Load, answering, get, names, routed_lrp};
use tests::steps;

tests::on_every_backend!(
    a_route_answers_from_every_instance_and_an_unready_one_leaves_it,
    a_scale_down_fails_no_request,
    the_router_follows_the_bbs_through_a_restart
);

async fn start(backend: Backend, cells: usize) -> Option<Cluster> {
    start_with(backend, cells, |_| {}).await
}

async fn start_with(
    backend: Backend,
    cells: usize,
    router: impl Fn(&mut RouterConfig) + Send + Sync + 'static,
) -> Option<Cluster> {
    let router: std::sync::Arc<dyn Fn(&mut RouterConfig) + Send + Sync> = std::sync::Arc::new(router);
    let mut cluster =
        Cluster::start(backend, cells, RuntimeKind::Process, move |spec| spec.router_config = router).await?;
    cluster.start_router("127.0.0.1:0").await.expect("the router starts");
    Some(cluster)
}

fn router_of(cluster: &Cluster) -> String {
    cluster.router_address.clone().expect("the router runs")
}

/// The `www` directory of the container running instance `index` (its page names it).
fn www_of(dir: &Path, index: i32) -> Option<PathBuf> {
    let want = format!("instance {index}");
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                if path.file_name().is_some_and(|n| n == "www")
                    && std::fs::read_to_string(path.join("index.html")).is_ok_and(|page| page.trim() == want)
                {
                    return Some(path);
                }
                pending.push(path);
            }
        }
    }
    None
}

async fn a_route_answers_from_every_instance_and_an_unready_one_leaves_it(backend: Backend) {
    let Some(cluster) = start(backend, 2).await else { return };
    let router = router_of(&cluster);
    steps::desire(&cluster, routed_lrp("web", "web.test", 3)).await;
    steps::wait_running(&cluster, "web", 3).await;

    let all = names([0, 1, 2]);
    eventually("every instance answering through the router", steps::PATIENCE, || async {
        answering(&router, "web.test", 12).await.filter(|seen| *seen == all)
    })
    .await;
    assert_eq!(get(&router, "nowhere.test").await.map(|(status, _)| status), Some(404));

    // Instance 1 fails its readiness check: it stops receiving requests, the others keep them.
    let www = www_of(&cluster.data_dir, 1).expect("instance 1's directory");
    std::fs::remove_file(www.join("ready")).expect("remove the readiness page");
    let rest = names([0, 2]);
    eventually("instance 1 out of the route", steps::PATIENCE, || async {
        answering(&router, "web.test", 12).await.filter(|seen| *seen == rest)
    })
    .await;
    // It stays out (and stays RUNNING: readiness is not liveness).
    for _ in 0..3 {
        assert_eq!(answering(&router, "web.test", 10).await, Some(rest.clone()));
    }
    assert!(
        steps::instance(&cluster, "web", 1).await.is_some_and(|i| steps::state_of(&i) == pb::ActualLrpState::Running)
    );
    // Ready again: back in the route.
    std::fs::write(www.join("ready"), "ready\n").expect("restore the readiness page");
    eventually("instance 1 back in the route", steps::PATIENCE, || async {
        answering(&router, "web.test", 12).await.filter(|seen| *seen == all)
    })
    .await;
    cluster.shutdown().await;
}

async fn a_scale_down_fails_no_request(backend: Backend) {
    let Some(cluster) = start(backend, 2).await else { return };
    let router = router_of(&cluster);
    steps::desire(&cluster, routed_lrp("web", "web.test", 6)).await;
    steps::wait_running(&cluster, "web", 6).await;
    let all = names([0, 1, 2, 3, 4, 5]);
    eventually("every instance answering", steps::PATIENCE, || async {
        answering(&router, "web.test", 24).await.filter(|seen| *seen == all)
    })
    .await;

    // Several clients, so requests meet every stopping instance.
    let load = Load::start(&router, "web.test", 4, Duration::ZERO);
    steps::scale(&cluster, "web", 1).await;
    steps::wait_running(&cluster, "web", 1).await;
    eventually("the retired instances gone from the route", steps::PATIENCE, || async {
        answering(&router, "web.test", 8).await.filter(|seen| *seen == names([0]))
    })
    .await;
    let figures = load.stop().await;
    println!(
        "scale-down from 6 to 1: {} requests answered, {} failed: {:?}",
        figures.answered,
        figures.failed.len(),
        figures.failed
    );
    assert!(figures.answered > 0);
    // Every retired instance left the table while it still served: nothing failed.
    assert!(figures.failed.is_empty(), "failed requests during the scale-down: {:?}", figures.failed);
    // And nothing fails after it either.
    let load = Load::start(&router, "web.test", 1, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let figures = load.stop().await;
    assert!(figures.answered > 0);
    assert!(figures.failed.is_empty(), "failed requests after the scale-down: {:?}", figures.failed);
    cluster.shutdown().await;
}

async fn the_router_follows_the_bbs_through_a_restart(backend: Backend) {
    // The subscription renews at every sync (here every second), so the router leaves the old
    // BBS, whose shutdown waits for its open event streams to end, within a second.
    let Some(mut cluster) = start_with(backend, 1, |c| c.sync_interval = Duration::from_secs(1)).await else {
        return;
    };
    let router = router_of(&cluster);
    steps::desire(&cluster, routed_lrp("web", "web.test", 2)).await;
    steps::wait_running(&cluster, "web", 2).await;
    eventually("the route", steps::PATIENCE, || async {
        answering(&router, "web.test", 6).await.filter(|seen| *seen == names([0, 1]))
    })
    .await;

    // While the BBS restarts, the known routes keep answering.
    let load = Load::start(&router, "web.test", 1, Duration::ZERO);
    let restarting = tokio::time::Instant::now();
    cluster.restart_bbs().await.expect("the bbs restarts");
    println!("the bbs restarted in {:?}", restarting.elapsed());
    let figures = load.stop().await;
    assert!(figures.answered > 0);
    assert!(figures.failed.is_empty(), "failed requests while the bbs restarted: {:?}", figures.failed);

    // A route desired after the restart is learned from the new BBS.
    steps::desire(&cluster, routed_lrp("api", "api.test", 1)).await;
    steps::wait_running(&cluster, "api", 1).await;
    eventually("the new route", steps::PATIENCE, || async {
        answering(&router, "api.test", 2).await.filter(|seen| *seen == names([0]))
    })
    .await;
    cluster.shutdown().await;
}
