//! benchmark-bbs end to end at CI size: 3 cells, 30 LRPs, 2 trials against an in-process BBS on
//! SQLite (and on PostgreSQL / MySQL when `DIEGO_TEST_POSTGRES_URL` / `DIEGO_TEST_MYSQL_URL` are
//! set). Checks that the table, the JSON and the SVG charts are written, that every operation
//! ran exactly as often as the workload says, that the event count matches the writes, and that
//! nothing failed.

use std::time::Duration;

use db::Backend;
use db::testing::TestDb;
use loadtest::baseline::ops as raw;
use loadtest::convergence::ops as conv;
use loadtest::generator::stream;
use loadtest::seed::ops as seed;
use loadtest::workload::ops as work;
use loadtest::{Config, RepStarts, Report, RouteEmitters};
use rand::RngExt;

const CELLS: usize = 3;
const LRPS: usize = 30;
const TRIALS: usize = 2;
const PERCENT_WRITES: f64 = 40.0;
const SEED: u64 = 7;

fn tiny(database_url: String, output: std::path::PathBuf) -> Config {
    Config {
        database_url: Some(database_url),
        cells: CELLS,
        desired_lrps: LRPS,
        trials: TRIALS,
        percent_writes: PERCENT_WRITES,
        seed: SEED,
        output,
        seed_workers: 4,
        // One DesireLRP and one StartActualLRP per LRP, which the counts below check
        // (`tests/seed_batch.rs` runs the batched seeding).
        seed_batch: 1,
        connections: 2,
        event_timeout: Duration::from_secs(20),
        convergence_passes: 2,
        progress: false,
        ..Config::default()
    }
}

/// The claims the seed decides: trial t claims LRP i when its stream says so.
fn claims_in_trial(trial: usize) -> u64 {
    (0..LRPS).filter(|&i| stream(SEED, &[5, trial as u64, i as u64]).random_bool(PERCENT_WRITES / 200.0)).count() as u64
}

fn count(report: &Report, name: &str) -> u64 {
    report.operation(name).map(|o| o.summary.count).unwrap_or(0)
}

async fn tiny_run_adds_up(backend: Backend, rep_starts: RepStarts) {
    let Some(db) = TestDb::create(backend).await else { return };
    let output = std::env::temp_dir().join(format!("benchmark-bbs-test-{}", uuid::Uuid::new_v4().simple()));
    let config = Config { rep_starts, ..tiny(db.url.clone(), output.clone()) };
    let report = loadtest::run(config).await.expect("the benchmark runs");
    let table = report.table();
    assert_eq!(report.errors(), 0, "no call or count check failed:\n{table}");

    let (cells, lrps, trials) = (CELLS as u64, LRPS as u64, TRIALS as u64);
    // Each rep re-asserts its instances one call each, or all of them in one batch per loop.
    let (starts, start_batches) = match rep_starts {
        RepStarts::Each => (lrps * trials, 0),
        RepStarts::Batch => (0, cells * trials),
    };
    let expected = [
        (seed::CELL_PRESENCE_SETTING, cells),
        (seed::SEED_DESIRE, lrps),
        (seed::SEED_START, lrps),
        (conv::PASS, 2),
        (conv::GATHER, 2),
        (work::REP_BULK_LOOP, cells * trials),
        (work::REP_BULK_FETCHING, cells * trials),
        (work::REP_START, starts),
        (work::REP_START_BATCH, start_batches),
        (work::NSYNC_BULKER, trials),
        (work::ROUTE_EMITTER, trials),
        (work::ROUTE_EMITTER_LOCAL, cells * trials),
        (work::CELL_PRESENCE_FETCHING, trials),
        (raw::PER_CELL_UNDER_LOAD, cells * trials),
        (raw::SCHEDULING_SCAN_UNDER_LOAD, trials),
        (raw::ROUTE_EMITTER_UNDER_LOAD, trials),
        (raw::QUIET_PER_CELL, cells * trials),
        (raw::QUIET_NSYNC, 3),
        (raw::QUIET_ROUTE_EMITTER, 3),
        (raw::PER_CELL, cells * trials),
        (raw::ACTUAL_SCAN, 3),
        (raw::SCHEDULING_SCAN, 3),
        (raw::ROUTE_EMITTER, 3),
        (raw::CONVERGENCE, 3),
    ];
    for (name, want) in expected {
        assert_eq!(count(&report, name), want, "{name}:\n{table}");
    }

    // Claims are the seed's decisions; each claim of a trial but the last makes the next
    // trial's start a write; every claim and writing start is one instance event.
    let claims: Vec<u64> = (0..TRIALS).map(claims_in_trial).collect();
    let total_claims: u64 = claims.iter().sum();
    assert!(total_claims > 0, "the tiny run must write something");
    assert_eq!(count(&report, work::REP_CLAIM), total_claims, "{table}");
    assert_eq!(report.trials.claims, total_claims);
    assert_eq!(report.trials.writing_starts, claims[..TRIALS - 1].iter().sum::<u64>());
    assert_eq!(report.trials.expected_events, report.trials.claims + report.trials.writing_starts);
    assert_eq!(report.events.received, report.events.expected, "{table}");
    let per_cell = report.events.per_cell.as_ref().expect("local route emitters subscribe per cell");
    assert_eq!((per_cell.expected, per_cell.received), (report.events.expected, report.events.expected));
    assert_eq!(per_cell.cells_within_tolerance, CELLS);
    assert!(report.ok(), "{table}");

    // The convergence pass on correctly seeded data does nothing.
    assert_eq!(report.convergence.as_ref().expect("timed on the known database").actions, 0);
    assert!(report.memory.peak_rss_kib.unwrap_or(0) > 0);
    assert_eq!(report.config.route_emitters, RouteEmitters::Both);

    // The files.
    let written = std::fs::read_to_string(output.join("table.txt")).expect("table.txt");
    assert_eq!(written, table);
    for line in ["RepBulkFetching", "NsyncBulkerFetching", "Diego 2016", "events: expected", "under the same load"] {
        assert!(table.contains(line), "the table lacks {line:?}:\n{table}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("report.json")).expect("report.json")).unwrap();
    let operations = json["operations"].as_array().expect("operations");
    assert_eq!(operations.len(), report.operations.len());
    for op in operations {
        let samples: u64 = op["histogram"]["values"].as_array().unwrap().iter().map(|v| v[1].as_u64().unwrap()).sum();
        assert_eq!(samples, op["summary"]["count"].as_u64().unwrap(), "raw histogram of {}", op["name"]);
    }
    assert_eq!(json["events"]["received"], json["events"]["expected"]);
    let charts: Vec<_> = std::fs::read_dir(output.join("charts")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(charts.len(), report.operations.len() + 1, "one chart per operation plus the percentiles");
    assert_eq!(report.files.charts.len(), charts.len());
    for chart in charts {
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", chart.display());
    }
    assert!(output.join("charts/latency-repbulkfetching.svg").exists());
    assert!(output.join("charts/percentiles.svg").exists());
    let _ = std::fs::remove_dir_all(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_run_adds_up_on_sqlite() {
    tiny_run_adds_up(Backend::Sqlite, RepStarts::Each).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_run_with_batched_rep_starts_adds_up_on_sqlite() {
    tiny_run_adds_up(Backend::Sqlite, RepStarts::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_run_with_batched_rep_starts_adds_up_on_postgres() {
    tiny_run_adds_up(Backend::Postgres, RepStarts::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_run_adds_up_on_postgres() {
    tiny_run_adds_up(Backend::Postgres, RepStarts::Each).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_run_adds_up_on_mysql() {
    tiny_run_adds_up(Backend::Mysql, RepStarts::Each).await;
}

/// `--compare-tls` on a named database, 2 rounds: plaintext, TLS, TLS, plaintext, each run on
/// the same database emptied first, all without an error, and the comparison carries every
/// round's ratios and their medians.
async fn compare_tls_adds_up(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let output = std::env::temp_dir().join(format!("benchmark-bbs-compare-{}", uuid::Uuid::new_v4().simple()));
    let mut config = tiny(db.url.clone(), output.clone());
    config.trials = 1;
    config.convergence_passes = 0;
    config.compare_tls = true;
    config.rounds = 2;
    let comparison = loadtest::compare::run(config).await.expect("every run runs");
    let table = comparison.table();
    assert!(comparison.ok(), "{table}");
    assert_eq!(comparison.rounds.len(), 2, "{table}");
    for (i, round) in comparison.rounds.iter().enumerate() {
        assert_eq!(round.number, i + 1);
        assert_eq!((round.plaintext.errors(), round.tls.errors()), (0, 0), "{table}");
        assert!(!round.plaintext.target.tls && round.tls.target.tls);
        assert_eq!(round.tls.target.tls_dir.as_deref(), Some(output.join("tls").as_path()));
        let dir = output.join(format!("round-{}", i + 1));
        assert_eq!(
            (round.plaintext_dir.clone(), round.tls_dir.clone()),
            (dir.join("plaintext"), dir.join("mutual-tls"))
        );
        assert!(dir.join("plaintext/report.json").exists() && dir.join("mutual-tls/report.json").exists());
        for name in [seed::SEED_DESIRE, seed::SEED_START, work::REP_BULK_FETCHING, work::REP_START] {
            assert_eq!(count(&round.plaintext, name), count(&round.tls, name), "{name}: {table}");
        }
    }
    // Round 2 ran TLS first: its plaintext run started after its TLS run ended.
    assert_eq!(comparison.rounds[1].first, loadtest::compare::Mode::MutualTls);
    let headline: Vec<_> = comparison
        .headline
        .iter()
        .map(|h| {
            let s = h.summary.as_ref().expect("measured");
            (h.what.as_str(), s.p50_ratio.per_round.iter().flatten().count(), s.mean_ratio.median.is_some())
        })
        .collect();
    assert_eq!(headline, [("per-cell fetch", 2, true), ("DesireLRP", 2, true), ("StartActualLRP", 2, true)], "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("comparison.json")).unwrap()).unwrap();
    assert_eq!(json["backend"], backend.name());
    assert_eq!(json["verdict_on"], "p50");
    assert_eq!(
        json["order"],
        serde_json::json!([[1, "plaintext"], [1, "mutual-tls"], [2, "mutual-tls"], [2, "plaintext"]])
    );
    assert!(json["headline"][2]["summary"]["throughput_ratio"]["median"].as_f64().unwrap() > 0.0, "{json}");
    let _ = std::fs::remove_dir_all(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_tls_adds_up_on_postgres() {
    compare_tls_adds_up(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_tls_adds_up_on_mysql() {
    compare_tls_adds_up(Backend::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_database_with_data_is_refused_without_reseed() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else { return };
    let output = std::env::temp_dir().join(format!("benchmark-bbs-test-{}", uuid::Uuid::new_v4().simple()));
    let mut config = tiny(db.url.clone(), output.clone());
    config.trials = 1;
    config.convergence_passes = 0;
    assert!(loadtest::run(config.clone()).await.expect("first run").ok());
    let err = loadtest::run(config.clone()).await.expect_err("the database holds the first run's LRPs");
    assert!(err.to_string().contains("--reseed"), "{err}");
    config.reseed = true;
    let report = loadtest::run(config).await.expect("a reseeded run");
    assert!(report.ok(), "{}", report.table());
    let _ = std::fs::remove_dir_all(&output);
}

/// The smoke benchmark at CI size: 3 sim cells, 24 instances over 6 apps, on SQLite, with mutual
/// TLS on every hop (BBS, auctioneer, reps and the benchmark's operator calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_runs_every_instance_and_draws_the_timeline() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else { return };
    let output = std::env::temp_dir().join(format!("benchmark-bbs-smoke-{}", uuid::Uuid::new_v4().simple()));
    let config = loadtest::smoke::SmokeConfig {
        bbs_address: None,
        database_url: Some(db.url.clone()),
        cells: 3,
        instances: 24,
        apps: 6,
        seed: 3,
        output: output.clone(),
        cell_memory_mb: 4096,
        cell_containers: 100,
        instance_memory_mb: 128,
        sim_start_delay: Duration::from_millis(100),
        desire_workers: 4,
        desire_batch: 4,
        timeout: Duration::from_secs(60),
        keep_database: false,
        reseed: false,
        progress: false,
        tls: true,
        tls_dir: None,
    };
    let report = loadtest::smoke::run(config).await.expect("the smoke benchmark runs");
    let table = report.table();
    assert!(report.ok(), "{table}");
    assert!(report.target.tls && table.contains("mutual TLS"), "{table}");
    assert!(output.join("tls/ca.pem").exists() && output.join("tls/bbs.pem").exists());
    assert_eq!(report.instances.len(), 24);
    assert!(report.instances.iter().all(|l| {
        let (u, c, r) = (l.unclaimed_ms.unwrap(), l.claimed_ms.unwrap(), l.running_ms.unwrap());
        l.desired_ms <= r && u <= c && c <= r && !l.cell_id.is_empty()
    }));
    let total = report.time_to_all_running_s.expect("every RUNNING event seen");
    assert!(total > 0.1 && total < 60.0, "{table}");
    assert_eq!(report.cells_used, 3, "the auction spreads the instances: {table}");
    for (name, want) in [
        (loadtest::smoke::ops::DESIRE_BATCH, 2),
        (loadtest::smoke::ops::TO_UNCLAIMED, 24),
        (loadtest::smoke::ops::TO_CLAIMED, 24),
        (loadtest::smoke::ops::TO_RUNNING, 24),
        (loadtest::smoke::ops::DESIRED_TO_RUNNING, 24),
    ] {
        let op = report.operations.iter().find(|o| o.name == name).expect(name);
        assert_eq!((op.summary.count, op.summary.errors), (want, 0), "{name}:\n{table}");
    }
    assert_eq!(std::fs::read_to_string(output.join("smoke-table.txt")).unwrap(), table);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("smoke-report.json")).unwrap()).unwrap();
    assert_eq!(json["instances"].as_array().unwrap().len(), 24);
    let timeline = std::fs::read_to_string(output.join("charts/smoke-timeline.svg")).unwrap();
    assert!(timeline.starts_with("<svg") && timeline.matches("<rect").count() >= 24 * 4, "one row per instance");
    assert_eq!(report.files.charts.len(), 1 + 5);
    let _ = std::fs::remove_dir_all(&output);
}
