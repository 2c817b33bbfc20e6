//! The store's hot paths at scale, each next to the same SQL run directly on the same pool.
//!
//! For each backend (SQLite always; PostgreSQL / MySQL when `DIEGO_TEST_POSTGRES_URL` /
//! `DIEGO_TEST_MYSQL_URL` is set) it creates a throw-away database, seeds `BENCH_ACTUAL_LRPS`
//! (250,000) actual LRPs over `BENCH_CELLS` (1,000) cells with their desired LRPs, then times:
//!
//! - the rep's per-cell fetch: `Store::actual_lrps` filtered by cell, vs. the raw `SELECT`;
//! - the convergence snapshot: `Store::lrp_convergence_snapshot`, vs. its raw queries.
//!
//! The raw side fetches the same rows into driver rows without building domain values, so the
//! ratio is what the store adds on top of the database: decoding, validation, allocation.
//!
//! Run: `cargo bench -p db --bench store`.

#![allow(missing_docs, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use db::Backend;
use db::sql::actual_lrps::ActualLrpFilter;
use db::testing::TestDb;
use proto::models::CellId;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Same instant the conformance suite uses.
const NOW_NS: i64 = 1_767_225_600_000_000_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let actual = env_usize("BENCH_ACTUAL_LRPS", 250_000);
    let cells = env_usize("BENCH_CELLS", 1_000).max(1);
    let per_lrp = 100usize;
    println!("store benchmark: {actual} actual LRPs over {cells} cells ({per_lrp} instances per desired LRP)");
    println!();
    println!("{:<9} {:<22} {:>12} {:>12} {:>7}", "backend", "operation", "store", "raw sql", "ratio");
    let mut ran = Vec::new();
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else {
            println!("{:<9} skipped: its URL is not set", backend.name());
            continue;
        };
        let seed_start = Instant::now();
        seed(&db, actual, cells, per_lrp).await;
        eprintln!("[{}] seeded in {:.1?}", backend.name(), seed_start.elapsed());
        per_cell_fetch(&db, cells).await;
        snapshot(&db).await;
        ran.push(backend.name());
    }
    println!();
    println!("backends measured: {}", ran.join(", "));
}

/// Inserts the desired LRPs through raw multi-row INSERTs of the columns the store writes, then
/// their instances spread round-robin over the cells in a mix of states.
async fn seed(db: &TestDb, actual: usize, cells: usize, per_lrp: usize) {
    let backend = db.store.backend();
    let pool = db.store.pool();
    let desired_count = actual.div_ceil(per_lrp);
    let empty_json_map = db::codec::encode_json(&std::collections::BTreeMap::<String, String>::new());
    let empty_json_list = db::codec::encode_json(&Vec::<String>::new());
    let run_info = db::codec::encode_proto(&proto::pb::models::v1::DesiredLrpRunInfo::default());
    for chunk in (0..desired_count).collect::<Vec<_>>().chunks(500) {
        let rows = vec![
            "(?, 'bench', 'log', '', ?, 256, 1024, 0, 'preloaded:busybox', ?, ?, '[]', ?, 'epoch', 0, 0, ?)";
            chunk.len()
        ]
        .join(", ");
        let sql = format!(
            "INSERT INTO desired_lrps (process_guid, domain, log_guid, annotation, instances, memory_mb, disk_mb, max_pids, rootfs, routes, volume_placement, placement_tags, metric_tags, modification_tag_epoch, modification_tag_index, update_strategy, run_info) VALUES {rows}"
        );
        let mut q = backend.query(&sql);
        for d in chunk {
            q = q
                .bind(format!("lrp-{d:06}"))
                .bind(per_lrp as i64)
                .bind(empty_json_map.clone())
                .bind(empty_json_list.clone())
                .bind(empty_json_map.clone())
                .bind(run_info.clone());
        }
        q.execute(pool).await.expect("seed desired lrps");
    }
    let net_info = db::codec::encode_proto(&proto::pb::models::v1::ActualLrpNetInfo {
        address: "10.0.0.1".into(),
        ports: vec![proto::pb::models::v1::PortMapping {
            container_port: 8080,
            host_port: 61000,
            ..Default::default()
        }],
        ..Default::default()
    });
    let empty_net = Vec::<u8>::new();
    let empty_routes = db::codec::encode_json(&Vec::<String>::new());
    let all: Vec<usize> = (0..actual).collect();
    for chunk in all.chunks(1_000) {
        let rows =
            vec!["(?, ?, 0, 'bench', ?, ?, ?, '', 0, '', ?, ?, ?, ?, ?, 'z1', 'epoch', 0)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO actual_lrps (process_guid, instance_index, presence, domain, state, instance_guid, cell_id, placement_error, crash_count, crash_reason, since, net_info, internal_routes, metric_tags, routable, availability_zone, modification_tag_epoch, modification_tag_index) VALUES {rows}"
        );
        let mut q = backend.query(&sql);
        for &i in chunk {
            // 90% running, 5% claimed, 5% unclaimed.
            let (state, claimed, running) = match i % 20 {
                0 => ("UNCLAIMED", false, false),
                1 => ("CLAIMED", true, false),
                _ => ("RUNNING", true, true),
            };
            q = q
                .bind(format!("lrp-{:06}", i / per_lrp))
                .bind((i % per_lrp) as i64)
                .bind(state)
                .bind(if claimed { format!("ig-{i}") } else { String::new() })
                .bind(if claimed { format!("cell-{:04}", cell_of(i, cells)) } else { String::new() })
                .bind(NOW_NS)
                .bind(if running { net_info.clone() } else { empty_net.clone() })
                .bind(empty_routes.clone())
                .bind(empty_json_map.clone())
                .bind(i64::from(running));
        }
        q.execute(pool).await.expect("seed actual lrps");
    }
    if backend == Backend::Postgres {
        backend.query("ANALYZE").execute(pool).await.expect("analyze");
    }
}

/// The cell of seeded instance `i`: a multiplicative hash, so every cell gets a share of every
/// state (a plain `i % cells` would leave the cells that are multiples of 20 with only
/// UNCLAIMED rows).
fn cell_of(i: usize, cells: usize) -> usize {
    ((i as u64).wrapping_mul(2_654_435_761) >> 7) as usize % cells
}

/// Times `f` over `iterations` calls and returns the median duration.
async fn median<F, Fut>(iterations: usize, mut f: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        let rows = f(i).await;
        samples.push(start.elapsed());
        assert!(rows > 0, "a benchmark query returned no rows");
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn report(backend: Backend, operation: &str, ours: Duration, raw: Duration) {
    println!(
        "{:<9} {:<22} {:>10.3}ms {:>10.3}ms {:>6.2}x",
        backend.name(),
        operation,
        ours.as_secs_f64() * 1e3,
        raw.as_secs_f64() * 1e3,
        ours.as_secs_f64() / raw.as_secs_f64()
    );
}

async fn per_cell_fetch(db: &TestDb, cells: usize) {
    let backend = db.store.backend();
    let iterations = 200;
    let cell = |i: usize| format!("cell-{:04}", (i * 7919) % cells);
    // Warm both paths once.
    let _ = db
        .store
        .actual_lrps(&ActualLrpFilter { cell_id: Some(CellId::parse(cell(0)).unwrap()), ..Default::default() })
        .await;
    let raw_sql = db::sql::actual_lrps::SELECT_BY_CELL_SQL;
    let raw = median(iterations, |i| {
        let q = backend.query(raw_sql).bind(cell(i));
        async move { q.fetch_all(db.store.pool()).await.expect("raw per-cell fetch").len() }
    })
    .await;
    let ours = median(iterations, |i| {
        let filter = ActualLrpFilter { cell_id: Some(CellId::parse(cell(i)).unwrap()), ..Default::default() };
        async move { db.store.actual_lrps(&filter).await.expect("per-cell fetch").len() }
    })
    .await;
    report(backend, "per-cell actual LRPs", ours, raw);
}

async fn snapshot(db: &TestDb) {
    let backend = db.store.backend();
    let iterations = 5;
    // The same three statements in one transaction; only the domain query takes `now`.
    let raw = median(iterations, |_| async {
        let mut tx = db.store.pool().begin().await.expect("begin");
        let mut rows = 0;
        for (i, sql) in db::sql::convergence::SNAPSHOT_SQL.iter().enumerate() {
            let query = backend.query(sql);
            let query = if i == 2 { query.bind(NOW_NS) } else { query };
            rows += query.fetch_all(&mut *tx).await.expect("raw snapshot").len();
        }
        tx.commit().await.expect("commit");
        rows
    })
    .await;
    let ours = median(iterations, |_| async {
        let snap = db.store.lrp_convergence_snapshot(NOW_NS).await.expect("snapshot");
        snap.desired.len() + snap.actual.len()
    })
    .await;
    report(backend, "convergence snapshot", ours, raw);
}
