//! The store's hot paths at scale, each next to the same SQL run directly on the same pool.
//!
//! For each backend (SQLite always; PostgreSQL / MySQL when `DIEGO_TEST_POSTGRES_URL` /
//! `DIEGO_TEST_MYSQL_URL` is set) it creates a throw-away database, seeds `BENCH_ACTUAL_LRPS`
//! (250,000) actual LRPs over `BENCH_CELLS` (1,000) cells with their desired LRPs, one per
//! `BENCH_INSTANCES_PER_LRP` (100) instances (1 makes the scheduling-info listing as long as the
//! actual one), then times:
//!
//! - the rep's per-cell fetch: `Store::actual_lrps` filtered by cell, vs. the raw `SELECT`;
//! - the per-cell page: `Store::actual_lrps_wire_page` filtered by cell (what the BBS's
//!   ActualLRPs answers a cell's rep with), vs. the raw `SELECT`;
//! - the convergence snapshot: `Store::lrp_convergence_snapshot`, vs. its raw queries;
//! - the two streamed listings, whole: `Store::actual_lrps_wire_page` and
//!   `Store::scheduling_infos_wire_page` a batch of 5,000 after another (what StreamActualLRPs
//!   and StreamDesiredLRPSchedulingInfos read), vs. one raw full scan of the same columns.
//!
//! The raw side fetches the same rows into driver rows without building domain values, so the
//! ratio is what the store adds on top of the database: decoding, validation, allocation. Each
//! side is reported as the median wall time of a call and as this process's CPU time per call
//! (the client side's cost, which a CPU-bound BBS under load pays in queueing). The raw side is
//! measured twice: through sqlx's `Any` driver on the store's own pool (`raw any`), and through
//! the native driver on a pool of its own (`raw native`, the floor). The convergence snapshot's
//! raw side is its three statements in one transaction on the store's pool only (both columns).
//!
//! Run: `cargo bench -p db --bench store`.

#![allow(missing_docs, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use db::Backend;
use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::desired_lrps::DesiredLrpFilter;
use db::sql::page::{ActualLrpCursor, MAX_BATCH};
use db::testing::TestDb;
use futures::TryStreamExt;
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
    let per_lrp = env_usize("BENCH_INSTANCES_PER_LRP", 100).max(1);
    println!("store benchmark: {actual} actual LRPs over {cells} cells ({per_lrp} instances per desired LRP)");
    println!();
    println!(
        "{:<9} {:<24} {:>11} {:>11} {:>11} {:>7} {:>7} | cpu {:>10} {:>10} {:>10} {:>7} {:>7}",
        "backend",
        "operation",
        "store",
        "raw any",
        "raw native",
        "÷ any",
        "÷ nat",
        "store",
        "raw any",
        "raw native",
        "÷ any",
        "÷ nat"
    );
    let mut ran = Vec::new();
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else {
            println!("{:<9} skipped: its URL is not set", backend.name());
            continue;
        };
        let seed_start = Instant::now();
        seed(&db, actual, cells, per_lrp).await;
        eprintln!("[{}] seeded in {:.1?}", backend.name(), seed_start.elapsed());
        let native = Native::connect(backend, &db.url).await;
        per_cell_fetch(&db, &native, cells).await;
        per_cell_page(&db, &native, cells).await;
        snapshot(&db, &native).await;
        streamed_listings(&db, &native).await;
        native.close().await;
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

/// One side of a comparison: the median wall time of a call, and this process's CPU time
/// (user and system, every thread) per call: what the client side costs, which is what a
/// CPU-bound BBS under load queues behind.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// This process's CPU time so far (`/proc/self/stat`, clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Times `f` over `iterations` calls: the median wall time and the mean CPU time per call.
async fn median<F, Fut>(iterations: usize, mut f: F) -> Sample
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut samples = Vec::with_capacity(iterations);
    let cpu_start = process_cpu();
    for i in 0..iterations {
        let start = Instant::now();
        let rows = f(i).await;
        samples.push(start.elapsed());
        assert!(rows > 0, "a benchmark query returned no rows");
    }
    let cpu = (process_cpu() - cpu_start) / iterations as u32;
    samples.sort();
    Sample { wall: samples[samples.len() / 2], cpu }
}

fn report(backend: Backend, operation: &str, ours: Sample, raw_any: Sample, raw_native: Sample) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "{:<9} {:<24} {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>6.2}x {:>6.2}x | cpu {:>8.3}ms {:>8.3}ms {:>8.3}ms {:>6.2}x {:>6.2}x",
        backend.name(),
        operation,
        ms(ours.wall),
        ms(raw_any.wall),
        ms(raw_native.wall),
        ratio(ours.wall, raw_any.wall),
        ratio(ours.wall, raw_native.wall),
        ms(ours.cpu),
        ms(raw_any.cpu),
        ms(raw_native.cpu),
        ratio(ours.cpu, raw_any.cpu),
        ratio(ours.cpu, raw_native.cpu),
    );
}

/// A pool of the native driver on the benchmark's database, for the raw floor.
enum Native {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

impl Native {
    async fn connect(backend: Backend, url: &str) -> Self {
        match backend {
            Backend::Sqlite => Self::Sqlite(sqlx::SqlitePool::connect(url).await.expect("native sqlite pool")),
            Backend::Postgres => Self::Postgres(sqlx::PgPool::connect(url).await.expect("native postgres pool")),
            Backend::Mysql => Self::Mysql(sqlx::MySqlPool::connect(url).await.expect("native mysql pool")),
        }
    }

    /// Runs `sql` (`?` placeholders) with `binds` (text) and counts the rows it streams.
    async fn count(&self, backend: Backend, sql: &str, binds: &[String]) -> usize {
        let sql = sqlx::AssertSqlSafe(backend.sql(sql));
        macro_rules! count {
            ($pool:expr) => {{
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(b.clone());
                }
                q.fetch($pool).try_fold(0, |n, _| async move { Ok(n + 1) }).await.expect("raw native query")
            }};
        }
        match self {
            Self::Sqlite(pool) => count!(pool),
            Self::Postgres(pool) => count!(pool),
            Self::Mysql(pool) => count!(pool),
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
            Self::Mysql(pool) => pool.close().await,
        }
    }
}

/// Runs `sql` with `binds` on the store's own (`Any`) pool and counts the rows it streams.
async fn count_any(db: &TestDb, sql: &str, binds: &[String]) -> usize {
    let mut q = db.store.backend().query(sql);
    for b in binds {
        q = q.bind(b.clone());
    }
    q.fetch(db.store.pool()).try_fold(0, |n, _| async move { Ok(n + 1) }).await.expect("raw any query")
}

async fn per_cell_fetch(db: &TestDb, native: &Native, cells: usize) {
    let backend = db.store.backend();
    let iterations = 200;
    let cell = |i: usize| format!("cell-{:04}", (i * 7919) % cells);
    // Warm both paths once.
    let _ = db
        .store
        .actual_lrps(&ActualLrpFilter { cell_id: Some(CellId::parse(cell(0)).unwrap()), ..Default::default() })
        .await;
    let raw_sql = db::sql::actual_lrps::SELECT_BY_CELL_SQL;
    let raw_any = median(iterations, |i| async move { count_any(db, raw_sql, &[cell(i)]).await }).await;
    let raw_native = median(iterations, |i| async move { native.count(backend, raw_sql, &[cell(i)]).await }).await;
    let ours = median(iterations, |i| {
        let filter = ActualLrpFilter { cell_id: Some(CellId::parse(cell(i)).unwrap()), ..Default::default() };
        async move { db.store.actual_lrps(&filter).await.expect("per-cell fetch").len() }
    })
    .await;
    report(backend, "per-cell actual LRPs", ours, raw_any, raw_native);
}

/// The per-cell page the BBS's ActualLRPs reads for a rep: one batch of up to 5,000 rows.
async fn per_cell_page(db: &TestDb, native: &Native, cells: usize) {
    let backend = db.store.backend();
    let iterations = 200;
    let cell = |i: usize| format!("cell-{:04}", (i * 7919 + 13) % cells);
    let raw_sql =
        format!("{} ORDER BY process_guid, instance_index, presence", db::sql::actual_lrps::SELECT_BY_CELL_SQL);
    let raw_sql = raw_sql.as_str();
    let raw_any = median(iterations, |i| async move { count_any(db, raw_sql, &[cell(i)]).await }).await;
    let raw_native = median(iterations, |i| async move { native.count(backend, raw_sql, &[cell(i)]).await }).await;
    let ours = median(iterations, |i| {
        let filter = ActualLrpFilter { cell_id: Some(CellId::parse(cell(i)).unwrap()), ..Default::default() };
        async move {
            db.store.actual_lrps_wire_page(&filter, None, MAX_BATCH).await.expect("per-cell page").items.len()
        }
    })
    .await;
    report(backend, "per-cell page", ours, raw_any, raw_native);
}

/// The scheduling columns the streamed listing reads.
const SCHEDULING_COLUMNS: &str = "process_guid, domain, log_guid, annotation, instances, memory_mb, disk_mb, \
     max_pids, rootfs, routes, volume_placement, placement_tags, modification_tag_epoch, \
     modification_tag_index, update_strategy";

/// StreamActualLRPs and StreamDesiredLRPSchedulingInfos, whole, in batches of [`MAX_BATCH`],
/// against one raw scan of the same columns.
async fn streamed_listings(db: &TestDb, native: &Native) {
    let backend = db.store.backend();
    let iterations = 9;
    let select_by_cell = db::sql::actual_lrps::SELECT_BY_CELL_SQL;
    let actual_sql = select_by_cell.strip_suffix(" WHERE cell_id = ?").expect("the per-cell statement's shape");
    let raw_any = median(iterations, |_| count_any(db, actual_sql, &[])).await;
    let raw_native = median(iterations, |_| native.count(backend, actual_sql, &[])).await;
    let ours = median(iterations, |_| async {
        let filter = ActualLrpFilter::default();
        let (mut after, mut n) = (None::<ActualLrpCursor>, 0);
        loop {
            let page = db.store.actual_lrps_wire_page(&filter, after.as_ref(), MAX_BATCH).await.expect("wire page");
            n += page.items.len();
            match page.resume_after {
                Some(next) => after = Some(next),
                None => break n,
            }
        }
    })
    .await;
    report(backend, "stream actual LRPs", ours, raw_any, raw_native);

    let desired_sql = format!("SELECT {SCHEDULING_COLUMNS} FROM desired_lrps");
    let desired_sql = desired_sql.as_str();
    let raw_any = median(iterations, |_| count_any(db, desired_sql, &[])).await;
    let raw_native = median(iterations, |_| native.count(backend, desired_sql, &[])).await;
    let ours = median(iterations, |_| async {
        let filter = DesiredLrpFilter::default();
        let (mut after, mut n) = (None::<String>, 0);
        loop {
            let page =
                db.store.scheduling_infos_wire_page(&filter, after.as_deref(), MAX_BATCH).await.expect("wire page");
            n += page.items.len();
            match page.resume_after {
                Some(next) => after = Some(next),
                None => break n,
            }
        }
    })
    .await;
    report(backend, "stream scheduling infos", ours, raw_any, raw_native);
}

async fn snapshot(db: &TestDb, _native: &Native) {
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
    report(backend, "convergence snapshot", ours, raw, raw);
}
