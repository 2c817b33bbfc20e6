//! What a container runs: one LRP instance or one task, with its identity and what it was asked
//! for (placement constraint, pids limit). The rep sets it at reservation from the work of
//! `Perform`; the executor (environment, logs), the generator (which processor) and `State`
//! (what the cell holds) read it back as typed values.

use proto::models::{
    ActualLrpKey, DomainName, InstanceGuid, LrpStart, PlacementConstraint, Resource, TaskGuid, TaskStart,
};

/// The workload of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// An instance of a desired LRP.
    Lrp(LrpWorkload),
    /// A task.
    Task(TaskWorkload),
}

/// An LRP instance: which index of which desired LRP, under which instance guid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LrpWorkload {
    /// The process guid, index and domain.
    pub key: ActualLrpKey,
    /// The instance guid (the container guid).
    pub instance_guid: InstanceGuid,
    /// Where the instance was asked to run.
    pub placement_constraint: PlacementConstraint,
    /// The pids limit asked for (0 = unlimited).
    pub max_pids: i32,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskWorkload {
    /// The task guid (the container guid).
    pub task_guid: TaskGuid,
    /// The task's domain.
    pub domain: DomainName,
    /// Where the task was asked to run.
    pub placement_constraint: PlacementConstraint,
    /// The pids limit asked for (0 = unlimited).
    pub max_pids: i32,
}

impl Workload {
    /// The workload of `lrp` started under `instance_guid`.
    pub fn lrp(lrp: LrpStart, instance_guid: InstanceGuid) -> Self {
        Workload::Lrp(LrpWorkload {
            key: lrp.key,
            instance_guid,
            placement_constraint: lrp.placement_constraint,
            max_pids: lrp.resource.max_pids,
        })
    }

    /// The workload of `task`.
    pub fn task(task: TaskStart) -> Self {
        Workload::Task(TaskWorkload {
            task_guid: task.task_guid,
            domain: task.domain,
            placement_constraint: task.placement_constraint,
            max_pids: task.resource.max_pids,
        })
    }

    /// Whether this is a task.
    pub fn is_task(&self) -> bool {
        matches!(self, Workload::Task(_))
    }

    /// The LRP instance, when it is one.
    pub fn as_lrp(&self) -> Option<&LrpWorkload> {
        match self {
            Workload::Lrp(lrp) => Some(lrp),
            Workload::Task(_) => None,
        }
    }

    /// Where it was asked to run.
    pub fn placement_constraint(&self) -> &PlacementConstraint {
        match self {
            Workload::Lrp(lrp) => &lrp.placement_constraint,
            Workload::Task(task) => &task.placement_constraint,
        }
    }

    /// The pids limit asked for.
    pub fn max_pids(&self) -> i32 {
        match self {
            Workload::Lrp(lrp) => lrp.max_pids,
            Workload::Task(task) => task.max_pids,
        }
    }

    /// For log lines: the process guid, or `""` for a task.
    pub fn process_guid(&self) -> &str {
        self.as_lrp().map_or("", |lrp| lrp.key.process_guid.as_str())
    }

    /// For log lines: the instance index, or `""` for a task.
    pub fn index(&self) -> String {
        self.as_lrp().map(|lrp| lrp.key.index.to_string()).unwrap_or_default()
    }

    /// For log lines: the task guid, or `""` for an LRP instance.
    pub fn task_guid(&self) -> &str {
        match self {
            Workload::Lrp(_) => "",
            Workload::Task(task) => task.task_guid.as_str(),
        }
    }
}

impl LrpWorkload {
    /// The instance as `State` reports it, with the memory and disk its container holds.
    pub fn to_start(&self, memory_mb: i32, disk_mb: i32) -> LrpStart {
        LrpStart {
            key: self.key.clone(),
            resource: Resource { memory_mb, disk_mb, max_pids: self.max_pids },
            placement_constraint: self.placement_constraint.clone(),
        }
    }
}

impl TaskWorkload {
    /// The task as `State` reports it, with the memory and disk its container holds and whether
    /// it failed.
    pub fn to_start(&self, memory_mb: i32, disk_mb: i32, failed: bool) -> TaskStart {
        TaskStart {
            task_guid: self.task_guid.clone(),
            domain: self.domain.clone(),
            resource: Resource { memory_mb, disk_mb, max_pids: self.max_pids },
            placement_constraint: self.placement_constraint.clone(),
            failed,
        }
    }
}

/// The workload of instance `index` of `process_guid` (domain `d`) under `instance_guid`, for
/// tests.
///
/// # Panics
///
/// When a guid is invalid (a test bug).
#[cfg(any(test, feature = "testing"))]
pub fn lrp_workload(process_guid: &str, index: i32, instance_guid: &str) -> Workload {
    #[allow(clippy::expect_used)]
    Workload::Lrp(LrpWorkload {
        key: ActualLrpKey {
            process_guid: proto::models::ProcessGuid::parse(process_guid).expect("valid process guid"),
            index,
            domain: DomainName::parse("d").expect("valid domain"),
        },
        instance_guid: InstanceGuid::parse(instance_guid).expect("valid instance guid"),
        placement_constraint: PlacementConstraint::default(),
        max_pids: 0,
    })
}

/// The workload of task `task_guid` (domain `d`), for tests.
///
/// # Panics
///
/// When the guid is invalid (a test bug).
#[cfg(any(test, feature = "testing"))]
pub fn task_workload(task_guid: &str) -> Workload {
    #[allow(clippy::expect_used)]
    Workload::Task(TaskWorkload {
        task_guid: TaskGuid::parse(task_guid).expect("valid task guid"),
        domain: DomainName::parse("d").expect("valid domain"),
        placement_constraint: PlacementConstraint::default(),
        max_pids: 0,
    })
}

/// [`task_workload`] of `guid` when `lifecycle` is `task`, else [`lrp_workload`] of index `index`
/// of `process_guid` under `guid`: for tests that name the lifecycle.
#[cfg(any(test, feature = "testing"))]
pub fn workload(guid: &str, lifecycle: &str, process_guid: &str, index: i32) -> Workload {
    if lifecycle == "task" { task_workload(guid) } else { lrp_workload(process_guid, index, guid) }
}
