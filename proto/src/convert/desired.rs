//! Whole desired LRPs, their run info and the routing view.
//!
//! A wire `DesiredLRP` splits into [`SchedulingInfo`] (the plain columns), [`RunInfo`] (the
//! blob, keyed by the same `desired_lrp_key`) and the metric tags (their own column); the way
//! back reassembles it. `volume_placement` is not on the wire `DesiredLRP`: like Diego, it is
//! derived from the volume mounts' drivers. `created_at` is not on it either; the BBS stamps it
//! into the run info when it creates the LRP.

use std::collections::{BTreeMap, HashMap};

use super::ids::modification_tag_from_pb;
use super::scheduling::{metric_tags_from_pb, metric_tags_to_pb, update_strategy_from_i32};
use crate::models::validation::{validate_desired_metric_tags, validate_run_info, validate_scheduling_info};
use crate::models::{DesiredLrp, DomainName, MetricTagValue, ProcessGuid, RunInfo, SchedulingInfo, ValidationError};
use crate::pb::models::v1 as pb;

impl TryFrom<pb::DesiredLrpRunInfo> for RunInfo {
    type Error = ValidationError;

    /// Checks [`validate_run_info`].
    fn try_from(run_info: pb::DesiredLrpRunInfo) -> Result<Self, Self::Error> {
        validate_run_info(&run_info)?;
        Ok(Self(run_info))
    }
}

impl From<RunInfo> for pb::DesiredLrpRunInfo {
    fn from(run_info: RunInfo) -> Self {
        run_info.into_pb()
    }
}

/// A run-info blob decoded by the db crate, validated like anything else from the wire. To change
/// a field (the image credentials on update), take the message with [`RunInfo::into_pb`], change
/// it, and pass it back through here; `created_at`, which no rule checks, has
/// [`RunInfo::stamp_created_at`].
pub fn run_info_from_pb(run_info: pb::DesiredLrpRunInfo) -> Result<RunInfo, ValidationError> {
    RunInfo::try_from(run_info)
}

impl TryFrom<pb::DesiredLrp> for DesiredLrp {
    type Error = ValidationError;

    /// Splits the message and checks [`validate_scheduling_info`], [`validate_run_info`] and
    /// [`validate_desired_metric_tags`] (with the run info's `metrics_guid`).
    fn try_from(desired: pb::DesiredLrp) -> Result<Self, Self::Error> {
        let process_guid = ProcessGuid::parse(desired.process_guid.as_str())?;
        let domain = DomainName::parse(desired.domain.as_str())?;
        let volume_placement = desired.volume_mounts.iter().map(|mount| mount.driver.clone()).collect();
        let scheduling = SchedulingInfo {
            process_guid,
            domain,
            log_guid: desired.log_guid.clone(),
            annotation: desired.annotation,
            instances: desired.instances,
            memory_mb: desired.memory_mb,
            disk_mb: desired.disk_mb,
            max_pids: desired.max_pids,
            rootfs: desired.rootfs,
            routes: desired.routes.into_iter().collect(),
            modification_tag: modification_tag_from_pb(desired.modification_tag),
            volume_placement,
            placement_tags: desired.placement_tags,
            update_strategy: update_strategy_from_i32(desired.update_strategy)?,
        };
        validate_scheduling_info(&scheduling)?;
        let run_info = RunInfo::try_from(pb::DesiredLrpRunInfo {
            desired_lrp_key: Some(pb::DesiredLrpKey {
                process_guid: desired.process_guid,
                domain: desired.domain,
                log_guid: desired.log_guid,
            }),
            environment_variables: desired.environment_variables,
            setup: desired.setup,
            action: desired.action,
            monitor: desired.monitor,
            deprecated_start_timeout_s: i64::from(desired.deprecated_start_timeout_s),
            privileged: desired.privileged,
            cpu_weight: desired.cpu_weight,
            ports: desired.ports,
            egress_rules: desired.egress_rules,
            log_source: desired.log_source,
            metrics_guid: desired.metrics_guid,
            created_at: 0,
            cached_dependencies: desired.cached_dependencies,
            legacy_download_user: desired.legacy_download_user,
            trusted_system_certificates_path: desired.trusted_system_certificates_path,
            volume_mounts: desired.volume_mounts,
            network: desired.network,
            start_timeout_ms: desired.start_timeout_ms,
            certificate_properties: desired.certificate_properties,
            image_username: desired.image_username,
            image_password: desired.image_password,
            check_definition: desired.check_definition,
            image_layers: desired.image_layers,
            // Kept in their own column; see the module docs.
            metric_tags: HashMap::new(),
            sidecars: desired.sidecars,
            log_rate_limit: desired.log_rate_limit,
            volume_mounted_files: desired.volume_mounted_files,
        })?;
        let metric_tags = metric_tags_from_pb(desired.metric_tags)?;
        validate_desired_metric_tags(&metric_tags, &run_info.as_pb().metrics_guid)?;
        Ok(Self { scheduling, run_info, metric_tags })
    }
}

impl From<DesiredLrp> for pb::DesiredLrp {
    fn from(desired: DesiredLrp) -> Self {
        let DesiredLrp { scheduling: s, run_info, metric_tags } = desired;
        let r = run_info.into_pb();
        Self {
            process_guid: s.process_guid.into_string(),
            domain: s.domain.into_string(),
            rootfs: s.rootfs,
            instances: s.instances,
            environment_variables: r.environment_variables,
            setup: r.setup,
            action: r.action,
            start_timeout_ms: r.start_timeout_ms,
            // Validation keeps it within u32; saturate rather than panic if it ever is not.
            deprecated_start_timeout_s: u32::try_from(r.deprecated_start_timeout_s.max(0)).unwrap_or(u32::MAX),
            monitor: r.monitor,
            disk_mb: s.disk_mb,
            memory_mb: s.memory_mb,
            cpu_weight: r.cpu_weight,
            privileged: r.privileged,
            ports: r.ports,
            routes: s.routes.into_iter().collect(),
            log_source: r.log_source,
            log_guid: s.log_guid,
            metrics_guid: r.metrics_guid,
            annotation: s.annotation,
            egress_rules: r.egress_rules,
            modification_tag: Some(s.modification_tag.into()),
            cached_dependencies: r.cached_dependencies,
            legacy_download_user: r.legacy_download_user,
            trusted_system_certificates_path: r.trusted_system_certificates_path,
            volume_mounts: r.volume_mounts,
            network: r.network,
            placement_tags: s.placement_tags,
            max_pids: s.max_pids,
            certificate_properties: r.certificate_properties,
            image_username: r.image_username,
            image_password: r.image_password,
            check_definition: r.check_definition,
            image_layers: r.image_layers,
            metric_tags: metric_tags_to_pb(&metric_tags),
            sidecars: r.sidecars,
            log_rate_limit: r.log_rate_limit,
            volume_mounted_files: r.volume_mounted_files,
            update_strategy: s.update_strategy.as_i32(),
        }
    }
}

/// The routing view of a desired LRP, served by `DesiredLRPRoutingInfos`.
pub fn routing_info_to_pb(
    scheduling: &SchedulingInfo,
    metric_tags: &BTreeMap<String, MetricTagValue>,
) -> pb::DesiredLrpRoutingInfo {
    pb::DesiredLrpRoutingInfo {
        desired_lrp_key: Some(pb::DesiredLrpKey {
            process_guid: scheduling.process_guid.as_str().to_owned(),
            domain: scheduling.domain.as_str().to_owned(),
            log_guid: scheduling.log_guid.clone(),
        }),
        instances: scheduling.instances,
        routes: scheduling.routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        modification_tag: Some(scheduling.modification_tag.clone().into()),
        metric_tags: metric_tags_to_pb(metric_tags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::fixtures;

    /// A mutation and the error it causes.
    type Case = (fn(&mut pb::DesiredLrp), &'static str);
    use crate::models::{ModificationTag, UpdateStrategy};

    fn wire() -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: "dora-1".into(),
            domain: "cf-apps".into(),
            rootfs: "preloaded:cflinuxfs4".into(),
            instances: 3,
            environment_variables: vec![pb::EnvironmentVariable { name: "LANG".into(), value: "en_US.UTF-8".into() }],
            setup: Some(fixtures::setup()),
            action: Some(fixtures::run("/bin/start")),
            start_timeout_ms: 60_000,
            deprecated_start_timeout_s: 60,
            monitor: None,
            disk_mb: 1024,
            memory_mb: 256,
            cpu_weight: 10,
            privileged: false,
            ports: vec![8080, 2222],
            routes: [("cf-router".to_owned(), br#"[{"hostnames":["dora.example"],"port":8080}]"#.to_vec())].into(),
            log_source: "CELL".into(),
            log_guid: "log-dora".into(),
            metrics_guid: "dora-metrics".into(),
            annotation: "{\"revision\":3}".into(),
            egress_rules: vec![fixtures::egress_rule()],
            modification_tag: Some(pb::ModificationTag { epoch: "epoch-1".into(), index: 2 }),
            cached_dependencies: vec![pb::CachedDependency {
                name: "lifecycle".into(),
                from: "http://file-server/lifecycle.tgz".into(),
                to: "/tmp/lifecycle".into(),
                cache_key: "lifecycle".into(),
                ..Default::default()
            }],
            legacy_download_user: "vcap".into(),
            trusted_system_certificates_path: "/etc/cf-system-certificates".into(),
            volume_mounts: vec![fixtures::volume_mount()],
            network: Some(pb::Network { properties: [("policy_group_id".to_owned(), "g".to_owned())].into() }),
            placement_tags: vec!["isolation-1".into()],
            max_pids: 1024,
            certificate_properties: Some(pb::CertificateProperties { organizational_unit: vec!["app:dora".into()] }),
            image_username: String::new(),
            image_password: String::new(),
            check_definition: Some(fixtures::check_definition()),
            image_layers: vec![],
            metric_tags: [
                ("source_id".to_owned(), pb::MetricTagValue { r#static: "dora-metrics".into(), dynamic: 0 }),
                ("instance_id".to_owned(), pb::MetricTagValue { r#static: String::new(), dynamic: 2 }),
            ]
            .into(),
            sidecars: vec![pb::Sidecar { action: Some(fixtures::run("/bin/envoy")), disk_mb: 10, memory_mb: 20 }],
            log_rate_limit: Some(pb::LogRateLimit { bytes_per_second: -1 }),
            volume_mounted_files: vec![pb::File { path: "/etc/app.conf".into(), content: "a=1".into() }],
            update_strategy: 0,
        }
    }

    #[test]
    fn a_wire_desired_lrp_splits_into_columns_blob_and_tags() {
        let desired = DesiredLrp::try_from(wire()).unwrap();
        let s = &desired.scheduling;
        assert_eq!(s.process_guid.as_str(), "dora-1");
        assert_eq!((s.instances, s.memory_mb, s.disk_mb, s.max_pids), (3, 256, 1024, 1024));
        assert_eq!(s.volume_placement, vec!["nfsv3driver".to_owned()]);
        assert_eq!(s.modification_tag, ModificationTag { epoch: "epoch-1".into(), index: 2 });
        assert_eq!(s.update_strategy, UpdateStrategy::Rolling);
        let r = desired.run_info.as_pb();
        let key = r.desired_lrp_key.clone().unwrap();
        assert_eq!(
            (key.process_guid.as_str(), key.domain.as_str(), key.log_guid.as_str()),
            ("dora-1", "cf-apps", "log-dora")
        );
        assert_eq!((r.start_timeout_ms, r.deprecated_start_timeout_s), (60_000, 60));
        assert!(r.metric_tags.is_empty());
        assert_eq!(desired.metric_tags.get("instance_id"), Some(&MetricTagValue::InstanceGuid));
    }

    #[test]
    fn desired_lrp_round_trips_model_to_wire_to_model() {
        let model = DesiredLrp::try_from(wire()).unwrap();
        let back = pb::DesiredLrp::from(model.clone());
        assert_eq!(back, wire());
        assert_eq!(DesiredLrp::try_from(back), Ok(model));
    }

    #[test]
    fn desired_lrp_conversion_validates_every_part() {
        let cases: [Case; 6] = [
            (|d| d.process_guid = "a b".into(), "process_guid must match [A-Za-z0-9_-]+"),
            (|d| d.domain = String::new(), "domain must not be empty"),
            (|d| d.rootfs = "cflinuxfs4".into(), "rootfs must be a url with a scheme"),
            (|d| d.action = None, "action is required"),
            (|d| d.update_strategy = 7, "update_strategy must be ROLLING or RECREATE"),
            (|d| d.metrics_guid = "other".into(), "metric_tags.source_id must equal metrics_guid"),
        ];
        for (mutate, message) in cases {
            let mut bad = wire();
            mutate(&mut bad);
            assert_eq!(DesiredLrp::try_from(bad).map(|_| ()).map_err(|e| e.to_string()), Err(message.to_owned()));
        }
    }

    #[test]
    fn run_info_round_trips_and_validates() {
        let run_info = DesiredLrp::try_from(wire()).unwrap().run_info;
        let mut blob = pb::DesiredLrpRunInfo::from(run_info.clone());
        blob.created_at = 1_700_000_000_000_000_000;
        let stamped = run_info_from_pb(blob.clone()).unwrap();
        assert_eq!(stamped.as_pb().created_at, 1_700_000_000_000_000_000);
        assert_eq!(RunInfo::try_from(pb::DesiredLrpRunInfo::from(stamped.clone())), Ok(stamped));
        blob.desired_lrp_key = None;
        assert_eq!(run_info_from_pb(blob).unwrap_err().to_string(), "desired_lrp_key is required");
    }

    #[test]
    fn routing_info_carries_key_instances_routes_tag_and_metric_tags() {
        let desired = DesiredLrp::try_from(wire()).unwrap();
        let routing = routing_info_to_pb(&desired.scheduling, &desired.metric_tags);
        let original = wire();
        let key = routing.desired_lrp_key.unwrap();
        assert_eq!(
            (key.process_guid, key.domain, key.log_guid),
            (original.process_guid, original.domain, original.log_guid)
        );
        assert_eq!(routing.instances, 3);
        assert_eq!(routing.routes, original.routes);
        assert_eq!(routing.modification_tag, original.modification_tag);
        assert_eq!(routing.metric_tags, original.metric_tags);
    }
}
