//! Task definitions and tasks.

use super::required;
use crate::models::validation::{validate_task, validate_task_definition};
use crate::models::{CellId, DomainName, Task, TaskDefinition, TaskGuid, TaskState, ValidationError};
use crate::pb::models::v1 as pb;

impl TryFrom<pb::TaskDefinition> for TaskDefinition {
    type Error = ValidationError;

    /// Checks [`validate_task_definition`].
    fn try_from(definition: pb::TaskDefinition) -> Result<Self, Self::Error> {
        validate_task_definition(&definition)?;
        Ok(Self(definition))
    }
}

impl From<TaskDefinition> for pb::TaskDefinition {
    fn from(definition: TaskDefinition) -> Self {
        definition.into_pb()
    }
}

/// A task definition from the wire or from the db crate's blob, validated.
pub fn task_definition_from_pb(definition: pb::TaskDefinition) -> Result<TaskDefinition, ValidationError> {
    TaskDefinition::try_from(definition)
}

/// The `state` integer of a wire task; 0 (invalid) and unknown values are errors.
pub fn task_state_from_i32(state: i32) -> Result<TaskState, ValidationError> {
    TaskState::from_i32(state)
        .ok_or_else(|| ValidationError::new("state", "must be one of PENDING, RUNNING, COMPLETED, RESOLVING"))
}

impl TryFrom<pb::Task> for Task {
    type Error = ValidationError;

    /// Needs a valid `task_definition`, task guid and domain and a known state; an empty
    /// `cell_id` is `None`. Checks [`validate_task`].
    fn try_from(task: pb::Task) -> Result<Self, Self::Error> {
        let definition = TaskDefinition::try_from(required(task.task_definition, "task_definition")?)
            .map_err(|e| e.within("task_definition"))?;
        let cell_id = if task.cell_id.is_empty() { None } else { Some(CellId::parse(task.cell_id)?) };
        let converted = Self {
            task_guid: TaskGuid::parse(task.task_guid)?,
            domain: DomainName::parse(task.domain)?,
            definition,
            created_at: task.created_at,
            updated_at: task.updated_at,
            first_completed_at: task.first_completed_at,
            state: task_state_from_i32(task.state)?,
            cell_id,
            result: task.result,
            failed: task.failed,
            failure_reason: task.failure_reason,
            rejection_count: task.rejection_count,
            rejection_reason: task.rejection_reason,
        };
        validate_task(&converted)?;
        Ok(converted)
    }
}

impl From<Task> for pb::Task {
    fn from(task: Task) -> Self {
        Self {
            task_definition: Some(task.definition.into()),
            task_guid: task.task_guid.into_string(),
            domain: task.domain.into_string(),
            created_at: task.created_at,
            updated_at: task.updated_at,
            first_completed_at: task.first_completed_at,
            state: task.state.as_i32(),
            cell_id: task.cell_id.map(CellId::into_string).unwrap_or_default(),
            result: task.result,
            failed: task.failed,
            failure_reason: task.failure_reason,
            rejection_count: task.rejection_count,
            rejection_reason: task.rejection_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::fixtures;

    /// A mutation and the error it causes.
    type Case = (fn(&mut pb::Task), &'static str);

    fn definition_wire() -> pb::TaskDefinition {
        pb::TaskDefinition {
            root_fs: "docker:///cloudfoundry/diego-docker-app".into(),
            environment_variables: vec![pb::EnvironmentVariable { name: "A".into(), value: "1".into() }],
            action: Some(fixtures::setup()),
            disk_mb: 1024,
            memory_mb: 512,
            cpu_weight: 50,
            privileged: false,
            log_source: "TASK".into(),
            log_guid: "log-t".into(),
            metrics_guid: "metrics-t".into(),
            result_file: "/tmp/result.json".into(),
            completion_callback_url: "https://cloud-controller.example/internal/v4/tasks/t-1".into(),
            annotation: "{\"task\":\"migrate\"}".into(),
            egress_rules: vec![fixtures::egress_rule()],
            volume_mounts: vec![fixtures::volume_mount()],
            placement_tags: vec!["isolation-1".into()],
            max_pids: 100,
            image_username: "registry-user".into(),
            image_password: "registry-pass".into(),
            log_rate_limit: Some(pb::LogRateLimit { bytes_per_second: 4096 }),
            metric_tags: [("source_id".to_owned(), pb::MetricTagValue { r#static: "metrics-t".into(), dynamic: 0 })]
                .into(),
            ..Default::default()
        }
    }

    fn task() -> Task {
        Task {
            task_guid: TaskGuid::parse("t-1").unwrap(),
            domain: DomainName::parse("cf-tasks").unwrap(),
            definition: TaskDefinition::try_from(definition_wire()).unwrap(),
            created_at: 1_000,
            updated_at: 2_000,
            first_completed_at: 0,
            state: TaskState::Running,
            cell_id: Some(CellId::parse("cell-z2-1").unwrap()),
            result: String::new(),
            failed: false,
            failure_reason: String::new(),
            rejection_count: 1,
            rejection_reason: "insufficient resources: memory".into(),
        }
    }

    #[test]
    fn task_definition_round_trips_and_validates() {
        let definition = task_definition_from_pb(definition_wire()).unwrap();
        assert_eq!(pb::TaskDefinition::from(definition.clone()), definition_wire());
        assert_eq!(TaskDefinition::try_from(pb::TaskDefinition::from(definition.clone())), Ok(definition));
        let bad = pb::TaskDefinition { action: None, ..definition_wire() };
        assert_eq!(task_definition_from_pb(bad).unwrap_err().to_string(), "action is required");
    }

    #[test]
    fn task_round_trips() {
        let wire = pb::Task::from(task());
        assert_eq!((wire.state, wire.cell_id.as_str()), (2, "cell-z2-1"));
        assert_eq!(Task::try_from(wire), Ok(task()));
    }

    #[test]
    fn a_completed_task_round_trips_without_a_cell() {
        let completed = Task {
            state: TaskState::Completed,
            cell_id: None,
            failed: true,
            failure_reason: "exit status 2".into(),
            first_completed_at: 3_000,
            ..task()
        };
        let wire = pb::Task::from(completed.clone());
        assert_eq!(wire.cell_id, "");
        assert_eq!(Task::try_from(wire), Ok(completed));
    }

    #[test]
    fn every_task_state_round_trips() {
        for state in TaskState::ALL {
            assert_eq!(task_state_from_i32(state.as_i32()), Ok(state));
        }
    }

    #[test]
    fn task_conversion_refuses_bad_envelopes() {
        let cases: [Case; 6] = [
            (|t| t.task_definition = None, "task_definition is required"),
            (
                |t| t.task_definition = Some(pb::TaskDefinition { root_fs: String::new(), ..definition_wire() }),
                "task_definition.root_fs must not be empty",
            ),
            (|t| t.task_guid = "t/1".into(), "task_guid must match [A-Za-z0-9_-]+"),
            (|t| t.domain = String::new(), "domain must not be empty"),
            (|t| t.state = 0, "state must be one of PENDING, RUNNING, COMPLETED, RESOLVING"),
            (|t| t.cell_id = String::new(), "cell_id is required when state is RUNNING"),
        ];
        for (mutate, message) in cases {
            let mut bad = pb::Task::from(task());
            mutate(&mut bad);
            assert_eq!(Task::try_from(bad).map(|_| ()).map_err(|e| e.to_string()), Err(message.to_owned()));
        }
    }
}
