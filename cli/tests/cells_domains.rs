//! `cells`, `domains` and `upsert-domain` against an in-process BBS.

#[path = "support/harness.rs"]
mod harness;

use harness::Bbs;
use proto::pb::bbs::v1 as api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_show_capacity_and_the_use_of_instances_and_running_tasks() {
    let bbs = Bbs::start().await;
    bbs.register_cell("cell-1", 1024, 4096, 10).await;
    bbs.register_cell("cell-2", 2048, 8192, 20).await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "3"]).await.ok();
    bbs.claim("web", 0, "ig-0", "cell-1").await; // CLAIMED holds a container
    bbs.run_instance("web", 1, "ig-1", "cell-1", 61001).await; // RUNNING
    // index 2 stays UNCLAIMED: it uses nothing anywhere.
    bbs.diego(&["desire-task", "--guid", "t1", "--command", "true", "--memory-mb", "64", "--disk-mb", "10"]).await.ok();
    bbs.diego(&["desire-task", "--guid", "t2", "--command", "true"]).await.ok(); // PENDING
    let mut client = bbs.cell("cell-1").await;
    client.start_task(api::StartTaskRequest { task_guid: "t1".into(), cell_id: "cell-1".into() }).await.unwrap();

    let table = bbs.diego(&["cells"]).await;
    let text = table.ok();
    assert!(text.lines().next().unwrap().starts_with("CELL"), "{text}");
    let one = text.lines().find(|l| l.starts_with("cell-1")).unwrap();
    assert!(one.contains("320/1024 MB"), "128 + 128 + 64: {text}");
    assert!(one.contains("522/4096 MB"), "256 + 256 + 10: {text}");
    assert!(one.contains("3/10"), "{text}");
    assert!(one.contains("127.0.0.1:1801") && one.contains("z1"), "{text}");
    let two = text.lines().find(|l| l.starts_with("cell-2")).unwrap();
    assert!(two.contains("0/2048 MB") && two.contains("0/20"), "{text}");

    let json = bbs.diego(&["cells", "--json"]).await.json();
    let cell = &json[0];
    assert_eq!(cell["cell_id"], "cell-1");
    assert_eq!(cell["capacity"], serde_json::json!({ "memory_mb": 1024, "disk_mb": 4096, "containers": 10 }));
    assert_eq!(cell["used"], serde_json::json!({ "memory_mb": 320, "disk_mb": 522, "containers": 3 }));
    assert_eq!((cell["lrp_instances"].as_i64(), cell["tasks"].as_i64()), (Some(2), Some(1)));
    assert_eq!(cell["rootfs"], serde_json::json!(["preloaded:busybox"]));
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_with_none_registered_prints_only_the_header() {
    let bbs = Bbs::start().await;
    let out = bbs.diego(&["cells"]).await;
    assert_eq!(out.ok().lines().count(), 1, "{out:?}");
    assert_eq!(bbs.diego(&["cells", "--json"]).await.json(), serde_json::json!([]));
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_domain_then_domains_lists_it() {
    let bbs = Bbs::start().await;
    let out = bbs.diego(&["upsert-domain", "apps"]).await;
    assert!(out.ok().contains("domain apps is fresh and never expires"), "{out:?}");
    let out = bbs.diego(&["upsert-domain", "cf", "--ttl", "120"]).await;
    assert!(out.ok().contains("domain cf is fresh for 120 s"), "{out:?}");
    let json = bbs.diego(&["upsert-domain", "jobs", "--json"]).await.json();
    assert_eq!(json, serde_json::json!({ "domain": "jobs", "ttl": 0 }));

    let table = bbs.diego(&["domains"]).await;
    let rows: Vec<Vec<&str>> = table.ok().lines().map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, vec!["DOMAIN", "apps", "cf", "jobs"], "{table:?}");
    assert_eq!((rows[1][1], rows[3][1]), ("never", "never"), "{table:?}");
    let left: u32 = rows[2][2].parse().unwrap_or_default();
    assert!(rows[2][1] == "in" && (60..=120).contains(&left), "what is left of cf's TTL: {table:?}");
    let json = bbs.diego(&["domains", "--json"]).await.json();
    assert_eq!(json, serde_json::json!(["apps", "cf", "jobs"]));

    assert_eq!(bbs.diego(&["upsert-domain", "x", "--ttl", "-5"]).await.code, 2);
    // An empty domain is refused locally now, naming the argument (it was the BBS's refusal).
    let out = bbs.diego(&["upsert-domain", ""]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: invalid value '' for '<NAME>': must not be empty"), "{out:?}");
    bbs.stop().await;
}
