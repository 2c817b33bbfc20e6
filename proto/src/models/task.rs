//! Tasks: one-off work that runs to completion (bbs.md 2.3, 3.5).

use super::{CellId, DomainName, TaskGuid};
use crate::pb::models::v1 as pb;

/// The lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    /// Waiting for a cell.
    Pending,
    /// Running on a cell.
    Running,
    /// Finished (successfully or not); waiting to be resolved.
    Completed,
    /// A resolver (client or callback worker) is handling the result.
    Resolving,
}

impl TaskState {
    /// Every state, for exhaustive tests.
    pub const ALL: [TaskState; 4] = [Self::Pending, Self::Running, Self::Completed, Self::Resolving];

    /// The integer stored in the `state` column (Diego's values; 0 is invalid).
    pub fn as_i32(self) -> i32 {
        match self {
            Self::Pending => 1,
            Self::Running => 2,
            Self::Completed => 3,
            Self::Resolving => 4,
        }
    }

    /// Parses [`TaskState::as_i32`].
    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_i32() == value)
    }
}

/// What to run, in wire form (see the module docs of [`crate::models`]). Only constructed
/// through validation, so it always has an action.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefinition(pub(crate) pb::TaskDefinition);

impl TaskDefinition {
    /// The wire message.
    pub fn as_pb(&self) -> &pb::TaskDefinition {
        &self.0
    }

    /// The wire message, owned.
    pub fn into_pb(self) -> pb::TaskDefinition {
        self.0
    }

    /// Memory in MB.
    pub fn memory_mb(&self) -> i32 {
        self.0.memory_mb
    }

    /// Disk in MB.
    pub fn disk_mb(&self) -> i32 {
        self.0.disk_mb
    }

    /// Root filesystem URL.
    pub fn rootfs(&self) -> &str {
        &self.0.root_fs
    }

    /// Completion callback URL, empty when none.
    pub fn completion_callback_url(&self) -> &str {
        &self.0.completion_callback_url
    }
}

/// One row of the `tasks` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Primary key.
    pub task_guid: TaskGuid,
    /// Freshness grouping.
    pub domain: DomainName,
    /// What to run.
    pub definition: TaskDefinition,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// Nanoseconds since the Unix epoch of the last write.
    pub updated_at: i64,
    /// Nanoseconds since the Unix epoch when it first completed, 0 before.
    pub first_completed_at: i64,
    /// Lifecycle state.
    pub state: TaskState,
    /// The cell running it; `None` unless RUNNING.
    pub cell_id: Option<CellId>,
    /// The first 10 KB of the result file.
    pub result: String,
    /// Whether it failed.
    pub failed: bool,
    /// Why it failed, at most 1024 characters.
    pub failure_reason: String,
    /// How many times placement or container creation refused it.
    pub rejection_count: i32,
    /// Why it was last refused, at most 1024 characters.
    pub rejection_reason: String,
}
