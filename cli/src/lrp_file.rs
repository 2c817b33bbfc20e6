//! The desired LRP file format of `diego desire-lrp --file F`: a `DesiredLRP` message in the
//! proto's JSON shape, in JSON or, for files named `*.yaml` / `*.yml`, YAML. The serde mapping
//! is the generated messages' own (proto's `serde` feature, `proto/src/pb/json.rs`), so every
//! field the wire accepts can be written: field names as in `models.proto`, enums by value name
//! (`"RECREATE"`, `"INDEX"`, `"SHA256"`), an action as its one oneof key (`{"run_action": {...}}`),
//! route documents as any JSON (stored as its text, as Diego does). `diego lrp GUID --json`
//! prints a desired LRP under `desired_lrp` in the same shape ([`to_json`]), beside what its
//! instances are doing (`running`, `states`, `instance_count`, `instances`); a file reader
//! takes such a document as its `desired_lrp` and ignores the rest, so `diego lrp web --json |
//! diego desire-lrp --file - --guid web-copy` desires a copy. (The instance details stay at the
//! top level, where scripts have always read them: `instances` there is the list of instances,
//! not the count.)
//!
//! ```yaml
//! process_guid: web
//! instances: 3
//! memory_mb: 128
//! disk_mb: 256
//! ports: [8080]
//! environment_variables: [{name: GREETING, value: hello}]
//! action: {run_action: {path: /bin/sh, args: [-c, ./app], user: root}}
//! check_definition: {checks: [{http_check: {port: 8080, path: /health}}]}
//! routes: {cf-router: [{hostnames: [web.example.com], port: 8080}]}
//! ```
//!
//! `process_guid` is required. Defaults when a field is absent: `domain` "diego", `rootfs`
//! "preloaded:busybox", `instances` 1; everything else as in proto3 (zero, empty). An unknown
//! field is refused by name.

pub mod actions;

use std::path::Path;

use proto::pb::models::v1 as pb;

pub use self::actions::{action_summary, check_summary};
use crate::error::Error;

/// The default domain of desired LRPs and tasks created by the CLI.
pub const DEFAULT_DOMAIN: &str = "diego";
/// The default root filesystem: the busybox stack every cell advertises.
pub const DEFAULT_ROOTFS: &str = "preloaded:busybox";
/// The default number of instances of a file that names none.
pub const DEFAULT_INSTANCES: i32 = 1;
/// The key of the desired LRP in a `diego lrp GUID --json` document.
pub const SHOWN_LRP_KEY: &str = "desired_lrp";
/// The other keys of a `diego lrp GUID --json` document: what the instances are doing, which a
/// file reader ignores.
pub const SHOWN_STATUS_KEYS: &[&str] = &["running", "states", "instance_count", "instances"];

/// Reads and parses `path` (`-` is standard input, JSON). Errors name the file and say what is
/// wrong and where.
pub fn load(path: &Path) -> Result<pb::DesiredLrp, Error> {
    load_as(path, None)
}

/// Like [`load`], with `guid` (when given) as the process guid instead of the file's, which
/// may then leave it out (`desire-lrp --file F --guid G`).
pub fn load_as(path: &Path, guid: Option<&str>) -> Result<pb::DesiredLrp, Error> {
    let text = read(path)?;
    let parsed = parse_partial(&text, is_yaml(path)).and_then(|(mut value, mut lrp)| {
        if let (Some(guid), Some(fields)) = (guid, value.as_object_mut()) {
            fields.insert("process_guid".to_owned(), guid.into());
            guid.clone_into(&mut lrp.process_guid);
        }
        with_defaults(&value, lrp)
    });
    parsed.map_err(|reason| Error::ParseFile { path: path.display().to_string(), reason })
}

/// Reads `path` as part of a desired LRP (`update-lrp --file`): the fields the file holds, as
/// parsed, and the message they make, absent fields zero (no defaults, no field required).
pub fn load_partial(path: &Path) -> Result<(serde_json::Value, pb::DesiredLrp), Error> {
    let text = read(path)?;
    parse_partial(&text, is_yaml(path)).map_err(|reason| Error::ParseFile { path: path.display().to_string(), reason })
}

/// The text of `path` (`-`: standard input).
fn read(path: &Path) -> Result<String, Error> {
    let shown = path.display().to_string();
    if shown == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
        .map_err(|e| Error::ReadFile { path: shown, reason: crate::error::io_reason(&e) })
}

/// Parses a file's text as YAML or JSON into the fields it holds and the message they make.
fn parse_partial(text: &str, yaml: bool) -> Result<(serde_json::Value, pb::DesiredLrp), String> {
    let shown: serde_json::Value = if yaml {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    if let Some(inner) = unwrap_shown(&shown)? {
        let lrp = serde_json::from_value(inner.clone()).map_err(|e| format!("desired_lrp: {e}"))?;
        return Ok((inner.clone(), lrp));
    }
    if yaml {
        // YAML goes through a JSON value: serde_norway reads enums only from YAML tags
        // (`!run_action`), and the file format spells actions as one-key maps in both.
        let lrp = serde_json::from_value(shown.clone()).map_err(|e| e.to_string())?;
        Ok((shown, lrp))
    } else {
        // JSON is read twice: for which fields are present, and straight into the message so
        // a wrong type is reported with its line and column.
        Ok((shown, serde_json::from_str(text).map_err(|e| e.to_string())?))
    }
}

/// Parses a file's text as YAML or JSON into the message the BBS receives, with the file
/// format's defaults filled in.
pub fn parse(text: &str, yaml: bool) -> Result<pb::DesiredLrp, String> {
    let (value, lrp) = parse_partial(text, yaml)?;
    with_defaults(&value, lrp)
}

/// The message of an already parsed file (one entry of `diego export`'s `desired_lrps`), with
/// the file format's defaults filled in.
pub fn from_value(value: &serde_json::Value) -> Result<pb::DesiredLrp, String> {
    let value = unwrap_shown(value)?.unwrap_or(value);
    let lrp = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    with_defaults(value, lrp)
}

/// The desired LRP of a `diego lrp GUID --json` document (`{"desired_lrp": {...}, "running":
/// .., "states": .., "instance_count": .., "instances": [..]}`), or `None` when `value` is a
/// desired LRP itself. The instance keys are what the BBS reports, not something a file
/// desires: they are ignored, and any other key beside `desired_lrp` is refused by name.
fn unwrap_shown(value: &serde_json::Value) -> Result<Option<&serde_json::Value>, String> {
    let Some(fields) = value.as_object() else { return Ok(None) };
    let Some(inner) = fields.get(SHOWN_LRP_KEY) else { return Ok(None) };
    if let Some(other) = fields.keys().find(|k| *k != SHOWN_LRP_KEY && !SHOWN_STATUS_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{other}` beside `{SHOWN_LRP_KEY}` (a `diego lrp --json` document holds `{SHOWN_LRP_KEY}`, `{}`)",
            SHOWN_STATUS_KEYS.join("`, `")
        ));
    }
    Ok(Some(inner))
}

/// The file format's defaults, for the fields `value` (the parsed file) does not hold.
fn with_defaults(value: &serde_json::Value, mut lrp: pb::DesiredLrp) -> Result<pb::DesiredLrp, String> {
    let present = |key: &str| value.get(key).is_some();
    if !present("process_guid") {
        return Err("missing field `process_guid`".to_owned());
    }
    if !present("domain") {
        DEFAULT_DOMAIN.clone_into(&mut lrp.domain);
    }
    if !present("rootfs") {
        DEFAULT_ROOTFS.clone_into(&mut lrp.rootfs);
    }
    if !present("instances") {
        lrp.instances = DEFAULT_INSTANCES;
    }
    Ok(lrp)
}

/// The file form of a desired LRP: the message's serde form, with the fields that have a file
/// default always written (an LRP of 0 instances must not read back as 1).
pub fn to_json(lrp: &pb::DesiredLrp) -> serde_json::Value {
    let mut value = serde_json::to_value(lrp).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("process_guid".to_owned(), lrp.process_guid.clone().into());
        fields.insert("domain".to_owned(), lrp.domain.clone().into());
        fields.insert("rootfs".to_owned(), lrp.rootfs.clone().into());
        fields.insert("instances".to_owned(), lrp.instances.into());
    }
    value
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

    /// The file with every field the wire accepts that the acceptance test desires.
    const EVERY_FIELD: &str = include_str!("../tests/fixtures/every_field_lrp.yaml");

    #[test]
    fn a_json_file_fills_defaults_and_round_trips_through_the_message() {
        let message = parse(WEB, false).unwrap();
        assert_eq!((message.domain.as_str(), message.rootfs.as_str()), (DEFAULT_DOMAIN, DEFAULT_ROOTFS));
        assert_eq!(message.instances, 2);
        assert_eq!(message.routes["cf-router"], br#"[{"hostnames":["a"],"port":8080}]"#.to_vec());
        assert_eq!(parse(&to_json(&message).to_string(), false).unwrap(), message);
    }

    #[test]
    fn yaml_reads_the_same_shape() {
        let yaml = "process_guid: web\ninstances: 2\naction:\n  run_action:\n    path: /bin/true\n";
        let message = parse(yaml, true).unwrap();
        assert_eq!(message.instances, 2);
        assert_eq!(action_summary(&message.action.unwrap()), "/bin/true");
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        // Every field of the message is known now (egress_rules included); a misspelt one is not.
        parse(r#"{"process_guid": "a", "egress_rules": []}"#, false).unwrap();
        let error = parse(r#"{"process_guid": "a", "egress_rulez": []}"#, false).unwrap_err();
        assert!(error.contains("unknown field `egress_rulez`"), "{error}");
        let error = parse(r#"{"process_guid": "a", "action": {"jump": {}}}"#, false).unwrap_err();
        assert!(error.contains("unknown variant `jump`"), "{error}");
    }

    #[test]
    fn a_file_without_a_process_guid_is_refused() {
        let error = parse(r#"{"instances": 1}"#, false).unwrap_err();
        assert!(error.contains("missing field `process_guid`"), "{error}");
    }

    #[test]
    fn zero_instances_and_an_empty_domain_are_written_so_they_read_back() {
        let message = pb::DesiredLrp { process_guid: "z".into(), ..Default::default() };
        assert_eq!(parse(&to_json(&message).to_string(), false).unwrap(), message);
    }

    #[test]
    fn an_lrp_json_document_reads_as_its_desired_lrp() {
        let message = parse(WEB, false).unwrap();
        let shown = serde_json::json!({
            "desired_lrp": to_json(&message), "running": 1, "states": {"running": 1},
            "instance_count": 2, "instances": [{"index": 0, "state": "RUNNING"}],
        });
        assert_eq!(parse(&shown.to_string(), false).unwrap(), message);
        assert_eq!(parse(&serde_norway::to_string(&shown).unwrap(), true).unwrap(), message);
        assert_eq!(from_value(&shown).unwrap(), message);
        let (fields, partial) = load_partial_text(&shown.to_string());
        assert_eq!((fields, partial), (to_json(&message), message));
        let stray = serde_json::json!({"desired_lrp": {"process_guid": "a"}, "extra": 1});
        let error = parse(&stray.to_string(), false).unwrap_err();
        assert!(error.starts_with("unknown field `extra` beside `desired_lrp`"), "{error}");
    }

    fn load_partial_text(text: &str) -> (serde_json::Value, pb::DesiredLrp) {
        parse_partial(text, false).unwrap()
    }

    #[test]
    fn yaml_to_message_to_yaml_is_lossless() {
        let file: serde_json::Value = serde_norway::from_str(EVERY_FIELD).unwrap();
        let message = parse(EVERY_FIELD, true).unwrap();
        let printed = serde_norway::to_string(&to_json(&message)).unwrap();
        let again: serde_json::Value = serde_norway::from_str(&printed).unwrap();
        assert_eq!(again, file, "the file changed through the message:\n{printed}");
        assert_eq!(parse(&printed, true).unwrap(), message);
    }
}
