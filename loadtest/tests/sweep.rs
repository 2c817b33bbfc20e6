//! `benchmark-bbs sweep` at CI size: 200 and 400 LRPs at 100 LRPs per cell (2 and 4 cells), one
//! trial each, against an in-process BBS on SQLite (and on PostgreSQL when
//! `DIEGO_TEST_POSTGRES_URL` is set). Checks that each size ran on its own database and cleaned
//! it up, that every figure was measured at both sizes, and that sweep.svg, sweep.md and
//! sweep.json are written with a curve per figure and a row per size.

use std::path::PathBuf;
use std::time::Duration;

use db::Backend;
use db::testing::TestDb;
use loadtest::Config;
use loadtest::sweep::figures::{BULK_LOOPS, FIGURES};
use loadtest::sweep::{Sweep, SweepConfig};

fn tiny(database_url: Option<String>, seed: u64) -> SweepConfig {
    let output = std::env::temp_dir().join(format!("benchmark-bbs-sweep-{}", uuid::Uuid::new_v4().simple()));
    SweepConfig {
        sizes: vec![400, 200],
        lrps_per_cell: 100,
        base: Config {
            database_url,
            trials: 1,
            seed,
            output,
            seed_workers: 4,
            connections: 2,
            event_timeout: Duration::from_secs(20),
            convergence_passes: 1,
            progress: false,
            ..Config::default()
        },
    }
}

/// Runs the tiny sweep and checks its points and its three files; returns the sweep.
async fn tiny_sweep_writes_its_files(config: SweepConfig) -> Sweep {
    let output = config.base.output.clone();
    let sweep = loadtest::sweep::run(config).await.expect("the sweep runs");
    let table = sweep.table();
    assert!(sweep.ok(), "{table}");
    let sizes: Vec<(usize, usize)> = sweep.points.iter().map(|p| (p.lrps, p.cells)).collect();
    assert_eq!(sizes, [(200, 2), (400, 4)]);
    for p in &sweep.points {
        assert_eq!(p.values_ms.len(), FIGURES.len(), "every figure measured at {}: {:?}", p.lrps, p.values_ms);
        assert_eq!(p.loop_max_ms.len(), BULK_LOOPS.len());
        assert!(p.peak_rss_mib.unwrap_or(0.0) > 0.0 && p.seeding_lrps_per_s > 0.0);
        assert!(p.peak_rss_reset, "Linux resets the peak RSS through /proc/self/clear_refs");
        assert_eq!(p.dir, output.join(format!("size-{}", p.lrps)));
        assert!(p.dir.join("table.txt").exists() && p.dir.join("report.json").exists());
    }
    assert_eq!(sweep.growth.len(), FIGURES.len(), "{table}");
    assert_eq!(sweep.interval.len(), BULK_LOOPS.len());
    assert!(sweep.interval.iter().all(|c| c.lrps == 400 && c.within), "{table}");

    assert_eq!(
        (sweep.files.chart.clone(), sweep.files.table.clone()),
        (output.join("sweep.svg"), output.join("sweep.md"))
    );
    let svg = std::fs::read_to_string(output.join("sweep.svg")).expect("sweep.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), FIGURES.len());
    assert!(svg.contains("30 s interval") && svg.contains("400 (4 cells)"));
    let md = std::fs::read_to_string(output.join("sweep.md")).expect("sweep.md");
    assert_eq!(md, table);
    assert_eq!(md.lines().filter(|l| l.starts_with("| 200 | 2 |")).count(), 1, "{md}");
    assert_eq!(md.lines().filter(|l| l.starts_with("| 400 | 4 |")).count(), 1, "{md}");
    assert!(md.contains("**verdict**") && md.contains("slowest pass at 400 LRPs"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("sweep.json")).expect("sweep.json")).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 2);
    assert_eq!(json["points"][1]["lrps"], 400);
    assert!(json["points"][0]["values_ms"]["nsync"].as_f64().unwrap() > 0.0, "{json}");
    assert_eq!(json["growth"].as_array().unwrap().len(), FIGURES.len());
    sweep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_sweep_on_sqlite_writes_the_chart_the_table_and_the_json() {
    let Some(db) = TestDb::create(Backend::Sqlite).await else { return };
    let config = tiny(Some(db.url.clone()), 5);
    let output = config.base.output.clone();
    let sweep = tiny_sweep_writes_its_files(config).await;
    assert_eq!(sweep.backend.as_deref(), Some("sqlite"));
    // Each size had its own file next to the given one, removed after its run.
    let given = PathBuf::from(db.url.trim_start_matches("sqlite://").split('?').next().unwrap());
    let stem = given.file_stem().unwrap().to_string_lossy().into_owned();
    for size in [200, 400] {
        let file = given.with_file_name(format!("{stem}-{size}.db"));
        assert!(!file.exists(), "{} removed", file.display());
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(output.join("size-400/report.json")).unwrap()).unwrap();
    assert!(report["target"]["database"].as_str().unwrap().contains(&format!("{stem}-400.db")), "{report}");
    let _ = std::fs::remove_dir_all(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_sweep_on_postgres_uses_and_drops_a_fresh_database_per_size() {
    let Ok(admin) = std::env::var("DIEGO_TEST_POSTGRES_URL") else {
        eprintln!("skipping postgres test: DIEGO_TEST_POSTGRES_URL is not set");
        return;
    };
    // The server without a database name: each size gets `benchmark_bbs_<seed>`, dropped after.
    let server = loadtest::target::with_database(&admin, "").trim_end_matches('/').to_owned();
    let seed = 16_006;
    let config = tiny(Some(server), seed);
    let output = config.base.output.clone();
    let sweep = tiny_sweep_writes_its_files(config).await;
    assert_eq!(sweep.backend.as_deref(), Some("postgres"));
    for p in &sweep.points {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(report["target"]["created_database"], true, "{}", p.lrps);
    }
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("the server");
    let sql = format!("SELECT datname FROM pg_database WHERE datname = 'benchmark_bbs_{seed}'");
    let left = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.expect("pg_database");
    assert!(left.is_empty(), "the sweep dropped its databases");
    let _ = conn.close().await;
    let _ = std::fs::remove_dir_all(&output);
}
