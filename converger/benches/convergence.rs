//! One full LRP convergence pass at Diego's design scale, next to Diego's published numbers.
//!
//! Seeds (with raw multi-row INSERTs, as `db/benches/store.rs` does) `BENCH_INSTANCES` (250,000)
//! desired instances in LRPs of 100 over `BENCH_CELLS` (1,000) cells, with:
//! - 1% missing (one index per desired LRP has no row);
//! - 1% extra (one index beyond `instances` per desired LRP, RUNNING on a live cell);
//! - 1% crashed (crash counts 3 to 8; half crashed 20 min ago, so due, half 10 s ago);
//! - one lost cell (`cell-0000` has no presence): its RUNNING instances become suspects.
//!
//! Then times one `LrpConvergence::tick()` (the full pass: cell read, snapshot, plan, every write,
//! the auction call and the stops, against a recording `Effects`), and a second, converged pass.
//! PostgreSQL when `DIEGO_TEST_POSTGRES_URL` is set, else SQLite.
//!
//! Run: `DIEGO_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p
//! converger --bench convergence`.

#![allow(missing_docs, clippy::disallowed_types)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use converger::testing::{ManualClock, RecordingEffects};
use converger::{ConvergenceConfig, LostCells, LrpConvergence, LrpTickReport};
use db::testing::{POSTGRES_URL_VAR, TestDb};
use db::{Backend, StoreOptions};
use proto::models::{CellId, DomainName};

/// 2026-01-01T00:00:00Z.
const NOW_NS: i64 = 1_767_225_600_000_000_000;
const SEC: i64 = 1_000_000_000;
/// Instances per desired LRP.
const PER_LRP: usize = 100;

/// Diego's convergence gather at 200,000 LRPs on 1,000 cells (benchmark-bbs, 2016).
const DIEGO_GATHER: Duration = Duration::from_secs(27);
const DIEGO_GATHER_INSTANCES: usize = 200_000;
/// Diego's ConvergenceLRPDuration alert threshold (diego-release indicators.yml: warning at
/// >= 10 s, critical at >= 20 s).
const DIEGO_ALERT: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let instances = env_usize("BENCH_INSTANCES", 250_000);
    let cells = env_usize("BENCH_CELLS", 1_000).max(2);
    let backend = match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let options = StoreOptions { max_connections: 32, ..StoreOptions::default() };
    let Some(db) = TestDb::create_with(backend, options).await else {
        println!("skipped: {} is not configured", backend.name());
        return;
    };
    println!(
        "convergence benchmark on {}: {instances} desired instances ({} LRPs x {PER_LRP}) over {cells} cells",
        backend.name(),
        instances / PER_LRP
    );
    println!("seeded: 1% missing, 1% extra, 1% crashed (half due), 1 lost cell (cell-0000)");
    let seeding = Instant::now();
    let seeded = seed(&db, instances, cells).await;
    eprintln!("[{}] seeded {} actual rows in {:.1?}", backend.name(), seeded, seeding.elapsed());

    let effects = RecordingEffects::new();
    let config = ConvergenceConfig::default();
    let lost = LostCells::default();
    lost.report(CellId::parse("cell-0000").expect("cell id"));
    let mut lrp = LrpConvergence::new(
        converger::fixed_store(db.store.clone()),
        Arc::new(effects.clone()),
        Arc::new(ManualClock::new(NOW_NS)),
        config,
        lost,
    );

    let started = Instant::now();
    let first = lrp.tick().await.expect("first pass");
    let first_wall = started.elapsed();
    let recorded = effects.recorded();
    println!();
    report("full pass", &first, first_wall);
    println!(
        "  effects: {} auction call(s) with {} instances in {} requests, {} rep stops, {} index events, {} removals",
        recorded.lrp_auctions.len(),
        recorded.lrp_auctions.iter().flatten().map(|s| s.indices.len()).sum::<usize>(),
        recorded.lrp_auctions.iter().map(Vec::len).sum::<usize>(),
        recorded.stops.len(),
        recorded.index_changes.len(),
        recorded.removed.len(),
    );

    effects.clear();
    let started = Instant::now();
    let second = lrp.tick().await.expect("second pass");
    let second_wall = started.elapsed();
    println!();
    report("converged pass", &second, second_wall);

    println!();
    let per_instance = first_wall.as_secs_f64() / instances as f64;
    let diego_per_instance = DIEGO_GATHER.as_secs_f64() / DIEGO_GATHER_INSTANCES as f64;
    println!(
        "Diego convergence gather, {DIEGO_GATHER_INSTANCES} instances:   {:>8.3} s  (ours, full pass at {instances}: {:.3} s; {:.1}x faster, {:.1}x per instance)",
        DIEGO_GATHER.as_secs_f64(),
        first_wall.as_secs_f64(),
        DIEGO_GATHER.as_secs_f64() / first_wall.as_secs_f64(),
        diego_per_instance / per_instance,
    );
    println!(
        "Diego ConvergenceLRPDuration warning level:   {:>8.3} s  (full pass uses {:.1}% of it; converged pass {:.1}%)",
        DIEGO_ALERT.as_secs_f64(),
        100.0 * first_wall.as_secs_f64() / DIEGO_ALERT.as_secs_f64(),
        100.0 * second_wall.as_secs_f64() / DIEGO_ALERT.as_secs_f64(),
    );
}

fn report(label: &str, r: &LrpTickReport, wall: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label}: {:.3} s  (cells {:.1} ms, snapshot {:.1} ms, plan {:.1} ms, writes {:.1} ms, auction + stops {:.1} ms)",
        wall.as_secs_f64(),
        ms(r.phases.cells),
        ms(r.phases.snapshot),
        ms(r.phases.plan),
        ms(r.phases.writes),
        ms(r.phases.calls),
    );
    println!(
        "  writes: prunes + set-based deletes {:.1} ms, per-index writes {:.1} ms, creates {:.1} ms",
        ms(r.phases.deletes),
        ms(r.phases.index_writes),
        ms(r.phases.creates),
    );
    println!(
        "  saw: {} desired, {} running, {} crashed, {} missing, {} extra, {} present cells, {} suspect cells",
        r.counts.desired_instances,
        r.counts.running,
        r.counts.crashed,
        r.counts.missing,
        r.counts.extra,
        r.counts.present_cells,
        r.counts.suspect_cells
    );
    println!(
        "  did: created {}, restarted {}, suspected {}, retired (deleted) {}, stops {}, starts {}, skipped {}, write errors {}, guard {:?}",
        r.created,
        r.restarted,
        r.suspected,
        r.retired_deleted,
        r.stops,
        r.starts,
        r.skipped,
        r.write_errors,
        r.guard.as_ref().map(|g| g.label())
    );
}

/// The cell of instance `n`: a multiplicative hash, so every cell gets a share of every kind.
fn cell_of(n: usize, cells: usize) -> usize {
    ((n as u64).wrapping_mul(2_654_435_761) >> 7) as usize % cells
}

/// Seeds desired LRPs, their actual rows, the presences of every cell but `cell-0000`, and a
/// fresh domain. Returns the number of actual rows.
async fn seed(db: &TestDb, instances: usize, cells: usize) -> usize {
    let backend = db.store.backend();
    let pool = db.store.pool();
    db.store
        .upsert_domain(&DomainName::parse("bench").expect("domain"), Duration::ZERO, NOW_NS)
        .await
        .expect("seed domain");
    let desired_count = instances.div_ceil(PER_LRP);
    let empty_map = db::codec::encode_json(&std::collections::BTreeMap::<String, String>::new());
    let empty_list = db::codec::encode_json(&Vec::<String>::new());
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
                .bind(PER_LRP as i64)
                .bind(empty_map.clone())
                .bind(empty_list.clone())
                .bind(empty_map.clone())
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
    // (desired, index, global instance number): index PER_LRP is the extra one; one index per
    // LRP is missing.
    let mut rows: Vec<(usize, usize, usize)> = Vec::with_capacity(instances);
    for d in 0..desired_count {
        let missing = (d * 37) % PER_LRP;
        for index in 0..=PER_LRP {
            if index != missing {
                rows.push((d, index, d * (PER_LRP + 1) + index));
            }
        }
    }
    for chunk in rows.chunks(1_000) {
        let values =
            vec!["(?, ?, 0, 'bench', ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, 'z1', 'epoch', 0)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO actual_lrps (process_guid, instance_index, presence, domain, state, instance_guid, cell_id, placement_error, crash_count, crash_reason, since, net_info, internal_routes, metric_tags, routable, availability_zone, modification_tag_epoch, modification_tag_index) VALUES {values}"
        );
        let mut q = backend.query(&sql);
        for &(d, index, n) in chunk {
            let crashed = index < PER_LRP && n % 100 == 50;
            let (state, instance, cell, count, since, net, routable) = if crashed {
                let age = if n % 200 == 50 { 20 * 60 * SEC } else { 10 * SEC };
                let count = 3 + (n / 100 % 6) as i64;
                ("CRASHED", String::new(), String::new(), count, NOW_NS - age, Vec::new(), 0i64)
            } else {
                let cell = format!("cell-{:04}", cell_of(n, cells));
                ("RUNNING", format!("ig-{n}"), cell, 0, NOW_NS - 3600 * SEC, net_info.clone(), 1)
            };
            q = q
                .bind(format!("lrp-{d:06}"))
                .bind(index as i64)
                .bind(state)
                .bind(instance)
                .bind(cell)
                .bind(count)
                .bind(if crashed { "bench crash" } else { "" })
                .bind(since)
                .bind(net)
                .bind(empty_list.clone())
                .bind(empty_map.clone())
                .bind(routable);
        }
        q.execute(pool).await.expect("seed actual lrps");
    }

    let far = i64::MAX / 4;
    let live: Vec<usize> = (1..cells).collect();
    for chunk in live.chunks(500) {
        let values = vec!["(?, ?, ?, 2, 1, 3600000, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO leases (lease_key, owner, value, type_code, term, ttl_ms, expires_at_ms) VALUES {values}"
        );
        let mut q = backend.query(&sql);
        for c in chunk {
            let id = format!("cell-{c:04}");
            q = q
                .bind(id.clone())
                .bind(format!("rep-{id}"))
                .bind(format!(r#"{{"cell_id":"{id}","rep_address":"10.0.{}.{}:1800"}}"#, c / 250, c % 250))
                .bind(far);
        }
        q.execute(pool).await.expect("seed presences");
    }
    if backend == Backend::Postgres {
        backend.query("ANALYZE").execute(pool).await.expect("analyze");
    }
    rows.len()
}
