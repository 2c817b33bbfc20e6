//! Lease renewals, the Locket's hot path (every cell renews its presence every few seconds):
//! a holder renewing its own lease (one autocommit `UPDATE`) and, for comparison, the first
//! acquire of a key (the acquire transaction: lock, read the clock, insert, commit), each next
//! to the raw single-row autocommit `UPDATE` of the same run, through a pool of 8 connections
//! (the BBS's Locket pool).
//!
//! For each backend (SQLite always; PostgreSQL / MySQL when `DIEGO_TEST_POSTGRES_URL` /
//! `DIEGO_TEST_MYSQL_URL` is set), `BENCH_CLIENTS` (64) concurrent callers, `BENCH_REQUESTS`
//! (4,000) leases per measurement.
//!
//! Run: `cargo bench -p db --bench leases`.

#![allow(missing_docs, clippy::disallowed_types)]

use std::time::Duration;

use db::Backend;
use db::sql::leases::LeaseType;
use db::testing::TestDb;
use db::testing::write_bench::{RawTable, drive};

/// The BBS's Locket pool (`bbs/src/run.rs`).
const LOCKET_POOL_CONNECTIONS: u32 = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clients = env_usize("BENCH_CLIENTS", 64);
    let n = env_usize("BENCH_REQUESTS", 4_000);
    println!("lease writes: {clients} callers, {n} leases, a pool of {LOCKET_POOL_CONNECTIONS} connections");
    println!();
    println!("{:<9} {:<22} {:>10} {:>10} {:>8}", "backend", "write", "store/s", "raw/s", "÷raw");
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else {
            println!("{:<9} skipped: its URL is not set", backend.name());
            continue;
        };
        let store = db.store.dedicated(LOCKET_POOL_CONNECTIONS, Duration::from_secs(30)).await.expect("pool");
        let raw = RawTable::create(&store).await;
        raw.insert(0..n, clients).await;
        let ttl = Duration::from_secs(120);
        let s = store.clone();
        let acquired = drive(0..n, clients, move |i| {
            let s = s.clone();
            async move {
                s.acquire_lease(&format!("cell-{i}"), &format!("rep-{i}"), "{}", LeaseType::Presence, ttl)
                    .await
                    .expect("acquire");
            }
        })
        .await;
        let updated = raw.update(0..n, clients).await;
        print_row(backend, "first acquire (tx)", acquired, updated);
        let s = store.clone();
        let renewed = drive(0..n, clients, move |i| {
            let s = s.clone();
            async move {
                let lease = s
                    .acquire_lease(&format!("cell-{i}"), &format!("rep-{i}"), "{}", LeaseType::Presence, ttl)
                    .await
                    .expect("renew");
                assert_eq!(lease.term, 1, "a renewal keeps the term");
            }
        })
        .await;
        let updated = raw.update(0..n, clients).await;
        print_row(backend, "renewal", renewed, updated);
        store.close().await;
    }
}

fn print_row(backend: Backend, write: &str, store: f64, raw: f64) {
    println!("{:<9} {:<22} {:>10.0} {:>10.0} {:>7.2}x", backend.name(), write, store, raw, store / raw);
}
