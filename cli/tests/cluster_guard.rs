//! The guard rails end to end, on the cluster `diego dev` runs (in process: BBS, auctioneer, two
//! `sim` cells of 1024 MB): the capacity guard reads the real cells, an instance forced past it
//! is left unplaceable by the real auctioneer and `diego lrps` / `diego lrp` / `diego status`
//! say so with its placement error.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::cluster::{Cluster, ClusterSpec, OPERATOR_NAME};
use svc::identity::Role;

/// Runs `diego --bbs-address ADDR ARGS...` as the cluster's operator.
async fn diego(cluster: &Cluster, args: &[&str]) -> harness::Run {
    let tls = cluster.tls_for(Role::Operator, OPERATOR_NAME).expect("the operator's certificate");
    let mut full = vec!["--bbs-address", cluster.bbs_address.as_str()];
    full.extend_from_slice(args);
    let env = [
        ("DIEGO_TLS_CA", tls.ca.to_str().unwrap()),
        ("DIEGO_TLS_CERT", tls.cert.to_str().unwrap()),
        ("DIEGO_TLS_KEY", tls.key.to_str().unwrap()),
    ];
    harness::diego_with_env(&full, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_oversized_instance_is_shown_unplaceable_with_its_placement_error() {
    let dir = harness::scratch("cluster-guard");
    let database_url = format!("sqlite://{}", dir.join("bbs.db").display());
    let mut spec = ClusterSpec::new(database_url, dir.join("cells"), 2, RuntimeKind::Sim);
    spec.cell_memory_mb = 1024;
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    cluster.wait_for_cells(2).await.expect("two cells");

    // 16 instances of 128 MB fit the two cells; 17 never do.
    let desire = ["desire-lrp", "--guid", "web", "--command", "sleep 3600", "--memory-mb", "128", "--instances"];
    let out = diego(&cluster, &[&desire[..], &["17"]].concat()).await;
    assert!(out.fails(2).contains("can hold at most 16 instances"), "{out:?}");
    let out =
        diego(&cluster, &["desire-lrp", "--guid", "huge", "--command", "sleep 3600", "--memory-mb", "999999"]).await;
    assert!(out.fails(2).contains("fits on no cell"), "{out:?}");
    diego(&cluster, &[&desire[..], &["2"]].concat()).await.ok();

    // Forced: the auctioneer cannot place it, and every view says so.
    let forced = ["desire-lrp", "--guid", "huge", "--command", "sleep 3600", "--memory-mb", "999999", "--force"];
    let out = diego(&cluster, &forced).await;
    out.ok();
    assert!(out.stderr.contains("warning: an instance of 999999 MB memory"), "{out:?}");
    let mut shown = String::new();
    for _ in 0..200 {
        shown = diego(&cluster, &["lrp", "huge"]).await.ok().to_owned();
        if shown.contains("UNPLACEABLE") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = shown.lines().find(|l| l.starts_with("0 ")).unwrap_or_else(|| panic!("no instance row: {shown}"));
    assert!(row.contains("UNPLACEABLE") && row.contains("placement error: "), "{shown}");
    assert!(shown.contains("0 unclaimed, 1 unplaceable"), "{shown}");

    let json = diego(&cluster, &["lrps", "--json"]).await.json();
    let huge = json.as_array().unwrap().iter().find(|l| l["process_guid"] == "huge").unwrap().clone();
    assert_eq!((huge["unplaceable"].as_i64(), huge["unclaimed"].as_i64()), (Some(1), Some(0)), "{json}");

    let status = diego(&cluster, &["status", "--json"]).await.json();
    assert!(status["auctioneer"]["owner"].as_str().is_some_and(|o| !o.is_empty()), "{status}");
    assert_eq!(status["cells"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status["lrps"]["unplaceable"], 1, "{status}");
    assert_eq!(status["placement_errors"][0]["process_guids"], serde_json::json!(["huge"]), "{status}");
    let text = diego(&cluster, &["status"]).await.ok().to_owned();
    assert!(text.contains("1 instance(s) of huge: "), "{text}");
    cluster.shutdown().await;
}
