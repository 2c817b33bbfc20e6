//! Availability measured through the router (issue 18 item 4): a steady load of requests through
//! the cluster's HTTP router to a 10-instance LRP on 3 cells while the cluster (a) evacuates a
//! cell, (b) scales from 10 to 3 and back, (c) kills a cell outright (its rep stops at once, no
//! evacuation, its containers with it), (d) restarts the BBS. Prints, per scenario, the requests
//! answered and failed and the longest time without a successful answer, next to the presence
//! TTL for the killed cell.
//!
//! It takes a minute or two, so it is ignored by default; run it by hand:
//!
//! ```text
//! source /tmp/env.sh
//! cargo test -p tests --test availability -- --ignored --nocapture
//! ```
//!
//! `DIEGO_AVAILABILITY_BACKEND` picks the database (`sqlite`, the default, `postgres` or
//! `mysql`). It asserts only that the load ran and the cluster recovered after each scenario:
//! the figures are the report.

use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::routing::{Figures, Load, answering, names, routed_lrp};
use tests::steps;

const HOST: &str = "web.test";
const INSTANCES: i32 = 10;
/// Load clients, each pausing this long between requests.
const WORKERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(10);
/// How long the load runs on after each scenario's action is done.
const SETTLE: Duration = Duration::from_secs(2);

fn backend() -> Backend {
    match std::env::var("DIEGO_AVAILABILITY_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("mysql") => Backend::Mysql,
        _ => Backend::Sqlite,
    }
}

/// Waits until all 10 instances run and answer through the router.
async fn all_routed(cluster: &Cluster, router: &str) {
    steps::wait_running(cluster, "web", INSTANCES as usize).await;
    let all = names(0..INSTANCES);
    eventually("all 10 instances answering through the router", steps::PATIENCE, || async {
        answering(router, HOST, 40).await.filter(|seen| *seen == all)
    })
    .await;
}

fn line(scenario: &str, figures: &Figures, note: &str) -> String {
    format!(
        "{scenario:<28} {:>8} {:>7} {:>12.3} {:>8.1}  {note}",
        figures.answered,
        figures.failed.len(),
        figures.longest_gap.as_secs_f64(),
        figures.ran.as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute or two: run by hand with --ignored --nocapture"]
async fn availability_through_the_router() {
    let Some(mut cluster) = Cluster::start(backend(), 3, RuntimeKind::Process, |_| {}).await else { return };
    cluster.start_router("127.0.0.1:0").await.expect("the router starts");
    let router = cluster.router_address.clone().expect("the router runs");
    let presence_ttl = cluster.rep_config_of(0).presence_ttl;
    steps::desire(&cluster, routed_lrp("web", HOST, INSTANCES)).await;
    all_routed(&cluster, &router).await;
    let mut report =
        vec![format!("{:<28} {:>8} {:>7} {:>12} {:>8}", "scenario", "answered", "failed", "longest gap s", "ran s")];

    // (a) Evacuate cell 2: its instances start elsewhere before they stop.
    let load = Load::start(&router, HOST, WORKERS, PAUSE);
    cluster.evacuate_rep(2).await.expect("the evacuation ends");
    all_routed(&cluster, &router).await;
    tokio::time::sleep(SETTLE).await;
    let figures = load.stop().await;
    report.push(line("(a) evacuate a cell", &figures, ""));
    cluster.add_rep(2).await.expect("cell 2 again");
    cluster.wait_for_cells(3).await.expect("3 cells");

    // (b) Scale from 10 to 3 and back.
    let load = Load::start(&router, HOST, WORKERS, PAUSE);
    steps::scale(&cluster, "web", 3).await;
    steps::wait_running(&cluster, "web", 3).await;
    eventually("3 instances in the route", steps::PATIENCE, || async {
        answering(&router, HOST, 12).await.filter(|seen| *seen == names(0..3))
    })
    .await;
    steps::scale(&cluster, "web", INSTANCES).await;
    all_routed(&cluster, &router).await;
    tokio::time::sleep(SETTLE).await;
    let figures = load.stop().await;
    report.push(line("(b) scale 10 -> 3 -> 10", &figures, ""));

    // (c) Kill cell 1 outright.
    let load = Load::start(&router, HOST, WORKERS, PAUSE);
    cluster.kill_rep(1).await;
    all_routed(&cluster, &router).await;
    tokio::time::sleep(SETTLE).await;
    let figures = load.stop().await;
    let note = format!("presence ttl {:.1} s", presence_ttl.as_secs_f64());
    report.push(line("(c) kill a cell", &figures, &note));
    cluster.add_rep(1).await.expect("cell 1 again");
    cluster.wait_for_cells(3).await.expect("3 cells");

    // (d) Restart the BBS (the leader: this cluster runs one).
    let load = Load::start(&router, HOST, WORKERS, PAUSE);
    cluster.restart_bbs().await.expect("the bbs restarts");
    all_routed(&cluster, &router).await;
    tokio::time::sleep(SETTLE).await;
    let figures = load.stop().await;
    report.push(line("(d) restart the bbs leader", &figures, ""));

    println!("\navailability through the router ({:?}, 10 instances on 3 process cells):", backend());
    for row in &report {
        println!("{row}");
    }
    cluster.shutdown().await;
}
