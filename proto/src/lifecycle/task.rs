//! The Task state machine (bbs.md 3.5).
//!
//! Mirrors the guards of `bbs/db/sqldb/task_db.go` and `bbs/models/task.go`. [`decide`] says
//! what a call does to a stored task; [`TaskCall`] (in the `call` submodule) sets the fields a
//! call sets (cell_id, failed, failure_reason, rejection_count, timestamps) and words the
//! refusal. The caller stores the task, sends callbacks and talks to reps.

mod call;

pub use self::call::{CANCELLED_REASON, TaskCall, TaskRefusal, state_name};

use crate::error::ErrorCode;
use crate::models::TaskState;

/// A call that moves a task, with the facts about the request that the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEvent {
    /// StartTask from a rep.
    Start {
        /// The request's cell is the task's stored cell_id.
        same_cell: bool,
    },
    /// RejectTask from the auctioneer or a rep.
    Reject {
        /// See [`retries_exhausted()`]: the task is failed instead of going back to PENDING.
        retries_exhausted: bool,
    },
    /// CompleteTask from a rep.
    Complete {
        /// The request's cell is the task's stored cell_id.
        same_cell: bool,
    },
    /// CancelTask from a client (failed with "task was cancelled").
    Cancel,
    /// FailTask (deprecated), failed with a custom reason.
    Fail,
    /// ResolvingTask from a client or the callback worker.
    Resolving,
    /// DeleteTask from a client or the callback worker.
    Delete,
}

impl TaskEvent {
    /// Every event, with each value of its flags, for exhaustive tests.
    pub const ALL: [TaskEvent; 10] = [
        TaskEvent::Start { same_cell: true },
        TaskEvent::Start { same_cell: false },
        TaskEvent::Reject { retries_exhausted: true },
        TaskEvent::Reject { retries_exhausted: false },
        TaskEvent::Complete { same_cell: true },
        TaskEvent::Complete { same_cell: false },
        TaskEvent::Cancel,
        TaskEvent::Fail,
        TaskEvent::Resolving,
        TaskEvent::Delete,
    ];
}

/// What the caller must do to the task row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskVerdict {
    /// Update the row into this state.
    ///
    /// `Write(Completed)` from Reject, Cancel or Fail means a failed completion; from Complete
    /// the request says whether it failed.
    Write(TaskState),
    /// Success, nothing to write: StartTask when the task already runs on the same cell, which
    /// answers `should_start = false`.
    Unchanged,
    /// Delete the row.
    Delete,
}

/// Decides what `event` does to a task in `state`.
///
/// Errors:
/// - [`ErrorCode::InvalidRequest`] for Reject outside PENDING and RUNNING;
/// - [`ErrorCode::RunningOnDifferentCell`] for Complete of a task running on another cell;
/// - [`ErrorCode::InvalidStateTransition`] for every other refused event.
pub fn decide(state: TaskState, event: TaskEvent) -> Result<TaskVerdict, ErrorCode> {
    use TaskState::{Completed, Pending, Resolving, Running};
    match (event, state) {
        // `same_cell` is meaningless for a PENDING task, which has no cell yet.
        (TaskEvent::Start { .. }, Pending) => Ok(TaskVerdict::Write(Running)),
        (TaskEvent::Start { same_cell: true }, Running) => Ok(TaskVerdict::Unchanged),
        (TaskEvent::Start { .. }, _) => Err(ErrorCode::InvalidStateTransition),

        (TaskEvent::Reject { retries_exhausted }, Pending | Running) => {
            Ok(TaskVerdict::Write(if retries_exhausted { Completed } else { Pending }))
        }
        (TaskEvent::Reject { .. }, _) => Err(ErrorCode::InvalidRequest),

        (TaskEvent::Complete { same_cell: true }, Running) => Ok(TaskVerdict::Write(Completed)),
        (TaskEvent::Complete { same_cell: false }, Running) => Err(ErrorCode::RunningOnDifferentCell),
        (TaskEvent::Complete { .. }, _) => Err(ErrorCode::InvalidStateTransition),

        (TaskEvent::Cancel | TaskEvent::Fail, Pending | Running) => Ok(TaskVerdict::Write(Completed)),
        (TaskEvent::Cancel | TaskEvent::Fail, _) => Err(ErrorCode::InvalidStateTransition),

        (TaskEvent::Resolving, Completed) => Ok(TaskVerdict::Write(Resolving)),
        (TaskEvent::Resolving, _) => Err(ErrorCode::InvalidStateTransition),

        (TaskEvent::Delete, Resolving) => Ok(TaskVerdict::Delete),
        (TaskEvent::Delete, _) => Err(ErrorCode::InvalidStateTransition),
    }
}

/// Whether a rejection fails the task instead of returning it to PENDING.
///
/// True when the count *before* this rejection already reached `max_retries` (Diego's
/// `max_task_retries`, default 3).
pub fn retries_exhausted(rejection_count_before: i32, max_retries: i32) -> bool {
    rejection_count_before >= max_retries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::models::TaskState::{self, Completed, Pending, Resolving, Running};

    type Outcome = Result<TaskVerdict, ErrorCode>;

    const START_SAME: TaskEvent = TaskEvent::Start { same_cell: true };
    const START_OTHER: TaskEvent = TaskEvent::Start { same_cell: false };
    const REJECT_LAST: TaskEvent = TaskEvent::Reject { retries_exhausted: true };
    const REJECT: TaskEvent = TaskEvent::Reject { retries_exhausted: false };
    const COMPLETE_SAME: TaskEvent = TaskEvent::Complete { same_cell: true };
    const COMPLETE_OTHER: TaskEvent = TaskEvent::Complete { same_cell: false };
    const CANCEL: TaskEvent = TaskEvent::Cancel;
    const FAIL: TaskEvent = TaskEvent::Fail;
    const RESOLVING: TaskEvent = TaskEvent::Resolving;
    const DELETE: TaskEvent = TaskEvent::Delete;

    const W_PENDING: Outcome = Ok(TaskVerdict::Write(Pending));
    const W_RUNNING: Outcome = Ok(TaskVerdict::Write(Running));
    const W_COMPLETED: Outcome = Ok(TaskVerdict::Write(Completed));
    const W_RESOLVING: Outcome = Ok(TaskVerdict::Write(Resolving));
    const NOOP: Outcome = Ok(TaskVerdict::Unchanged);
    const GONE: Outcome = Ok(TaskVerdict::Delete);
    const IST: Outcome = Err(ErrorCode::InvalidStateTransition);
    const IR: Outcome = Err(ErrorCode::InvalidRequest);
    const ELSEWHERE: Outcome = Err(ErrorCode::RunningOnDifferentCell);

    /// Expected outcome of every (state, event), by hand from the table in bbs.md 3.5.
    #[rustfmt::skip]
    const TABLE: &[(TaskState, TaskEvent, Outcome)] = &[
        (Pending, START_SAME, W_RUNNING),
        (Pending, START_OTHER, W_RUNNING),
        (Pending, REJECT_LAST, W_COMPLETED),
        (Pending, REJECT, W_PENDING),
        (Pending, COMPLETE_SAME, IST),
        (Pending, COMPLETE_OTHER, IST),
        (Pending, CANCEL, W_COMPLETED),
        (Pending, FAIL, W_COMPLETED),
        (Pending, RESOLVING, IST),
        (Pending, DELETE, IST),

        (Running, START_SAME, NOOP),
        (Running, START_OTHER, IST),
        (Running, REJECT_LAST, W_COMPLETED),
        (Running, REJECT, W_PENDING),
        (Running, COMPLETE_SAME, W_COMPLETED),
        (Running, COMPLETE_OTHER, ELSEWHERE),
        (Running, CANCEL, W_COMPLETED),
        (Running, FAIL, W_COMPLETED),
        (Running, RESOLVING, IST),
        (Running, DELETE, IST),

        (Completed, START_SAME, IST),
        (Completed, START_OTHER, IST),
        (Completed, REJECT_LAST, IR),
        (Completed, REJECT, IR),
        (Completed, COMPLETE_SAME, IST),
        (Completed, COMPLETE_OTHER, IST),
        (Completed, CANCEL, IST),
        (Completed, FAIL, IST),
        (Completed, RESOLVING, W_RESOLVING),
        (Completed, DELETE, IST),

        (Resolving, START_SAME, IST),
        (Resolving, START_OTHER, IST),
        (Resolving, REJECT_LAST, IR),
        (Resolving, REJECT, IR),
        (Resolving, COMPLETE_SAME, IST),
        (Resolving, COMPLETE_OTHER, IST),
        (Resolving, CANCEL, IST),
        (Resolving, FAIL, IST),
        (Resolving, RESOLVING, IST),
        (Resolving, DELETE, GONE),
    ];

    #[test]
    fn table_lists_every_state_and_event_once() {
        assert_eq!(TABLE.len(), TaskState::ALL.len() * TaskEvent::ALL.len());
        for (i, (s, e, _)) in TABLE.iter().enumerate() {
            assert!(!TABLE[i + 1..].iter().any(|(s2, e2, _)| (s2, e2) == (s, e)), "row {s:?} {e:?} is listed twice");
        }
    }

    #[test]
    fn decide_matches_the_table_for_every_state_and_event() {
        let mut checked = 0;
        for state in TaskState::ALL {
            for event in TaskEvent::ALL {
                let (_, _, expected) = TABLE
                    .iter()
                    .find(|(s, e, _)| (*s, *e) == (state, event))
                    .unwrap_or_else(|| panic!("no row for {state:?} {event:?}"));
                assert_eq!(decide(state, event), *expected, "decide({state:?}, {event:?})");
                checked += 1;
            }
        }
        assert_eq!(checked, 40);
    }

    #[test]
    fn retries_are_exhausted_once_the_count_before_reaches_the_maximum() {
        #[rustfmt::skip]
        let cases = [
            (0, 3, false), (2, 3, false), (3, 3, true), (4, 3, true),
            (0, 0, true), (i32::MAX, 3, true), (i32::MIN, 3, false), (i32::MAX, i32::MAX, true),
        ];
        for (before, max, expected) in cases {
            assert_eq!(retries_exhausted(before, max), expected, "retries_exhausted({before}, {max})");
        }
    }
}
