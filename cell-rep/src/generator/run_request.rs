//! Run requests built from a desired LRP's run info or a task definition (reference 3.3), plus
//! the routing details an instance reports: internal routes and resolved metric tags.
//!
//! The instance variables (`INSTANCE_GUID`, `INSTANCE_INDEX`, `CF_INSTANCE_*`) and the
//! networking variables are added by the executor from the container's workload and ports; the run
//! request carries only the desired LRP's or task's own environment.

use std::collections::BTreeMap;
use std::time::Duration;

use proto::models::{DesiredLrp, MetricTagValue, Task};

use crate::container::RunRequest;

/// The route key whose value lists the internal routes (Diego's `internal-router`).
pub const INTERNAL_ROUTER_KEY: &str = "internal-router";

/// The route key of the HTTP routes the router serves (Cloud Foundry's `cf-router`).
pub const CF_ROUTER_KEY: &str = "cf-router";

/// The run request of an instance of `desired`; fails (naming the reason) when it has no action.
/// An instance with HTTP routes (a `cf-router` route) drains for `route_drain` when stopped.
pub fn lrp_run_request(desired: &DesiredLrp, route_drain: Duration) -> Result<RunRequest, &'static str> {
    let run = desired.run_info.as_pb();
    let action = run.action.clone().ok_or("the desired lrp has no action")?;
    let checks = run.check_definition.clone().unwrap_or_default();
    let start_timeout = if run.start_timeout_ms > 0 {
        Duration::from_millis(u64::try_from(run.start_timeout_ms).unwrap_or(0))
    } else {
        Duration::from_secs(u64::try_from(run.deprecated_start_timeout_s).unwrap_or(0))
    };
    Ok(RunRequest {
        rootfs: desired.scheduling.rootfs.clone(),
        env: run.environment_variables.iter().map(|v| (v.name.clone(), v.value.clone())).collect(),
        setup: run.setup.clone(),
        action,
        monitor: run.monitor.clone(),
        checks: checks.checks,
        readiness_checks: checks.readiness_checks,
        ports: run.ports.clone(),
        start_timeout,
        privileged: run.privileged,
        cpu_weight: run.cpu_weight,
        max_pids: desired.scheduling.max_pids,
        result_file: String::new(),
        log_source: run.log_source.clone(),
        drain: if desired.scheduling.routes.contains_key(CF_ROUTER_KEY) { route_drain } else { Duration::ZERO },
    })
}

/// The run request of `task`; fails (naming the reason) when it has no action.
pub fn task_run_request(task: &Task) -> Result<RunRequest, &'static str> {
    let definition = task.definition.as_pb();
    let action = definition.action.clone().ok_or("the task has no action")?;
    Ok(RunRequest {
        rootfs: definition.root_fs.clone(),
        env: definition.environment_variables.iter().map(|v| (v.name.clone(), v.value.clone())).collect(),
        setup: None,
        action,
        monitor: None,
        checks: Vec::new(),
        readiness_checks: Vec::new(),
        ports: Vec::new(),
        start_timeout: Duration::ZERO,
        privileged: definition.privileged,
        cpu_weight: definition.cpu_weight,
        max_pids: definition.max_pids,
        result_file: definition.result_file.clone(),
        log_source: definition.log_source.clone(),
        drain: Duration::ZERO,
    })
}

/// The internal route hostnames of `desired`: the `internal-router` route's JSON list of
/// `{"hostname": ..}` objects. Anything unreadable counts as none.
pub fn internal_routes(desired: &DesiredLrp) -> Vec<String> {
    let Some(raw) = desired.scheduling.routes.get(INTERNAL_ROUTER_KEY) else { return Vec::new() };
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| entry.get("hostname").and_then(serde_json::Value::as_str))
        .filter(|hostname| !hostname.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The metric tags of instance `index` / `instance_guid` of `desired`, with the dynamic values
/// resolved. Without tags, `source_id` is the metrics guid when there is one.
pub fn resolve_metric_tags(desired: &DesiredLrp, index: i32, instance_guid: &str) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = desired
        .metric_tags
        .iter()
        .map(|(name, value)| {
            let value = match value {
                MetricTagValue::Static(value) => value.clone(),
                MetricTagValue::Index => index.to_string(),
                MetricTagValue::InstanceGuid => instance_guid.to_owned(),
            };
            (name.clone(), value)
        })
        .collect();
    let metrics_guid = &desired.run_info.as_pb().metrics_guid;
    if tags.is_empty() && !metrics_guid.is_empty() {
        tags.insert("source_id".into(), metrics_guid.clone());
    }
    tags
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{desired_lrp, desired_lrp_with, task};
    use proto::pb::models::v1 as pb;

    #[test]
    fn an_lrp_run_request_carries_the_run_info() {
        let desired = desired_lrp_with("web", 1, 256, |d| {
            d.environment_variables = vec![pb::EnvironmentVariable { name: "A".into(), value: "1".into() }];
            d.start_timeout_ms = 5_000;
            d.max_pids = 64;
            d.check_definition = Some(pb::CheckDefinition {
                checks: vec![pb::Check {
                    tcp_check: Some(pb::TcpCheck { port: 8080, ..Default::default() }),
                    http_check: None,
                }],
                ..Default::default()
            });
        });
        let request = lrp_run_request(&desired, Duration::from_secs(5)).expect("has an action");
        assert_eq!(request.rootfs, "preloaded:busybox");
        assert_eq!(request.env, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(request.ports, vec![8080]);
        assert_eq!(request.start_timeout, Duration::from_secs(5));
        assert_eq!(request.max_pids, 64);
        assert_eq!(request.checks.len(), 1);
        assert!(request.readiness_checks.is_empty());
        assert_eq!(request.drain, Duration::ZERO, "no cf-router route: stopped at once");
    }

    #[test]
    fn a_routed_lrp_drains_for_the_route_drain() {
        let drain = Duration::from_secs(3);
        let routed = desired_lrp_with("web", 1, 256, |d| {
            d.routes.insert(CF_ROUTER_KEY.into(), br#"[{"hostnames":["web.test"],"port":8080}]"#.to_vec());
        });
        assert_eq!(lrp_run_request(&routed, drain).expect("has an action").drain, drain);
        let internal = desired_lrp_with("web", 1, 256, |d| {
            d.routes.insert(INTERNAL_ROUTER_KEY.into(), br#"[{"hostname":"web.apps.internal"}]"#.to_vec());
        });
        assert_eq!(lrp_run_request(&internal, drain).expect("has an action").drain, Duration::ZERO);
    }

    #[test]
    fn a_task_run_request_carries_the_result_file() {
        let mut t = task("t1", 64);
        let mut definition = t.definition.clone().into_pb();
        definition.result_file = "/tmp/result".into();
        t.definition = proto::models::TaskDefinition::try_from(definition).expect("valid");
        let request = task_run_request(&t).expect("has an action");
        assert_eq!(request.result_file, "/tmp/result");
        assert_eq!(request.drain, Duration::ZERO);
        assert!(request.ports.is_empty());
    }

    #[test]
    fn internal_routes_come_from_the_internal_router_route() {
        let desired = desired_lrp_with("web", 1, 256, |d| {
            d.routes.insert(INTERNAL_ROUTER_KEY.into(), br#"[{"hostname":"web.apps.internal"},{"x":1}]"#.to_vec());
        });
        assert_eq!(internal_routes(&desired), vec!["web.apps.internal".to_owned()]);
        assert!(internal_routes(&desired_lrp("plain", 1, 1)).is_empty());
        let broken = desired_lrp_with("broken", 1, 1, |d| {
            d.routes.insert(INTERNAL_ROUTER_KEY.into(), b"not json".to_vec());
        });
        assert!(internal_routes(&broken).is_empty());
    }

    #[test]
    fn dynamic_metric_tags_are_resolved_per_instance() {
        let desired = desired_lrp_with("web", 1, 256, |d| {
            d.metrics_guid = "src".into();
            d.metric_tags.insert("source_id".into(), pb::MetricTagValue { r#static: "src".into(), dynamic: 0 });
            d.metric_tags.insert("idx".into(), pb::MetricTagValue { r#static: String::new(), dynamic: 1 });
            d.metric_tags.insert("guid".into(), pb::MetricTagValue { r#static: String::new(), dynamic: 2 });
        });
        let tags = resolve_metric_tags(&desired, 3, "inst-1");
        assert_eq!(tags.get("source_id").map(String::as_str), Some("src"));
        assert_eq!(tags.get("idx").map(String::as_str), Some("3"));
        assert_eq!(tags.get("guid").map(String::as_str), Some("inst-1"));
        let untagged = desired_lrp_with("old", 1, 1, |d| d.metrics_guid = "m-1".into());
        assert_eq!(resolve_metric_tags(&untagged, 0, "i").get("source_id").map(String::as_str), Some("m-1"));
    }
}
