//! `diego status` against an in-process BBS with two registered cells, LRPs (running, crashed,
//! unplaceable) and tasks: every section, for people and as JSON.

#[path = "support/harness.rs"]
mod harness;

use harness::{Bbs, lrp_key};
use proto::pb::bbs::v1 as api;

async fn cluster() -> Bbs {
    let bbs = Bbs::start().await;
    bbs.register_cell("cell-1", 1024, 4096, 10).await;
    bbs.register_cell("cell-2", 2048, 8192, 20).await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "3"]).await.ok();
    bbs.run_instance("web", 0, "ig-0", "cell-1", 61000).await;
    bbs.run_instance("web", 1, "ig-1", "cell-1", 61001).await;
    let failed = api::FailActualLrpRequest {
        actual_lrp_key: Some(lrp_key("web", 2)),
        error_message: "found no compatible cell".into(),
    };
    bbs.auctioneer().await.fail_actual_lrp(failed).await.unwrap();
    bbs.diego(&["desire-task", "--guid", "t1", "--command", "true"]).await.ok();
    bbs.diego(&["desire-task", "--guid", "t2", "--command", "true"]).await.ok();
    bbs.diego(&["cancel-task", "t2"]).await.ok();
    bbs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_section() {
    let bbs = cluster().await;
    let out = bbs.diego(&["status"]).await;
    let text = out.ok();
    for section in ["BBS", "AUCTIONEER", "CELLS (2)", "LRPS (1)", "TASKS (2)", "PLACEMENT ERRORS"] {
        assert!(text.lines().any(|l| l == section), "{section}:\n{text}");
    }
    assert!(text.contains(&format!("leader:      {} (this one)  owner ", bbs.address)), "the leader's lease: {text}");
    assert!(text.contains("standbys:"), "{text}");
    assert!(text.contains("no auctioneer holds the lock"), "{text}");
    let cell = text.lines().find(|l| l.trim_start().starts_with("cell-1")).unwrap();
    assert!(cell.contains("[#####---------------]") && cell.contains("256/1024 MB") && cell.contains("z1"), "{text}");
    assert!(text.contains("2 running / 3 desired, 0 starting, 0 crashing, 1 unplaceable"), "{text}");
    assert!(text.contains("1 COMPLETED, 1 PENDING"), "{text}");
    assert!(text.contains("1 instance(s) of web: found no compatible cell"), "{text}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_holds_the_same_view() {
    let bbs = cluster().await;
    let json = bbs.diego(&["status", "--json"]).await.json();
    assert!(!json["bbs"]["leader"]["owner"].as_str().unwrap().is_empty(), "{json}");
    assert_eq!(json["bbs"]["leader"]["address"], bbs.address.as_str());
    assert_eq!(json["bbs"]["connected_is_leader"], true);
    assert_eq!(json["bbs"]["connected"], bbs.address.as_str());
    assert_eq!(json["auctioneer"], serde_json::Value::Null);
    assert_eq!(json["cells"].as_array().unwrap().len(), 2);
    assert_eq!(json["cells"][0]["used"]["memory_mb"], 256);
    assert_eq!(
        json["lrps"],
        serde_json::json!({ "lrps": 1, "desired": 3, "running": 2, "starting": 0, "crashing": 0, "unplaceable": 1 })
    );
    assert_eq!(json["lrps_in_trouble"][0]["process_guid"], "web");
    assert_eq!(json["tasks"], serde_json::json!({ "COMPLETED": 1, "PENDING": 1 }));
    assert_eq!(json["placement_errors"][0]["error"], "found no compatible cell");
    assert_eq!(json["placement_errors"][0]["instances"], 1);
    bbs.stop().await;
}
