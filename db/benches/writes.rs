//! Concurrent single-record writes: the store without group commit (each write its own
//! transaction, as before), with it at several lane counts (`BENCH_LANES`, default `0,1,4,16`),
//! each next to the raw single-row autocommit statement measured right after it, all on the
//! same database, with the same concurrency, in one run.
//!
//! - DesireTask vs `INSERT` of one row;
//! - ClaimActualLRP (a per-index lifecycle write: lock the index, decide, update) vs `UPDATE`
//!   of one row by key.
//!
//! For each backend (SQLite always; PostgreSQL / MySQL when `DIEGO_TEST_POSTGRES_URL` /
//! `DIEGO_TEST_MYSQL_URL` is set), `BENCH_CLIENTS` (16) concurrent writers, `BENCH_REQUESTS`
//! (2,000) writes per measurement.
//!
//! Run: `cargo bench -p db --bench writes`.

#![allow(missing_docs, clippy::disallowed_types)]

use db::testing::write_bench::{RawTable, drive};
use db::testing::{TestDb, test_keys};
use db::{Backend, Store, StoreOptions};
use proto::models::{ActualLrpInstanceKey, CellId, DomainName, InstanceGuid, ProcessGuid, TaskDefinition, TaskGuid};

const NOW_NS: i64 = 1_767_225_600_000_000_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn definition() -> TaskDefinition {
    db::testing::fixtures::task_definition(|_| {})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clients = env_usize("BENCH_CLIENTS", 16);
    let n = env_usize("BENCH_REQUESTS", 2_000);
    // The lane counts to measure; 0 is no group commit (a transaction per write, as before).
    let lanes: Vec<usize> = std::env::var("BENCH_LANES")
        .unwrap_or_else(|_| "0,1,4,16".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    println!("concurrent single-record writes: {clients} writers, {n} writes per measurement");
    println!("(lanes 0: a transaction per write, as before group commit; raw: one autocommit statement)");
    println!();
    println!(
        "{:<9} {:<14} {:>6} {:>10} {:>10} {:>8} {:>14}",
        "backend", "write", "lanes", "store/s", "raw/s", "÷raw", "writes/commit"
    );
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else {
            println!("{:<9} skipped: its URL is not set", backend.name());
            continue;
        };
        let domain = DomainName::parse("bench").unwrap();
        let raw = RawTable::create(&db.store).await;
        let guid = ProcessGuid::parse("bench-lrp").unwrap();
        let indices: Vec<i32> = (0..(lanes.len() * n) as i32).collect();
        for chunk in indices.chunks(5_000) {
            db.store.create_unclaimed_actual_lrps(&guid, &domain, chunk, NOW_NS).await.expect("seed instances");
        }
        for (k, &lane_count) in lanes.iter().enumerate() {
            let options = StoreOptions { keys: test_keys(), group_commit_lanes: lane_count, ..Default::default() };
            let store = Store::connect(&db.url, options).await.expect("store");
            let range = k * n..(k + 1) * n;

            // DesireTask vs INSERT.
            let (s, d) = (store.clone(), domain.clone());
            let before = store.group_commit_stats();
            let desired = drive(range.clone(), clients, move |i| {
                let (s, d) = (s.clone(), d.clone());
                async move {
                    let guid = TaskGuid::parse(format!("task-{i}")).unwrap();
                    s.desire_task(&guid, &d, &definition(), NOW_NS).await.expect("desire task");
                }
            })
            .await;
            let batched = per_commit(before, store.group_commit_stats());
            let inserted = raw.insert(range.clone(), clients).await;
            print_row(backend, "DesireTask", lane_count, desired, inserted, batched);

            // ClaimActualLRP vs UPDATE by key.
            let (s, g) = (store.clone(), guid.clone());
            let before = store.group_commit_stats();
            let claimed = drive(range.clone(), clients, move |i| {
                let (s, g) = (s.clone(), g.clone());
                async move {
                    let key = ActualLrpInstanceKey {
                        instance_guid: InstanceGuid::parse(format!("ig-{i}")).unwrap(),
                        cell_id: CellId::parse("cell-1").unwrap(),
                    };
                    s.claim_actual_lrp(&g, i as i32, &key, NOW_NS).await.expect("claim");
                }
            })
            .await;
            let batched = per_commit(before, store.group_commit_stats());
            let updated = raw.update(range.clone(), clients).await;
            print_row(backend, "ClaimActualLRP", lane_count, claimed, updated, batched);
            store.close().await;
        }
    }
}

/// Writes per committed batch between two readings (`-` without group commit).
fn per_commit(before: db::group_commit::GroupCommitStats, after: db::group_commit::GroupCommitStats) -> String {
    let batches = after.batches - before.batches;
    if batches == 0 { "-".into() } else { format!("{:.1}", (after.members - before.members) as f64 / batches as f64) }
}

fn print_row(backend: Backend, write: &str, lanes: usize, store: f64, raw: f64, per_commit: String) {
    println!(
        "{:<9} {:<14} {:>6} {:>10.0} {:>10.0} {:>7.2}x {:>14}",
        backend.name(),
        write,
        lanes,
        store,
        raw,
        store / raw,
        per_commit
    );
}
