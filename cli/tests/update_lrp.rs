//! `update-lrp GUID` against an in-process BBS: instances, routes and annotation change in
//! place (UpdateDesiredLRP); a change of the run info, by flag or by file, is refused with
//! exit 2 and nothing is sent.

#[path = "support/harness.rs"]
mod harness;

use harness::Bbs;

/// The cf-router routes of the stored LRP, as JSON.
async fn router_routes(bbs: &Bbs, guid: &str) -> serde_json::Value {
    let lrp = bbs.desired(guid).await;
    lrp.routes.get("cf-router").map_or(serde_json::Value::Null, |r| serde_json::from_slice(r).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_lrp_changes_instances_routes_and_annotation() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--port", "8080"]).await.ok();

    let out = bbs.diego(&["update-lrp", "web", "--instances", "3"]).await;
    assert_eq!(out.ok().trim(), "updated web: instances 3", "{out:?}");
    assert_eq!(bbs.desired("web").await.instances, 3);

    let out = bbs
        .diego(&[
            "update-lrp",
            "web",
            "--route",
            "web.example.com:8080",
            "--route",
            "www.example.com:8080",
            "--annotation",
            "v2",
        ])
        .await;
    out.ok();
    assert_eq!(
        router_routes(&bbs, "web").await,
        serde_json::json!([{ "hostnames": ["web.example.com", "www.example.com"], "port": 8080 }])
    );
    let lrp = bbs.desired("web").await;
    assert_eq!((lrp.annotation.as_str(), lrp.instances), ("v2", 3), "the instances were left alone");

    // The given routes replace the previous ones.
    let json = bbs.diego(&["update-lrp", "web", "--route", "api.example.com:8080", "--json"]).await.json();
    assert_eq!(json["process_guid"], "web");
    assert_eq!(
        router_routes(&bbs, "web").await,
        serde_json::json!([{ "hostnames": ["api.example.com"], "port": 8080 }])
    );
    bbs.diego(&["update-lrp", "web", "--no-routes"]).await.ok();
    assert!(!bbs.desired("web").await.routes.contains_key("cf-router"));

    let out = bbs.diego(&["update-lrp", "nope", "--instances", "1"]).await;
    assert!(out.fails(1).contains("ResourceNotFound"), "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_lrp_refuses_a_run_info_change_by_flag() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true"]).await.ok();
    for (flag, value) in [("--memory-mb", "256"), ("--command", "false"), ("--env", "A=b"), ("--port", "9090")] {
        let out = bbs.diego(&["update-lrp", "web", flag, value]).await;
        let line = out.fails(2);
        assert!(
            line.starts_with(&format!("error: changing {flag} changes the run info, which needs a rolling update")),
            "{line}"
        );
        assert!(line.contains("not supported yet"), "{line}");
    }
    let lrp = bbs.desired("web").await;
    assert_eq!((lrp.memory_mb, lrp.modification_tag.unwrap().index), (128, 0), "nothing was updated");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_lrp_from_a_file_applies_updatable_fields_and_refuses_run_info() {
    let bbs = Bbs::start().await;
    let dir = harness::scratch("update-lrp-file");
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--port", "8080"]).await.ok();

    // A partial file.
    let partial = dir.join("partial.yaml");
    std::fs::write(
        &partial,
        "instances: 4\nannotation: from a file\nroutes: {cf-router: [{hostnames: [a.example], port: 8080}]}\n",
    )
    .unwrap();
    bbs.diego(&["update-lrp", "web", "--file", partial.to_str().unwrap()]).await.ok();
    let lrp = bbs.desired("web").await;
    assert_eq!((lrp.instances, lrp.annotation.as_str()), (4, "from a file"));
    assert_eq!(router_routes(&bbs, "web").await, serde_json::json!([{ "hostnames": ["a.example"], "port": 8080 }]));

    // The whole LRP as `diego lrp --json` prints it, edited: only updatable fields changed.
    let shown = bbs.diego(&["lrp", "web", "--json"]).await.json();
    let mut whole = shown["desired_lrp"].clone();
    whole["instances"] = serde_json::json!(2);
    let whole_path = dir.join("whole.json");
    std::fs::write(&whole_path, whole.to_string()).unwrap();
    bbs.diego(&["update-lrp", "web", "-f", whole_path.to_str().unwrap()]).await.ok();
    assert_eq!(bbs.desired("web").await.instances, 2);

    // The same file with a changed memory: refused, naming the field.
    whole["memory_mb"] = serde_json::json!(512);
    whole["instances"] = serde_json::json!(7);
    std::fs::write(&whole_path, whole.to_string()).unwrap();
    let out = bbs.diego(&["update-lrp", "web", "-f", whole_path.to_str().unwrap()]).await;
    assert!(out.fails(2).starts_with("error: changing memory_mb changes the run info"), "{out:?}");
    assert_eq!(bbs.desired("web").await.instances, 2, "nothing was updated");

    // A field the update rules refuse is named with the file.
    let big = dir.join("big.json");
    std::fs::write(&big, serde_json::json!({ "annotation": "x".repeat(10 * 1024 + 1) }).to_string()).unwrap();
    let out = bbs.diego(&["update-lrp", "web", "-f", big.to_str().unwrap()]).await;
    let line = out.fails(2);
    assert!(line.contains(&big.display().to_string()) && line.contains("annotation"), "{line}");
    bbs.stop().await;
}
