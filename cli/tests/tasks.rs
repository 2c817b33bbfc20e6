//! `desire-task`, `tasks`, `task` and `cancel-task` against an in-process BBS.

#[path = "support/harness.rs"]
mod harness;

use harness::Bbs;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desire_task_stores_a_shell_command_with_its_callback() {
    let bbs = Bbs::start().await;
    let out = bbs
        .diego(&[
            "desire-task",
            "--guid",
            "t1",
            "--command",
            "echo hi > /tmp/out",
            "--memory-mb",
            "64",
            "--callback-url",
            "http://127.0.0.1:9/done",
            "--result-file",
            "/tmp/out",
        ])
        .await;
    assert!(out.ok().contains("desired task t1 in domain diego"), "{out:?}");
    let task = bbs
        .client()
        .await
        .task_by_guid(api::TaskByGuidRequest { task_guid: "t1".into() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let def = task.task_definition.unwrap();
    assert_eq!((def.memory_mb, def.root_fs.as_str()), (64, "preloaded:busybox"));
    assert_eq!(def.completion_callback_url, "http://127.0.0.1:9/done");
    assert_eq!(def.result_file, "/tmp/out");
    let Some(pb::action::Action::RunAction(run)) = def.action.and_then(|a| a.action) else { panic!("no run action") };
    assert_eq!(run.args, vec!["-c".to_owned(), "echo hi > /tmp/out".to_owned()]);

    let json =
        bbs.diego(&["desire-task", "--guid", "t2", "--command", "true", "--domain", "jobs", "--json"]).await.json();
    assert_eq!(json, serde_json::json!({ "task_guid": "t2", "domain": "jobs" }));

    let line = bbs.diego(&["desire-task", "--guid", "t1", "--command", "true"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceExists: "), "{line}");
    // A flag's bad value is clap's usage error: the first line names the flag.
    let out = bbs.diego(&["desire-task", "--guid", "t3", "--command", "true", "--env", "NOVALUE"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    let line = out.stderr.lines().next().unwrap_or_default();
    assert!(line.starts_with("error: ") && line.contains("--env") && line.contains("NAME=VALUE"), "{line}");
    assert_eq!(bbs.diego(&["desire-task", "--guid", "t4"]).await.code, 2, "--command is required");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_task_follow_a_task_through_its_states() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-task", "--guid", "build", "--command", "make", "--memory-mb", "64"]).await.ok();
    bbs.diego(&["desire-task", "--guid", "test", "--command", "make test", "--domain", "ci"]).await.ok();

    let table = bbs.diego(&["tasks"]).await;
    let text = table.ok();
    assert!(text.lines().next().unwrap().starts_with("GUID"), "{text}");
    let build = text.lines().find(|l| l.starts_with("build")).unwrap();
    assert!(build.contains("PENDING") && build.contains("64 MB"), "{text}");

    let mut client = bbs.cell("cell-1").await;
    let started =
        client.start_task(api::StartTaskRequest { task_guid: "build".into(), cell_id: "cell-1".into() }).await.unwrap();
    assert!(started.into_inner().should_start);
    let json = bbs.diego(&["tasks", "--json"]).await.json();
    let build = json.as_array().unwrap().iter().find(|t| t["task_guid"] == "build").unwrap().clone();
    assert_eq!((build["state"].as_str(), build["cell_id"].as_str()), (Some("RUNNING"), Some("cell-1")));
    assert_eq!(build["command"], "/bin/sh -c make");
    let on_cell = bbs.diego(&["tasks", "--cell", "cell-1", "--json"]).await.json();
    assert_eq!(on_cell.as_array().unwrap().len(), 1);
    let in_ci = bbs.diego(&["tasks", "--domain", "ci", "--json"]).await.json();
    assert_eq!(in_ci[0]["task_guid"], "test");

    client
        .complete_task(api::CompleteTaskRequest {
            task_guid: "build".into(),
            cell_id: "cell-1".into(),
            failed: true,
            failure_reason: "exit status 2".into(),
            result: String::new(),
        })
        .await
        .unwrap();
    let text = bbs.diego(&["task", "build"]).await.ok().to_owned();
    assert!(text.contains("task guid:     build"), "{text}");
    assert!(text.contains("state:         COMPLETED"), "{text}");
    assert!(text.contains("outcome:       failed: exit status 2"), "{text}");
    assert!(text.contains("command:       /bin/sh -c make"), "{text}");
    let json = bbs.diego(&["task", "build", "--json"]).await.json();
    assert_eq!((json["failed"].as_bool(), json["failure_reason"].as_str()), (Some(true), Some("exit status 2")));
    assert_eq!(json["memory_mb"], 64);
    let tasks = bbs.diego(&["tasks"]).await;
    assert!(tasks.ok().contains("failed: exit status 2"), "{tasks:?}");

    let line = bbs.diego(&["task", "nope"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceNotFound: ") && line.contains("nope"), "{line}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_task_completes_it_as_failed() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-task", "--guid", "t1", "--command", "sleep 1000"]).await.ok();
    assert!(bbs.diego(&["cancel-task", "t1"]).await.ok().contains("cancelled task t1"));
    let json = bbs.diego(&["task", "t1", "--json"]).await.json();
    assert_eq!((json["state"].as_str(), json["failed"].as_bool()), (Some("COMPLETED"), Some(true)));
    assert!(json["failure_reason"].as_str().unwrap().contains("cancel"), "{json}");

    bbs.diego(&["desire-task", "--guid", "t2", "--command", "sleep 1000"]).await.ok();
    let json = bbs.diego(&["cancel-task", "t2", "--json"]).await.json();
    assert_eq!(json, serde_json::json!({ "task_guid": "t2", "cancelled": true }));

    let line = bbs.diego(&["cancel-task", "nope"]).await.fails(1).to_owned();
    assert!(line.starts_with("error: ResourceNotFound: "), "{line}");
    // Cancelling a completed task is a refused transition, still exit 1.
    let out = bbs.diego(&["cancel-task", "t1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desire_task_from_a_file_and_its_errors_name_the_field() {
    let bbs = Bbs::start().await;
    let dir = harness::scratch("desire-task-file");
    let good = dir.join("report.yaml");
    std::fs::write(
        &good,
        "task_guid: report\nmemory_mb: 64\naction: {run_action: {path: /bin/sh, args: [-c, 'echo hi'], user: root}}\n",
    )
    .unwrap();
    bbs.diego(&["desire-task", "--file", good.to_str().unwrap()]).await.ok();
    let task = bbs.diego(&["task", "report", "--json"]).await.json();
    assert_eq!((task["task_guid"].as_str(), task["memory_mb"].as_i64()), (Some("report"), Some(64)));

    // Checked as the BBS would, before sending: the file and the field are named.
    let bad = dir.join("bad.json");
    for (content, field) in [
        (r#"{"task_guid": "t2", "memory_mb": -1, "action": {"run_action": {"path": "x"}}}"#, "memory_mb"),
        (r#"{"task_guid": "t2"}"#, "action"),
        (r#"{"task_guid": "t 2", "action": {"run_action": {"path": "x"}}}"#, "task_guid"),
    ] {
        std::fs::write(&bad, content).unwrap();
        let out = bbs.diego(&["desire-task", "--file", bad.to_str().unwrap()]).await;
        let line = out.fails(2);
        assert!(line.starts_with(&format!("error: invalid --file: {}: ", bad.display())), "{line}");
        assert!(line.contains(field), "{field}: {line}");
    }
    // The file conflicts with the flags.
    let out = bbs.diego(&["desire-task", "--file", good.to_str().unwrap(), "--guid", "x"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    bbs.stop().await;
}
