//! The `tasks` table (bbs.md 2.3, 3.5): desire, list and get tasks here; move them through their
//! lifecycle in [`lifecycle`], where every call goes through one helper that locks the row, asks
//! [`proto::lifecycle::task::decide`] what the call does, sets the fields bbs.md 3.5 names, and
//! writes (or deletes) the row in the same transaction, returning the task before and after;
//! the convergence sweeps and summaries are in [`convergence`].
//!
//! The task definition is one codec protobuf blob; [`Store::task_summaries`] reads the plain
//! columns only, for task convergence. Not here: auctions, completion callbacks and rep calls,
//! which the BBS task controller does after these return. Row decoding lives in [`rows`].

pub(crate) mod coalesce;
mod convergence;
mod lifecycle;
mod page;
mod rows;

use std::sync::Arc;

use proto::models::{CellId, DomainName, Task, TaskDefinition, TaskGuid, TaskState};
use sqlx::Row;

use self::rows::{TASK_COLUMNS, decode_task};
use crate::codec::seal_proto;
use crate::{Error, Result, Store};

/// The failure reason of a cancelled task (Diego's).
pub use proto::lifecycle::task::CANCELLED_REASON;

/// Which tasks a listing returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks of this domain.
    pub domain: Option<DomainName>,
    /// Only tasks running on this cell.
    pub cell_id: Option<CellId>,
}

/// What a lifecycle call did to a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    /// The task before the call.
    pub before: Task,
    /// The task after the call; `None` when it was deleted.
    pub after: Option<Task>,
    /// For StartTask: whether the rep should start it (it just moved PENDING to RUNNING), as
    /// opposed to it already running on that cell. False for every other call.
    pub should_start: bool,
}

/// The plain columns of a task, without its definition: what task convergence needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    /// Primary key.
    pub task_guid: TaskGuid,
    /// Freshness grouping.
    pub domain: DomainName,
    /// Lifecycle state.
    pub state: TaskState,
    /// The cell running it; `None` unless RUNNING.
    pub cell_id: Option<CellId>,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Nanoseconds since the Unix epoch of the last write.
    pub updated_at: i64,
    /// Nanoseconds since the Unix epoch when it first completed, 0 before.
    pub first_completed_at: i64,
    /// How many times it was rejected.
    pub rejection_count: i32,
}

impl Store {
    /// Stores a new PENDING task created at `now_ns`. [`Error::Exists`] when the guid is taken.
    pub async fn desire_task(
        &self,
        guid: &TaskGuid,
        domain: &DomainName,
        definition: &TaskDefinition,
        now_ns: i64,
    ) -> Result<Task> {
        let op = "desire task";
        let task = Task {
            task_guid: guid.clone(),
            domain: domain.clone(),
            definition: definition.clone(),
            created_at: now_ns,
            updated_at: now_ns,
            first_completed_at: 0,
            state: TaskState::Pending,
            cell_id: None,
            result: String::new(),
            failed: false,
            failure_reason: String::new(),
            rejection_count: 0,
            rejection_reason: String::new(),
        };
        // The body must own what it uses: the transaction helper re-runs it on deadlock.
        let blob: Arc<[u8]> = seal_proto(self.keys(), definition.as_pb()).into();
        let key_label: Arc<str> = self.keys().active_label().unwrap_or_default().into();
        let lane = &self.group.task_lane;
        if let Some(lane) = lane {
            let item = coalesce::TaskWrite::Desire {
                task: Box::new(task.clone()),
                sealed: Arc::clone(&blob),
                key_label: Arc::clone(&key_label),
            };
            match crate::coalesce::submit(self, lane, op, item).await {
                crate::coalesce::Done::Written(outcome) => return (*outcome).map(|_| task),
                // The batch failed as a whole: in a transaction of its own, to fail alone.
                crate::coalesce::Done::Alone => {}
            }
        }
        let row = Arc::new(task.clone());
        // Without a lane, the savepoint batches; after a failed batch, a transaction of its own.
        self.write_grouped_if(lane.is_none(), op, move |tx| {
            let new = [(Task::clone(&row), Arc::clone(&blob), Arc::clone(&key_label))];
            Box::pin(async move { coalesce::insert_tasks(tx, op, &new).await })
        })
        .await?;
        Ok(task)
    }

    /// The tasks `filter` selects, sorted by guid. Rows that cannot be decoded are skipped with
    /// a warning.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        let op = "list tasks";
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        if let Some(domain) = &filter.domain {
            conditions.push("domain = ?");
            binds.push(domain.as_str());
        }
        if let Some(cell_id) = &filter.cell_id {
            conditions.push("cell_id = ?");
            binds.push(cell_id.as_str());
        }
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        let mut query = self.backend.query(&sql);
        for bind in binds {
            query = query.bind(bind.to_owned());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(|e| Error::from_sqlx(op, "task", "*", e))?;
        let mut tasks: Vec<Task> = rows
            .iter()
            .filter_map(|row| match decode_task(self.keys(), row) {
                Ok(task) => Some(task),
                Err(reason) => {
                    let guid = row.try_get::<String, _>("guid").unwrap_or_default();
                    tracing::warn!(task_guid = %guid, reason, "skipping corrupt task row");
                    None
                }
            })
            .collect();
        // Byte order, whatever the database's collation.
        tasks.sort_by(|a, b| a.task_guid.cmp(&b.task_guid));
        Ok(tasks)
    }

    /// The task `guid`. [`Error::NotFound`] when absent, [`Error::Corrupt`] when its row cannot
    /// be decoded.
    pub async fn task(&self, guid: &TaskGuid) -> Result<Task> {
        let op = "get task";
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE guid = ?");
        let row = self
            .backend
            .query(&sql)
            .bind(guid.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "task", guid.as_str(), e))?
            .ok_or_else(|| Error::NotFound { what: "task", key: guid.to_string() })?;
        decode_task(self.keys(), &row).map_err(|reason| Error::Corrupt { what: "task", key: guid.to_string(), reason })
    }
}
