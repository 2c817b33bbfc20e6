//! [`TaskStoreGaps`]: the two task writes convergence needs that `db::Store` does not offer yet,
//! because the task state machine (rightly) refuses them to API callers:
//!
//! - RESOLVING -> COMPLETED for tasks whose resolver went quiet (bbs.md 6.3 step 4);
//! - deleting COMPLETED tasks whose first completion expired (step 5; `Store::delete_task` only
//!   deletes RESOLVING tasks).
//!
//! INTERIM: until the db crate has `Store::demote_resolving_tasks` and
//! `Store::delete_completed_tasks` (same signatures as the trait methods, written with
//! `Store::write` so they get its fence check and deadlock retries), the implementation for
//! [`db::Store`] below runs the same statements through the store's public pool, in a
//! transaction that checks the store's fence first, exactly as `Store::write` does. Replacing it
//! means deleting this file's `impl` and forwarding to the new methods.

use db::Store;
use db::backend::placeholders;
use futures::future::BoxFuture;
use proto::models::{TaskGuid, TaskState};

/// Task writes of convergence that the store's lifecycle calls do not cover.
pub trait TaskStoreGaps: Send + Sync {
    /// Of `guids`, puts back to COMPLETED every task still RESOLVING with
    /// `updated_at < cutoff_ns`, leaving `updated_at` as it is; returns the guids changed.
    fn demote_resolving_tasks<'a>(
        &'a self,
        guids: &'a [TaskGuid],
        cutoff_ns: i64,
    ) -> BoxFuture<'a, db::Result<Vec<TaskGuid>>>;

    /// Of `guids`, deletes every task still COMPLETED with `first_completed_at < cutoff_ns`;
    /// returns the guids deleted.
    fn delete_completed_tasks<'a>(
        &'a self,
        guids: &'a [TaskGuid],
        cutoff_ns: i64,
    ) -> BoxFuture<'a, db::Result<Vec<TaskGuid>>>;
}

/// Guids per statement.
const CHUNK: usize = 500;

/// Which statement pair a call runs.
#[derive(Clone, Copy)]
enum Change {
    /// RESOLVING (by `updated_at`) -> COMPLETED.
    Demote,
    /// COMPLETED (by `first_completed_at`) -> deleted.
    Delete,
}

impl TaskStoreGaps for Store {
    fn demote_resolving_tasks<'a>(
        &'a self,
        guids: &'a [TaskGuid],
        cutoff_ns: i64,
    ) -> BoxFuture<'a, db::Result<Vec<TaskGuid>>> {
        Box::pin(apply(self, Change::Demote, guids, cutoff_ns))
    }

    fn delete_completed_tasks<'a>(
        &'a self,
        guids: &'a [TaskGuid],
        cutoff_ns: i64,
    ) -> BoxFuture<'a, db::Result<Vec<TaskGuid>>> {
        Box::pin(apply(self, Change::Delete, guids, cutoff_ns))
    }
}

/// Locks the listed tasks that still qualify, changes exactly those, in one fenced transaction.
async fn apply(store: &Store, change: Change, guids: &[TaskGuid], cutoff_ns: i64) -> db::Result<Vec<TaskGuid>> {
    if guids.is_empty() {
        return Ok(Vec::new());
    }
    let (op, state, column) = match change {
        Change::Demote => ("demote resolving tasks", TaskState::Resolving, "updated_at"),
        Change::Delete => ("delete completed tasks", TaskState::Completed, "first_completed_at"),
    };
    let err = |source| db::Error::Sql { op, source };
    let backend = store.backend();
    let begin = match backend {
        // Take the write lock up front, as the store's own write transactions do.
        db::Backend::Sqlite => "BEGIN IMMEDIATE",
        db::Backend::Postgres | db::Backend::Mysql => "BEGIN",
    };
    let mut tx = store.pool().begin_with(begin).await.map_err(err)?;
    if let Some(fence) = store.fence() {
        // The check `Store::write` makes: the lease is still ours, unexpired, at our term.
        let sql = format!(
            "SELECT term FROM leases WHERE lease_key = ? AND owner = ? AND term = ? AND expires_at_ms > {}{}",
            backend.now_ms_sql(),
            backend.for_share()
        );
        let held = backend
            .query_scalar::<i64>(&sql)
            .bind(fence.key.clone())
            .bind(fence.owner.clone())
            .bind(fence.term)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        if held.is_none() {
            return Err(db::Error::Fenced { key: fence.key.clone(), owner: fence.owner.clone(), term: fence.term });
        }
    }
    let mut changed = Vec::new();
    for chunk in guids.chunks(CHUNK) {
        let condition = format!("state = ? AND {column} < ? AND guid IN ({})", placeholders(chunk.len()));
        let select = format!("SELECT guid FROM tasks WHERE {condition}{}", backend.for_update());
        let mut query = backend.query_scalar::<String>(&select).bind(i64::from(state.as_i32())).bind(cutoff_ns);
        for guid in chunk {
            query = query.bind(guid.as_str().to_owned());
        }
        let locked = query.fetch_all(&mut *tx).await.map_err(err)?;
        if locked.is_empty() {
            continue;
        }
        let write = match change {
            Change::Demote => format!("UPDATE tasks SET state = ? WHERE {condition}"),
            Change::Delete => format!("DELETE FROM tasks WHERE {condition}"),
        };
        let mut statement = backend.query(&write);
        if let Change::Demote = change {
            statement = statement.bind(i64::from(TaskState::Completed.as_i32()));
        }
        statement = statement.bind(i64::from(state.as_i32())).bind(cutoff_ns);
        for guid in chunk {
            statement = statement.bind(guid.as_str().to_owned());
        }
        statement.execute(&mut *tx).await.map_err(err)?;
        for guid in locked {
            match TaskGuid::parse(guid) {
                Ok(guid) => changed.push(guid),
                Err(e) => tracing::warn!(error = %e, "a changed task has an invalid guid"),
            }
        }
    }
    tx.commit().await.map_err(err)?;
    changed.sort();
    Ok(changed)
}
