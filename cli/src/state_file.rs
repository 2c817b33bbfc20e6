//! The cluster state file of `diego export` and `diego apply -f`: every desired LRP, domain and
//! pending task of a cluster in one YAML (or JSON) document, each entry in its own file format.
//!
//! ```yaml
//! desired_lrps:          # each one in the desired LRP file format (crate::lrp_file)
//!   - {process_guid: web, instances: 3, action: {run_action: {path: /bin/sh, args: [-c, ./app]}}}
//! domains:               # fresh domains; ttl_remaining in seconds, absent or 0: never expires
//!   - {name: diego}
//!   - {name: batch, ttl_remaining: 120}
//! tasks:                 # pending tasks, each one in the task file format (crate::task_file)
//!   - {task_guid: report, action: {run_action: {path: /bin/true}}}
//! ```
//!
//! Each of the three keys may be left out (an empty list). Every entry is checked as the BBS
//! would check it when the file is read, and an error names the entry (`desired_lrps[2]
//! (web): ...`), so a bad file changes nothing. A guid or domain listed twice is refused.

use std::collections::BTreeSet;
use std::path::Path;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::commands::validate;
use crate::error::Error;
use crate::{lrp_file, task_file};

/// A cluster's desired state: what `diego export` writes and `diego apply` makes true.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Desired LRPs, in the desired LRP file format.
    pub desired_lrps: Vec<pb::DesiredLrp>,
    /// Fresh domains.
    pub domains: Vec<DomainEntry>,
    /// Tasks to desire (pending ones, when exported), as `desire-task` requests.
    pub tasks: Vec<api::DesireTaskRequest>,
}

/// One fresh domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    /// The domain.
    pub name: String,
    /// Seconds it stays fresh once applied; `None` or 0: it never expires. `diego export`
    /// writes what is left of the domain's TTL, rounded up to a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_remaining: Option<u32>,
}

/// The document as read, before each entry is read in its own format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    desired_lrps: Vec<serde_json::Value>,
    #[serde(default)]
    domains: Vec<DomainEntry>,
    #[serde(default)]
    tasks: Vec<serde_json::Value>,
}

/// Reads, parses and checks `path` (`-` is standard input). A file named `*.json` is read as
/// JSON, anything else as YAML, which reads JSON too: `diego export | diego apply -f -` works
/// with either output.
pub fn load(path: &Path) -> Result<State, Error> {
    let shown = path.display().to_string();
    let text = if shown == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
        .map_err(|e| Error::ReadFile { path: shown.clone(), reason: crate::error::io_reason(&e) })?;
    let yaml = path.extension().and_then(|e| e.to_str()) != Some("json");
    parse(&text, yaml).map_err(|reason| Error::StateFile { path: shown, reason })
}

/// Parses a state file's text and checks every entry as the BBS would.
pub fn parse(text: &str, yaml: bool) -> Result<State, String> {
    let value: serde_json::Value = if yaml {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    // An empty YAML document is an empty state.
    let value = if value.is_null() { serde_json::json!({}) } else { value };
    let document: Document = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut state = State { domains: document.domains, ..State::default() };
    let mut seen = BTreeSet::new();
    for (i, entry) in document.desired_lrps.iter().enumerate() {
        let name = entry.get("process_guid").and_then(|g| g.as_str()).unwrap_or_default();
        let at = |reason: String| format!("desired_lrps[{i}] ({name}): {reason}");
        let lrp = lrp_file::from_value(entry).map_err(at)?;
        validate::check_desired_lrp(&lrp).map_err(|e| at(e.to_string()))?;
        if !seen.insert(lrp.process_guid.clone()) {
            return Err(at("the process guid is listed twice".to_owned()));
        }
        state.desired_lrps.push(lrp);
    }
    let mut seen = BTreeSet::new();
    for (i, entry) in document.tasks.into_iter().enumerate() {
        let name = entry.get("task_guid").and_then(|g| g.as_str()).unwrap_or_default().to_owned();
        let at = |reason: String| format!("tasks[{i}] ({name}): {reason}");
        let task = task_file::from_value(entry).map_err(at)?;
        validate::check_task(&task).map_err(|e| at(e.to_string()))?;
        if !seen.insert(task.task_guid.clone()) {
            return Err(at("the task guid is listed twice".to_owned()));
        }
        state.tasks.push(task);
    }
    let mut seen = BTreeSet::new();
    for (i, domain) in state.domains.iter().enumerate() {
        let at = |reason: String| format!("domains[{i}] ({}): {reason}", domain.name);
        validate::domain(&domain.name).map_err(at)?;
        if let Some(ttl) = domain.ttl_remaining {
            validate::ttl(&ttl.to_string()).map_err(|e| at(format!("ttl_remaining: {e}")))?;
        }
        if !seen.insert(domain.name.clone()) {
            return Err(at("the domain is listed twice".to_owned()));
        }
    }
    Ok(state)
}

/// The file form of a state: each entry in its own file format, the modification tags (the
/// BBS's bookkeeping) left out.
pub fn to_json(state: &State) -> serde_json::Value {
    let lrps: Vec<serde_json::Value> = state
        .desired_lrps
        .iter()
        .map(|lrp| lrp_file::to_json(&pb::DesiredLrp { modification_tag: None, ..lrp.clone() }))
        .collect();
    let tasks: Vec<serde_json::Value> = state.tasks.iter().map(task_file::to_json).collect();
    serde_json::json!({ "desired_lrps": lrps, "domains": state.domains, "tasks": tasks })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "\
desired_lrps:
  - process_guid: web
    instances: 3
    action: {run_action: {path: /bin/true}}
  - desired_lrp: {process_guid: copy, domain: apps, action: {run_action: {path: /bin/true}}}
    running: 0
    instances: []
domains:
  - {name: diego}
  - {name: apps, ttl_remaining: 60}
tasks:
  - {task_guid: report, action: {run_action: {path: /bin/true}}}
";

    #[test]
    fn a_state_reads_each_entry_in_its_own_format_and_round_trips() {
        let state = parse(STATE, true).unwrap();
        let guids: Vec<&str> = state.desired_lrps.iter().map(|l| l.process_guid.as_str()).collect();
        assert_eq!(guids, ["web", "copy"]);
        assert_eq!((state.desired_lrps[0].instances, state.desired_lrps[1].instances), (3, 1));
        assert_eq!(state.desired_lrps[1].domain, "apps");
        assert_eq!(state.domains[1], DomainEntry { name: "apps".into(), ttl_remaining: Some(60) });
        assert_eq!(state.tasks[0].task_guid, "report");
        assert_eq!(state.tasks[0].domain, lrp_file::DEFAULT_DOMAIN);
        let json = to_json(&state).to_string();
        assert_eq!(parse(&json, false).unwrap(), state);
        let yaml = serde_norway::to_string(&to_json(&state)).unwrap();
        assert_eq!(parse(&yaml, true).unwrap(), state);
    }

    #[test]
    fn yaml_reads_the_json_export_too() {
        let state = parse(STATE, true).unwrap();
        let json = serde_json::to_string_pretty(&to_json(&state)).unwrap();
        assert_eq!(parse(&json, true).unwrap(), state);
    }

    #[test]
    fn an_empty_document_is_an_empty_state() {
        assert_eq!(parse("", true).unwrap(), State::default());
        assert_eq!(parse("{}", false).unwrap(), State::default());
    }

    #[test]
    fn errors_name_the_entry() {
        let error = parse("desired_lrps: [{process_guid: a, instancez: 1}]", true).unwrap_err();
        assert!(error.starts_with("desired_lrps[0] (a): unknown field `instancez`"), "{error}");
        let lrp = "{process_guid: a, action: {run_action: {path: /bin/true}}}";
        let error = parse(&format!("desired_lrps: [{lrp}, {lrp}]"), true).unwrap_err();
        assert_eq!(error, "desired_lrps[1] (a): the process guid is listed twice");
        let error = parse("tasks: [{task_guid: t, memory_mb: lots}]", true).unwrap_err();
        assert!(error.starts_with("tasks[0] (t): field `memory_mb`"), "{error}");
        let error = parse("domains: [{name: ''}]", true).unwrap_err();
        assert!(error.starts_with("domains[0] (): "), "{error}");
        let error = parse("domains: [{name: a, ttl_remaining: 40000000}]", true).unwrap_err();
        assert!(error.starts_with("domains[0] (a): ttl_remaining: "), "{error}");
        let error = parse("lrps: []", true).unwrap_err();
        assert!(error.contains("unknown field `lrps`"), "{error}");
    }

    #[test]
    fn an_invalid_lrp_is_refused_as_the_bbs_would() {
        let error = parse("desired_lrps: [{process_guid: a, instances: -1, action: {run_action: {path: /x}}}]", true)
            .unwrap_err();
        assert!(error.starts_with("desired_lrps[0] (a): ") && error.contains("instances"), "{error}");
    }

    #[test]
    fn the_modification_tag_is_not_written() {
        let lrp = pb::DesiredLrp {
            process_guid: "a".into(),
            modification_tag: Some(pb::ModificationTag { epoch: "e".into(), index: 3 }),
            ..Default::default()
        };
        let json = to_json(&State { desired_lrps: vec![lrp], ..State::default() });
        assert!(json["desired_lrps"][0].get("modification_tag").is_none(), "{json}");
    }
}
