//! What the write benchmarks share (`db/benches/writes.rs`, `bbs/benches/throughput.rs`): a
//! concurrent driver, and the raw side every figure is a ratio against: single-row autocommit
//! `INSERT` and `UPDATE` statements on a table of the same database, through the same pool.

#![allow(clippy::disallowed_types)] // a benchmark measures wall time

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::Store;

/// Runs `op(i)` for every i in `range` over `clients` concurrent workers; returns operations
/// per second.
pub async fn drive<F, Fut>(range: std::ops::Range<usize>, clients: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (first, n) = (range.start, range.len());
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let began = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    op(first + i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a benchmark worker panicked");
    }
    n as f64 / began.elapsed().as_secs_f64()
}

/// The raw side: a table `bench_rows` of one-row writes.
#[derive(Clone)]
pub struct RawTable(Store);

impl RawTable {
    /// Creates `bench_rows` in `store`'s database.
    pub async fn create(store: &Store) -> Self {
        store
            .backend()
            .query(
                "CREATE TABLE bench_rows (id VARCHAR(255) PRIMARY KEY, state VARCHAR(32) NOT NULL, \
                 since BIGINT NOT NULL, payload TEXT NOT NULL)",
            )
            .execute(store.pool())
            .await
            .expect("create bench_rows");
        Self(store.clone())
    }

    /// `INSERT`s rows `row-{i}` for i in `range`, `clients` at a time; rows per second.
    pub async fn insert(&self, range: std::ops::Range<usize>, clients: usize) -> f64 {
        let s = self.0.clone();
        drive(range, clients, move |i| {
            let s = s.clone();
            async move {
                s.backend()
                    .query("INSERT INTO bench_rows (id, state, since, payload) VALUES (?, 'UNCLAIMED', ?, ?)")
                    .bind(format!("row-{i}"))
                    .bind(i as i64)
                    .bind("x".repeat(256))
                    .execute(s.pool())
                    .await
                    .expect("insert");
            }
        })
        .await
    }

    /// `UPDATE`s rows `row-{i}` by key for i in `range`, `clients` at a time; rows per second.
    pub async fn update(&self, range: std::ops::Range<usize>, clients: usize) -> f64 {
        let s = self.0.clone();
        drive(range, clients, move |i| {
            let s = s.clone();
            async move {
                s.backend()
                    .query("UPDATE bench_rows SET state = 'RUNNING', since = ? WHERE id = ?")
                    .bind(i as i64 + 1)
                    .bind(format!("row-{i}"))
                    .execute(s.pool())
                    .await
                    .expect("update");
            }
        })
        .await
    }
}
