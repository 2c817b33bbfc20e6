//! Listings bigger than one gRPC message: `diego lrp GUID` on an LRP of 100,000 instances shows
//! the counts per state over every instance and the first 100 instances, `--all` shows every
//! one, and `diego lrps` counts them all.

#[path = "support/harness.rs"]
mod harness;

use harness::Bbs;

/// The start of a long output, for failure messages.
fn head(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// Lines of a `diego lrp` table that are instance rows (they start with the index).
fn instance_rows(text: &str) -> usize {
    text.lines().filter(|l| l.split_whitespace().next().is_some_and(|w| w.parse::<u32>().is_ok())).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrp_of_100000_instances_shows_state_counts_and_the_first_page_and_all_with_all() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "many", "--command", "sleep 1000", "--instances", "100000"]).await.ok();
    bbs.run_instance("many", 0, "ig-0", "cell-1", 61000).await;
    bbs.run_instance("many", 1, "ig-1", "cell-1", 61001).await;

    let text = bbs.diego(&["lrp", "many"]).await.ok().to_owned();
    assert!(text.contains("instances:     2 running / 100000 desired"), "{}", head(&text));
    assert!(
        text.contains("states:        2 running, 0 claimed, 99998 unclaimed, 0 unplaceable, 0 crashed"),
        "{}",
        head(&text)
    );
    assert_eq!(instance_rows(&text), 100, "{}", head(&text));
    assert!(text.contains("showing the first 100 of 100000 instances; 'diego lrp many --all' shows every one"));
    let first = text.lines().find(|l| l.starts_with("0 ")).unwrap();
    assert!(first.contains("RUNNING") && first.contains("cell-1"), "{first}");

    let json = bbs.diego(&["lrp", "many", "--json"]).await.json();
    assert_eq!(json["running"], 2);
    assert_eq!(
        json["states"],
        serde_json::json!({ "running": 2, "claimed": 0, "unclaimed": 99998, "unplaceable": 0, "crashed": 0 })
    );
    assert_eq!(json["instance_count"], 100_000);
    let shown = json["instances"].as_array().unwrap();
    assert_eq!(shown.len(), 100);
    assert_eq!((shown[0]["index"].as_i64(), shown[99]["index"].as_i64()), (Some(0), Some(99)));

    let all = bbs.diego(&["lrp", "many", "--all", "--json"]).await.json();
    let every = all["instances"].as_array().unwrap();
    assert_eq!(every.len(), 100_000);
    assert!(every.iter().enumerate().all(|(i, lrp)| lrp["index"].as_u64() == Some(i as u64)), "in index order");

    let listed = bbs.diego(&["lrps"]).await;
    let row = listed.ok().lines().nth(1).unwrap().to_owned();
    assert!(row.starts_with("many") && row.contains("2/100000") && row.contains("99998"), "{row}");
    bbs.stop().await;
}
