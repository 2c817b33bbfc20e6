//! Local validation of what the user typed or wrote, before anything is sent, so a mistake is
//! reported as a usage error (exit 2) naming the flag, or the field of the file, instead of as
//! the BBS's refusal of a wire field the user never saw.
//!
//! The rules are not written here: each has one home in `proto`. Flag values go through clap
//! value parsers that ask `proto` (the identifier newtypes' `parse`, the request limits table);
//! a whole desired LRP or task is checked by `proto`'s conversion (the same validation the BBS
//! runs) and by the request bounds walk (`proto::bounds`), and a broken field is translated
//! back to the flag that set it ([`lrp_flag`], [`task_flag`]). The CLI adds only its own
//! stricter choices: memory and disk of at least 1 MB (0 would reserve nothing, so any number
//! of instances would "fit" anywhere).

use prost::{Message, Name};
use proto::limits::{MAX_LRP_INSTANCES, range_limit};
use proto::models::{CellId, DomainName, ProcessGuid, TaskGuid, ValidationError};
use proto::pb::models::v1 as pb;

use crate::error::Error;

/// The ports a flag accepts (`*.port` of the request limits table).
pub fn port_range() -> (i64, i64) {
    range_limit("DesiredLRP", "ports").unwrap_or((1, 65_535))
}

/// The most memory a flag accepts, in MB (`*.memory_mb` of the request limits table).
pub fn max_memory_mb() -> i64 {
    range_limit("DesiredLRP", "memory_mb").map_or(i64::from(i32::MAX), |(_, max)| max)
}

/// The most disk a flag accepts, in MB (`*.disk_mb` of the request limits table).
pub fn max_disk_mb() -> i64 {
    range_limit("DesiredLRP", "disk_mb").map_or(i64::from(i32::MAX), |(_, max)| max)
}

/// The longest domain time to live, in seconds.
pub fn max_ttl_s() -> i64 {
    range_limit("UpsertDomainRequest", "ttl").map_or(i64::from(u32::MAX), |(_, max)| max)
}

fn in_range(text: &str, min: i64, max: i64) -> Result<i64, String> {
    let value: i64 = text.trim().parse().map_err(|_| format!("{text:?} is not a whole number"))?;
    if value < min || value > max {
        return Err(format!("{value} is not in {min}..={max}"));
    }
    Ok(value)
}

/// Clap parser: a TCP/UDP port, 1..=65535.
pub fn port(text: &str) -> Result<u32, String> {
    let (min, max) = port_range();
    in_range(text, min, max).map(|v| v as u32)
}

/// Clap parser: memory per instance or task, 1 MB up to the limits table's maximum.
pub fn memory_mb(text: &str) -> Result<i32, String> {
    in_range(text, 1, max_memory_mb()).map(|v| v as i32)
}

/// Clap parser: disk per instance or task, 1 MB up to the limits table's maximum.
pub fn disk_mb(text: &str) -> Result<i32, String> {
    in_range(text, 1, max_disk_mb()).map(|v| v as i32)
}

/// Clap parser: a number of instances, 0..=1,000,000.
pub fn instances(text: &str) -> Result<i32, String> {
    in_range(text, 0, MAX_LRP_INSTANCES).map(|v| v as i32)
}

/// Clap parser: an instance index, 0..=999,999.
pub fn index(text: &str) -> Result<i32, String> {
    in_range(text, 0, MAX_LRP_INSTANCES - 1).map(|v| v as i32)
}

/// Clap parser: a domain's time to live in seconds, 0 (forever) up to a year.
pub fn ttl(text: &str) -> Result<u32, String> {
    in_range(text, 0, max_ttl_s()).map(|v| v as u32)
}

/// The rule part of a `proto` validation error (`must match [A-Za-z0-9_-]+`), for clap, which
/// names the flag itself.
fn rule(error: ValidationError) -> String {
    error.rule
}

/// Clap parser: a process guid (`[A-Za-z0-9_-]+`, at most 255 bytes).
pub fn process_guid(text: &str) -> Result<String, String> {
    ProcessGuid::parse(text).map(ProcessGuid::into_string).map_err(rule)
}

/// Clap parser: a task guid (`[A-Za-z0-9_-]+`, at most 255 bytes).
pub fn task_guid(text: &str) -> Result<String, String> {
    TaskGuid::parse(text).map(TaskGuid::into_string).map_err(rule)
}

/// Clap parser: a domain (not empty, at most 255 bytes).
pub fn domain(text: &str) -> Result<String, String> {
    DomainName::parse(text).map(DomainName::into_string).map_err(rule)
}

/// Clap parser: a cell id (not empty, at most 255 bytes).
pub fn cell_id(text: &str) -> Result<String, String> {
    CellId::parse(text).map(CellId::into_string).map_err(rule)
}

/// Clap parser: `NAME=VALUE` with a non-empty name (the name's characters and the value's size
/// are checked with the whole definition).
pub fn env(text: &str) -> Result<pb::EnvironmentVariable, String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => {
            Ok(pb::EnvironmentVariable { name: name.into(), value: value.into() })
        }
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// A route: `HOSTNAME:PORT`, the router sending `HOSTNAME` to the container port `PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The hostname.
    pub hostname: String,
    /// The container port.
    pub port: u32,
}

/// Clap parser: `HOSTNAME:PORT`.
pub fn route(text: &str) -> Result<Route, String> {
    let Some((hostname, port_text)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} is not HOSTNAME:PORT"));
    };
    let valid_host = !hostname.is_empty()
        && hostname.len() <= 253
        && hostname.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*'));
    if !valid_host {
        return Err(format!("{hostname:?} is not a hostname (letters, digits, '-', '.')"));
    }
    Ok(Route { hostname: hostname.to_owned(), port: port(port_text)? })
}

/// Clap parser of `desire-lrp --route`: `HOSTNAME[:PORT]`; without a port, `port` is 0, which
/// stands for the LRP's first port.
pub fn host_route(text: &str) -> Result<Route, String> {
    if text.contains(':') {
        return route(text);
    }
    route(&format!("{text}:1")).map(|r| Route { port: 0, ..r })
}

/// The flag of `desire-lrp` that sets the desired LRP field `field` (a `proto` error path).
pub fn lrp_flag(field: &str) -> &'static str {
    let head = field.split(['.', '[']).next().unwrap_or_default();
    match head {
        "process_guid" | "desired_lrp_key" if field.contains("domain") => "--domain",
        "process_guid" | "desired_lrp_key" => "--guid",
        "domain" => "--domain",
        "rootfs" => "--rootfs",
        "instances" => "--instances",
        "memory_mb" => "--memory-mb",
        "disk_mb" => "--disk-mb",
        "ports" => "--port",
        "environment_variables" => "--env",
        "action" if field.ends_with(".user") => "--user",
        "action" => "--command",
        "check_definition" if field.ends_with(".path") => "--health-check-path",
        "check_definition" => "--port",
        _ => "--guid",
    }
}

/// The flag of `desire-task` that sets the task field `field`.
pub fn task_flag(field: &str) -> &'static str {
    let head = field.split(['.', '[']).next().unwrap_or_default();
    match head {
        "task_guid" => "--guid",
        "domain" => "--domain",
        "root_fs" => "--rootfs",
        "memory_mb" => "--memory-mb",
        "disk_mb" => "--disk-mb",
        "environment_variables" => "--env",
        "action" if field.ends_with(".user") => "--user",
        "action" => "--command",
        "completion_callback_url" => "--callback-url",
        "result_file" => "--result-file",
        _ => "--guid",
    }
}

/// Checks a desired LRP as the BBS would: its conversion (every rule of `proto`'s validation)
/// and the request limits (lengths, counts, ranges).
pub fn check_desired_lrp(lrp: &pb::DesiredLrp) -> Result<(), ValidationError> {
    proto::bounds::check_message(&pb::DesiredLrp::full_name(), &lrp.encode_to_vec())?;
    proto::models::DesiredLrp::try_from(lrp.clone()).map(|_| ())
}

/// Checks a task request as the BBS would (guid, domain, definition and limits).
pub fn check_task(request: &proto::pb::bbs::v1::DesireTaskRequest) -> Result<(), ValidationError> {
    TaskGuid::parse(request.task_guid.as_str())?;
    DomainName::parse(request.domain.as_str())?;
    let definition = request.task_definition.clone().unwrap_or_default();
    proto::bounds::check_message(&pb::TaskDefinition::full_name(), &definition.encode_to_vec())?;
    proto::models::validation::validate_task_definition(&definition)
}

/// A validation error of something built from flags, as the flag's error.
pub fn flag_error(error: ValidationError, flag_of: fn(&str) -> &'static str) -> Error {
    Error::InvalidFlag { flag: flag_of(&error.field), reason: error.to_string() }
}

/// A validation error of a file's content, naming the file and the field.
pub fn file_error(path: &std::path::Path, error: ValidationError) -> Error {
    Error::ParseFile { path: path.display().to_string(), reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_texts_ranges_are_the_limits_tables() {
        // The flag docs spell these numbers out; they must follow proto's table.
        assert_eq!(port_range(), (1, 65_535));
        assert_eq!(max_memory_mb(), 16_777_216);
        assert_eq!(max_disk_mb(), 67_108_864);
        assert_eq!(max_ttl_s(), 31_622_400);
        assert_eq!(MAX_LRP_INSTANCES, 1_000_000);
    }

    #[test]
    fn ranges_refuse_out_of_bounds_and_non_numbers() {
        assert_eq!(port("8080"), Ok(8080));
        assert_eq!(port("99999"), Err("99999 is not in 1..=65535".into()));
        assert_eq!(port("0"), Err("0 is not in 1..=65535".into()));
        assert_eq!(memory_mb("0"), Err("0 is not in 1..=16777216".into()));
        assert!(memory_mb("x").unwrap_err().contains("not a whole number"));
        assert_eq!(instances("1000001"), Err("1000001 is not in 0..=1000000".into()));
        assert_eq!(index("-1"), Err("-1 is not in 0..=999999".into()));
    }

    #[test]
    fn guids_follow_the_bbs_rule() {
        assert_eq!(process_guid("web-1_a"), Ok("web-1_a".into()));
        assert_eq!(process_guid("a.b"), Err("must match [A-Za-z0-9_-]+".into()));
        assert_eq!(task_guid(&"x".repeat(256)), Err("must be at most 255 bytes".into()));
        assert_eq!(domain(""), Err("must not be empty".into()));
    }

    #[test]
    fn env_and_routes_have_their_shape() {
        assert_eq!(env("A=b=c").unwrap().value, "b=c");
        assert!(env("=x").is_err() && env("A").is_err());
        assert_eq!(route("web.example.com:8080"), Ok(Route { hostname: "web.example.com".into(), port: 8080 }));
        assert!(route("web.example.com").is_err());
        assert!(route("web.example.com:99999").unwrap_err().contains("not in 1..=65535"));
        assert!(route("we b:80").is_err());
    }

    #[test]
    fn a_broken_field_maps_back_to_its_flag() {
        assert_eq!(lrp_flag("check_definition.checks[0].tcp_check.port"), "--port");
        assert_eq!(lrp_flag("environment_variables[1].name"), "--env");
        assert_eq!(lrp_flag("desired_lrp_key.domain"), "--domain");
        assert_eq!(lrp_flag("action.run_action.user"), "--user");
        assert_eq!(task_flag("root_fs"), "--rootfs");
    }
}
