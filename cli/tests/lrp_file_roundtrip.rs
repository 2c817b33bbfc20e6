//! Issue 13's acceptance line for desired-LRP files: a desired LRP written with every action
//! kind, every check kind, every field (volumes included since issue 19), in a YAML file
//! (`fixtures/every_field_lrp.yaml`), desired with `diego desire-lrp --file` on an in-process
//! BBS and read back with `diego lrp GUID --json`, is the file unchanged. The one field the BBS
//! sets, and so left out of the comparison, is [`SET_BY_THE_BBS`].

#[path = "support/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};

use harness::Bbs;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The file: every field of a `DesiredLRP` a client may set.
const FIXTURE: &str = include_str!("fixtures/every_field_lrp.yaml");
/// The path `diego desire-lrp --file` reads it from.
const FIXTURE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/every_field_lrp.yaml");
/// Fields of the printed desired LRP the BBS sets itself: not in the file, not compared.
const SET_BY_THE_BBS: &[&str] = &["modification_tag"];
/// Fields the fixture does not set (`Message.field`): the modification tag is the BBS's.
const NOT_IN_THE_FILE: &[&str] = &["DesiredLRP.modification_tag"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_lrp_with_every_field_round_trips_through_desire_lrp_and_lrp_json() {
    let file: serde_json::Value = serde_norway::from_str(FIXTURE).unwrap();
    let guid = file["process_guid"].as_str().unwrap().to_owned();
    let bbs = Bbs::start().await;
    let out = bbs.diego(&["desire-lrp", "--file", FIXTURE_PATH]).await;
    assert!(out.ok().contains(&format!("desired lrp {guid}: 2 instance(s)")), "{out:?}");

    let mut shown = bbs.diego(&["lrp", &guid, "--json"]).await.json()["desired_lrp"].clone();
    let fields = shown.as_object_mut().unwrap();
    for field in SET_BY_THE_BBS {
        assert!(fields.remove(*field).is_some(), "the bbs sets `{field}`, and `lrp --json` prints it");
    }
    let mut differences = Vec::new();
    differ("", &shown, &file, &mut differences);
    assert!(differences.is_empty(), "`lrp --json` differs from the file it was desired from at {differences:?}");
    assert_eq!(shown, file);

    // The same, compared as messages: what the file says, what the BBS stored, and what it printed.
    let from_file = cli::lrp_file::parse(FIXTURE, true).unwrap();
    let printed = cli::lrp_file::parse(&shown.to_string(), false).unwrap();
    assert_eq!(printed, from_file);
    let stored = bbs.desired(&guid).await;
    assert!(stored.modification_tag.is_some());
    assert_eq!(proto::pb::models::v1::DesiredLrp { modification_tag: None, ..stored }, from_file);
    bbs.stop().await;
}

#[test]
fn the_fixture_sets_every_field_of_every_message_it_holds() {
    let types = message_types();
    let file: serde_json::Value = serde_norway::from_str(FIXTURE).unwrap();
    let mut seen = BTreeSet::new();
    walk(&types, ".diego.models.v1.DesiredLRP", &file, &mut seen);
    let mut missing = Vec::new();
    let mut reachable = BTreeSet::new();
    collect_reachable(&types, ".diego.models.v1.DesiredLRP", &mut reachable);
    for type_name in &reachable {
        for field in &types[type_name].field {
            let name = format!("{}.{}", short(type_name), field.name());
            if !seen.contains(&name) && !NOT_IN_THE_FILE.contains(&name.as_str()) {
                missing.push(name);
            }
        }
    }
    assert!(missing.is_empty(), "the fixture does not set {missing:?}");
    // Every action kind and both check kinds are among them (the Action message's fields are
    // its oneof's variants).
    for kind in ["run", "download", "upload", "timeout", "emit_progress", "try", "parallel", "serial", "codependent"] {
        assert!(seen.contains(&format!("Action.{kind}_action")), "no {kind}_action");
    }
    assert!(seen.contains("Check.tcp_check") && seen.contains("Check.http_check"));
}

/// The JSON paths where `printed` and `file` differ.
fn differ(path: &str, printed: &serde_json::Value, file: &serde_json::Value, into: &mut Vec<String>) {
    use serde_json::Value;
    match (printed, file) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
                let (left, right) = (a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null));
                differ(&format!("{path}.{key}"), left, right, into);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (left, right)) in a.iter().zip(b).enumerate() {
                differ(&format!("{path}[{i}]"), left, right, into);
            }
        }
        _ if printed != file => into.push(format!("{path}: printed {printed}, file {file}")),
        _ => {}
    }
}

/// Every message of `diego.models.v1`, nested ones included, by full name (`.diego.models.v1.X`).
fn message_types() -> BTreeMap<String, DescriptorProto> {
    fn add(prefix: &str, message: &DescriptorProto, into: &mut BTreeMap<String, DescriptorProto>) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            add(&name, nested, into);
        }
        into.insert(name, message.clone());
    }
    let set = FileDescriptorSet::decode(proto::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut types = BTreeMap::new();
    for file in set.file.iter().filter(|f| f.package() == "diego.models.v1") {
        for message in &file.message_type {
            add(".diego.models.v1", message, &mut types);
        }
    }
    types
}

fn short(type_name: &str) -> &str {
    type_name.rsplit('.').next().unwrap_or(type_name)
}

fn is_map_entry(message: &DescriptorProto) -> bool {
    message.options.as_ref().is_some_and(|o| o.map_entry())
}

/// The message type a field's values are, looking through map entries to their value type.
fn value_type<'a>(
    types: &'a BTreeMap<String, DescriptorProto>,
    field: &'a prost_types::FieldDescriptorProto,
) -> Option<&'a str> {
    if field.r#type() != Type::Message {
        return None;
    }
    let target = &types[field.type_name()];
    if !is_map_entry(target) {
        return Some(field.type_name());
    }
    let value = target.field.iter().find(|f| f.name() == "value")?;
    (value.r#type() == Type::Message).then(|| value.type_name())
}

/// Records `Message.field` for every field set in `value` (a `type_name` in its JSON form),
/// through nested messages, lists and maps.
fn walk(
    types: &BTreeMap<String, DescriptorProto>,
    type_name: &str,
    value: &serde_json::Value,
    seen: &mut BTreeSet<String>,
) {
    let message = &types[type_name];
    let Some(object) = value.as_object() else { panic!("a {type_name} is not an object: {value}") };
    for (key, inner) in object {
        let Some(field) = message.field.iter().find(|f| f.name() == key) else {
            panic!("`{key}` is not a field of {type_name}");
        };
        seen.insert(format!("{}.{key}", short(type_name)));
        let Some(target) = value_type(types, field) else { continue };
        let map = is_map_entry(&types[field.type_name()]);
        match (map, field.label() == Label::Repeated) {
            (true, _) => inner.as_object().unwrap().values().for_each(|v| walk(types, target, v, seen)),
            (false, true) => inner.as_array().unwrap().iter().for_each(|v| walk(types, target, v, seen)),
            (false, false) => walk(types, target, inner, seen),
        }
    }
}

/// The message types reachable from `type_name`, except through the fields not in the file.
fn collect_reachable(types: &BTreeMap<String, DescriptorProto>, type_name: &str, into: &mut BTreeSet<String>) {
    if !into.insert(type_name.to_owned()) {
        return;
    }
    for field in &types[type_name].field {
        if NOT_IN_THE_FILE.contains(&format!("{}.{}", short(type_name), field.name()).as_str()) {
            continue;
        }
        if let Some(target) = value_type(types, field) {
            collect_reachable(types, target, into);
        }
    }
}
