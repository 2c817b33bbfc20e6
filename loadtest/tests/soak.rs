//! The two-minute chaos soak (`benchmark-bbs soak`, docs/soak.md): real BBS, auctioneer and cell
//! processes on a private PostgreSQL, churned while every kind of chaos happens at least once;
//! no invariant may break. Needs root (PostgreSQL runs as the `postgres` user through setpriv),
//! a PostgreSQL server under /usr/lib/postgresql and the component binaries built next to
//! benchmark-bbs (`cargo build -p bbs -p auctioneer -p cell-rep`; `cargo test --workspace`
//! builds them). Without them it skips, or fails when `DIEGO_TEST_REQUIRE_BACKENDS` is set.

use std::path::Path;
use std::process::Command;

/// Why this machine cannot soak, if it cannot.
fn unavailable(bin_dir: &Path) -> Option<String> {
    for name in ["bbs", "auctioneer", "cell-rep"] {
        if !bin_dir.join(name).is_file() {
            return Some(format!(
                "{} is missing (build it: cargo build -p bbs -p auctioneer -p cell-rep)",
                bin_dir.join(name).display()
            ));
        }
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return Some("the soak's private PostgreSQL runs as the postgres user: needs root".into());
    }
    let postgres = std::fs::read_dir("/usr/lib/postgresql")
        .is_ok_and(|d| d.filter_map(|e| e.ok()).any(|e| e.path().join("bin/postgres").is_file()));
    if !postgres {
        return Some("no PostgreSQL server under /usr/lib/postgresql".into());
    }
    None
}

#[test]
fn a_two_minute_soak_breaks_no_invariant_under_every_kind_of_chaos() {
    let exe = Path::new(env!("CARGO_BIN_EXE_benchmark-bbs"));
    let bin_dir = exe.parent().expect("target dir");
    if let Some(reason) = unavailable(bin_dir) {
        assert!(
            std::env::var_os("DIEGO_TEST_REQUIRE_BACKENDS").is_none(),
            "DIEGO_TEST_REQUIRE_BACKENDS is set but the soak cannot run: {reason}"
        );
        eprintln!("skipping the soak: {reason}");
        return;
    }
    let out = std::env::temp_dir().join(format!("diego-soak-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(exe)
        .args(["soak", "--duration", "2m", "--seed", "7", "--chaos-every", "10s", "--database-down", "8s", "--out"])
        .arg(&out)
        .output()
        .expect("run benchmark-bbs soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}\n{stdout}");
    let json = std::fs::read_to_string(out.join("soak.json"))
        .unwrap_or_else(|e| panic!("no soak.json in {} ({e}); exit {:?}", out.display(), output.status));
    let report: serde_json::Value = serde_json::from_str(&json).expect("soak.json parses");
    let violations = report["observed"]["violations"].as_array().expect("violations");
    assert!(violations.is_empty(), "invariants broken: {violations:#?}");
    assert!(output.status.success(), "exit {:?}", output.status);
    let events = report["events"].as_array().expect("events");
    for kind in [
        "kill-bbs-leader",
        "kill-bbs-standby",
        "kill-auctioneer",
        "kill-cell",
        "pause",
        "stop-database",
        "wipe-actual-lrps",
    ] {
        let done = events.iter().filter(|e| e["chaos"] == kind).collect::<Vec<_>>();
        assert!(!done.is_empty(), "{kind} did not happen: {events:#?}");
        assert!(done.iter().all(|e| e["error"].is_null()), "{kind} failed: {done:#?}");
    }
    for file in ["soak.md", "soak.svg"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let acknowledged = report["operations"]["desire"][0].as_u64().unwrap_or(0);
    assert!(acknowledged > 0, "the churn desired LRPs: {}", report["operations"]);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_refused_soak_configuration_is_one_line_and_exit_64() {
    for args in [["soak", "--duration", "5s"], ["soak", "--rate", "0"], ["soak", "--lrps", "0"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_benchmark-bbs")).args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, not {stderr:?}");
        assert!(stderr.starts_with("benchmark-bbs: --"), "{stderr}");
    }
}
