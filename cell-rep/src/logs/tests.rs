//! The store's bounds: the ring, the cut, retention, rotation and lagging followers.

use std::sync::Arc;
use std::time::Duration;

use super::capture::read_lines;
use super::file::RotatingFile;
use super::*;

fn lrp(process_guid: &str, index: i32, guid: &str) -> Identity {
    Identity {
        process_guid: process_guid.into(),
        index: Some(index),
        instance_guid: guid.into(),
        task_guid: String::new(),
    }
}

fn store(config: LogConfig) -> LogStore {
    LogStore::new(config, None)
}

fn texts(lines: &[Arc<LogLine>]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

fn app() -> Arc<str> {
    Arc::from("APP")
}

fn web(index: Option<i32>) -> Filter {
    Filter::Lrp { process_guid: "web".into(), index }
}

#[test]
fn the_ring_keeps_the_latest_lines_of_each_container() {
    let logs = store(LogConfig { buffer_lines: 3, ..LogConfig::default() });
    logs.open("i0", lrp("web", 0, "i0"));
    logs.open("i1", lrp("web", 1, "i1"));
    for n in 0..5 {
        logs.push("i0", &app(), Stream::Stdout, format!("zero {n}"), false);
    }
    logs.push("i1", &app(), Stream::Stderr, "one".into(), false);
    let (all, follow) = logs.subscribe(&web(None), 100, false);
    assert!(follow.is_none());
    assert_eq!(texts(&all), ["zero 2", "zero 3", "zero 4", "one"]);
    let (last_two, _) = logs.subscribe(&web(None), 2, false);
    assert_eq!(texts(&last_two), ["zero 4", "one"]);
    let (index_1, _) = logs.subscribe(&web(Some(1)), 100, false);
    assert_eq!(texts(&index_1), ["one"]);
    assert_eq!(index_1[0].stream, Stream::Stderr);
    assert_eq!(index_1[0].identity.label(), "web/1");
    let (none, _) = logs.subscribe(&Filter::Task { task_guid: "web".into() }, 100, false);
    assert!(none.is_empty());
}

#[test]
fn a_stopped_container_stays_readable_within_the_retention_bounds() {
    let logs = store(LogConfig { retained_per_guid: 2, ..LogConfig::default() });
    for n in 0..4 {
        let guid = format!("i{n}");
        logs.open(&guid, lrp("web", 0, &guid));
        logs.push(&guid, &app(), Stream::Stdout, format!("run {n}"), false);
        logs.close(&guid);
    }
    let (kept, _) = logs.subscribe(&web(None), 100, false);
    assert_eq!(texts(&kept), ["run 2", "run 3"], "the last two stopped containers are kept");
    assert_eq!(logs.tail("i3", 3, 512), ["run 3"]);
    assert!(logs.tail("i0", 3, 512).is_empty());

    let clock = svc::clock::ManualClock::new(1_000);
    let config = LogConfig { retention: Duration::from_secs(60), ..LogConfig::default() };
    let expiring = LogStore::with_clock(config, None, Arc::new(clock.clone()));
    expiring.open("i0", lrp("web", 0, "i0"));
    expiring.push("i0", &app(), Stream::Stdout, "kept a minute".into(), false);
    expiring.close("i0");
    clock.advance(Duration::from_secs(60));
    assert!(expiring.knows(&web(None)));
    clock.advance(Duration::from_secs(1));
    assert!(!expiring.knows(&web(None)), "past the retention");
}

#[test]
fn the_crash_tail_is_bounded_in_lines_and_bytes() {
    let logs = store(LogConfig::default());
    logs.open("i0", lrp("web", 0, "i0"));
    for text in ["one", "two", "three", "four"] {
        logs.push("i0", &app(), Stream::Stdout, text.into(), false);
    }
    assert_eq!(logs.tail("i0", 3, 512), ["two", "three", "four"]);
    assert_eq!(logs.tail("i0", 3, 7), ["thr", "four"]);
    assert_eq!(cut("héllo", 2), "h", "cut on a character boundary");
}

#[tokio::test]
async fn a_follower_sees_new_lines_and_a_lagging_one_is_told_how_many_it_missed() {
    let logs = store(LogConfig { subscriber_lines: 4, ..LogConfig::default() });
    logs.open("i0", lrp("web", 0, "i0"));
    logs.push("i0", &app(), Stream::Stdout, "before".into(), false);
    let (recent, receiver) = logs.subscribe(&web(None), 10, true);
    assert_eq!(texts(&recent), ["before"]);
    let mut receiver = receiver.expect("following");
    logs.push("i0", &app(), Stream::Stdout, "after".into(), false);
    assert_eq!(receiver.recv().await.expect("a line").text, "after");
    // Ten lines into a channel of four: the writer never waits, the reader learns it lagged.
    for n in 0..10 {
        logs.push("i0", &app(), Stream::Stdout, format!("burst {n}"), false);
    }
    match receiver.recv().await {
        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 6),
        other => panic!("expected a lag, got {other:?}"),
    }
    assert_eq!(receiver.recv().await.expect("a line").text, "burst 6");
    // A new instance of the same LRP reaches the same follower.
    logs.open("i1", lrp("web", 1, "i1"));
    for _ in 7..10 {
        receiver.recv().await.expect("the rest of the burst");
    }
    logs.push("i1", &app(), Stream::Stdout, "new instance".into(), false);
    assert_eq!(receiver.recv().await.expect("a line").identity.label(), "web/1");
}

#[tokio::test]
async fn long_lines_are_cut_and_marked_and_the_rest_is_dropped() {
    let input: &[u8] = b"short\r\n0123456789abcdef\nlast without newline";
    let mut lines = Vec::new();
    read_lines(input, 10, |text, truncated| lines.push((text, truncated))).await;
    assert_eq!(lines, [("short".to_owned(), false), ("0123456789".to_owned(), true), ("last witho".to_owned(), true)]);
    let mut lossy = Vec::new();
    read_lines(&b"a\xffb\n"[..], 10, |text, _| lossy.push(text)).await;
    assert_eq!(lossy, ["a\u{fffd}b"]);
}

#[test]
fn the_file_rotates_by_size_and_keeps_the_configured_rotations() {
    let dir = std::env::temp_dir().join(format!("cell-rep-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut file = RotatingFile::new(dir.join("c.log"), 20, 2);
    for n in 0..10 {
        file.write_line(&format!("line {n:04}")); // 10 bytes with the newline
    }
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    assert_eq!(read(file.path()), "line 0008\nline 0009\n");
    assert_eq!(read(&file.rotated(1)), "line 0006\nline 0007\n");
    assert_eq!(read(&file.rotated(2)), "line 0004\nline 0005\n");
    assert!(!file.rotated(3).exists());
    file.remove();
    assert!(!file.path().exists() && !file.rotated(1).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_with_a_directory_writes_each_container_s_file_and_removes_it_with_the_container() {
    let dir = std::env::temp_dir().join(format!("cell-rep-logs-{}", uuid::Uuid::new_v4().simple()));
    let logs = LogStore::new(LogConfig { retained_per_guid: 0, ..LogConfig::default() }, Some(&dir));
    logs.open("i0", lrp("web", 0, "i0"));
    logs.push("i0", &app(), Stream::Stdout, "hello".into(), true);
    let text = std::fs::read_to_string(dir.join("i0.log")).expect("the file");
    assert!(text.ends_with(" [web/0 APP/STDOUT] hello [truncated]\n"), "{text}");
    logs.close("i0");
    assert!(!dir.join("i0.log").exists(), "nothing retained: the file goes");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lines_of_an_unknown_container_are_kept_as_a_stopped_bare_one() {
    let logs = store(LogConfig { retained_total: 1, ..LogConfig::default() });
    logs.push("late", &app(), Stream::Stdout, "after the end".into(), false);
    assert_eq!(logs.tail("late", 3, 512), ["after the end"]);
    logs.push("later", &app(), Stream::Stdout, "another".into(), false);
    assert!(logs.tail("late", 3, 512).is_empty(), "bounded like every stopped container");
    assert_eq!(logs.tail("later", 3, 512), ["another"]);
}
