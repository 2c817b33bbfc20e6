//! `desire-lrp`, `scale`, `remove-lrp`, `retire`, `lrps` and `lrp` against an in-process BBS.

#[path = "support/harness.rs"]
mod harness;

use harness::Bbs;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desire_lrp_from_flags_builds_a_shell_command_with_a_tcp_check() {
    let bbs = Bbs::start().await;
    let out = bbs
        .diego(&[
            "desire-lrp",
            "--guid",
            "web",
            "--command",
            "exec ./server",
            "--instances",
            "3",
            "--port",
            "8080",
            "--env",
            "GREETING=hello",
        ])
        .await;
    assert!(out.ok().contains("desired lrp web: 3 instance(s) of 128 MB in domain diego"), "{out:?}");

    let lrp = bbs.desired("web").await;
    assert_eq!((lrp.instances, lrp.memory_mb, lrp.disk_mb), (3, 128, 256));
    assert_eq!((lrp.domain.as_str(), lrp.rootfs.as_str()), ("diego", "preloaded:busybox"));
    assert_eq!(lrp.ports, vec![8080]);
    let Some(pb::action::Action::RunAction(run)) = lrp.action.and_then(|a| a.action) else { panic!("no run action") };
    assert_eq!((run.path.as_str(), run.args.clone()), ("/bin/sh", vec!["-c".to_owned(), "exec ./server".to_owned()]));
    assert_eq!(lrp.environment_variables[0].name, "GREETING");
    let checks = lrp.check_definition.unwrap().checks;
    assert_eq!(checks[0].tcp_check.as_ref().map(|t| t.port), Some(8080));
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desire_lrp_with_http_check_and_json_output() {
    let bbs = Bbs::start().await;
    let out = bbs
        .diego(&[
            "desire-lrp",
            "--guid",
            "api",
            "--command",
            "./api",
            "--port",
            "9000",
            "--health-check",
            "http",
            "--health-check-path",
            "/health",
            "--memory-mb",
            "64",
            "--domain",
            "apps",
            "--json",
        ])
        .await
        .json();
    assert_eq!(out, serde_json::json!({ "process_guid": "api", "domain": "apps", "instances": 1 }));
    let check = bbs.desired("api").await.check_definition.unwrap().checks.remove(0).http_check.unwrap();
    assert_eq!((check.port, check.path.as_str()), (9000, "/health"));

    // A check without a port to probe is refused locally.
    let out = bbs.diego(&["desire-lrp", "--guid", "x", "--command", "true", "--health-check", "tcp"]).await;
    assert!(out.fails(2).contains("--health-check"), "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desire_lrp_from_json_and_yaml_files() {
    let bbs = Bbs::start().await;
    let dir = harness::scratch("desire-from-files");
    let json = dir.join("worker.json");
    std::fs::write(
        &json,
        r#"{
            "process_guid": "worker",
            "instances": 2,
            "memory_mb": 256,
            "disk_mb": 512,
            "ports": [8080],
            "routes": {"cf-router": [{"hostnames": ["worker.example.com"], "port": 8080}]},
            "action": {"run_action": {"path": "/bin/sh", "args": ["-c", "sleep 1000"], "user": "root"}},
            "check_definition": {"checks": [{"http_check": {"port": 8080, "path": "/health"}}]}
        }"#,
    )
    .unwrap();
    let out = bbs.diego(&["desire-lrp", "--file", json.to_str().unwrap()]).await;
    assert!(out.ok().contains("desired lrp worker: 2 instance(s) of 256 MB"), "{out:?}");
    let lrp = bbs.desired("worker").await;
    assert_eq!((lrp.instances, lrp.disk_mb, lrp.domain.as_str()), (2, 512, "diego"));
    let routes: serde_json::Value = serde_json::from_slice(&lrp.routes["cf-router"]).unwrap();
    assert_eq!(routes[0]["hostnames"][0], "worker.example.com");

    let yaml = dir.join("batch.yml");
    std::fs::write(
        &yaml,
        "process_guid: batch\ndomain: jobs\ninstances: 1\nmemory_mb: 32\naction:\n  run_action:\n    path: /bin/sleep\n    args: ['1000']\n",
    )
    .unwrap();
    bbs.diego(&["desire-lrp", "-f", yaml.to_str().unwrap()]).await.ok();
    assert_eq!(bbs.desired("batch").await.domain, "jobs");

    // What `lrp --json` prints under desired_lrp is the file format: it desires a copy.
    let shown = bbs.diego(&["lrp", "worker", "--json"]).await.json();
    let mut copy = shown["desired_lrp"].clone();
    copy["process_guid"] = "worker-copy".into();
    let path = dir.join("copy.json");
    std::fs::write(&path, copy.to_string()).unwrap();
    bbs.diego(&["desire-lrp", "--file", path.to_str().unwrap()]).await.ok();
    let copied = bbs.desired("worker-copy").await;
    assert_eq!((copied.instances, copied.memory_mb, copied.routes.len()), (2, 256, 1));
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_exits_2_naming_the_file_and_the_parse_error() {
    let bbs = Bbs::start().await;
    let dir = harness::scratch("invalid-files");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\n  \"process_guid\": \"web\",\n  \"instances\": three\n}").unwrap();
    let out = bbs.diego(&["desire-lrp", "--file", broken.to_str().unwrap()]).await;
    let line = out.fails(2);
    assert!(line.contains(&format!("invalid desired lrp file {}", broken.display())), "{line}");
    assert!(line.contains("line 3 column"), "{line}");

    let unknown = dir.join("unknown.json");
    std::fs::write(&unknown, r#"{"process_guid": "web", "instancez": 3}"#).unwrap();
    let line = bbs.diego(&["desire-lrp", "--file", unknown.to_str().unwrap()]).await.fails(2).to_owned();
    assert!(line.contains("unknown field `instancez`"), "{line}");

    let missing = dir.join("missing.json");
    let line = bbs.diego(&["desire-lrp", "--file", missing.to_str().unwrap()]).await.fails(2).to_owned();
    assert!(line.contains("cannot read") && line.contains("no such file or directory"), "{line}");

    // Flags and a file do not mix; a file is never half-applied.
    let out = bbs.diego(&["desire-lrp", "--file", broken.to_str().unwrap(), "--instances", "2"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(bbs.diego(&["lrps", "--json"]).await.json().as_array().unwrap().is_empty());
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bbs_refusing_a_desire_exits_1_with_the_diego_error_type() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true"]).await.ok();
    let line = bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceExists: "), "{line}");
    // A guid the BBS would refuse is refused before sending (guard_rails.rs has every case).
    let out = bbs.diego(&["desire-lrp", "--guid", "bad/guid", "--command", "true"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.starts_with("error: invalid value 'bad/guid' for '--guid <GUID>': must match"), "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrps_and_lrp_show_unclaimed_instances_for_people_and_scripts() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "sleep 1000", "--instances", "3", "--port", "8080"])
        .await
        .ok();
    bbs.diego(&["desire-lrp", "--guid", "other", "--command", "true", "--domain", "apps", "--memory-mb", "64"])
        .await
        .ok();

    let table = bbs.diego(&["lrps"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(lines[0].starts_with("GUID") && lines[0].contains("INSTANCES"), "{table:?}");
    assert!(lines[1].starts_with("other") && lines[1].contains("0/1"), "{table:?}");
    assert!(lines[2].starts_with("web") && lines[2].contains("0/3") && lines[2].contains("128 MB"), "{table:?}");

    let json = bbs.diego(&["lrps", "--json"]).await.json();
    let web = &json[1];
    assert_eq!((web["process_guid"].as_str(), web["desired"].as_i64()), (Some("web"), Some(3)));
    assert_eq!((web["running"].as_i64(), web["unclaimed"].as_i64()), (Some(0), Some(3)));
    let only_apps = bbs.diego(&["lrps", "--domain", "apps", "--json"]).await.json();
    assert_eq!(only_apps.as_array().unwrap().len(), 1);

    let shown = bbs.diego(&["lrp", "web"]).await;
    let text = shown.ok();
    assert!(text.contains("instances:     0 running / 3 desired"), "{text}");
    assert!(text.contains("command:       /bin/sh -c sleep 1000"), "{text}");
    assert!(text.contains("health check:  tcp 8080"), "{text}");
    assert_eq!(text.matches("UNCLAIMED").count(), 3, "{text}");

    let json = bbs.diego(&["lrp", "web", "--json"]).await.json();
    assert_eq!(json["desired_lrp"]["process_guid"], "web");
    assert_eq!(json["instances"].as_array().unwrap().len(), 3);
    assert_eq!(json["instances"][2]["index"], 2);
    assert_eq!(json["instances"][2]["state"], "UNCLAIMED");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrp_shows_running_instances_crashes_and_placement_errors() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "sleep 1000", "--instances", "3", "--port", "8080"])
        .await
        .ok();
    bbs.run_instance("web", 0, "ig-0", "cell-1", 61000).await;
    bbs.run_instance("web", 1, "ig-1", "cell-2", 61001).await;
    let mut client = bbs.cell("cell-2").await;
    client
        .crash_actual_lrp(api::CrashActualLrpRequest {
            actual_lrp_key: Some(harness::lrp_key("web", 1)),
            actual_lrp_instance_key: Some(harness::instance_key("ig-1", "cell-2")),
            error_message: "exit status 1".into(),
        })
        .await
        .unwrap();
    bbs.auctioneer()
        .await
        .fail_actual_lrp(api::FailActualLrpRequest {
            actual_lrp_key: Some(harness::lrp_key("web", 2)),
            error_message: "insufficient resources: memory".into(),
        })
        .await
        .unwrap();

    let text = bbs.diego(&["lrp", "web"]).await.ok().to_owned();
    assert!(text.contains("instances:     1 running / 3 desired"), "{text}");
    let row = |index: &str| {
        text.lines().find(|l| l.starts_with(&format!("{index} "))).unwrap_or_else(|| panic!("no row {index}: {text}"))
    };
    assert!(row("0").contains("RUNNING") && row("0").contains("cell-1"), "{text}");
    assert!(row("0").contains("10.0.0.1:61000->8080"), "{text}");
    assert!(row("1").contains("last crash: exit status 1"), "{text}");
    assert!(row("2").contains("placement error: insufficient resources: memory"), "{text}");

    let json = bbs.diego(&["lrp", "web", "--json"]).await.json();
    assert_eq!(json["running"], 1);
    let first = &json["instances"][0];
    assert_eq!((first["state"].as_str(), first["cell_id"].as_str()), (Some("RUNNING"), Some("cell-1")));
    assert_eq!(first["ports"][0], serde_json::json!({ "container_port": 8080, "host_port": 61000 }));
    assert_eq!(json["instances"][1]["crash_count"], 1);
    assert_eq!(json["instances"][1]["crash_reason"], "exit status 1");
    assert_eq!(json["instances"][2]["placement_error"], "insufficient resources: memory");

    let listed = bbs.diego(&["lrps"]).await;
    assert!(listed.ok().lines().nth(1).unwrap().contains("1/3"), "{listed:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_changes_the_instances_and_refuses_unknown_guids() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "2"]).await.ok();
    assert!(bbs.diego(&["scale", "web", "5"]).await.ok().contains("scaled web to 5 instance(s)"));
    assert_eq!(bbs.desired("web").await.instances, 5);
    assert_eq!(bbs.actual("web").await.len(), 5);
    let json = bbs.diego(&["scale", "web", "1", "--json"]).await.json();
    assert_eq!(json, serde_json::json!({ "process_guid": "web", "instances": 1 }));
    assert_eq!(bbs.desired("web").await.instances, 1);

    let line = bbs.diego(&["scale", "nope", "2"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceNotFound: ") && line.contains("nope"), "{line}");
    assert_eq!(bbs.diego(&["scale", "web", "-1"]).await.code, 2);
    assert_eq!(bbs.diego(&["scale", "web", "many"]).await.code, 2);
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_lrp_deletes_it_and_a_second_removal_is_not_found() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "2"]).await.ok();
    assert!(bbs.diego(&["remove-lrp", "web"]).await.ok().contains("removed desired lrp web"));
    assert!(bbs.diego(&["lrps", "--json"]).await.json().as_array().unwrap().is_empty());
    let line = bbs.diego(&["remove-lrp", "web"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceNotFound: "), "{line}");

    bbs.diego(&["desire-lrp", "--guid", "api", "--command", "true"]).await.ok();
    let json = bbs.diego(&["remove-lrp", "api", "--json"]).await.json();
    assert_eq!(json, serde_json::json!({ "process_guid": "api", "removed": true }));
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_stops_one_instance_and_refuses_unknown_indices() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "2"]).await.ok();
    // A running instance on a cell with no presence: the BBS removes its row itself.
    bbs.run_instance("web", 0, "ig-0", "gone-cell", 61000).await;
    let out = bbs.diego(&["retire", "web", "0"]).await;
    assert!(out.ok().contains("retired web index 0 (RUNNING on gone-cell)"), "{out:?}");
    let remaining = bbs.actual("web").await;
    assert!(
        remaining.iter().all(|a| a.actual_lrp_key.as_ref().unwrap().index != 0),
        "index 0 is still there: {remaining:?}"
    );

    let json = bbs.diego(&["retire", "web", "1", "--json"]).await.json();
    assert_eq!((json["index"].as_i64(), json["state"].as_str()), (Some(1), Some("UNCLAIMED")));

    let line = bbs.diego(&["retire", "web", "7"]).await.fails(1).to_owned();
    assert_eq!(line, "error: ResourceNotFound: actual lrp not found: web index 7");
    let line = bbs.diego(&["retire", "nope", "0"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceNotFound: "), "{line}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrp_of_an_unknown_guid_exits_1_with_resource_not_found() {
    let bbs = Bbs::start().await;
    let line = bbs.diego(&["lrp", "nope"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceNotFound: ") && line.contains("nope"), "{line}");
    let out = bbs.diego(&["lrp", "nope", "--json"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.is_empty(), "{out:?}");
    bbs.stop().await;
}
