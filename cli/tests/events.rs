//! `events`: a running `diego events` prints one line per event as the BBS emits them, for
//! people and as JSON lines, and exits 3 with one line when the BBS goes away.

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use harness::Bbs;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// A running `diego events` whose subscription is in place.
struct Follower {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Follower {
    async fn start(bbs: &Bbs, args: &[&str]) -> Follower {
        let mut child = bbs.spawn_diego(args);
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let announced = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
            .await
            .expect("diego events never announced its subscription")
            .unwrap()
            .unwrap_or_default();
        assert!(announced.starts_with("following "), "{announced}");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Follower { child, lines }
    }

    /// Reads lines until one satisfies `wanted`; returns every line read.
    async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no matching event; saw {seen:#?}"))
                .unwrap();
            let Some(line) = next else { panic!("diego events ended; saw {seen:#?}") };
            let done = wanted(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

/// A table line without its leading timestamp, after checking that it is one: RFC 3339 in UTC
/// with milliseconds (`2026-12-03T23:39:01.123Z`), of this year.
fn untimed(line: &str) -> String {
    let (time, rest) = line.split_once(' ').unwrap_or_else(|| panic!("no timestamp: {line}"));
    let shape = time.len() == 24
        && time.ends_with('Z')
        && time.as_bytes()[10] == b'T'
        && time.as_bytes()[19] == b'.'
        && time.chars().filter(char::is_ascii_digit).count() == 17;
    assert!(shape, "not an RFC 3339 UTC time: {line}");
    let this_year: u32 = cli::output::rfc3339(cli::output::now_ns())[..4].parse().unwrap();
    let year: u32 = time[..4].parse().unwrap();
    assert!(year + 1 >= this_year && year <= this_year, "not a time of now: {line}");
    rest.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_one_line_per_lrp_event() {
    let bbs = Bbs::start().await;
    let mut events = Follower::start(&bbs, &["events"]).await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--port", "8080"]).await.ok();
    bbs.run_instance("web", 0, "ig-0", "cell-1", 61000).await;
    bbs.diego(&["scale", "web", "2"]).await.ok();
    let lines: Vec<String> =
        events.until(|l| l.contains("desired_lrp_changed")).await.iter().map(|l| untimed(l)).collect();
    let expected = [
        "1 desired_lrp_created web desired: 1 instance(s) in diego",
        "2 actual_lrp_instance_created web/0 UNCLAIMED",
        "3 actual_lrp_instance_changed web/0 UNCLAIMED -> CLAIMED on cell-1",
        "4 actual_lrp_instance_changed web/0 CLAIMED -> RUNNING on cell-1 at 10.0.0.1:61000->8080",
        "5 desired_lrp_changed web changed: instances 1 -> 2",
    ];
    assert_eq!(lines, expected);
    events.child.kill().await.unwrap();
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_json_prints_one_object_per_line_with_sequences() {
    let bbs = Bbs::start().await;
    let mut events = Follower::start(&bbs, &["events", "--json"]).await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true"]).await.ok();
    bbs.claim("web", 0, "ig-0", "cell-1").await;
    bbs.diego(&["remove-lrp", "web"]).await.ok();
    let lines = events.until(|l| l.contains("desired_lrp_removed")).await;
    let parsed: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, event) in parsed.iter().enumerate() {
        assert_eq!(event["sequence"], i + 1, "{event}");
        untimed(&format!("{} x", event["time"].as_str().unwrap()));
    }
    assert_eq!(parsed[0]["type"], "desired_lrp_created");
    assert_eq!(parsed[0]["process_guid"], "web");
    assert_eq!(parsed[1]["type"], "actual_lrp_instance_created");
    assert_eq!(parsed[1]["instance"]["state"], "UNCLAIMED");
    assert_eq!(parsed[2]["type"], "actual_lrp_instance_changed");
    assert_eq!(parsed[2]["before"]["state"], "UNCLAIMED");
    assert_eq!(parsed[2]["after"]["state"], "CLAIMED");
    assert_eq!(parsed[2]["after"]["cell_id"], "cell-1");
    assert_eq!(parsed.last().unwrap()["type"], "desired_lrp_removed");
    events.child.kill().await.unwrap();
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cell_filter_keeps_that_cells_instance_events() {
    let bbs = Bbs::start().await;
    let mut events = Follower::start(&bbs, &["events", "--cell", "cell-2"]).await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "2"]).await.ok();
    bbs.claim("web", 0, "ig-0", "cell-1").await;
    bbs.claim("web", 1, "ig-1", "cell-2").await;
    let lines = events.until(|l| l.contains("web/1 UNCLAIMED -> CLAIMED on cell-2")).await;
    assert!(!lines.iter().any(|l| l.contains("on cell-1")), "{lines:#?}");
    events.child.kill().await.unwrap();
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tasks_follow_task_events() {
    let bbs = Bbs::start().await;
    let mut events = Follower::start(&bbs, &["events", "--tasks"]).await;
    bbs.diego(&["desire-task", "--guid", "t1", "--command", "true"]).await.ok();
    bbs.diego(&["cancel-task", "t1"]).await.ok();
    let lines: Vec<String> = events.until(|l| l.contains("task_changed")).await.iter().map(|l| untimed(l)).collect();
    assert_eq!(lines[0], "1 task_created t1 PENDING in diego");
    assert!(lines[1].starts_with("2 task_changed t1 PENDING -> COMPLETED (failed: "), "{lines:#?}");
    events.child.kill().await.unwrap();

    let mut events = Follower::start(&bbs, &["events", "--tasks", "--json"]).await;
    bbs.diego(&["desire-task", "--guid", "t2", "--command", "true"]).await.ok();
    let line = events.until(|_| true).await.remove(0);
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!((event["type"].as_str(), event["task"]["task_guid"].as_str()), (Some("task_created"), Some("t2")));
    events.child.kill().await.unwrap();
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_exit_3_with_one_line_when_the_bbs_goes_away() {
    // The BBS runs on a runtime of its own; shutting that runtime down drops its connections
    // at once, which is what a killed BBS process looks like to a client.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let bbs = runtime.spawn(Bbs::start()).await.unwrap();
    let mut child = bbs.spawn_diego(&["events"]);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let announced = tokio::time::timeout(Duration::from_secs(20), stderr.next_line()).await.unwrap().unwrap();
    assert!(announced.unwrap_or_default().starts_with("following "));
    runtime.shutdown_background();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("diego events kept running after the bbs went away")
        .unwrap();
    let mut rest = Vec::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        rest.push(line);
    }
    drop(bbs);
    assert_eq!(status.code(), Some(3), "{rest:?}");
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(rest[0].starts_with("error: lost the event stream of the bbs at "), "{rest:?}");
    harness::assert_no_panic(&rest.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_to_an_unreachable_bbs_exit_3() {
    let address = harness::dead_address();
    let out = harness::diego(&["--bbs-address", &address, "events"]).await;
    let line = out.fails(3);
    assert!(line.contains(&format!("cannot reach the bbs at {address}")), "{line}");
}
