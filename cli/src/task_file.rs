//! The task file format of `diego desire-task --file F`: a task's `TaskDefinition` in the proto's
//! JSON shape with the task's `task_guid` and `domain` beside its fields, in JSON or, for files
//! named `*.yaml` / `*.yml`, YAML. It is the same mapping as the desired LRP file
//! ([`crate::lrp_file`]): field names as in `models.proto`, enums by value name, an action as its
//! one oneof key (`{"run_action": {...}}`).
//!
//! ```yaml
//! task_guid: report
//! memory_mb: 64
//! disk_mb: 64
//! result_file: /tmp/result
//! action: {run_action: {path: /bin/sh, args: [-c, "echo done > /tmp/result"], user: root}}
//! completion_callback_url: http://127.0.0.1:9000/done
//! ```
//!
//! `task_guid` is required. Defaults when a field is absent: `domain` "diego", `root_fs`
//! "preloaded:busybox"; everything else as in proto3 (zero, empty). An unknown field is refused by
//! name, and a field of the wrong type is named with what was expected.

use std::path::Path;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use crate::error::Error;
use crate::lrp_file::{DEFAULT_DOMAIN, DEFAULT_ROOTFS};

/// The two fields of the file that are the request's, not the task definition's.
const REQUEST_FIELDS: [&str; 2] = ["task_guid", "domain"];

/// Reads and parses `path` (`-` is standard input, JSON). Errors name the file and say what is
/// wrong and in which field; they exit 2 like every invalid input.
pub fn load(path: &Path) -> Result<api::DesireTaskRequest, Error> {
    let shown = path.display().to_string();
    let text = if shown == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
        .map_err(|e| Error::ReadFile { path: shown.clone(), reason: crate::error::io_reason(&e) })?;
    // `--file` is the flag that names a task file; the message names the file itself.
    parse(&text, is_yaml(path))
        .map_err(|reason| Error::InvalidFlag { flag: "--file", reason: format!("{shown}: {reason}") })
}

/// Parses a file's text as YAML or JSON into the request the BBS receives, with the file
/// format's defaults filled in.
pub fn parse(text: &str, yaml: bool) -> Result<api::DesireTaskRequest, String> {
    // YAML goes through a JSON value (serde_norway reads enums only from YAML tags, and the
    // format spells actions as one-key maps); JSON too, to split the request's fields off.
    let value: serde_json::Value = if yaml {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    from_value(value)
}

/// The request of an already parsed file (one entry of `diego export`'s `tasks`), with the file
/// format's defaults filled in.
pub fn from_value(value: serde_json::Value) -> Result<api::DesireTaskRequest, String> {
    let serde_json::Value::Object(mut fields) = value else {
        return Err("expected a map of fields (task_guid, domain and the task definition's)".to_owned());
    };
    let task_guid = match fields.remove("task_guid") {
        Some(serde_json::Value::String(guid)) => guid,
        Some(other) => return Err(format!("field `task_guid`: expected a string, found {other}")),
        None => return Err("missing field `task_guid`".to_owned()),
    };
    let domain = match fields.remove("domain") {
        Some(serde_json::Value::String(domain)) => domain,
        Some(other) => return Err(format!("field `domain`: expected a string, found {other}")),
        None => DEFAULT_DOMAIN.to_owned(),
    };
    let has_root_fs = fields.contains_key("root_fs");
    let mut definition = definition(fields)?;
    if !has_root_fs {
        DEFAULT_ROOTFS.clone_into(&mut definition.root_fs);
    }
    Ok(api::DesireTaskRequest { task_definition: Some(definition), task_guid, domain })
}

/// The task definition of the file's other fields. On an error, the first field that cannot be
/// read on its own is named (serde's own message says what was wrong but not where).
fn definition(fields: serde_json::Map<String, serde_json::Value>) -> Result<pb::TaskDefinition, String> {
    serde_json::from_value(serde_json::Value::Object(fields.clone())).map_err(|whole| {
        let culprit = fields.iter().find_map(|(name, value)| {
            let alone = serde_json::Value::Object([(name.clone(), value.clone())].into_iter().collect());
            serde_json::from_value::<pb::TaskDefinition>(alone).err().map(|e| (name, e))
        });
        match culprit {
            // An unknown field's message already names it (and lists the known ones).
            Some((_, e)) if e.to_string().starts_with("unknown field") => {
                format!("{e}, `{}`", REQUEST_FIELDS.join("`, `"))
            }
            Some((name, e)) => format!("field `{name}`: {e}"),
            None => whole.to_string(),
        }
    })
}

/// The file form of a request: its definition's serde form with `task_guid`, `domain` and
/// `root_fs` always written (an empty root filesystem must not read back as the default).
pub fn to_json(request: &api::DesireTaskRequest) -> serde_json::Value {
    let definition = request.task_definition.clone().unwrap_or_default();
    let mut value = serde_json::to_value(&definition).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("task_guid".to_owned(), request.task_guid.clone().into());
        fields.insert("domain".to_owned(), request.domain.clone().into());
        fields.insert("root_fs".to_owned(), definition.root_fs.into());
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

    const REPORT: &str = r#"{
        "task_guid": "report",
        "memory_mb": 64,
        "result_file": "/tmp/result",
        "action": {"run_action": {"path": "/bin/sh", "args": ["-c", "echo 42 > /tmp/result"], "user": "root"}},
        "completion_callback_url": "http://127.0.0.1:9/done",
        "metric_tags": {"source": {"static": "cli"}}
    }"#;

    #[test]
    fn a_json_file_fills_defaults_and_round_trips_through_the_request() {
        let request = parse(REPORT, false).unwrap();
        assert_eq!((request.task_guid.as_str(), request.domain.as_str()), ("report", DEFAULT_DOMAIN));
        let definition = request.task_definition.clone().unwrap();
        assert_eq!(definition.root_fs, DEFAULT_ROOTFS);
        assert_eq!((definition.memory_mb, definition.disk_mb), (64, 0));
        assert_eq!(definition.result_file, "/tmp/result");
        assert_eq!(definition.completion_callback_url, "http://127.0.0.1:9/done");
        assert_eq!(crate::lrp_file::action_summary(&definition.action.unwrap()), "/bin/sh -c echo 42 > /tmp/result");
        assert_eq!(parse(&to_json(&request).to_string(), false).unwrap(), request);
    }

    #[test]
    fn yaml_reads_the_same_shape() {
        let yaml = "task_guid: report\ndomain: batch\nroot_fs: docker:///alpine\naction:\n  run_action:\n    path: /bin/true\n";
        let request = parse(yaml, true).unwrap();
        assert_eq!(request.domain, "batch");
        let definition = request.task_definition.unwrap();
        assert_eq!(definition.root_fs, "docker:///alpine");
        assert_eq!(crate::lrp_file::action_summary(&definition.action.unwrap()), "/bin/true");
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        let error = parse(r#"{"task_guid": "a", "result_fle": "/x"}"#, false).unwrap_err();
        assert!(error.contains("unknown field `result_fle`"), "{error}");
        assert!(
            error.contains("`result_file`") && error.ends_with("`task_guid`, `domain`"),
            "the known fields are listed: {error}"
        );
        let error = parse("task_guid: a\naction: {jump: {}}\n", true).unwrap_err();
        assert!(error.contains("field `action`") && error.contains("unknown variant `jump`"), "{error}");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let error = parse(r#"{"task_guid": "a", "disk_mb": 1, "memory_mb": "lots"}"#, false).unwrap_err();
        assert!(error.starts_with("field `memory_mb`: invalid type: string \"lots\""), "{error}");
        let error = parse(r#"{"task_guid": 7}"#, false).unwrap_err();
        assert_eq!(error, "field `task_guid`: expected a string, found 7");
        let error = parse("task_guid: a\ndomain: [x]\n", true).unwrap_err();
        assert!(error.starts_with("field `domain`: expected a string"), "{error}");
    }

    #[test]
    fn a_file_without_a_task_guid_or_not_a_map_is_refused() {
        assert_eq!(parse(r#"{"memory_mb": 1}"#, false).unwrap_err(), "missing field `task_guid`");
        assert!(parse("[1, 2]", false).unwrap_err().starts_with("expected a map"));
        let error = parse("{\n  \"task_guid\": \"a\",\n}", false).unwrap_err();
        assert!(error.contains("line 3"), "a JSON syntax error has its place: {error}");
    }

    #[test]
    fn an_empty_root_fs_and_domain_are_written_so_they_read_back() {
        let request = api::DesireTaskRequest {
            task_guid: "z".into(),
            domain: String::new(),
            task_definition: Some(pb::TaskDefinition::default()),
        };
        assert_eq!(parse(&to_json(&request).to_string(), false).unwrap(), request);
    }

    #[test]
    fn load_names_the_file_and_exits_2() {
        let dir = std::env::temp_dir().join(format!("task-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yml");
        std::fs::write(&path, "task_guid: a\nmemory_mb: lots\n").unwrap();
        let error = load(&path).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains("field `memory_mb`"), "{message}");
        assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
        let missing = load(&dir.join("absent.json")).unwrap_err();
        assert!(matches!(missing, Error::ReadFile { .. }), "{missing}");
        assert_eq!(missing.exit_code(), crate::error::EXIT_USAGE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
