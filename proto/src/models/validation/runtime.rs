//! The run-time pieces a desired LRP's run info and a task definition share: egress rules,
//! volume mounts, cached dependencies, image layers, image credentials, the log rate limit,
//! volume-mounted files and sidecars. Mirrors cloudfoundry/bbs `models/security_group.go`,
//! `volume_mount.go`, `cached_dependency.go`, `image_layer.go` and `desired_lrp.go`.

use std::net::IpAddr;

use super::action::{check_action_tree, check_checksum};
use super::{MAX_VOLUME_MOUNTED_FILES_BYTES, non_negative};
use crate::limits::MAX_ENV_BYTES;
use crate::models::ValidationError;
use crate::pb::models::v1 as pb;

/// The run-time fields common to `DesiredLRPRunInfo` and `TaskDefinition`.
pub(crate) struct RuntimeParts<'a> {
    /// `egress_rules`.
    pub egress_rules: &'a [pb::SecurityGroupRule],
    /// `volume_mounts`.
    pub volume_mounts: &'a [pb::VolumeMount],
    /// `cached_dependencies`.
    pub cached_dependencies: &'a [pb::CachedDependency],
    /// `image_layers`.
    pub image_layers: &'a [pb::ImageLayer],
    /// `image_username`.
    pub image_username: &'a str,
    /// `image_password`.
    pub image_password: &'a str,
    /// `log_rate_limit`.
    pub log_rate_limit: Option<&'a pb::LogRateLimit>,
    /// `volume_mounted_files`.
    pub volume_mounted_files: &'a [pb::File],
    /// `environment_variables`.
    pub environment_variables: &'a [pb::EnvironmentVariable],
}

/// Environment variables a process can be given: each name non-empty without `=`, and all of
/// them together (as `NAME=value\0`) within [`MAX_ENV_BYTES`], so `execve` never fails with
/// "argument list too long".
pub(crate) fn check_env(field: &str, env: &[pb::EnvironmentVariable]) -> Result<(), ValidationError> {
    let mut total = 0_usize;
    for (i, var) in env.iter().enumerate() {
        if var.name.is_empty() {
            return Err(ValidationError::new(format!("{field}[{i}].name"), "must not be empty"));
        }
        if var.name.contains('=') {
            return Err(ValidationError::new(format!("{field}[{i}].name"), "must not contain '='"));
        }
        total = total.saturating_add(var.name.len() + var.value.len() + 2);
    }
    if total > MAX_ENV_BYTES {
        return Err(ValidationError::new(field, format!("must total at most {MAX_ENV_BYTES} bytes")));
    }
    Ok(())
}

/// Runs `check` on each item, prefixing errors with `field[i]`.
fn each<T>(field: &str, items: &[T], check: impl Fn(&T) -> Result<(), ValidationError>) -> Result<(), ValidationError> {
    for (i, item) in items.iter().enumerate() {
        check(item).map_err(|e| e.within(&format!("{field}[{i}]")))?;
    }
    Ok(())
}

/// Validates the shared run-time fields.
pub(crate) fn check_runtime(parts: &RuntimeParts<'_>) -> Result<(), ValidationError> {
    check_env("environment_variables", parts.environment_variables)?;
    each("egress_rules", parts.egress_rules, validate_egress_rule)?;
    each("volume_mounts", parts.volume_mounts, check_volume_mount)?;
    each("cached_dependencies", parts.cached_dependencies, check_cached_dependency)?;
    each("image_layers", parts.image_layers, check_image_layer)?;
    validate_image_credentials(parts.image_username, parts.image_password)?;
    if let Some(limit) = parts.log_rate_limit
        && limit.bytes_per_second < -1
    {
        return Err(ValidationError::new("log_rate_limit.bytes_per_second", "must be >= -1"));
    }
    check_volume_mounted_files(parts.volume_mounted_files)
}

/// Image credentials come both or neither: a username without a password (or the reverse) is
/// refused.
pub fn validate_image_credentials(username: &str, password: &str) -> Result<(), ValidationError> {
    match (username.is_empty(), password.is_empty()) {
        (false, true) => Err(ValidationError::new("image_password", "must be set when image_username is set")),
        (true, false) => Err(ValidationError::new("image_username", "must be set when image_password is set")),
        _ => Ok(()),
    }
}

/// Validates one egress rule. `tcp` and `udp` need `ports` or `port_range` (not both) of real
/// ports and no ICMP info; `icmp` needs ICMP info and no ports; `all` takes neither. Every rule
/// needs destinations, each an IP address, a CIDR or an `a-b` IP range. Error fields are
/// relative (`protocol`); callers prefix `egress_rules[i]`.
pub fn validate_egress_rule(rule: &pb::SecurityGroupRule) -> Result<(), ValidationError> {
    match rule.protocol.as_str() {
        "tcp" | "udp" => {
            check_rule_ports(rule)?;
            if rule.icmp_info.is_some() {
                return Err(ValidationError::new("icmp_info", "must not be set for tcp or udp"));
            }
        }
        "icmp" => {
            if rule.port_range.is_some() {
                return Err(ValidationError::new("port_range", "must not be set for icmp"));
            }
            if !rule.ports.is_empty() {
                return Err(ValidationError::new("ports", "must not be set for icmp"));
            }
            if rule.icmp_info.is_none() {
                return Err(ValidationError::new("icmp_info", "is required for icmp"));
            }
        }
        "all" => {
            if rule.port_range.is_some() || !rule.ports.is_empty() || rule.icmp_info.is_some() {
                return Err(ValidationError::new("protocol", "all must not set ports, port_range or icmp_info"));
            }
        }
        _ => {
            return Err(ValidationError::new("protocol", "must be one of tcp, udp, icmp, all"));
        }
    }
    if rule.destinations.is_empty() {
        return Err(ValidationError::new("destinations", "must not be empty"));
    }
    for (i, destination) in rule.destinations.iter().enumerate() {
        if !is_destination(destination) {
            return Err(ValidationError::new(
                format!("destinations[{i}]"),
                "must be an ip address, a cidr or an ip range",
            ));
        }
    }
    Ok(())
}

/// The ports of a tcp or udp rule.
fn check_rule_ports(rule: &pb::SecurityGroupRule) -> Result<(), ValidationError> {
    let is_port = |port: u32| (1..=65535).contains(&port);
    match (&rule.port_range, rule.ports.is_empty()) {
        (None, true) => Err(ValidationError::new("ports", "or port_range is required for tcp or udp")),
        (Some(_), false) => Err(ValidationError::new("port_range", "must not be set together with ports")),
        (Some(range), true) => {
            if !is_port(range.start) {
                return Err(ValidationError::new("port_range.start", "must be between 1 and 65535"));
            }
            if !is_port(range.end) {
                return Err(ValidationError::new("port_range.end", "must be between 1 and 65535"));
            }
            if range.start > range.end {
                return Err(ValidationError::new("port_range.end", "must be >= port_range.start"));
            }
            Ok(())
        }
        (None, false) => {
            for (i, port) in rule.ports.iter().enumerate() {
                if !is_port(*port) {
                    return Err(ValidationError::new(format!("ports[{i}]"), "must be between 1 and 65535"));
                }
            }
            Ok(())
        }
    }
}

/// An IP address, a CIDR (`10.0.0.0/8`) or an ascending range of one family (`10.0.0.1-10.0.0.9`).
fn is_destination(destination: &str) -> bool {
    if let Some((ip, prefix)) = destination.split_once('/') {
        let (Ok(ip), Ok(prefix)) = (ip.parse::<IpAddr>(), prefix.parse::<u8>()) else {
            return false;
        };
        return prefix <= if ip.is_ipv4() { 32 } else { 128 };
    }
    if let Some((first, last)) = destination.split_once('-') {
        let (Ok(first), Ok(last)) = (first.parse::<IpAddr>(), last.parse::<IpAddr>()) else {
            return false;
        };
        return first.is_ipv4() == last.is_ipv4() && first <= last;
    }
    destination.parse::<IpAddr>().is_ok()
}

/// A volume mount: driver, container dir, mode `r` or `rw`, and a shared device with a volume id
/// whose mount config, when set, is a JSON object.
fn check_volume_mount(mount: &pb::VolumeMount) -> Result<(), ValidationError> {
    if mount.driver.is_empty() {
        return Err(ValidationError::new("driver", "must not be empty"));
    }
    if mount.container_dir.is_empty() {
        return Err(ValidationError::new("container_dir", "must not be empty"));
    }
    if mount.mode != "r" && mount.mode != "rw" {
        return Err(ValidationError::new("mode", "must be r or rw"));
    }
    let Some(shared) = &mount.shared else {
        return Err(ValidationError::new("shared", "is required"));
    };
    if shared.volume_id.is_empty() {
        return Err(ValidationError::new("shared.volume_id", "must not be empty"));
    }
    if !shared.mount_config.is_empty()
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&shared.mount_config).is_err()
    {
        return Err(ValidationError::new("shared.mount_config", "must be a json object"));
    }
    Ok(())
}

/// A cached dependency: `from`, `to` and a consistent checksum.
fn check_cached_dependency(dependency: &pb::CachedDependency) -> Result<(), ValidationError> {
    if dependency.from.is_empty() {
        return Err(ValidationError::new("from", "must not be empty"));
    }
    if dependency.to.is_empty() {
        return Err(ValidationError::new("to", "must not be empty"));
    }
    check_checksum(&dependency.checksum_algorithm, &dependency.checksum_value)
}

/// An image layer: url, destination, known layer and media types, and a digest when one is
/// started or the layer is exclusive.
fn check_image_layer(layer: &pb::ImageLayer) -> Result<(), ValidationError> {
    use pb::image_layer::{DigestAlgorithm, MediaType, Type};
    if layer.url.is_empty() {
        return Err(ValidationError::new("url", "must not be empty"));
    }
    if layer.destination_path.is_empty() {
        return Err(ValidationError::new("destination_path", "must not be empty"));
    }
    let exclusive = match Type::try_from(layer.layer_type) {
        Ok(Type::Shared) => false,
        Ok(Type::Exclusive) => true,
        _ => {
            return Err(ValidationError::new("layer_type", "must be SHARED or EXCLUSIVE"));
        }
    };
    if !matches!(MediaType::try_from(layer.media_type), Ok(MediaType::Tgz | MediaType::Tar | MediaType::Zip)) {
        return Err(ValidationError::new("media_type", "must be TGZ, TAR or ZIP"));
    }
    let has_algorithm = match DigestAlgorithm::try_from(layer.digest_algorithm) {
        Ok(DigestAlgorithm::Invalid) => false,
        Ok(DigestAlgorithm::Sha256 | DigestAlgorithm::Sha512) => true,
        Err(_) => {
            return Err(ValidationError::new("digest_algorithm", "must be unset, SHA256 or SHA512"));
        }
    };
    if (exclusive || !layer.digest_value.is_empty()) && !has_algorithm {
        return Err(ValidationError::new(
            "digest_algorithm",
            "is required when digest_value is set or layer_type is EXCLUSIVE",
        ));
    }
    if (exclusive || has_algorithm) && layer.digest_value.is_empty() {
        return Err(ValidationError::new(
            "digest_value",
            "is required when digest_algorithm is set or layer_type is EXCLUSIVE",
        ));
    }
    Ok(())
}

/// Volume-mounted files: each has a path, and the contents total at most 1 MiB.
fn check_volume_mounted_files(files: &[pb::File]) -> Result<(), ValidationError> {
    let mut total = 0_usize;
    for (i, file) in files.iter().enumerate() {
        if file.path.is_empty() {
            return Err(ValidationError::new(format!("volume_mounted_files[{i}].path"), "must not be empty"));
        }
        total = total.saturating_add(file.content.len());
    }
    if total > MAX_VOLUME_MOUNTED_FILES_BYTES {
        return Err(ValidationError::new("volume_mounted_files", "must total at most 1048576 bytes"));
    }
    Ok(())
}

/// Sidecars: each has a valid action and non-negative resources.
pub(crate) fn check_sidecars(sidecars: &[pb::Sidecar]) -> Result<(), ValidationError> {
    for (i, sidecar) in sidecars.iter().enumerate() {
        let path = format!("sidecars[{i}]");
        match &sidecar.action {
            None => {
                return Err(ValidationError::new(format!("{path}.action"), "is required"));
            }
            Some(action) => check_action_tree(action, &format!("{path}.action"))?,
        }
        non_negative("memory_mb", sidecar.memory_mb).map_err(|e| e.within(&path))?;
        non_negative("disk_mb", sidecar.disk_mb).map_err(|e| e.within(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::models::v1::action::Action as Variant;

    /// Owned run-time fields, so a test can mutate one and validate.
    #[derive(Default)]
    struct Owned {
        egress_rules: Vec<pb::SecurityGroupRule>,
        volume_mounts: Vec<pb::VolumeMount>,
        cached_dependencies: Vec<pb::CachedDependency>,
        image_layers: Vec<pb::ImageLayer>,
        image_username: String,
        image_password: String,
        log_rate_limit: Option<pb::LogRateLimit>,
        volume_mounted_files: Vec<pb::File>,
        sidecars: Vec<pb::Sidecar>,
        environment_variables: Vec<pb::EnvironmentVariable>,
    }

    fn validate(owned: &Owned) -> Result<(), ValidationError> {
        check_runtime(&RuntimeParts {
            egress_rules: &owned.egress_rules,
            volume_mounts: &owned.volume_mounts,
            cached_dependencies: &owned.cached_dependencies,
            image_layers: &owned.image_layers,
            image_username: &owned.image_username,
            image_password: &owned.image_password,
            log_rate_limit: owned.log_rate_limit.as_ref(),
            volume_mounted_files: &owned.volume_mounted_files,
            environment_variables: &owned.environment_variables,
        })?;
        check_sidecars(&owned.sidecars)
    }

    fn good() -> Owned {
        Owned {
            egress_rules: vec![tcp_rule()],
            volume_mounts: vec![pb::VolumeMount {
                driver: "nfs".into(),
                container_dir: "/data".into(),
                mode: "rw".into(),
                shared: Some(pb::SharedDevice {
                    volume_id: "vol-1".into(),
                    mount_config: r#"{"source":"nfs://server/x"}"#.into(),
                }),
            }],
            cached_dependencies: vec![pb::CachedDependency {
                name: "buildpack".into(),
                from: "http://file-server/bp.zip".into(),
                to: "/tmp/bp".into(),
                cache_key: "bp".into(),
                ..Default::default()
            }],
            image_layers: vec![pb::ImageLayer {
                name: "layer".into(),
                url: "http://file-server/layer.tgz".into(),
                destination_path: "/layer".into(),
                layer_type: pb::image_layer::Type::Exclusive as i32,
                media_type: pb::image_layer::MediaType::Tgz as i32,
                digest_algorithm: pb::image_layer::DigestAlgorithm::Sha256 as i32,
                digest_value: "abc123".into(),
            }],
            image_username: "user".into(),
            image_password: "secret".into(),
            log_rate_limit: Some(pb::LogRateLimit { bytes_per_second: -1 }),
            volume_mounted_files: vec![pb::File { path: "/etc/cfg".into(), content: "a=b".into() }],
            sidecars: vec![pb::Sidecar {
                action: Some(pb::Action {
                    action: Some(Variant::RunAction(pb::RunAction { path: "/bin/envoy".into(), ..Default::default() })),
                }),
                disk_mb: 64,
                memory_mb: 32,
            }],
            environment_variables: vec![pb::EnvironmentVariable { name: "PORT".into(), value: "8080".into() }],
        }
    }

    fn env(name: &str, value: &str) -> pb::EnvironmentVariable {
        pb::EnvironmentVariable { name: name.into(), value: value.into() }
    }

    rule_test!(an_env_name_must_not_be_empty: validate, good(),
        |v| v.environment_variables.push(env("", "x"))
        => "environment_variables[1].name must not be empty");
    rule_test!(an_env_name_must_not_hold_an_equals_sign: validate, good(),
        |v| v.environment_variables = vec![env("A=B", "x")]
        => "environment_variables[0].name must not contain '='");
    rule_test!(the_environment_must_fit_an_exec: validate, good(),
        |v| v.environment_variables = (0..8).map(|i| env(&format!("V{i}"), &"x".repeat(100_000))).collect()
        => "environment_variables must total at most 524288 bytes");

    fn tcp_rule() -> pb::SecurityGroupRule {
        pb::SecurityGroupRule {
            protocol: "tcp".into(),
            destinations: vec!["10.0.0.1".into(), "10.0.0.0/8".into(), "10.0.0.1-10.0.0.9".into(), "::1".into()],
            ports: vec![80, 443],
            ..Default::default()
        }
    }

    fn icmp_rule() -> pb::SecurityGroupRule {
        pb::SecurityGroupRule {
            protocol: "icmp".into(),
            destinations: vec!["0.0.0.0/0".into()],
            icmp_info: Some(pb::IcmpInfo { r#type: 8, code: 0 }),
            ..Default::default()
        }
    }

    rule_test!(egress_protocol_must_be_known: validate, good(),
        |v| v.egress_rules[0].protocol = "sctp".into()
        => "egress_rules[0].protocol must be one of tcp, udp, icmp, all");
    rule_test!(tcp_egress_needs_ports_or_a_range: validate, good(),
        |v| v.egress_rules[0].ports.clear()
        => "egress_rules[0].ports or port_range is required for tcp or udp");
    rule_test!(tcp_egress_refuses_ports_and_a_range_together: validate, good(),
        |v| v.egress_rules[0].port_range = Some(pb::PortRange { start: 1, end: 2 })
        => "egress_rules[0].port_range must not be set together with ports");
    rule_test!(egress_ports_must_be_real_ports: validate, good(),
        |v| v.egress_rules[0].ports[1] = 0
        => "egress_rules[0].ports[1] must be between 1 and 65535");
    rule_test!(egress_port_range_must_ascend: validate, good(),
        |v| { v.egress_rules[0].ports.clear(); v.egress_rules[0].port_range = Some(pb::PortRange { start: 90, end: 80 }); }
        => "egress_rules[0].port_range.end must be >= port_range.start");
    rule_test!(egress_port_range_start_must_be_a_real_port: validate, good(),
        |v| { v.egress_rules[0].ports.clear(); v.egress_rules[0].port_range = Some(pb::PortRange { start: 0, end: 80 }); }
        => "egress_rules[0].port_range.start must be between 1 and 65535");
    rule_test!(egress_port_range_end_must_be_a_real_port: validate, good(),
        |v| { v.egress_rules[0].ports.clear(); v.egress_rules[0].port_range = Some(pb::PortRange { start: 1, end: 65536 }); }
        => "egress_rules[0].port_range.end must be between 1 and 65535");
    rule_test!(tcp_egress_refuses_icmp_info: validate, good(),
        |v| v.egress_rules[0].icmp_info = Some(pb::IcmpInfo::default())
        => "egress_rules[0].icmp_info must not be set for tcp or udp");
    rule_test!(icmp_egress_needs_icmp_info: validate, Owned { egress_rules: vec![icmp_rule()], ..good() },
        |v| v.egress_rules[0].icmp_info = None
        => "egress_rules[0].icmp_info is required for icmp");
    rule_test!(icmp_egress_refuses_ports: validate, Owned { egress_rules: vec![icmp_rule()], ..good() },
        |v| v.egress_rules[0].ports = vec![80]
        => "egress_rules[0].ports must not be set for icmp");
    rule_test!(icmp_egress_refuses_a_port_range: validate, Owned { egress_rules: vec![icmp_rule()], ..good() },
        |v| v.egress_rules[0].port_range = Some(pb::PortRange { start: 1, end: 2 })
        => "egress_rules[0].port_range must not be set for icmp");
    rule_test!(all_egress_refuses_ports: validate,
        Owned { egress_rules: vec![pb::SecurityGroupRule { protocol: "all".into(), destinations: vec!["1.2.3.4".into()], ..Default::default() }], ..good() },
        |v| v.egress_rules[0].ports = vec![80]
        => "egress_rules[0].protocol all must not set ports, port_range or icmp_info");
    rule_test!(egress_needs_destinations: validate, good(),
        |v| v.egress_rules[0].destinations.clear()
        => "egress_rules[0].destinations must not be empty");
    rule_test!(egress_destinations_must_be_addresses: validate, good(),
        |v| v.egress_rules[0].destinations[2] = "10.0.0.9-10.0.0.1".into()
        => "egress_rules[0].destinations[2] must be an ip address, a cidr or an ip range");

    #[test]
    fn destinations_accept_ips_cidrs_and_ranges_only() {
        for good in ["1.2.3.4", "10.0.0.0/8", "::/0", "1.1.1.1-1.1.1.1", "fe80::1-fe80::2"] {
            assert!(is_destination(good), "{good}");
        }
        for bad in ["", "host.example", "10.0.0.0/33", "1.1.1.1-::1", "1.1.1.1/", "a-b"] {
            assert!(!is_destination(bad), "{bad}");
        }
    }

    rule_test!(volume_mount_needs_a_driver: validate, good(),
        |v| v.volume_mounts[0].driver.clear()
        => "volume_mounts[0].driver must not be empty");
    rule_test!(volume_mount_needs_a_container_dir: validate, good(),
        |v| v.volume_mounts[0].container_dir.clear()
        => "volume_mounts[0].container_dir must not be empty");
    rule_test!(volume_mount_mode_is_r_or_rw: validate, good(),
        |v| v.volume_mounts[0].mode = "w".into()
        => "volume_mounts[0].mode must be r or rw");
    rule_test!(volume_mount_needs_a_shared_device: validate, good(),
        |v| v.volume_mounts[0].shared = None
        => "volume_mounts[0].shared is required");
    rule_test!(volume_mount_needs_a_volume_id: validate, good(),
        |v| v.volume_mounts[0].shared = Some(pb::SharedDevice::default())
        => "volume_mounts[0].shared.volume_id must not be empty");
    rule_test!(volume_mount_config_is_a_json_object: validate, good(),
        |v| v.volume_mounts[0].shared = Some(pb::SharedDevice { volume_id: "v".into(), mount_config: "[1]".into() })
        => "volume_mounts[0].shared.mount_config must be a json object");
    rule_test!(cached_dependency_needs_from: validate, good(),
        |v| v.cached_dependencies[0].from.clear()
        => "cached_dependencies[0].from must not be empty");
    rule_test!(cached_dependency_needs_to: validate, good(),
        |v| v.cached_dependencies[0].to.clear()
        => "cached_dependencies[0].to must not be empty");
    rule_test!(cached_dependency_checksum_needs_a_value: validate, good(),
        |v| v.cached_dependencies[0].checksum_algorithm = "md5".into()
        => "cached_dependencies[0].checksum_value must be set when checksum_algorithm is set");
    rule_test!(image_layer_needs_a_url: validate, good(),
        |v| v.image_layers[0].url.clear()
        => "image_layers[0].url must not be empty");
    rule_test!(image_layer_needs_a_destination: validate, good(),
        |v| v.image_layers[0].destination_path.clear()
        => "image_layers[0].destination_path must not be empty");
    rule_test!(image_layer_type_must_be_known: validate, good(),
        |v| v.image_layers[0].layer_type = 0
        => "image_layers[0].layer_type must be SHARED or EXCLUSIVE");
    rule_test!(image_layer_media_type_must_be_known: validate, good(),
        |v| v.image_layers[0].media_type = 9
        => "image_layers[0].media_type must be TGZ, TAR or ZIP");
    rule_test!(image_layer_digest_algorithm_must_be_known: validate, good(),
        |v| v.image_layers[0].digest_algorithm = 7
        => "image_layers[0].digest_algorithm must be unset, SHA256 or SHA512");
    rule_test!(exclusive_image_layer_needs_a_digest_algorithm: validate, good(),
        |v| v.image_layers[0].digest_algorithm = 0
        => "image_layers[0].digest_algorithm is required when digest_value is set or layer_type is EXCLUSIVE");
    rule_test!(exclusive_image_layer_needs_a_digest_value: validate, good(),
        |v| v.image_layers[0].digest_value.clear()
        => "image_layers[0].digest_value is required when digest_algorithm is set or layer_type is EXCLUSIVE");
    rule_test!(image_password_needs_a_username: validate, good(),
        |v| v.image_username.clear()
        => "image_username must be set when image_password is set");
    rule_test!(image_username_needs_a_password: validate, good(),
        |v| v.image_password.clear()
        => "image_password must be set when image_username is set");
    rule_test!(log_rate_limit_is_at_least_minus_one: validate, good(),
        |v| v.log_rate_limit = Some(pb::LogRateLimit { bytes_per_second: -2 })
        => "log_rate_limit.bytes_per_second must be >= -1");
    rule_test!(volume_mounted_file_needs_a_path: validate, good(),
        |v| v.volume_mounted_files[0].path.clear()
        => "volume_mounted_files[0].path must not be empty");
    rule_test!(volume_mounted_files_total_at_most_one_mib: validate,
        Owned { volume_mounted_files: vec![pb::File { path: "/a".into(), content: "x".repeat(MAX_VOLUME_MOUNTED_FILES_BYTES) }], ..good() },
        |v| v.volume_mounted_files.push(pb::File { path: "/b".into(), content: "y".into() })
        => "volume_mounted_files must total at most 1048576 bytes");
    rule_test!(sidecar_needs_an_action: validate, good(),
        |v| v.sidecars[0].action = None
        => "sidecars[0].action is required");
    rule_test!(sidecar_action_must_be_valid: validate, good(),
        |v| v.sidecars[0].action = Some(pb::Action::default())
        => "sidecars[0].action must set one of its action variants");
    rule_test!(sidecar_memory_is_not_negative: validate, good(),
        |v| v.sidecars[0].memory_mb = -1
        => "sidecars[0].memory_mb must be >= 0");
    rule_test!(sidecar_disk_is_not_negative: validate, good(),
        |v| v.sidecars[0].disk_mb = -1
        => "sidecars[0].disk_mb must be >= 0");
}
