//! The BBS dashboard in a whole cluster (issue 17 item 5): the page on the BBS admin address of
//! `diego dev`'s cluster, in headless Chromium, shows a desired LRP's instances as their rep
//! runs them and turns one CRASHED when its process exits, without a reload.
//!
//! Skips when Chromium is not installed, unless `DIEGO_TEST_REQUIRE_CHROMIUM` is set. The
//! browser driver is the bbs dashboard test's (`bbs/tests/dashboard/browser.rs`).

use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use tests::cluster::Cluster;
use tests::fixtures::{self, plain_lrp};
use tests::scratch::Scratch;
use tests::steps::{desire, wait_running};

// Shared with the bbs crate's dashboard test, which also takes screenshots.
#[allow(dead_code)]
#[path = "../../bbs/tests/dashboard/browser.rs"]
mod browser;

/// `[index, state]` of each instance of `dash` the page shows, and whether the page is the one
/// the marker was set on (no reload since).
const INSTANCES_JS: &str = r#"JSON.stringify({
  instances: Array.from(document.querySelectorAll('.lrp .instance'))
    .filter((node) => node.dataset.processGuid === 'dash')
    .map((node) => [Number(node.dataset.index), node.querySelector('.state').textContent]),
  marker: window.dashboardTestMarker === 42,
  role: document.getElementById('role').textContent,
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bbs_admin_address_shows_a_process_crash_without_reloading() {
    let Some(chromium) = browser::chromium() else { return };
    // A long back-off keeps the instance CRASHED after its 3rd crash for the rest of the test.
    let started = Cluster::start(Backend::Sqlite, 1, RuntimeKind::Process, |spec| {
        spec.bbs = Box::new(|config| config.crash_backoff_base = Duration::from_secs(300));
    });
    let Some(cluster) = started.await else { return };
    let scratch = Scratch::new();
    // Runs until its crash file appears, then exits 1 (again at every restart).
    let script = r#"while [ ! -e "$SCRATCH/crash-$INSTANCE_INDEX" ]; do sleep 0.2; done; exit 1"#;
    let mut lrp = plain_lrp("dash", 2, fixtures::shell(script));
    lrp.environment_variables = scratch.env();
    desire(&cluster, lrp).await;
    wait_running(&cluster, "dash", 2).await;

    let admin = cluster.bbs_admin_address.clone().expect("the cluster started its bbs");
    let page = browser::Page::open(&chromium, &format!("http://{admin}/")).await;
    let seen = page
        .wait_for("both instances RUNNING", INSTANCES_JS, |v| {
            v["instances"] == serde_json::json!([[0, "RUNNING"], [1, "RUNNING"]])
        })
        .await;
    assert_eq!(seen["role"], "leader");

    page.evaluate("window.dashboardTestMarker = 42").await;
    std::fs::write(scratch.path("crash-1"), b"").unwrap();
    let seen = page
        .wait_for("instance 1 CRASHED", INSTANCES_JS, |v| v["instances"][1] == serde_json::json!([1, "CRASHED"]))
        .await;
    assert_eq!(seen["instances"][0], serde_json::json!([0, "RUNNING"]));
    assert_eq!(seen["marker"], true, "the page updated without reloading");
    page.close().await;
    cluster.shutdown().await;
}
