//! The desired LRP file format of `diego desire-lrp --file F`: a `DesiredLRP` in the proto's JSON
//! shape (field names as in `models.proto`), in JSON or, for files named `*.yaml` / `*.yml`, YAML.
//! The same shape is what `diego lrp GUID --json` prints under `desired_lrp`, so a desired LRP
//! can be read back, edited and desired again.
//!
//! ```json
//! {
//!   "process_guid": "web",
//!   "domain": "diego",
//!   "rootfs": "preloaded:busybox",
//!   "instances": 3,
//!   "memory_mb": 128,
//!   "disk_mb": 256,
//!   "ports": [8080],
//!   "environment_variables": [{"name": "GREETING", "value": "hello"}],
//!   "action": {"run_action": {"path": "/bin/sh", "args": ["-c", "./app"], "user": "root"}},
//!   "check_definition": {"checks": [{"http_check": {"port": 8080, "path": "/health"}}]},
//!   "routes": {"cf-router": [{"hostnames": ["web.example.com"], "port": 8080}]}
//! }
//! ```
//!
//! Defaults when a field is absent: `domain` "diego", `rootfs` "preloaded:busybox", `instances`
//! 1; everything else as in proto3 (zero, empty). `routes` values are any JSON (stored as its
//! text, as Diego does). Supported beyond the core fields: `setup`, `monitor`, every action kind,
//! `check_definition`, `metric_tags`, `network`, `log_rate_limit`, `certificate_properties`,
//! `update_strategy` ("ROLLING" / "RECREATE"), the log and metrics guids and the image
//! credentials. Not supported yet (an unknown field is refused by name): `egress_rules`,
//! `cached_dependencies`, `volume_mounts`, `image_layers`, `sidecars`, `volume_mounted_files`.

pub mod actions;

use std::collections::BTreeMap;
use std::path::Path;

use proto::pb::models::v1 as pb;
use serde::{Deserialize, Serialize};

pub use self::actions::{Action, Check, CheckDefinition, EnvVar};
use crate::error::Error;

/// The default domain of desired LRPs and tasks created by the CLI.
pub const DEFAULT_DOMAIN: &str = "diego";
/// The default root filesystem: the busybox stack every cell advertises.
pub const DEFAULT_ROOTFS: &str = "preloaded:busybox";

fn default_domain() -> String {
    DEFAULT_DOMAIN.to_owned()
}

fn default_rootfs() -> String {
    DEFAULT_ROOTFS.to_owned()
}

fn default_instances() -> i32 {
    1
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A metric tag: a fixed value, or one the rep fills in (`INDEX`, `INSTANCE_GUID`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricTag {
    /// A fixed value.
    #[serde(rename = "static", skip_serializing_if = "String::is_empty")]
    pub fixed: String,
    /// `INDEX` or `INSTANCE_GUID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicTag>,
}

/// The values a rep fills into a dynamic metric tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DynamicTag {
    /// The instance index.
    #[serde(rename = "INDEX")]
    Index,
    /// The instance guid.
    #[serde(rename = "INSTANCE_GUID")]
    InstanceGuid,
}

/// How an update of the desired LRP replaces instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateStrategy {
    /// One by one.
    #[default]
    #[serde(rename = "ROLLING")]
    Rolling,
    /// All at once.
    #[serde(rename = "RECREATE")]
    Recreate,
}

/// A log rate limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogRateLimit {
    /// Bytes per second (-1: unlimited).
    pub bytes_per_second: i64,
}

/// Instance identity certificate properties.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertificateProperties {
    /// Organizational units of the instance certificate.
    pub organizational_unit: Vec<String>,
}

/// Container network properties.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Free-form properties.
    pub properties: BTreeMap<String, String>,
}

/// A desired LRP as the file format holds it (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredLrpFile {
    /// The process guid (letters, digits, `-` and `_`); required.
    pub process_guid: String,
    /// The domain (default "diego").
    #[serde(default = "default_domain")]
    pub domain: String,
    /// The root filesystem (default "preloaded:busybox").
    #[serde(default = "default_rootfs")]
    pub rootfs: String,
    /// Desired instances (default 1).
    #[serde(default = "default_instances")]
    pub instances: i32,
    /// Environment of every action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables: Vec<EnvVar>,
    /// Runs before `action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<Action>,
    /// The long-running process; required by the BBS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// A legacy health monitor action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Action>,
    /// How long an instance may take to turn healthy.
    #[serde(default, skip_serializing_if = "is_default")]
    pub start_timeout_ms: i64,
    /// Disk per instance, in MB.
    #[serde(default)]
    pub disk_mb: i32,
    /// Memory per instance, in MB.
    #[serde(default)]
    pub memory_mb: i32,
    /// Relative CPU share.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cpu_weight: u32,
    /// Run privileged.
    #[serde(default, skip_serializing_if = "is_default")]
    pub privileged: bool,
    /// Container ports; the first gets `$PORT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u32>,
    /// Route documents by router name, any JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, serde_json::Value>,
    /// Log source name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_source: String,
    /// Log guid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_guid: String,
    /// Metrics guid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metrics_guid: String,
    /// Free-form text (at most 10 KiB).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub annotation: String,
    /// The user downloads run as.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub legacy_download_user: String,
    /// Where trusted certificates are mounted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trusted_system_certificates_path: String,
    /// Container network properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Tags a cell must carry to run an instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement_tags: Vec<String>,
    /// Process limit per instance.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_pids: i32,
    /// Instance identity certificate properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_properties: Option<CertificateProperties>,
    /// Image registry user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_username: String,
    /// Image registry password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_password: String,
    /// Liveness and readiness checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_definition: Option<CheckDefinition>,
    /// Metric tags by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_tags: BTreeMap<String, MetricTag>,
    /// Log rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rate_limit: Option<LogRateLimit>,
    /// "ROLLING" (default) or "RECREATE".
    #[serde(default, skip_serializing_if = "is_default")]
    pub update_strategy: UpdateStrategy,
}

impl Default for DesiredLrpFile {
    /// An empty desired LRP with the file format's defaults (domain, rootfs, one instance).
    fn default() -> Self {
        DesiredLrpFile {
            process_guid: String::new(),
            domain: default_domain(),
            rootfs: default_rootfs(),
            instances: default_instances(),
            environment_variables: Vec::new(),
            setup: None,
            action: None,
            monitor: None,
            start_timeout_ms: 0,
            disk_mb: 0,
            memory_mb: 0,
            cpu_weight: 0,
            privileged: false,
            ports: Vec::new(),
            routes: BTreeMap::new(),
            log_source: String::new(),
            log_guid: String::new(),
            metrics_guid: String::new(),
            annotation: String::new(),
            legacy_download_user: String::new(),
            trusted_system_certificates_path: String::new(),
            network: None,
            placement_tags: Vec::new(),
            max_pids: 0,
            certificate_properties: None,
            image_username: String::new(),
            image_password: String::new(),
            check_definition: None,
            metric_tags: BTreeMap::new(),
            log_rate_limit: None,
            update_strategy: UpdateStrategy::Rolling,
        }
    }
}

impl DesiredLrpFile {
    /// Reads and parses `path` (`-` is standard input, JSON). Errors name the file and say
    /// what is wrong and where.
    pub fn load(path: &Path) -> Result<DesiredLrpFile, Error> {
        let shown = path.display().to_string();
        let text = if shown == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
            .map_err(|e| Error::ReadFile { path: shown.clone(), reason: crate::error::io_reason(&e) })?;
        Self::parse(&text, is_yaml(path)).map_err(|reason| Error::ParseFile { path: shown, reason })
    }

    /// Parses a file's text as YAML or JSON.
    pub fn parse(text: &str, yaml: bool) -> Result<DesiredLrpFile, String> {
        if yaml {
            // YAML goes through a JSON value: serde_norway reads enums only from YAML tags
            // (`!run_action`), and the file format spells actions as one-key maps in both.
            let value: serde_json::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
            serde_json::from_value(value).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(text).map_err(|e| e.to_string())
        }
    }

    /// The message the BBS receives.
    pub fn into_pb(self) -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: self.process_guid,
            domain: self.domain,
            rootfs: self.rootfs,
            instances: self.instances,
            environment_variables: self.environment_variables.into_iter().map(Into::into).collect(),
            setup: self.setup.map(Into::into),
            action: self.action.map(Into::into),
            monitor: self.monitor.map(Into::into),
            start_timeout_ms: self.start_timeout_ms,
            disk_mb: self.disk_mb,
            memory_mb: self.memory_mb,
            cpu_weight: self.cpu_weight,
            privileged: self.privileged,
            ports: self.ports,
            // Routes are JSON documents stored as their text (Diego's `json.RawMessage`).
            routes: self.routes.into_iter().map(|(k, v)| (k, v.to_string().into_bytes())).collect(),
            log_source: self.log_source,
            log_guid: self.log_guid,
            metrics_guid: self.metrics_guid,
            annotation: self.annotation,
            legacy_download_user: self.legacy_download_user,
            trusted_system_certificates_path: self.trusted_system_certificates_path,
            network: self.network.map(|n| pb::Network { properties: n.properties.into_iter().collect() }),
            placement_tags: self.placement_tags,
            max_pids: self.max_pids,
            certificate_properties: self
                .certificate_properties
                .map(|c| pb::CertificateProperties { organizational_unit: c.organizational_unit }),
            image_username: self.image_username,
            image_password: self.image_password,
            check_definition: self.check_definition.map(Into::into),
            metric_tags: self.metric_tags.into_iter().map(|(k, v)| (k, metric_tag_to_pb(v))).collect(),
            log_rate_limit: self.log_rate_limit.map(|l| pb::LogRateLimit { bytes_per_second: l.bytes_per_second }),
            update_strategy: match self.update_strategy {
                UpdateStrategy::Rolling => pb::UpdateStrategy::Rolling as i32,
                UpdateStrategy::Recreate => pb::UpdateStrategy::Recreate as i32,
            },
            ..Default::default()
        }
    }

    /// The file form of a stored desired LRP (fields the format does not hold are left out).
    pub fn from_pb(lrp: pb::DesiredLrp) -> DesiredLrpFile {
        DesiredLrpFile {
            process_guid: lrp.process_guid,
            domain: lrp.domain,
            rootfs: lrp.rootfs,
            instances: lrp.instances,
            environment_variables: lrp.environment_variables.into_iter().map(Into::into).collect(),
            setup: lrp.setup.and_then(Action::from_pb),
            action: lrp.action.and_then(Action::from_pb),
            monitor: lrp.monitor.and_then(Action::from_pb),
            start_timeout_ms: lrp.start_timeout_ms,
            disk_mb: lrp.disk_mb,
            memory_mb: lrp.memory_mb,
            cpu_weight: lrp.cpu_weight,
            privileged: lrp.privileged,
            ports: lrp.ports,
            routes: lrp
                .routes
                .into_iter()
                .map(|(k, v)| {
                    let value = serde_json::from_slice(&v)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&v).into_owned()));
                    (k, value)
                })
                .collect(),
            log_source: lrp.log_source,
            log_guid: lrp.log_guid,
            metrics_guid: lrp.metrics_guid,
            annotation: lrp.annotation,
            legacy_download_user: lrp.legacy_download_user,
            trusted_system_certificates_path: lrp.trusted_system_certificates_path,
            network: lrp.network.map(|n| Network { properties: n.properties.into_iter().collect() }),
            placement_tags: lrp.placement_tags,
            max_pids: lrp.max_pids,
            certificate_properties: lrp
                .certificate_properties
                .map(|c| CertificateProperties { organizational_unit: c.organizational_unit }),
            image_username: lrp.image_username,
            image_password: lrp.image_password,
            check_definition: lrp.check_definition.map(Into::into),
            metric_tags: lrp.metric_tags.into_iter().map(|(k, v)| (k, metric_tag_from_pb(v))).collect(),
            log_rate_limit: lrp.log_rate_limit.map(|l| LogRateLimit { bytes_per_second: l.bytes_per_second }),
            update_strategy: if lrp.update_strategy == pb::UpdateStrategy::Recreate as i32 {
                UpdateStrategy::Recreate
            } else {
                UpdateStrategy::Rolling
            },
        }
    }
}

fn metric_tag_to_pb(tag: MetricTag) -> pb::MetricTagValue {
    use pb::metric_tag_value::DynamicValue;
    let dynamic = match tag.dynamic {
        None => DynamicValue::Invalid,
        Some(DynamicTag::Index) => DynamicValue::Index,
        Some(DynamicTag::InstanceGuid) => DynamicValue::InstanceGuid,
    };
    pb::MetricTagValue { r#static: tag.fixed, dynamic: dynamic as i32 }
}

fn metric_tag_from_pb(tag: pb::MetricTagValue) -> MetricTag {
    use pb::metric_tag_value::DynamicValue;
    let dynamic = match DynamicValue::try_from(tag.dynamic) {
        Ok(DynamicValue::Index) => Some(DynamicTag::Index),
        Ok(DynamicValue::InstanceGuid) => Some(DynamicTag::InstanceGuid),
        _ => None,
    };
    MetricTag { fixed: tag.r#static, dynamic }
}

/// Whether a file is YAML, by its extension.
fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"{
        "process_guid": "web",
        "instances": 2,
        "memory_mb": 64,
        "ports": [8080],
        "action": {"timeout_action": {"timeout_ms": 5, "action": {"run_action": {"path": "/bin/sh", "args": ["-c", "x"]}}}},
        "check_definition": {"checks": [{"http_check": {"port": 8080, "path": "/health"}}]},
        "routes": {"cf-router": [{"hostnames": ["a"], "port": 8080}]},
        "metric_tags": {"index": {"dynamic": "INDEX"}, "app": {"static": "web"}}
    }"#;

    #[test]
    fn a_json_file_fills_defaults_and_round_trips_through_the_message() {
        let file = DesiredLrpFile::parse(WEB, false).unwrap();
        assert_eq!((file.domain.as_str(), file.rootfs.as_str()), (DEFAULT_DOMAIN, DEFAULT_ROOTFS));
        let message = file.clone().into_pb();
        assert_eq!(message.instances, 2);
        assert_eq!(message.routes["cf-router"], br#"[{"hostnames":["a"],"port":8080}]"#.to_vec());
        assert_eq!(DesiredLrpFile::from_pb(message), file);
    }

    #[test]
    fn yaml_reads_the_same_shape() {
        let yaml = "process_guid: web\ninstances: 2\naction:\n  run_action:\n    path: /bin/true\n";
        let file = DesiredLrpFile::parse(yaml, true).unwrap();
        assert_eq!(file.instances, 2);
        assert_eq!(file.action.unwrap().summary(), "/bin/true");
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let error = DesiredLrpFile::parse(r#"{"process_guid": "a", "egress_rules": []}"#, false).unwrap_err();
        assert!(error.contains("unknown field `egress_rules`"), "{error}");
        let error = DesiredLrpFile::parse(r#"{"process_guid": "a", "action": {"jump": {}}}"#, false).unwrap_err();
        assert!(error.contains("unknown variant `jump`"), "{error}");
    }
}
