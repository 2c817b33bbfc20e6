//! End to end, on every backend: application logs (issue 18) through the library behind
//! `diego logs` (`cli::commands::logs::mux`), against a cluster of process-runtime cells over
//! mutual TLS. A running instance's stdout and stderr lines are retrievable with their source
//! and stream; a crashed instance's lines stay retrievable after its container is gone, and its
//! crash reason carries its last lines; `--follow` delivers each new line of an app printing
//! every 200 ms within a second of the previous one; a task's lines, and following a completed
//! task ends; an unknown guid is refused.

use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::client::Bbs;
use cli::commands::logs::Target;
use cli::commands::logs::mux::{self, Event, Line};
use db::Backend;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep_pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::fixtures::{self, plain_lrp};
use tests::steps::{PATIENCE, desire, desire_task, instance, wait_task};

tests::on_every_backend!(
    a_running_and_a_crashed_instance_s_logs_are_retrievable_and_follow_sees_new_lines,
    a_task_s_logs_are_retrievable_and_following_it_ends_when_it_completed,
);

fn lrp(guid: &str) -> Target {
    Target::Lrp { process_guid: guid.into(), index: None }
}

async fn operator(cluster: &Cluster) -> Bbs {
    Bbs::connect(&cluster.bbs_address, cluster.operator_security().clone()).await.expect("the bbs")
}

/// The recent lines of `target` once `want` holds for them.
async fn recent_until(cluster: &Cluster, target: &Target, what: &str, want: impl Fn(&[Line]) -> bool) -> Vec<Line> {
    let bbs = operator(cluster).await;
    let security = cluster.operator_security().clone();
    eventually(what, PATIENCE, || {
        let (bbs, security) = (bbs.clone(), security.clone());
        let want = &want;
        async move {
            let (lines, warnings) = mux::recent(&bbs, &security, target, 1000).await.expect("recent");
            assert!(warnings.is_empty(), "every cell answers: {warnings:?}");
            want(&lines).then_some(lines)
        }
    })
    .await
}

fn has(lines: &[Line], text: &str, stream: rep_pb::LogStream) -> bool {
    lines.iter().any(|l| l.message.text == text && l.message.stream == stream as i32)
}

async fn a_running_and_a_crashed_instance_s_logs_are_retrievable_and_follow_sees_new_lines(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let ticker = "echo started; i=0; while true; do i=$((i+1)); echo tick $i; echo warn $i >&2; sleep 0.2; done";
    desire(&cluster, plain_lrp("ticker", 1, fixtures::shell(ticker))).await;
    desire(
        &cluster,
        plain_lrp("crasher", 1, fixtures::shell("echo about to crash; sleep 0.1; echo bad thing >&2; exit 3")),
    )
    .await;

    // A running instance: its stdout and stderr, tagged with the instance and the source.
    let lines = recent_until(&cluster, &lrp("ticker"), "ticker's first lines", |lines| {
        has(lines, "started", rep_pb::LogStream::Stdout) && has(lines, "warn 1", rep_pb::LogStream::Stderr)
    })
    .await;
    let started = lines.iter().find(|l| l.message.text == "started").expect("started");
    assert_eq!((started.message.process_guid.as_str(), started.message.index), ("ticker", 0));
    assert_eq!(started.message.source, "APP");
    assert!(!started.message.instance_guid.is_empty());
    let printed = cli::commands::logs::render(started, cli::output::Format::Table);
    assert!(printed.ends_with(" [ticker/0 APP/STDOUT] started"), "{printed}");

    // A crashed instance: its lines outlive its container, and its crash reason ends with them.
    let crashed = eventually("the crash reported with its last lines", PATIENCE, || async {
        instance(&cluster, "crasher", 0).await.filter(|a| a.crash_count >= 1 && !a.crash_reason.is_empty())
    })
    .await;
    assert!(
        crashed.crash_reason.contains("Exited with status 3; last output: ")
            && crashed.crash_reason.contains(r#""about to crash""#)
            && crashed.crash_reason.contains(r#""bad thing""#),
        "{}",
        crashed.crash_reason
    );
    recent_until(&cluster, &lrp("crasher"), "the crashed instance's lines", |lines| {
        has(lines, "about to crash", rep_pb::LogStream::Stdout) && has(lines, "bad thing", rep_pb::LogStream::Stderr)
    })
    .await;

    // Follow: once the stream is up, every next line of an app printing each 200 ms arrives
    // within a second.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let target = Target::Lrp { process_guid: "ticker".into(), index: Some(0) };
    let follower =
        tokio::spawn(mux::follow(operator(&cluster).await, cluster.operator_security().clone(), target, 0, tx));
    let first = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("a first followed line");
    assert!(matches!(first, Some(Event::Line(_))), "{first:?}");
    for _ in 0..5 {
        let next = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        match next {
            Ok(Some(Event::Line(line))) => {
                assert!(line.message.text.starts_with("tick ") || line.message.text.starts_with("warn "), "{line:?}");
                assert_eq!(line.message.index, 0);
            }
            other => panic!("expected a new line within a second, got {other:?}"),
        }
    }
    drop(rx);
    let ended = tokio::time::timeout(PATIENCE, follower).await.expect("following ends with its reader");
    assert!(ended.expect("the follower task").is_ok());

    // An unknown guid is refused as not found.
    let unknown = mux::check_exists(&operator(&cluster).await, &lrp("nope")).await.expect_err("unknown");
    assert_eq!(unknown.exit_code(), 1, "{unknown}");
    assert!(unknown.to_string().contains("no desired lrp \"nope\""), "{unknown}");
    cluster.shutdown().await;
}

async fn a_task_s_logs_are_retrievable_and_following_it_ends_when_it_completed(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    desire_task(&cluster, "chatty", "tasks", fixtures::task("echo task says hi; echo oops >&2")).await;
    wait_task(&cluster, "chatty", pb::task::State::Completed).await;
    let target = Target::Task { task_guid: "chatty".into() };
    let lines = recent_until(&cluster, &target, "the task's lines", |lines| {
        has(lines, "task says hi", rep_pb::LogStream::Stdout) && has(lines, "oops", rep_pb::LogStream::Stderr)
    })
    .await;
    assert!(lines.iter().all(|l| l.message.task_guid == "chatty" && l.message.process_guid.is_empty()));

    // Following a completed task prints its lines and ends.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let bbs = operator(&cluster).await;
    let follower = tokio::spawn(mux::follow(bbs, cluster.operator_security().clone(), target, 100, tx));
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("following ends") {
        seen.push(event);
    }
    assert!(seen.iter().any(|e| matches!(e, Event::Line(l) if l.message.text == "task says hi")), "{seen:?}");
    assert!(matches!(seen.last(), Some(Event::Gone(why)) if why == "task chatty completed"), "{seen:?}");
    assert!(follower.await.expect("the follower task").is_ok());

    let unknown = mux::check_exists(&operator(&cluster).await, &Target::Task { task_guid: "nope".into() }).await;
    assert_eq!(unknown.expect_err("unknown").exit_code(), 1);
    cluster.shutdown().await;
}
