//! Desired LRPs: the run-info blob, the scheduling columns, metric tags and updates. Mirrors
//! cloudfoundry/bbs `models/desired_lrp.go` and `models/metric_tags.go`.

use std::collections::BTreeMap;

use super::action::{check_action_tree, validate_check_definition};
use super::runtime::{RuntimeParts, check_runtime, check_sidecars, validate_image_credentials};
use super::{check_annotation, check_rootfs, check_routes, non_negative};
use crate::models::{DesiredLrpUpdate, DomainName, MetricTagValue, ProcessGuid, SchedulingInfo, ValidationError};
use crate::pb::models::v1 as pb;

/// Validates a run-info blob: a valid `desired_lrp_key`, an `action` (and valid `setup` and
/// `monitor` when set), a check definition, the shared run-time fields (egress rules, volume
/// mounts, cached dependencies, image layers, credentials both or neither, log rate limit >= -1,
/// volume-mounted files <= 1 MiB), sidecars, well-formed metric tag values, and a
/// `deprecated_start_timeout_s` that fits the `uint32` of the whole desired LRP.
///
/// The `metrics_guid` / `source_id` rule is not checked here: diego-rs keeps a desired LRP's
/// metric tags in their own column, so [`validate_desired_metric_tags`] checks it against them.
pub fn validate_run_info(run_info: &pb::DesiredLrpRunInfo) -> Result<(), ValidationError> {
    let Some(key) = &run_info.desired_lrp_key else {
        return Err(ValidationError::new("desired_lrp_key", "is required"));
    };
    ProcessGuid::parse(key.process_guid.as_str()).map_err(|e| e.within("desired_lrp_key"))?;
    DomainName::parse(key.domain.as_str()).map_err(|e| e.within("desired_lrp_key"))?;
    if let Some(setup) = &run_info.setup {
        check_action_tree(setup, "setup")?;
    }
    match &run_info.action {
        None => return Err(ValidationError::new("action", "is required")),
        Some(action) => check_action_tree(action, "action")?,
    }
    if let Some(monitor) = &run_info.monitor {
        check_action_tree(monitor, "monitor")?;
    }
    if u32::try_from(run_info.deprecated_start_timeout_s).is_err() {
        return Err(ValidationError::new("deprecated_start_timeout_s", "must be between 0 and 4294967295"));
    }
    if let Some(definition) = &run_info.check_definition {
        validate_check_definition(definition).map_err(|e| e.within("check_definition"))?;
    }
    check_runtime(&RuntimeParts {
        egress_rules: &run_info.egress_rules,
        volume_mounts: &run_info.volume_mounts,
        cached_dependencies: &run_info.cached_dependencies,
        image_layers: &run_info.image_layers,
        image_username: &run_info.image_username,
        image_password: &run_info.image_password,
        log_rate_limit: run_info.log_rate_limit.as_ref(),
        volume_mounted_files: &run_info.volume_mounted_files,
        environment_variables: &run_info.environment_variables,
    })?;
    check_sidecars(&run_info.sidecars)?;
    check_unique_ports(&run_info.ports)?;
    check_pb_metric_tags(&run_info.metric_tags)
}

/// Each exposed port at most once: two mappings of one container port cannot both be routed.
fn check_unique_ports(ports: &[u32]) -> Result<(), ValidationError> {
    for (i, port) in ports.iter().enumerate() {
        if let Some(first) = ports.iter().take(i).position(|p| p == port) {
            return Err(ValidationError::new(format!("ports[{i}]"), format!("duplicates ports[{first}] ({port})")));
        }
    }
    Ok(())
}

/// Validates the scheduling columns: `instances`, `memory_mb`, `disk_mb` and `max_pids` >= 0,
/// `rootfs` a URL with a scheme, `annotation` <= 10 KiB and `routes` <= 128 KiB in total. The
/// key's syntax (process guid, non-empty domain) is guaranteed by its types.
pub fn validate_scheduling_info(info: &SchedulingInfo) -> Result<(), ValidationError> {
    non_negative("instances", info.instances)?;
    non_negative("memory_mb", info.memory_mb)?;
    non_negative("disk_mb", info.disk_mb)?;
    non_negative("max_pids", info.max_pids)?;
    check_rootfs("rootfs", &info.rootfs)?;
    check_annotation(&info.annotation)?;
    check_routes(info.routes.values())
}

/// A domain metric tag value: a static value must not be empty.
pub fn validate_metric_tag_value(value: &MetricTagValue) -> Result<(), ValidationError> {
    match value {
        MetricTagValue::Static(s) if s.is_empty() => Err(ValidationError::new("static", "must not be empty")),
        MetricTagValue::Static(_) | MetricTagValue::Index | MetricTagValue::InstanceGuid => Ok(()),
    }
}

/// Validates metric tags: every value is well formed and, when there are tags and
/// `metrics_guid` is set, the `source_id` tag is static and equals it (Diego's
/// `validateMetricTags`; an LRP without tags keeps the old `metrics_guid`-only form). Callers
/// that update tags check the merged result against the run info's `metrics_guid`.
pub fn validate_desired_metric_tags(
    tags: &BTreeMap<String, MetricTagValue>,
    metrics_guid: &str,
) -> Result<(), ValidationError> {
    for (name, value) in tags {
        validate_metric_tag_value(value).map_err(|e| e.within(&format!("metric_tags.{name}")))?;
    }
    if !tags.is_empty() && !metrics_guid.is_empty() {
        match tags.get("source_id") {
            Some(MetricTagValue::Static(source_id)) if source_id == metrics_guid => {}
            _ => {
                return Err(ValidationError::new("metric_tags.source_id", "must equal metrics_guid"));
            }
        }
    }
    Ok(())
}

/// A wire metric tag value sets exactly one of `static` and a known `dynamic`. Error fields are
/// relative (`static`, `dynamic`).
pub(crate) fn check_pb_metric_tag(value: &pb::MetricTagValue) -> Result<(), ValidationError> {
    use pb::metric_tag_value::DynamicValue;
    match DynamicValue::try_from(value.dynamic) {
        Err(_) => Err(ValidationError::new("dynamic", "must be unset, INDEX or INSTANCE_GUID")),
        Ok(DynamicValue::Invalid) if value.r#static.is_empty() => {
            Err(ValidationError::new("static", "must be set when dynamic is unset"))
        }
        Ok(DynamicValue::Index | DynamicValue::InstanceGuid) if !value.r#static.is_empty() => {
            Err(ValidationError::new("static", "must be empty when dynamic is set"))
        }
        Ok(_) => Ok(()),
    }
}

/// [`check_pb_metric_tag`] on every value of a wire map, in name order so the error reported is
/// deterministic.
pub(crate) fn check_pb_metric_tags<'a>(
    tags: impl IntoIterator<Item = (&'a String, &'a pb::MetricTagValue)>,
) -> Result<(), ValidationError> {
    let sorted: BTreeMap<_, _> = tags.into_iter().collect();
    for (name, value) in sorted {
        check_pb_metric_tag(value).map_err(|e| e.within(&format!("metric_tags.{name}")))?;
    }
    Ok(())
}

/// Validates an update: `instances` >= 0, `annotation` <= 10 KiB, `routes` <= 128 KiB, metric
/// tag values well formed, and image credentials both or neither (both given, or both left
/// unchanged). The `source_id` rule needs the run info's `metrics_guid`: callers run
/// [`validate_desired_metric_tags`] on the merged tags.
pub fn validate_update(update: &DesiredLrpUpdate) -> Result<(), ValidationError> {
    if let Some(instances) = update.instances {
        non_negative("instances", instances)?;
    }
    if let Some(annotation) = &update.annotation {
        check_annotation(annotation)?;
    }
    if let Some(routes) = &update.routes {
        check_routes(routes.values())?;
    }
    if let Some(tags) = &update.metric_tags {
        validate_desired_metric_tags(tags, "")?;
    }
    match (&update.image_username, &update.image_password) {
        (Some(_), None) => Err(ValidationError::new("image_password", "must be set when image_username is set")),
        (None, Some(_)) => Err(ValidationError::new("image_username", "must be set when image_password is set")),
        (Some(username), Some(password)) => validate_image_credentials(username, password),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ModificationTag, UpdateStrategy};
    use pb::action::Action as Variant;

    fn run_info() -> pb::DesiredLrpRunInfo {
        pb::DesiredLrpRunInfo {
            desired_lrp_key: Some(pb::DesiredLrpKey {
                process_guid: "web-1".into(),
                domain: "cf-apps".into(),
                log_guid: "log-1".into(),
            }),
            setup: Some(run("/bin/setup")),
            action: Some(run("/bin/start")),
            monitor: Some(run("/bin/monitor")),
            deprecated_start_timeout_s: 60,
            check_definition: Some(pb::CheckDefinition {
                checks: vec![pb::Check {
                    tcp_check: Some(pb::TcpCheck { port: 8080, ..Default::default() }),
                    http_check: None,
                }],
                ..Default::default()
            }),
            log_rate_limit: Some(pb::LogRateLimit { bytes_per_second: 1024 }),
            metric_tags: [("app".to_owned(), static_tag("dora"))].into(),
            metrics_guid: "guid-elsewhere".into(),
            ..Default::default()
        }
    }

    fn run(path: &str) -> pb::Action {
        pb::Action { action: Some(Variant::RunAction(pb::RunAction { path: path.into(), ..Default::default() })) }
    }

    fn static_tag(value: &str) -> pb::MetricTagValue {
        pb::MetricTagValue { r#static: value.into(), dynamic: 0 }
    }

    rule_test!(ports_must_be_unique: validate_run_info, run_info(),
        |v| v.ports = vec![8080, 9090, 8080] => "ports[2] duplicates ports[0] (8080)");
    rule_test!(a_run_action_env_name_must_not_be_empty: validate_run_info, run_info(),
        |v| v.action = Some(pb::Action { action: Some(Variant::RunAction(pb::RunAction {
            path: "/bin/start".into(),
            env: vec![pb::EnvironmentVariable { name: String::new(), value: "x".into() }],
            ..Default::default()
        })) }) => "action.run_action.env[0].name must not be empty");
    rule_test!(a_run_action_s_arguments_must_fit_an_exec: validate_run_info, run_info(),
        |v| v.action = Some(pb::Action { action: Some(Variant::RunAction(pb::RunAction {
            path: "/bin/start".into(),
            args: vec!["x".repeat(100_000); 6],
            ..Default::default()
        })) }) => "action.run_action.args must total at most 524288 bytes");
    rule_test!(run_info_needs_a_key: validate_run_info, run_info(),
        |v| v.desired_lrp_key = None => "desired_lrp_key is required");
    rule_test!(run_info_key_needs_a_valid_process_guid: validate_run_info, run_info(),
        |v| v.desired_lrp_key = Some(pb::DesiredLrpKey { process_guid: "a b".into(), domain: "d".into(), log_guid: String::new() })
        => "desired_lrp_key.process_guid must match [A-Za-z0-9_-]+");
    rule_test!(run_info_key_needs_a_domain: validate_run_info, run_info(),
        |v| v.desired_lrp_key = Some(pb::DesiredLrpKey { process_guid: "a".into(), domain: String::new(), log_guid: String::new() })
        => "desired_lrp_key.domain must not be empty");
    rule_test!(run_info_needs_an_action: validate_run_info, run_info(),
        |v| v.action = None => "action is required");
    rule_test!(run_info_action_must_be_valid: validate_run_info, run_info(),
        |v| v.action = Some(run("")) => "action.run_action.path must not be empty");
    rule_test!(run_info_setup_must_be_valid: validate_run_info, run_info(),
        |v| v.setup = Some(pb::Action::default()) => "setup must set one of its action variants");
    rule_test!(run_info_monitor_must_be_valid: validate_run_info, run_info(),
        |v| v.monitor = Some(run("")) => "monitor.run_action.path must not be empty");
    rule_test!(run_info_start_timeout_fits_a_u32: validate_run_info, run_info(),
        |v| v.deprecated_start_timeout_s = -1
        => "deprecated_start_timeout_s must be between 0 and 4294967295");
    rule_test!(run_info_checks_must_be_valid: validate_run_info, run_info(),
        |v| v.check_definition = Some(pb::CheckDefinition { checks: vec![pb::Check::default()], ..Default::default() })
        => "check_definition.checks[0] must set exactly one of tcp_check and http_check");
    rule_test!(run_info_runtime_fields_are_checked: validate_run_info, run_info(),
        |v| v.image_password = "secret".into()
        => "image_username must be set when image_password is set");
    rule_test!(run_info_sidecars_are_checked: validate_run_info, run_info(),
        |v| v.sidecars = vec![pb::Sidecar { action: None, disk_mb: 0, memory_mb: 0 }]
        => "sidecars[0].action is required");
    rule_test!(run_info_metric_tag_values_must_be_well_formed: validate_run_info, run_info(),
        |v| v.metric_tags.insert("index".into(), pb::MetricTagValue { r#static: "x".into(), dynamic: 1 })
        => "metric_tags.index.static must be empty when dynamic is set");

    fn scheduling() -> SchedulingInfo {
        SchedulingInfo {
            process_guid: ProcessGuid::parse("web-1").unwrap(),
            domain: DomainName::parse("cf-apps").unwrap(),
            log_guid: "log-1".into(),
            annotation: "an app".into(),
            instances: 3,
            memory_mb: 256,
            disk_mb: 1024,
            max_pids: 100,
            rootfs: "docker:///cloudfoundry/grace".into(),
            routes: [("cf-router".to_owned(), br#"[{"hostnames":["a.example"],"port":8080}]"#.to_vec())].into(),
            modification_tag: ModificationTag::new("epoch-1"),
            volume_placement: vec!["nfs".into()],
            placement_tags: vec!["blue".into()],
            update_strategy: UpdateStrategy::Rolling,
        }
    }

    rule_test!(scheduling_instances_are_not_negative: validate_scheduling_info, scheduling(),
        |v| v.instances = -1 => "instances must be >= 0");
    rule_test!(scheduling_memory_is_not_negative: validate_scheduling_info, scheduling(),
        |v| v.memory_mb = -1 => "memory_mb must be >= 0");
    rule_test!(scheduling_disk_is_not_negative: validate_scheduling_info, scheduling(),
        |v| v.disk_mb = -1 => "disk_mb must be >= 0");
    rule_test!(scheduling_max_pids_is_not_negative: validate_scheduling_info, scheduling(),
        |v| v.max_pids = -1 => "max_pids must be >= 0");
    rule_test!(scheduling_rootfs_is_required: validate_scheduling_info, scheduling(),
        |v| v.rootfs.clear() => "rootfs must not be empty");
    rule_test!(scheduling_rootfs_needs_a_scheme: validate_scheduling_info, scheduling(),
        |v| v.rootfs = "cflinuxfs4".into() => "rootfs must be a url with a scheme");
    rule_test!(scheduling_annotation_is_at_most_10_kib: validate_scheduling_info, scheduling(),
        |v| v.annotation = "a".repeat(10 * 1024 + 1) => "annotation must be at most 10240 bytes");
    rule_test!(scheduling_routes_total_at_most_128_kib: validate_scheduling_info, scheduling(),
        |v| v.routes.insert("tcp-router".into(), vec![b'x'; 128 * 1024]) => "routes must total at most 131072 bytes");

    fn tags(source_id: &str) -> BTreeMap<String, MetricTagValue> {
        [
            ("source_id".to_owned(), MetricTagValue::Static(source_id.into())),
            ("instance_id".to_owned(), MetricTagValue::InstanceGuid),
            ("index".to_owned(), MetricTagValue::Index),
        ]
        .into()
    }

    #[test]
    fn source_id_must_equal_metrics_guid_when_both_are_present() {
        assert_eq!(validate_desired_metric_tags(&tags("guid-1"), "guid-1"), Ok(()));
        assert_eq!(
            validate_desired_metric_tags(&tags("guid-2"), "guid-1").unwrap_err().to_string(),
            "metric_tags.source_id must equal metrics_guid"
        );
        let mut without = tags("guid-1");
        without.remove("source_id");
        assert_eq!(
            validate_desired_metric_tags(&without, "guid-1").unwrap_err().to_string(),
            "metric_tags.source_id must equal metrics_guid"
        );
        // Diego skips the rule when there are no tags or no metrics guid.
        assert_eq!(validate_desired_metric_tags(&BTreeMap::new(), "guid-1"), Ok(()));
        assert_eq!(validate_desired_metric_tags(&without, ""), Ok(()));
    }

    #[test]
    fn a_static_tag_must_not_be_empty() {
        let mut bad = tags("guid-1");
        bad.insert("space".into(), MetricTagValue::Static(String::new()));
        assert_eq!(
            validate_desired_metric_tags(&bad, "guid-1").unwrap_err().to_string(),
            "metric_tags.space.static must not be empty"
        );
    }

    #[test]
    fn a_wire_tag_sets_exactly_one_of_static_and_dynamic() {
        let check = |r#static: &str, dynamic: i32| {
            check_pb_metric_tag(&pb::MetricTagValue { r#static: r#static.into(), dynamic }).map_err(|e| e.to_string())
        };
        assert_eq!(check("x", 0), Ok(()));
        assert_eq!(check("", 1), Ok(()));
        assert_eq!(check("", 2), Ok(()));
        assert_eq!(check("", 0), Err("static must be set when dynamic is unset".into()));
        assert_eq!(check("x", 2), Err("static must be empty when dynamic is set".into()));
        assert_eq!(check("", 3), Err("dynamic must be unset, INDEX or INSTANCE_GUID".into()));
    }

    fn update() -> DesiredLrpUpdate {
        DesiredLrpUpdate {
            instances: Some(5),
            routes: Some([("cf-router".to_owned(), b"[]".to_vec())].into()),
            annotation: Some("v2".into()),
            metric_tags: Some(tags("guid-1")),
            image_username: Some("user".into()),
            image_password: Some("secret".into()),
        }
    }

    rule_test!(update_instances_are_not_negative: validate_update, update(),
        |v| v.instances = Some(-1) => "instances must be >= 0");
    rule_test!(update_annotation_is_at_most_10_kib: validate_update, update(),
        |v| v.annotation = Some("a".repeat(10 * 1024 + 1)) => "annotation must be at most 10240 bytes");
    rule_test!(update_routes_total_at_most_128_kib: validate_update, update(),
        |v| v.routes = Some([("r".to_owned(), vec![0; 128 * 1024 + 1])].into()) => "routes must total at most 131072 bytes");
    rule_test!(update_metric_tags_must_be_well_formed: validate_update, update(),
        |v| v.metric_tags = Some([("a".to_owned(), MetricTagValue::Static(String::new()))].into())
        => "metric_tags.a.static must not be empty");
    rule_test!(update_username_needs_a_password: validate_update, update(),
        |v| v.image_password = None => "image_password must be set when image_username is set");
    rule_test!(update_password_needs_a_username: validate_update, update(),
        |v| v.image_username = None => "image_username must be set when image_password is set");
    rule_test!(update_credentials_are_both_or_neither_set: validate_update, update(),
        |v| v.image_password = Some(String::new()) => "image_password must be set when image_username is set");

    #[test]
    fn an_empty_update_is_valid() {
        assert_eq!(validate_update(&DesiredLrpUpdate::default()), Ok(()));
    }
}
