//! The `tasks` table (bbs.md 2.3, 3.5): desire, list and get tasks, and move them through their
//! lifecycle. Every lifecycle call goes through one helper that locks the row, asks
//! [`proto::lifecycle::task::decide`] what the call does, sets the fields bbs.md 3.5 names, and
//! writes (or deletes) the row in the same transaction, returning the task before and after.
//!
//! The task definition is one codec protobuf blob; [`Store::task_summaries`] reads the plain
//! columns only, for task convergence. Not here: auctions, completion callbacks and rep calls,
//! which the BBS task controller does after these return. Row decoding lives in [`rows`].

mod page;
mod rows;

use std::sync::Arc;

use proto::error::ErrorCode;
use proto::lifecycle::task::{TaskEvent, TaskVerdict, decide, retries_exhausted};
use proto::models::validation::truncate_reason;
use proto::models::{CellId, DomainName, Task, TaskDefinition, TaskGuid, TaskState};
use sqlx::Row;

use self::rows::{TASK_COLUMNS, decode_summary, decode_task, state_name};
use crate::backend::placeholders;
use crate::codec::encode_proto;
use crate::{Error, Result, Store, Tx};

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

/// The failure reason of a cancelled task (Diego's).
pub const CANCELLED_REASON: &str = "task was cancelled";

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

/// A lifecycle call with its arguments (owned: the transaction body may run more than once).
enum Call {
    Start { cell_id: CellId },
    Reject { reason: String, max_retries: i32 },
    Complete { cell_id: CellId, failed: bool, failure_reason: String, result: String },
    Cancel,
    Fail { reason: String },
    Resolving,
    Delete,
}

impl Call {
    /// The state-machine event this call is for `task`.
    fn event(&self, task: &Task) -> TaskEvent {
        let on = |cell_id: &CellId| task.cell_id.as_ref() == Some(cell_id);
        match self {
            Self::Start { cell_id } => TaskEvent::Start { same_cell: on(cell_id) },
            Self::Reject { max_retries, .. } => {
                TaskEvent::Reject { retries_exhausted: retries_exhausted(task.rejection_count, *max_retries) }
            }
            Self::Complete { cell_id, .. } => TaskEvent::Complete { same_cell: on(cell_id) },
            Self::Cancel => TaskEvent::Cancel,
            Self::Fail { .. } => TaskEvent::Fail,
            Self::Resolving => TaskEvent::Resolving,
            Self::Delete => TaskEvent::Delete,
        }
    }

    /// The verb of refusal messages.
    fn verb(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Reject { .. } => "reject",
            Self::Complete { .. } => "complete",
            Self::Cancel => "cancel",
            Self::Fail { .. } => "fail",
            Self::Resolving => "resolve",
            Self::Delete => "delete",
        }
    }

    /// The refusal `decide` answered with `code`, as an error naming the task and the states.
    fn refusal(&self, task: &Task, code: ErrorCode) -> Error {
        let guid = &task.task_guid;
        let state = state_name(task.state);
        let message = match (self, code) {
            (Self::Complete { cell_id, .. }, ErrorCode::RunningOnDifferentCell) => {
                let running_on = task.cell_id.as_ref().map_or("", CellId::as_str);
                format!("cannot complete task {guid} from cell {cell_id}: it is running on cell {running_on}")
            }
            (Self::Start { cell_id }, _) if task.state == TaskState::Running => {
                let running_on = task.cell_id.as_ref().map_or("", CellId::as_str);
                format!("cannot start task {guid} on cell {cell_id}: it is already running on cell {running_on}")
            }
            _ => {
                let allowed = match self {
                    Self::Start { .. } => "pending",
                    Self::Reject { .. } | Self::Cancel | Self::Fail { .. } => "pending or running",
                    Self::Complete { .. } => "running",
                    Self::Resolving => "completed",
                    Self::Delete => "resolving",
                };
                format!("cannot {} task {guid} in state {state}: it must be {allowed}", self.verb())
            }
        };
        Error::refused(code, message)
    }

    /// Sets the fields of `task` for a move to `state` at `now_ns` (bbs.md 3.5).
    fn apply(&self, task: &mut Task, state: TaskState, now_ns: i64) {
        task.state = state;
        task.updated_at = now_ns;
        match self {
            Self::Start { cell_id } => task.cell_id = Some(cell_id.clone()),
            Self::Reject { reason, .. } => {
                let reason = truncate_reason(reason);
                task.rejection_count = task.rejection_count.saturating_add(1);
                task.cell_id = None;
                if state == TaskState::Completed {
                    // Retries exhausted: the task fails with the rejection reason.
                    complete(task, true, reason.clone(), String::new(), now_ns);
                }
                task.rejection_reason = reason;
            }
            Self::Complete { failed, failure_reason, result, .. } => {
                complete(task, *failed, truncate_reason(failure_reason), result.clone(), now_ns);
            }
            Self::Cancel => complete(task, true, CANCELLED_REASON.to_owned(), String::new(), now_ns),
            Self::Fail { reason } => complete(task, true, truncate_reason(reason), String::new(), now_ns),
            Self::Resolving | Self::Delete => {}
        }
    }
}

/// The completion fields: no cell, the outcome, and `first_completed_at = updated_at = now`.
fn complete(task: &mut Task, failed: bool, failure_reason: String, result: String, now_ns: i64) {
    task.cell_id = None;
    task.failed = failed;
    task.failure_reason = failure_reason;
    task.result = result;
    task.first_completed_at = now_ns;
    task.updated_at = now_ns;
}

/// Locks and decodes the row of `guid` inside `tx`.
async fn lock_task(tx: &mut Tx, op: &'static str, guid: &TaskGuid) -> Result<Task> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE guid = ?{}", tx.backend.for_update());
    let row = tx
        .backend
        .query(&sql)
        .bind(guid.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, "task", guid.as_str(), e))?
        .ok_or_else(|| Error::NotFound { what: "task", key: guid.to_string() })?;
    decode_task(&row).map_err(|reason| Error::Corrupt { what: "task", key: guid.to_string(), reason })
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
        let blob: Arc<[u8]> = encode_proto(definition.as_pb()).into();
        let (guid, domain) = (guid.clone(), domain.clone());
        self.write(op, move |tx| {
            let (guid, domain, blob) = (guid.clone(), domain.clone(), Arc::clone(&blob));
            Box::pin(async move {
                tx.backend
                    .query(
                        "INSERT INTO tasks (guid, domain, created_at, updated_at, first_completed_at, state, cell_id, \
                         result, failed, failure_reason, rejection_count, rejection_reason, task_definition) \
                         VALUES (?, ?, ?, ?, 0, ?, '', '', 0, '', 0, '', ?)",
                    )
                    .bind(guid.as_str())
                    .bind(domain.as_str())
                    .bind(now_ns)
                    .bind(now_ns)
                    .bind(i64::from(TaskState::Pending.as_i32()))
                    .bind(blob.to_vec())
                    .execute(tx.conn())
                    .await
                    .map_err(|e| Error::from_sqlx(op, "task", guid.as_str(), e))?;
                Ok(())
            })
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
            .filter_map(|row| match decode_task(row) {
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
        decode_task(&row).map_err(|reason| Error::Corrupt { what: "task", key: guid.to_string(), reason })
    }

    /// StartTask: PENDING to RUNNING on `cell_id` (`should_start` true); already RUNNING on
    /// `cell_id` is a success with nothing written (`should_start` false). Anything else is
    /// refused with `InvalidStateTransition`.
    pub async fn start_task(&self, guid: &TaskGuid, cell_id: &CellId, now_ns: i64) -> Result<TaskChange> {
        self.transition("start task", guid, Call::Start { cell_id: cell_id.clone() }, now_ns).await
    }

    /// RejectTask: back to PENDING with `rejection_count + 1` and `reason` (truncated to 1024
    /// characters), or, when the count before this rejection already reached `max_retries`,
    /// COMPLETED and failed with `reason`. Only from PENDING or RUNNING (else `InvalidRequest`).
    pub async fn reject_task(
        &self,
        guid: &TaskGuid,
        reason: &str,
        max_retries: i32,
        now_ns: i64,
    ) -> Result<TaskChange> {
        let call = Call::Reject { reason: reason.to_owned(), max_retries };
        self.transition("reject task", guid, call, now_ns).await
    }

    /// CompleteTask from the rep on `cell_id`: RUNNING on that cell to COMPLETED, with the
    /// outcome, the cell cleared and `first_completed_at = updated_at = now_ns`. Running on
    /// another cell is `RunningOnDifferentCell`; not running is `InvalidStateTransition`.
    pub async fn complete_task(
        &self,
        guid: &TaskGuid,
        cell_id: &CellId,
        failed: bool,
        failure_reason: &str,
        result: &str,
        now_ns: i64,
    ) -> Result<TaskChange> {
        let call = Call::Complete {
            cell_id: cell_id.clone(),
            failed,
            failure_reason: failure_reason.to_owned(),
            result: result.to_owned(),
        };
        self.transition("complete task", guid, call, now_ns).await
    }

    /// CancelTask: PENDING or RUNNING to COMPLETED, failed with "task was cancelled". The cell
    /// it ran on (to cancel it there) is `before.cell_id`.
    pub async fn cancel_task(&self, guid: &TaskGuid, now_ns: i64) -> Result<TaskChange> {
        self.transition("cancel task", guid, Call::Cancel, now_ns).await
    }

    /// FailTask (deprecated): like [`Store::cancel_task`] with `reason` (truncated to 1024
    /// characters).
    pub async fn fail_task(&self, guid: &TaskGuid, reason: &str, now_ns: i64) -> Result<TaskChange> {
        self.transition("fail task", guid, Call::Fail { reason: reason.to_owned() }, now_ns).await
    }

    /// ResolvingTask: COMPLETED to RESOLVING, so only one resolver acts.
    pub async fn resolving_task(&self, guid: &TaskGuid, now_ns: i64) -> Result<TaskChange> {
        self.transition("resolving task", guid, Call::Resolving, now_ns).await
    }

    /// DeleteTask: deletes a RESOLVING task (`after` is `None`); any other state is
    /// `InvalidStateTransition`.
    pub async fn delete_task(&self, guid: &TaskGuid) -> Result<TaskChange> {
        self.transition("delete task", guid, Call::Delete, 0).await
    }

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
                        let mut query =
                            tx.backend.query_scalar::<String>(&select).bind(i64::from(state.as_i32())).bind(cutoff_ns);
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

    /// The one lifecycle helper: lock, decide, apply, write, in one transaction.
    async fn transition(&self, op: &'static str, guid: &TaskGuid, call: Call, now_ns: i64) -> Result<TaskChange> {
        let (guid, call) = (guid.clone(), Arc::new(call));
        self.write(op, move |tx| {
            let (guid, call) = (guid.clone(), Arc::clone(&call));
            Box::pin(async move {
                let guid = &guid;
                let before = lock_task(tx, op, guid).await?;
                let verdict = decide(before.state, call.event(&before)).map_err(|code| call.refusal(&before, code))?;
                let state = match verdict {
                    TaskVerdict::Unchanged => {
                        return Ok(TaskChange { after: Some(before.clone()), before, should_start: false });
                    }
                    TaskVerdict::Delete => {
                        tx.backend
                            .query("DELETE FROM tasks WHERE guid = ?")
                            .bind(guid.as_str())
                            .execute(tx.conn())
                            .await
                            .map_err(|e| Error::from_sqlx(op, "task", guid.as_str(), e))?;
                        return Ok(TaskChange { before, after: None, should_start: false });
                    }
                    TaskVerdict::Write(state) => state,
                };
                let mut after = before.clone();
                call.apply(&mut after, state, now_ns);
                tx.backend
                    .query(
                        "UPDATE tasks SET state = ?, cell_id = ?, updated_at = ?, first_completed_at = ?, result = ?, \
                         failed = ?, failure_reason = ?, rejection_count = ?, rejection_reason = ? WHERE guid = ?",
                    )
                    .bind(i64::from(after.state.as_i32()))
                    .bind(after.cell_id.as_ref().map_or("", CellId::as_str).to_owned())
                    .bind(after.updated_at)
                    .bind(after.first_completed_at)
                    .bind(after.result.clone())
                    .bind(i64::from(after.failed))
                    .bind(after.failure_reason.clone())
                    .bind(i64::from(after.rejection_count))
                    .bind(after.rejection_reason.clone())
                    .bind(guid.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(|e| Error::from_sqlx(op, "task", guid.as_str(), e))?;
                let should_start = matches!(*call, Call::Start { .. }) && state == TaskState::Running;
                Ok(TaskChange { before, after: Some(after), should_start })
            })
        })
        .await
    }
}
