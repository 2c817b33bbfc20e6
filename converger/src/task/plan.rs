//! The pure task convergence decision (bbs.md 6.3; issue item 2). Mirrors
//! `bbs/db/sqldb/task_convergence.go`, deciding from one read of every task.
//!
//! | task | action | guarded |
//! |---|---|---|
//! | PENDING, `created_at < now - expire_pending_task` | fail: "not started within time limit" | no |
//! | any other PENDING | kick: one auction call with all of them | no |
//! | RUNNING on a cell that is not live | fail: "cell disappeared before completion" | **yes** |
//! | RESOLVING, `updated_at < now - kick_task` | back to COMPLETED (`updated_at` kept), then as COMPLETED below | no |
//! | COMPLETED, `first_completed_at < now - expire_completed_task` | delete | no |
//! | other COMPLETED, `updated_at < now - kick_task`, with a callback URL | queue its callback again | no |
//!
//! Only the cell-dependent rule is withheld by the guard: the others depend on time alone, so a
//! suspicious cell set says nothing about them.

use proto::models::{CellId, Task, TaskGuid, TaskState};

use crate::cells::{self, CellSet, GuardReason};
use crate::config::{ConvergenceConfig, nanos};

/// The failure reason of a PENDING task that was never placed (Diego's).
pub const EXPIRED_PENDING_REASON: &str = "not started within time limit";
/// The failure reason of a RUNNING task whose cell is lost (Diego's).
pub const LOST_CELL_REASON: &str = "cell disappeared before completion";

/// One thing a pass does to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    /// Fail a PENDING task that waited too long.
    FailExpiredPending {
        /// The task.
        task_guid: TaskGuid,
    },
    /// Send a PENDING task to the auctioneer again.
    Kick {
        /// The task.
        task_guid: TaskGuid,
    },
    /// Fail a RUNNING task whose cell is lost.
    FailOnLostCell {
        /// The task.
        task_guid: TaskGuid,
        /// The lost cell (`None` for a RUNNING row without a cell, which no cell can finish).
        cell_id: Option<CellId>,
    },
    /// Put a RESOLVING task whose resolver went quiet back to COMPLETED.
    DemoteResolving {
        /// The task.
        task_guid: TaskGuid,
    },
    /// Delete a COMPLETED task nobody resolved in time.
    DeleteCompleted {
        /// The task.
        task_guid: TaskGuid,
    },
    /// Queue the completion callback of a COMPLETED task again.
    RetryCallback {
        /// The task.
        task_guid: TaskGuid,
    },
}

impl TaskAction {
    /// Whether the guard withholds it (only failing tasks on lost cells).
    pub fn is_destructive(&self) -> bool {
        matches!(self, Self::FailOnLostCell { .. })
    }
}

/// Tasks by state (Diego's TasksPending / Running / Completed / Resolving).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// PENDING.
    pub pending: usize,
    /// RUNNING.
    pub running: usize,
    /// COMPLETED.
    pub completed: usize,
    /// RESOLVING.
    pub resolving: usize,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPlan {
    /// Why failing tasks on lost cells was withheld, if it was.
    pub guard: Option<GuardReason>,
    /// What to do, in task guid order.
    pub actions: Vec<TaskAction>,
    /// The actions the guard withheld.
    pub withheld: Vec<TaskAction>,
    /// Tasks by state before the pass.
    pub counts: TaskCounts,
}

/// Decides one task convergence pass. See the module docs for the rules.
pub fn plan(tasks: &[Task], cells: &CellSet, now_ns: i64, config: &ConvergenceConfig) -> TaskPlan {
    let guard = cells::guard(cells, config);
    let pending_cutoff = now_ns.saturating_sub(nanos(config.expire_pending_task));
    let kick_cutoff = now_ns.saturating_sub(nanos(config.kick_task));
    let completed_cutoff = now_ns.saturating_sub(nanos(config.expire_completed_task));
    let mut counts = TaskCounts::default();
    let mut actions = Vec::new();
    let mut withheld = Vec::new();
    let mut sorted: Vec<&Task> = tasks.iter().collect();
    sorted.sort_by(|a, b| a.task_guid.cmp(&b.task_guid));
    for task in sorted {
        let task_guid = || task.task_guid.clone();
        let completed_check = match task.state {
            TaskState::Pending => {
                counts.pending += 1;
                actions.push(if task.created_at < pending_cutoff {
                    TaskAction::FailExpiredPending { task_guid: task_guid() }
                } else {
                    TaskAction::Kick { task_guid: task_guid() }
                });
                false
            }
            TaskState::Running => {
                counts.running += 1;
                let lost = task.cell_id.as_ref().is_none_or(|c| !cells.is_live(c));
                if lost {
                    let action = TaskAction::FailOnLostCell { task_guid: task_guid(), cell_id: task.cell_id.clone() };
                    if guard.is_some() {
                        withheld.push(action);
                    } else {
                        actions.push(action);
                    }
                }
                false
            }
            TaskState::Resolving => {
                counts.resolving += 1;
                let stuck = task.updated_at < kick_cutoff;
                if stuck {
                    actions.push(TaskAction::DemoteResolving { task_guid: task_guid() });
                }
                // Demoted without touching `updated_at`, so the COMPLETED rules see it at once.
                stuck
            }
            TaskState::Completed => {
                counts.completed += 1;
                true
            }
        };
        if !completed_check {
            continue;
        }
        if task.first_completed_at < completed_cutoff {
            actions.push(TaskAction::DeleteCompleted { task_guid: task_guid() });
        } else if task.updated_at < kick_cutoff && !task.definition.completion_callback_url().is_empty() {
            actions.push(TaskAction::RetryCallback { task_guid: task_guid() });
        }
    }
    TaskPlan { guard, actions, withheld, counts }
}

#[cfg(test)]
mod tests;
