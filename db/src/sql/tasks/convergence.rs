//! The two task convergence writes outside the task lifecycle (bbs.md 6.3 steps 4 and 5) and
//! the plain-column read task convergence plans from.

use std::sync::Arc;

use proto::models::{TaskGuid, TaskState};
use sqlx::Row;

use super::TaskSummary;
use super::rows::decode_summary;
use crate::backend::placeholders;
use crate::{Error, Result, Store};

/// Guids per statement of a convergence sweep.
const SWEEP_CHUNK: usize = 500;

/// The two convergence writes outside the task lifecycle.
#[derive(Debug, Clone, Copy)]
enum Sweep {
    /// RESOLVING (by `updated_at`) back to COMPLETED.
    DemoteResolving,
    /// COMPLETED (by `first_completed_at`) deleted.
    DeleteCompleted,
}

impl Store {
    /// Task convergence (bbs.md 6.3 step 4): of `guids`, puts every task still RESOLVING with
    /// `updated_at < cutoff_ns` back to COMPLETED (its resolver went quiet), leaving
    /// `updated_at` as it is, so the next pass resolves it again. Returns the guids changed,
    /// sorted. A write the lifecycle refuses to API callers, so it is not a [`TaskEvent`].
    pub async fn demote_resolving_tasks(&self, guids: &[TaskGuid], cutoff_ns: i64) -> Result<Vec<TaskGuid>> {
        self.sweep_tasks(Sweep::DemoteResolving, guids, cutoff_ns).await
    }

    /// Task convergence (bbs.md 6.3 step 5): of `guids`, deletes every task still COMPLETED
    /// whose first completion is older than `cutoff_ns` (nobody resolved it in time). Returns
    /// the guids deleted, sorted. [`Store::delete_task`] only deletes RESOLVING tasks.
    pub async fn delete_completed_tasks(&self, guids: &[TaskGuid], cutoff_ns: i64) -> Result<Vec<TaskGuid>> {
        self.sweep_tasks(Sweep::DeleteCompleted, guids, cutoff_ns).await
    }

    /// Locks the listed tasks that still qualify for `sweep` and changes exactly those, in one
    /// fenced write transaction (retried on deadlock), 500 guids per statement.
    async fn sweep_tasks(&self, sweep: Sweep, guids: &[TaskGuid], cutoff_ns: i64) -> Result<Vec<TaskGuid>> {
        if guids.is_empty() {
            return Ok(Vec::new());
        }
        let (op, state, column) = match sweep {
            Sweep::DemoteResolving => ("demote resolving tasks", TaskState::Resolving, "updated_at"),
            Sweep::DeleteCompleted => ("delete completed tasks", TaskState::Completed, "first_completed_at"),
        };
        let guids: Arc<Vec<String>> = Arc::new(guids.iter().map(|g| g.as_str().to_owned()).collect());
        let mut changed = self
            .write(op, move |tx| {
                let guids = Arc::clone(&guids);
                Box::pin(async move {
                    let sql_err = |e| Error::from_sqlx(op, "task", "*", e);
                    let mut changed = Vec::new();
                    for chunk in guids.chunks(SWEEP_CHUNK) {
                        let condition =
                            format!("state = ? AND {column} < ? AND guid IN ({})", placeholders(chunk.len()));
                        let select = format!("SELECT guid FROM tasks WHERE {condition}{}", tx.backend.for_update());
                        let mut query = tx
                            .backend
                            .list_query_scalar::<String>(&select)
                            .bind(i64::from(state.as_i32()))
                            .bind(cutoff_ns);
                        for guid in chunk {
                            query = query.bind(guid.as_str());
                        }
                        let locked = query.fetch_all(tx.conn()).await.map_err(sql_err)?;
                        if locked.is_empty() {
                            continue;
                        }
                        let write = match sweep {
                            Sweep::DemoteResolving => format!("UPDATE tasks SET state = ? WHERE {condition}"),
                            Sweep::DeleteCompleted => format!("DELETE FROM tasks WHERE {condition}"),
                        };
                        let mut statement = tx.backend.query(&write);
                        if let Sweep::DemoteResolving = sweep {
                            statement = statement.bind(i64::from(TaskState::Completed.as_i32()));
                        }
                        statement = statement.bind(i64::from(state.as_i32())).bind(cutoff_ns);
                        for guid in chunk {
                            statement = statement.bind(guid.as_str());
                        }
                        statement.execute(tx.conn()).await.map_err(sql_err)?;
                        changed.extend(locked);
                    }
                    Ok(changed)
                })
            })
            .await?
            .into_iter()
            .filter_map(|guid| match TaskGuid::parse(guid) {
                Ok(guid) => Some(guid),
                Err(e) => {
                    tracing::warn!(error = %e, "a swept task has an invalid guid");
                    None
                }
            })
            .collect::<Vec<_>>();
        changed.sort();
        Ok(changed)
    }

    /// The plain columns of every task (no definition), in one query, sorted by guid, for task
    /// convergence. Undecodable rows are skipped with a warning.
    pub async fn task_summaries(&self) -> Result<Vec<TaskSummary>> {
        let op = "list task summaries";
        let rows = self
            .backend
            .query(
                "SELECT guid, domain, state, cell_id, created_at, updated_at, first_completed_at, rejection_count \
                 FROM tasks",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "task", "*", e))?;
        let mut summaries: Vec<TaskSummary> = rows
            .iter()
            .filter_map(|row| match decode_summary(row) {
                Ok(summary) => Some(summary),
                Err(reason) => {
                    let guid = row.try_get::<String, _>("guid").unwrap_or_default();
                    tracing::warn!(task_guid = %guid, reason, "skipping corrupt task row");
                    None
                }
            })
            .collect();
        summaries.sort_by(|a, b| a.task_guid.cmp(&b.task_guid));
        Ok(summaries)
    }
}
