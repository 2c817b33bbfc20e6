//! The task lifecycle calls (bbs.md 3.5): each one locks the row, asks
//! [`proto::lifecycle::task::decide`] what the call does, sets the fields bbs.md 3.5 names, and
//! writes (or deletes) the row in the same transaction, returning the task before and after.

use std::sync::Arc;

use proto::error::ErrorCode;
use proto::lifecycle::task::{TaskEvent, TaskVerdict, decide, retries_exhausted};
use proto::models::validation::truncate_reason;
use proto::models::{CellId, Task, TaskGuid, TaskState};

use super::rows::{TASK_COLUMNS, decode_task, state_name};
use super::{CANCELLED_REASON, TaskChange};
use crate::{Error, Result, Store, Tx};

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
