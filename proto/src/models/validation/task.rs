//! Task definitions and task envelopes. Mirrors cloudfoundry/bbs `models/task.go`.

use super::action::check_action_tree;
use super::desired::check_pb_metric_tags;
use super::runtime::{RuntimeParts, check_runtime};
use super::{check_annotation, check_reason, check_rootfs, non_negative};
use crate::models::{Task, TaskState, ValidationError};
use crate::pb::models::v1 as pb;

/// Validates a task definition: `root_fs` a URL with a scheme, an `action`, `memory_mb`,
/// `disk_mb` and `max_pids` >= 0, `annotation` <= 10 KiB, an http(s) completion callback when
/// set, the shared run-time fields (egress rules, volume mounts, cached dependencies, image
/// layers, credentials both or neither, log rate limit >= -1, volume-mounted files <= 1 MiB), and
/// metric tags (well formed; `source_id` equal to `metrics_guid` when both are present).
pub fn validate_task_definition(definition: &pb::TaskDefinition) -> Result<(), ValidationError> {
    check_rootfs("root_fs", &definition.root_fs)?;
    match &definition.action {
        None => return Err(ValidationError::new("action", "is required")),
        Some(action) => check_action_tree(action, "action")?,
    }
    non_negative("memory_mb", definition.memory_mb)?;
    non_negative("disk_mb", definition.disk_mb)?;
    non_negative("max_pids", definition.max_pids)?;
    check_annotation(&definition.annotation)?;
    let callback = definition.completion_callback_url.to_ascii_lowercase();
    if !callback.is_empty() && !callback.starts_with("http://") && !callback.starts_with("https://") {
        return Err(ValidationError::new("completion_callback_url", "must be an http or https url"));
    }
    check_runtime(&RuntimeParts {
        egress_rules: &definition.egress_rules,
        volume_mounts: &definition.volume_mounts,
        cached_dependencies: &definition.cached_dependencies,
        image_layers: &definition.image_layers,
        image_username: &definition.image_username,
        image_password: &definition.image_password,
        log_rate_limit: definition.log_rate_limit.as_ref(),
        volume_mounted_files: &definition.volume_mounted_files,
        environment_variables: &definition.environment_variables,
    })?;
    check_pb_metric_tags(&definition.metric_tags)?;
    // Diego's validateMetricTags: only when there are tags and a metrics guid.
    if !definition.metric_tags.is_empty() && !definition.metrics_guid.is_empty() {
        let matches = definition
            .metric_tags
            .get("source_id")
            .is_some_and(|source_id| source_id.dynamic == 0 && source_id.r#static == definition.metrics_guid);
        if !matches {
            return Err(ValidationError::new("metric_tags.source_id", "must equal metrics_guid"));
        }
    }
    Ok(())
}

/// Validates a task envelope beyond what its types guarantee: a RUNNING task has a `cell_id`,
/// and `failure_reason` and `rejection_reason` are at most 1024 characters.
pub fn validate_task(task: &Task) -> Result<(), ValidationError> {
    if task.state == TaskState::Running && task.cell_id.is_none() {
        return Err(ValidationError::new("cell_id", "is required when state is RUNNING"));
    }
    check_reason("failure_reason", &task.failure_reason)?;
    check_reason("rejection_reason", &task.rejection_reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{CellId, DomainName, TaskDefinition, TaskGuid};
    use pb::action::Action as Variant;

    fn definition() -> pb::TaskDefinition {
        pb::TaskDefinition {
            root_fs: "preloaded:cflinuxfs4".into(),
            action: Some(pb::Action {
                action: Some(Variant::RunAction(pb::RunAction { path: "/bin/migrate".into(), ..Default::default() })),
            }),
            memory_mb: 512,
            disk_mb: 1024,
            max_pids: 64,
            log_guid: "log-1".into(),
            metrics_guid: "guid-1".into(),
            result_file: "/tmp/result".into(),
            completion_callback_url: "https://cc.example/tasks/t-1/completed".into(),
            annotation: "migration".into(),
            metric_tags: [("source_id".to_owned(), pb::MetricTagValue { r#static: "guid-1".into(), dynamic: 0 })]
                .into(),
            ..Default::default()
        }
    }

    rule_test!(task_root_fs_is_required: validate_task_definition, definition(),
        |v| v.root_fs.clear() => "root_fs must not be empty");
    rule_test!(task_root_fs_needs_a_scheme: validate_task_definition, definition(),
        |v| v.root_fs = "cflinuxfs4".into() => "root_fs must be a url with a scheme");
    rule_test!(task_needs_an_action: validate_task_definition, definition(),
        |v| v.action = None => "action is required");
    rule_test!(task_action_must_be_valid: validate_task_definition, definition(),
        |v| v.action = Some(pb::Action::default()) => "action must set one of its action variants");
    rule_test!(task_memory_is_not_negative: validate_task_definition, definition(),
        |v| v.memory_mb = -1 => "memory_mb must be >= 0");
    rule_test!(task_disk_is_not_negative: validate_task_definition, definition(),
        |v| v.disk_mb = -1 => "disk_mb must be >= 0");
    rule_test!(task_max_pids_is_not_negative: validate_task_definition, definition(),
        |v| v.max_pids = -1 => "max_pids must be >= 0");
    rule_test!(task_annotation_is_at_most_10_kib: validate_task_definition, definition(),
        |v| v.annotation = "a".repeat(10 * 1024 + 1) => "annotation must be at most 10240 bytes");
    rule_test!(task_callback_is_an_http_url: validate_task_definition, definition(),
        |v| v.completion_callback_url = "ftp://cc.example/x".into()
        => "completion_callback_url must be an http or https url");
    rule_test!(task_credentials_are_both_or_neither: validate_task_definition, definition(),
        |v| v.image_username = "user".into() => "image_password must be set when image_username is set");
    rule_test!(task_log_rate_limit_is_at_least_minus_one: validate_task_definition, definition(),
        |v| v.log_rate_limit = Some(pb::LogRateLimit { bytes_per_second: -5 })
        => "log_rate_limit.bytes_per_second must be >= -1");
    rule_test!(task_volume_mounted_files_total_at_most_one_mib: validate_task_definition, definition(),
        |v| v.volume_mounted_files = vec![pb::File { path: "/a".into(), content: "x".repeat(1024 * 1024 + 1) }]
        => "volume_mounted_files must total at most 1048576 bytes");
    rule_test!(task_metric_tag_values_must_be_well_formed: validate_task_definition, definition(),
        |v| v.metric_tags.insert("index".into(), pb::MetricTagValue { r#static: String::new(), dynamic: 9 })
        => "metric_tags.index.dynamic must be unset, INDEX or INSTANCE_GUID");
    rule_test!(task_source_id_must_equal_metrics_guid: validate_task_definition, definition(),
        |v| v.metrics_guid = "guid-2".into() => "metric_tags.source_id must equal metrics_guid");

    fn task() -> Task {
        Task {
            task_guid: TaskGuid::parse("t-1").unwrap(),
            domain: DomainName::parse("cf-tasks").unwrap(),
            definition: TaskDefinition(definition()),
            created_at: 1,
            updated_at: 2,
            first_completed_at: 0,
            state: TaskState::Running,
            cell_id: Some(CellId::parse("cell-1").unwrap()),
            result: String::new(),
            failed: false,
            failure_reason: String::new(),
            rejection_count: 1,
            rejection_reason: "insufficient resources".into(),
        }
    }

    rule_test!(running_task_needs_a_cell: validate_task, task(),
        |v| v.cell_id = None => "cell_id is required when state is RUNNING");
    rule_test!(task_failure_reason_is_at_most_1024_chars: validate_task, task(),
        |v| v.failure_reason = "f".repeat(1025) => "failure_reason must be at most 1024 characters");
    rule_test!(task_rejection_reason_is_at_most_1024_chars: validate_task, task(),
        |v| v.rejection_reason = "r".repeat(1025) => "rejection_reason must be at most 1024 characters");
}
