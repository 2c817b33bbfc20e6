//! The CLI's guard rails (issue 17): every flag is checked before anything is sent (exit 2, the
//! error naming the flag, or the field of a `--file`), global flags a subcommand ignores are
//! refused, the capacity guard refuses what the cells can never hold (unless `--force`) and
//! warns about what they cannot hold now, unplaceable instances read as such, and the shell
//! completions list the subcommands.

#[path = "support/harness.rs"]
mod harness;

use harness::{Bbs, diego, lrp_key};
use proto::pb::bbs::v1 as api;

/// A bad value of each flag of every subcommand that takes one, and the flag the error must
/// name. Run against an address nothing listens on: the refusal comes before any connection.
const BAD_FLAGS: &[(&[&str], &str)] = &[
    (&["desire-lrp", "--guid", "web", "--command", "x", "--port", "99999"], "--port"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--port", "0"], "--port"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--port", "http"], "--port"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--memory-mb", "0"], "--memory-mb"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--memory-mb", "99999999"], "--memory-mb"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--disk-mb", "0"], "--disk-mb"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--disk-mb", "-4"], "--disk-mb"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--instances", "1000001"], "--instances"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--instances", "-1"], "--instances"),
    (&["desire-lrp", "--guid", "we b", "--command", "x"], "--guid"),
    (&["desire-lrp", "--guid", "web.1", "--command", "x"], "--guid"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--domain", ""], "--domain"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--env", "NOVALUE"], "--env"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--env", "=x"], "--env"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--rootfs", "busybox"], "--rootfs"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--port", "80", "--port", "80"], "--port"),
    (&["desire-lrp", "--guid", "web", "--command", "x", "--health-check", "tcp"], "--health-check"),
    (&["scale", "web.1", "2"], "<GUID>"),
    (&["scale", "web", "2000000"], "<INSTANCES>"),
    (&["scale", "web", "-3"], "<INSTANCES>"),
    (&["retire", "web", "1000000"], "<INDEX>"),
    (&["retire", "w/b", "0"], "<GUID>"),
    (&["remove-lrp", "a b"], "<GUID>"),
    (&["lrp", "a:b"], "<GUID>"),
    (&["lrps", "--domain", ""], "--domain"),
    (&["update-lrp", "web", "--instances", "-1"], "--instances"),
    (&["update-lrp", "web", "--route", "web.example.com"], "--route"),
    (&["update-lrp", "web", "--route", "web.example.com:70000"], "--route"),
    (&["update-lrp", "web", "--memory-mb", "256"], "--memory-mb"),
    (&["update-lrp", "web", "--command", "x"], "--command"),
    (&["update-lrp", "web", "--env", "A=b"], "--env"),
    (&["update-lrp", "web", "--image", "docker:///x"], "--rootfs"),
    (&["update-lrp", "web"], "--instances"),
    (&["desire-task", "--guid", "t 1", "--command", "x"], "--guid"),
    (&["desire-task", "--guid", "t1", "--command", "x", "--memory-mb", "0"], "--memory-mb"),
    (&["desire-task", "--guid", "t1", "--command", "x", "--disk-mb", "0"], "--disk-mb"),
    (&["desire-task", "--guid", "t1", "--command", "x", "--env", "X"], "--env"),
    (&["desire-task", "--guid", "t1", "--command", "x", "--callback-url", "ftp://x"], "--callback-url"),
    (&["desire-task", "--guid", "t1", "--command", "x", "--rootfs", "nope"], "--rootfs"),
    (&["task", "t.1"], "<GUID>"),
    (&["cancel-task", ""], "<GUID>"),
    (&["tasks", "--cell", ""], "--cell"),
    (&["tasks", "--domain", ""], "--domain"),
    (&["upsert-domain", ""], "<NAME>"),
    (&["upsert-domain", "apps", "--ttl", "99999999"], "--ttl"),
    (&["upsert-domain", "apps", "--ttl", "1h"], "--ttl"),
    (&["events", "--cell", ""], "--cell"),
    (&["dev", "--bbs-address", "127.0.0.1:1"], "--bbs-address"),
    (&["dev", "--json"], "--json"),
    (&["dev", "--tls-ca", "ca.pem"], "--tls-ca"),
    (&["certs", "init", "--dir", "never-written", "--bbs-address", "127.0.0.1:1"], "--bbs-address"),
    (&["completions", "bash", "--json"], "--json"),
    (&["completions", "tcsh"], "<SHELL>"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_flag_exits_2_naming_the_flag() {
    let dead = harness::dead_address();
    let mut failures = Vec::new();
    for (args, flag) in BAD_FLAGS {
        let mut full = vec!["--bbs-address", dead.as_str()];
        // `dev`, `certs` and `completions` refuse --bbs-address themselves: give it only where
        // the case does.
        if matches!(args[0], "dev" | "certs" | "completions") {
            full.clear();
        }
        full.extend_from_slice(args);
        let out = diego(&full).await;
        let first = out.stderr.lines().next().unwrap_or_default();
        if out.code != 2 || !first.starts_with("error: ") || !first.contains(flag) {
            failures.push(format!("{args:?}: exit {} {:?} (wanted {flag})", out.code, out.stderr));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_help_shows_the_ranges() {
    let help = diego(&["desire-lrp", "--help"]).await;
    let text = help.ok();
    for range in ["[1..=65535]", "[1..=16777216]", "[0..=1000000]"] {
        assert!(text.contains(range), "{range}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_names_the_field_in_the_file() {
    let dir = harness::scratch("guard-rails-files");
    let dead = harness::dead_address();
    let cases = [
        (r#"{"process_guid": "web", "ports": [99999], "action": {"run_action": {"path": "x"}}}"#, "ports[0]"),
        (r#"{"process_guid": "web", "memory_mb": -1, "action": {"run_action": {"path": "x"}}}"#, "memory_mb"),
        (r#"{"process_guid": "web.1", "action": {"run_action": {"path": "x"}}}"#, "process_guid"),
        (r#"{"process_guid": "web"}"#, "action"),
        (
            r#"{"process_guid": "web", "action": {"run_action": {"path": "x"}},
                "check_definition": {"checks": [{"tcp_check": {"port": 0}}]}}"#,
            "check_definition.checks[0].tcp_check.port",
        ),
    ];
    for (i, (content, field)) in cases.iter().enumerate() {
        let path = dir.join(format!("lrp-{i}.json"));
        std::fs::write(&path, content).unwrap();
        let out = diego(&["--bbs-address", &dead, "desire-lrp", "--file", path.to_str().unwrap()]).await;
        let line = out.fails(2);
        assert!(line.starts_with(&format!("error: invalid desired lrp file {}: ", path.display())), "{line}");
        assert!(line.contains(field), "{field}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_refuses_the_bbs_address_flag_but_not_the_environment() {
    let out = diego(&["dev", "--bbs-address", "10.0.0.1:8889"]).await;
    let line = out.fails(2);
    assert_eq!(line, "error: invalid --bbs-address: 'diego dev' does not use it; leave it out");
    // The flag after the subcommand is the same flag.
    let out = diego(&["--bbs-address", "10.0.0.1:8889", "dev"]).await;
    assert!(out.fails(2).contains("--bbs-address"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_capacity_guard_refuses_what_the_cells_never_hold_unless_forced() {
    let bbs = Bbs::start().await;
    bbs.register_cell("cell-1", 1024, 4096, 100).await;
    bbs.register_cell("cell-2", 1024, 4096, 100).await;
    let desire = |guid: &'static str, instances: &'static str, memory: &'static str| {
        ["desire-lrp", "--guid", guid, "--command", "true", "--instances", instances, "--memory-mb", memory]
    };

    // 2 cells of 1024 MB hold 16 instances of 128 MB.
    let out = bbs.diego(&desire("web", "17", "128")).await;
    let line = out.fails(2);
    assert!(line.contains("can hold at most 16 instances") && line.contains("--force"), "{line}");
    let listed = bbs.diego(&["lrps", "--json"]).await.json();
    assert_eq!(listed, serde_json::json!([]), "nothing was desired");

    // An instance bigger than every cell can never be placed.
    let out = bbs.diego(&desire("huge", "1", "999999")).await;
    let line = out.fails(2);
    assert!(line.contains("fits on no cell") && line.contains("can hold 0 instances"), "{line}");

    // --force asks anyway, with the reason as a warning.
    let mut forced = desire("huge", "1", "999999").to_vec();
    forced.push("--force");
    let out = bbs.diego(&forced).await;
    out.ok();
    assert!(out.stderr.starts_with("warning: an instance of 999999 MB memory"), "{out:?}");

    // Within the cluster: accepted silently.
    let out = bbs.diego(&desire("web", "8", "128")).await;
    out.ok();
    assert!(out.stderr.is_empty(), "{out:?}");

    // Scaling past what the cluster holds is refused; its own placed instances count as placed.
    let out = bbs.diego(&["scale", "web", "17"]).await;
    assert!(out.fails(2).contains("can hold at most 16 instances"), "{out:?}");
    for index in 0..8 {
        bbs.claim("web", index, &format!("ig-{index}"), if index % 2 == 0 { "cell-1" } else { "cell-2" }).await;
    }
    let out = bbs.diego(&["scale", "web", "16"]).await;
    out.ok();
    assert!(out.stderr.is_empty(), "8 placed, 8 free: {out:?}");

    // Above the free capacity but within the cluster: accepted with a warning.
    bbs.diego(&desire("other", "4", "256")).await.ok();
    for index in 0..4 {
        bbs.claim("other", index, &format!("o-{index}"), if index % 2 == 0 { "cell-1" } else { "cell-2" }).await;
    }
    let out = bbs.diego(&desire("more", "2", "128")).await;
    out.ok();
    assert!(out.stderr.starts_with("warning: the free capacity holds only 0 more instance(s)"), "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplaceable_instance_reads_as_such_with_its_placement_error() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true", "--instances", "2"]).await.ok();
    bbs.run_instance("web", 0, "ig-0", "cell-1", 61000).await;
    let failed = api::FailActualLrpRequest {
        actual_lrp_key: Some(lrp_key("web", 1)),
        error_message: "insufficient resources: memory".into(),
    };
    bbs.auctioneer().await.fail_actual_lrp(failed).await.unwrap();

    let text = bbs.diego(&["lrps"]).await.ok().to_owned();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = text.lines().find(|l| l.starts_with("web")).unwrap().split_whitespace().collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!((column("INSTANCES"), column("STARTING"), column("UNPLACEABLE")), ("1/2", "0", "1"), "{text}");
    let json = bbs.diego(&["lrps", "--json"]).await.json();
    assert_eq!((json[0]["unplaceable"].as_i64(), json[0]["unclaimed"].as_i64()), (Some(1), Some(0)));

    let text = bbs.diego(&["lrp", "web"]).await.ok().to_owned();
    assert!(text.contains("1 running, 0 claimed, 0 unclaimed, 1 unplaceable, 0 crashed"), "{text}");
    let row = text.lines().find(|l| l.starts_with("1 ")).unwrap();
    assert!(row.contains("UNPLACEABLE") && row.contains("placement error: insufficient resources: memory"), "{text}");
    assert!(!text.contains("STARTING"), "{text}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_list_the_subcommands_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = diego(&["completions", shell]).await;
        let script = out.ok();
        assert!(script.len() > 1000, "{shell}: {script}");
        for subcommand in ["desire-lrp", "update-lrp", "status", "completions", "dev"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
}
