//! The task lifecycle calls (bbs.md 3.5): each one locks the row, runs
//! [`proto::lifecycle::task::TaskCall::transition`] (the rules decide, and the call sets the
//! fields bbs.md 3.5 names), and writes (or deletes) the row in the same transaction, returning
//! the task before and after.

use std::sync::Arc;

use proto::lifecycle::task::{TaskCall as Call, TaskVerdict};
use proto::models::{CellId, Task, TaskGuid, TaskState};

use super::TaskChange;
use super::coalesce::{TaskOutcome, TaskWrite, update_task};
use super::rows::{TASK_COLUMNS, decode_task};
use crate::coalesce::Done;
use crate::{Error, Result, Store, Tx};

/// Locks and decodes the row of `guid` inside `tx`.
async fn lock_task(tx: &mut Tx, op: &'static str, guid: &TaskGuid) -> Result<Task> {
    let select = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE guid");
    let keys = tx.keys.clone();
    tx.lock_row(op, "task", &select, guid.as_str(), |row| decode_task(&keys, row)).await
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

    /// The one lifecycle helper: lock, decide, apply, write, in one transaction (shared with the
    /// task writes waiting at the same moment when group commit is on: [`super::coalesce`]).
    async fn transition(&self, op: &'static str, guid: &TaskGuid, call: Call, now_ns: i64) -> Result<TaskChange> {
        let call = Arc::new(call);
        let lane = &self.group.task_lane;
        if let Some(lane) = lane {
            let item = TaskWrite::Transition { guid: guid.clone(), call: Arc::clone(&call), now_ns };
            match crate::coalesce::submit(self, lane, op, item).await {
                Done::Written(outcome) => {
                    return match (*outcome)? {
                        TaskOutcome::Changed(change) => Ok(*change),
                        TaskOutcome::Desired => Err(Error::refused(
                            proto::error::ErrorCode::Unknown,
                            format!("{op}: the batch answered a lifecycle call as a desire"),
                        )),
                    };
                }
                // The batch failed as a whole: in a transaction of its own, to fail alone.
                Done::Alone => {}
            }
        }
        let guid = guid.clone();
        // Without a lane, the savepoint batches; after a failed batch, a transaction of its own.
        self.write_grouped_if(lane.is_none(), op, move |tx| {
            let (guid, call) = (guid.clone(), Arc::clone(&call));
            Box::pin(async move {
                let guid = &guid;
                let before = lock_task(tx, op, guid).await?;
                let mut after = before.clone();
                let verdict = call
                    .transition(&mut after, now_ns)
                    .map_err(|refusal| Error::refused(refusal.code, refusal.message))?;
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
                update_task(tx, op, &after).await?;
                let should_start = matches!(*call, Call::Start { .. }) && state == TaskState::Running;
                Ok(TaskChange { before, after: Some(after), should_start })
            })
        })
        .await
    }
}
