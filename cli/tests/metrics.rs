//! The cluster `diego dev` runs, in process: after a little work, the `/metrics` page of the BBS,
//! of the auctioneer and of every cell shows that component's own series (`bbs_*`,
//! `auctioneer_*`, `rep_*{cell_id=...}`).
//!
//! All components of one process record into its one Prometheus recorder (`svc::admin`), so each
//! page shows every component's series; what matters is that none is missing, as happened while
//! each crate installed a recorder of its own and only the first one received anything.

use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::cluster::{Cluster, ClusterSpec};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` on `address`: the body of a 200 answer, or None.
async fn scrape(address: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Whether `page` has a sample (not only a `# HELP` line) of a series named `prefix*` whose
/// labels contain `label` (any labels when empty).
fn has_series(page: &str, prefix: &str, label: &str) -> bool {
    page.lines().any(|line| !line.starts_with('#') && line.starts_with(prefix) && line.contains(label))
}

/// A small LRP the `sim` runtime runs.
fn lrp(guid: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 2,
        memory_mb: 64,
        disk_mb: 64,
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "sleep".into(),
                args: vec!["3600".into()],
                user: "root".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_shows_its_own_series_on_its_metrics_page() {
    let dir = std::env::temp_dir().join(format!("diego-metrics-{}", uuid::Uuid::new_v4()));
    let database_url = format!("sqlite://{}", dir.join("bbs.db").display());
    let cluster = Cluster::start(ClusterSpec::new(database_url, dir.join("cells"), 2, RuntimeKind::Sim))
        .await
        .expect("the cluster starts");
    let mut client = cluster.bbs();
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp("metrics")) }).await.expect("desire");

    let bbs = cluster.bbs_admin_address.clone().expect("the cluster started the bbs");
    let auctioneer = cluster.auctioneer_admin_address.clone().expect("the cluster started the auctioneer");
    let mut pages: Vec<(String, String, String)> = vec![
        (bbs, "bbs_".into(), String::new()),
        (auctioneer, "auctioneer_auctions_started_total".into(), String::new()),
    ];
    for rep in &cluster.reps {
        pages.push((rep.admin_address.clone(), "rep_".into(), format!("cell_id=\"{}\"", rep.cell_id)));
    }
    assert_eq!(pages.len(), 4, "a bbs, an auctioneer and two cells");

    let mut missing = Vec::new();
    for _ in 0..100 {
        missing.clear();
        for (address, prefix, label) in &pages {
            let page = scrape(address).await.unwrap_or_default();
            if !has_series(&page, prefix, label) {
                missing.push(format!("{prefix}* {{{label}}} on {address}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(missing.is_empty(), "series missing from their component's /metrics page: {missing:?}");
}
