//! benchmark-bbs seeding through the batch calls (`--seed-batch`): a tiny run on every
//! configured backend whose seeding makes one `DesireLRPs` call per batch of LRPs and one
//! `StartActualLRPs` call per cell and batch, no per-LRP calls, and nothing fails.

use std::time::Duration;

use db::Backend;
use db::testing::TestDb;
use loadtest::Config;
use loadtest::generator::Placement;
use loadtest::seed::ops as seed;

const CELLS: usize = 3;
const LRPS: usize = 30;
const BATCH: usize = 7;
const SEED: u64 = 7;

async fn batched_seeding_makes_one_call_per_batch(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let output = std::env::temp_dir().join(format!("benchmark-bbs-batch-{}", uuid::Uuid::new_v4().simple()));
    let config = Config {
        database_url: Some(db.url.clone()),
        cells: CELLS,
        desired_lrps: LRPS,
        trials: 1,
        seed: SEED,
        output: output.clone(),
        seed_workers: 2,
        seed_batch: BATCH,
        connections: 2,
        event_timeout: Duration::from_secs(20),
        convergence_passes: 0,
        progress: false,
        ..Config::default()
    };
    let report = loadtest::run(config).await.expect("the benchmark runs");
    let table = report.table();
    assert_eq!(report.errors(), 0, "nothing failed:\n{table}");
    let count = |name: &str| report.operation(name).map(|o| o.summary.count).unwrap_or(0);
    let placement = Placement::new(SEED, CELLS, LRPS);
    let start_calls: usize = placement.lrps_of.iter().map(|lrps| lrps.len().div_ceil(BATCH)).sum();
    assert_eq!(count(seed::SEED_DESIRE_BATCH), LRPS.div_ceil(BATCH) as u64, "{table}");
    assert_eq!(count(seed::SEED_START_BATCH), start_calls as u64, "{table}");
    assert_eq!((count(seed::SEED_DESIRE), count(seed::SEED_START)), (0, 0), "no per-LRP calls:\n{table}");
    let _ = std::fs::remove_dir_all(&output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_seeding_on_sqlite() {
    batched_seeding_makes_one_call_per_batch(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_seeding_on_postgres() {
    batched_seeding_makes_one_call_per_batch(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_seeding_on_mysql() {
    batched_seeding_makes_one_call_per_batch(Backend::Mysql).await;
}
