//! [`TaskCall`]: a task lifecycle call with its arguments, the fields it sets (bbs.md 3.5) and
//! the refusal naming the task, so storage (the db crate, the rep's fake BBS) only locks, runs
//! [`TaskCall::transition`] and writes.

use crate::error::ErrorCode;
use crate::lifecycle::task::{TaskEvent, TaskVerdict, decide, retries_exhausted};
use crate::models::validation::truncate_reason;
use crate::models::{CellId, Task, TaskState};

/// The failure reason of a cancelled task.
pub const CANCELLED_REASON: &str = "task was cancelled";

/// A task lifecycle call with its arguments (owned: a retried transaction runs it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCall {
    /// StartTask from the rep of `cell_id`.
    Start {
        /// The cell that starts the task.
        cell_id: CellId,
    },
    /// RejectTask: back to PENDING, or failed once the rejections reach `max_retries`.
    Reject {
        /// Why (stored truncated to 1024 characters).
        reason: String,
        /// The BBS's `max_task_retries`.
        max_retries: i32,
    },
    /// CompleteTask from the rep of `cell_id`.
    Complete {
        /// The cell reporting.
        cell_id: CellId,
        /// Whether the task failed.
        failed: bool,
        /// Why it failed (stored truncated).
        failure_reason: String,
        /// The task's result.
        result: String,
    },
    /// CancelTask: failed with [`CANCELLED_REASON`].
    Cancel,
    /// FailTask (deprecated): failed with `reason`.
    Fail {
        /// Why (stored truncated).
        reason: String,
    },
    /// ResolvingTask.
    Resolving,
    /// DeleteTask.
    Delete,
}

/// A task call refused: the Diego error type and a message naming the task and its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskRefusal {
    /// The Diego error type.
    pub code: ErrorCode,
    /// What was refused.
    pub message: String,
}

/// A task state in lower case, for messages.
pub fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "pending",
        TaskState::Running => "running",
        TaskState::Completed => "completed",
        TaskState::Resolving => "resolving",
    }
}

impl TaskCall {
    /// The state-machine event this call is for `task`.
    pub fn event(&self, task: &Task) -> TaskEvent {
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

    /// The refusal [`decide`] answered with `code`, naming the task and the states.
    pub fn refusal(&self, task: &Task, code: ErrorCode) -> TaskRefusal {
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
        TaskRefusal { code, message }
    }

    /// Sets the fields of `task` for a move to `state` at `now_ns` (bbs.md 3.5).
    pub fn apply(&self, task: &mut Task, state: TaskState, now_ns: i64) {
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

    /// The whole call on a stored task: asks [`decide`], and on [`TaskVerdict::Write`] sets the
    /// fields ([`TaskCall::apply`]). The caller writes the task, deletes it
    /// ([`TaskVerdict::Delete`]) or leaves it ([`TaskVerdict::Unchanged`]).
    pub fn transition(&self, task: &mut Task, now_ns: i64) -> Result<TaskVerdict, TaskRefusal> {
        let verdict = decide(task.state, self.event(task)).map_err(|code| self.refusal(task, code))?;
        if let TaskVerdict::Write(state) = verdict {
            self.apply(task, state, now_ns);
        }
        Ok(verdict)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::fixtures;
    use crate::models::{DomainName, TaskDefinition, TaskGuid};
    use crate::pb::models::v1 as pb;

    const NOW: i64 = 5_000;

    fn cell(id: &str) -> CellId {
        CellId::parse(id).unwrap()
    }

    fn task(state: TaskState, cell_id: Option<&str>, rejections: i32) -> Task {
        let wire = pb::TaskDefinition {
            root_fs: "preloaded:cflinuxfs4".into(),
            action: Some(fixtures::setup()),
            memory_mb: 64,
            disk_mb: 16,
            ..Default::default()
        };
        Task {
            task_guid: TaskGuid::parse("t-1").unwrap(),
            domain: DomainName::parse("d").unwrap(),
            definition: TaskDefinition::try_from(wire).unwrap(),
            created_at: 1_000,
            updated_at: 1_000,
            first_completed_at: 0,
            state,
            cell_id: cell_id.map(cell),
            result: String::new(),
            failed: false,
            failure_reason: String::new(),
            rejection_count: rejections,
            rejection_reason: String::new(),
        }
    }

    #[test]
    fn each_call_sets_the_fields_of_its_target_state() {
        let mut t = task(TaskState::Pending, None, 0);
        assert_eq!(
            TaskCall::Start { cell_id: cell("c1") }.transition(&mut t, NOW),
            Ok(TaskVerdict::Write(TaskState::Running))
        );
        assert_eq!((t.cell_id.clone(), t.updated_at), (Some(cell("c1")), NOW));
        assert_eq!(TaskCall::Start { cell_id: cell("c1") }.transition(&mut t, NOW + 1), Ok(TaskVerdict::Unchanged));
        assert_eq!(t.updated_at, NOW, "a repeated start changes nothing");

        let complete =
            TaskCall::Complete { cell_id: cell("c1"), failed: true, failure_reason: "oom".into(), result: "r".into() };
        assert_eq!(complete.transition(&mut t, NOW), Ok(TaskVerdict::Write(TaskState::Completed)));
        assert_eq!(
            (t.cell_id.as_ref(), t.failed, t.failure_reason.as_str(), t.result.as_str()),
            (None, true, "oom", "r")
        );
        assert_eq!(t.first_completed_at, NOW);

        let mut t = task(TaskState::Running, Some("c1"), 0);
        assert_eq!(TaskCall::Cancel.transition(&mut t, NOW), Ok(TaskVerdict::Write(TaskState::Completed)));
        assert_eq!((t.failed, t.failure_reason.as_str()), (true, CANCELLED_REASON));
    }

    #[test]
    fn rejections_return_the_task_until_the_retries_run_out() {
        let reject = TaskCall::Reject { reason: "no room".into(), max_retries: 1 };
        let mut t = task(TaskState::Running, Some("c1"), 0);
        assert_eq!(reject.transition(&mut t, NOW), Ok(TaskVerdict::Write(TaskState::Pending)));
        assert_eq!((t.cell_id.as_ref(), t.rejection_count, t.rejection_reason.as_str()), (None, 1, "no room"));
        assert_eq!(reject.transition(&mut t, NOW), Ok(TaskVerdict::Write(TaskState::Completed)));
        assert_eq!((t.failed, t.failure_reason.as_str(), t.rejection_count), (true, "no room", 2));
    }

    #[test]
    fn refusals_carry_the_code_and_name_the_cells() {
        let mut t = task(TaskState::Running, Some("c1"), 0);
        let complete = TaskCall::Complete {
            cell_id: cell("c2"),
            failed: false,
            failure_reason: String::new(),
            result: String::new(),
        };
        let refusal = complete.transition(&mut t, NOW).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::RunningOnDifferentCell);
        assert_eq!(refusal.to_string(), "cannot complete task t-1 from cell c2: it is running on cell c1");
        let refusal = TaskCall::Start { cell_id: cell("c2") }.transition(&mut t, NOW).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::InvalidStateTransition);
        assert!(refusal.message.contains("already running on cell c1"), "{refusal}");
        let mut done = task(TaskState::Completed, None, 0);
        let refusal =
            TaskCall::Reject { reason: String::new(), max_retries: 3 }.transition(&mut done, NOW).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::InvalidRequest);
        assert_eq!(refusal.message, "cannot reject task t-1 in state completed: it must be pending or running");
    }
}
