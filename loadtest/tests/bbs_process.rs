//! `benchmark-bbs --bbs-process`: the real `bbs` binary as a child process, at CI size (3 cells,
//! 300 LRPs, 1 trial) on SQLite and on PostgreSQL when `DIEGO_TEST_POSTGRES_URL` is set. The
//! report carries the BBS process's own peak RSS, and no bbs process outlives the run. Needs the
//! `bbs` binary next to the test executable (`cargo build -p bbs`); without it the test skips,
//! or fails when `DIEGO_TEST_REQUIRE_BACKENDS` is set.

use std::path::Path;
use std::time::Duration;

use db::Backend;
use db::testing::TestDb;
use loadtest::Config;

/// The `bbs` binary benchmark-bbs would start, if it is built.
fn bbs_binary() -> Option<std::path::PathBuf> {
    let path = loadtest::target::process::binaries_dir_of("bbs").ok()?.join("bbs");
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("DIEGO_TEST_REQUIRE_BACKENDS").is_none(),
        "DIEGO_TEST_REQUIRE_BACKENDS is set but {} is missing (cargo build -p bbs)",
        path.display()
    );
    eprintln!("skipping: {} is missing (cargo build -p bbs)", path.display());
    None
}

/// Pids of the processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(&needle))
        })
        .collect()
}

async fn a_bbs_process_reports_its_own_peak_and_is_gone_after(backend: Backend) {
    let Some(binary) = bbs_binary() else { return };
    let (db, url) = match backend {
        Backend::Sqlite => (None, None),
        _ => match TestDb::create(backend).await {
            Some(db) => {
                let url = db.url.clone();
                (Some(db), Some(url))
            }
            None => return,
        },
    };
    let output = std::env::temp_dir().join(format!("benchmark-bbs-process-{}", uuid::Uuid::new_v4().simple()));
    let config = Config {
        database_url: url,
        cells: 3,
        desired_lrps: 300,
        trials: 1,
        seed: 5,
        output: output.clone(),
        seed_via: loadtest::SeedVia::Store,
        connections: 2,
        event_timeout: Duration::from_secs(20),
        convergence_passes: 1,
        progress: false,
        bbs_process: true,
        bbs_binary: Some(binary),
        ..Config::default()
    };
    let report = loadtest::run(config).await.expect("the benchmark runs");
    let table = report.table();
    assert_eq!(report.errors(), 0, "no call or count check failed:\n{table}");
    assert_eq!(report.target.kind, "process");
    let peak = report.memory.bbs_peak_rss_mib.expect("the BBS process's peak RSS is reported");
    assert!(peak > 1.0, "a BBS takes more than 1 MiB: {peak}");
    let sampled = report.memory.bbs_sampled_max_rss_mib.expect("sampled at least once");
    assert!(sampled > 0.0 && sampled <= peak + 0.01, "sampled {sampled} MiB, VmHWM {peak} MiB");
    assert!(report.memory.bbs_rss_samples >= 1);
    assert!(table.contains("BBS process peak memory:"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("report.json")).unwrap()).unwrap();
    assert!(json["memory"]["bbs_peak_rss_mib"].as_f64().is_some_and(|m| m > 1.0), "{}", json["memory"]);
    assert!(output.join("bbs.log").is_file(), "its stderr went to bbs.log");
    let config_file = output.join("bbs.toml");
    assert!(config_file.is_file());
    let left = processes_mentioning(&config_file);
    assert!(left.is_empty(), "bbs processes left behind: {left:?}");
    drop(db);
    let _ = std::fs::remove_dir_all(output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bbs_process_on_sqlite_reports_its_own_peak_and_is_gone_after() {
    a_bbs_process_reports_its_own_peak_and_is_gone_after(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bbs_process_on_postgres_reports_its_own_peak_and_is_gone_after() {
    a_bbs_process_reports_its_own_peak_and_is_gone_after(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bbs_binary_is_refused_and_starts_nothing() {
    let output = std::env::temp_dir().join(format!("benchmark-bbs-process-{}", uuid::Uuid::new_v4().simple()));
    let config = Config {
        cells: 1,
        desired_lrps: 1,
        output: output.clone(),
        progress: false,
        bbs_process: true,
        bbs_binary: Some(output.join("no-such-bbs")),
        ..Config::default()
    };
    let err = loadtest::run(config).await.expect_err("no binary, no run");
    assert!(err.to_string().contains("no-such-bbs is missing"), "{err:#}");
    let _ = std::fs::remove_dir_all(output);
}
