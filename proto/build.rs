//! Generates the prost messages and tonic services from `protos/`, and the wire schema that
//! [`bounds`](src/bounds.rs) walks to bound every request before it is decoded. protoc comes from
//! the `protoc-bin-vendored` crate unless `$PROTOC` names another one, so a fresh machine needs
//! no system protoc. With proto's `serde` feature, the `diego.models.v1` messages also derive
//! serde in their proto field names (see [`serde_attributes`] and `src/pb/json.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use prost::Message as _;

/// The limits tables, resolved here into the schema so the codec looks nothing up per field.
#[allow(dead_code, clippy::all)]
mod table {
    include!("src/limits/table.rs");
}
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // `prost::Name` on every message: the codec finds a request's schema by its full name.
    config.enable_type_names();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("diego_descriptor.bin");
    let files = [
        "protos/diego/models.proto",
        "protos/diego/bbs.proto",
        "protos/diego/locket.proto",
        "protos/diego/auctioneer.proto",
        "protos/diego/rep.proto",
        "protos/diego/exec.proto",
        "protos/diego/logs.proto",
    ];
    // serde on the `diego.models.v1` messages (behind proto's `serde` feature): a first protoc
    // run gives the descriptors the per-field attributes are derived from.
    let includes = [PathBuf::from("protos"), protoc_bin_vendored::include_path()?];
    let models = config.load_fds(&files, &includes)?;
    std::fs::write(out.join("serde_enums.rs"), serde_attributes(&mut config, &models)?)?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        // Every client and server decodes through the bounding codec (src/codec.rs).
        .codec_path("crate::codec::BoundedCodec")
        .compile_with_config(config, &files.map(PathBuf::from), &includes)?;
    let set = FileDescriptorSet::decode(std::fs::read(&descriptor_path)?.as_slice())?;
    std::fs::write(out.join("wire_schema.rs"), wire_schema(&set)?)?;
    println!("cargo:rerun-if-changed=protos");
    println!("cargo:rerun-if-changed=src/limits/table.rs");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}

/// One field as the generated schema writes it.
struct Field {
    number: i32,
    name: String,
    kind: Kind,
    repeated: bool,
}

/// A field's encoding, before message names are resolved to indices.
enum Kind {
    String,
    Bytes,
    Message(String),
    Other(&'static str),
}

/// One message as collected.
struct Collected {
    fields: Vec<Field>,
    map_entry: bool,
}

/// The short name of a full message name.
fn short(full_name: &str) -> &str {
    full_name.rsplit('.').next().unwrap_or(full_name)
}

/// Collects `message` and its nested messages under `prefix` (`diego.models.v1`).
fn collect(prefix: &str, message: &DescriptorProto, into: &mut BTreeMap<String, Collected>) -> Result<(), String> {
    let name = format!("{prefix}.{}", message.name());
    for nested in &message.nested_type {
        collect(&name, nested, into)?;
    }
    let mut fields = Vec::new();
    for field in &message.field {
        let kind = match field.r#type() {
            Type::String => Kind::String,
            Type::Bytes => Kind::Bytes,
            Type::Message => Kind::Message(field.type_name().trim_start_matches('.').to_owned()),
            Type::Group => return Err(format!("{name}.{}: groups are not supported", field.name())),
            Type::Double | Type::Fixed64 | Type::Sfixed64 => Kind::Other("Kind::Fixed64"),
            Type::Float | Type::Fixed32 | Type::Sfixed32 => Kind::Other("Kind::Fixed32"),
            Type::Int32 | Type::Int64 => Kind::Other("Kind::Int"),
            Type::Uint32 | Type::Uint64 | Type::Bool | Type::Enum => Kind::Other("Kind::Uint"),
            Type::Sint32 | Type::Sint64 => Kind::Other("Kind::Sint"),
        };
        fields.push(Field {
            number: field.number(),
            name: field.name().to_owned(),
            kind,
            repeated: field.label() == Label::Repeated,
        });
    }
    fields.sort_by_key(|f| f.number);
    if fields.len() > 64 {
        return Err(format!("{name} has more than 64 fields; raise the walker's counter array"));
    }
    let map_entry = message.options.as_ref().and_then(|o| o.map_entry).unwrap_or(false);
    into.insert(name, Collected { fields, map_entry });
    Ok(())
}

fn text(text: table::Text) -> &'static str {
    match text {
        table::Text::Printable => "Text::Printable",
        table::Text::Raw => "Text::Raw",
        table::Text::EnvName => "Text::EnvName",
    }
}

/// Rust source of `MESSAGES` (sorted by full name, each field with its limits resolved from
/// the tables) and `REQUESTS` (every RPC's input type).
fn wire_schema(set: &FileDescriptorSet) -> Result<String, Box<dyn std::error::Error>> {
    let mut messages = BTreeMap::new();
    let mut requests = std::collections::BTreeSet::new();
    for file in &set.file {
        for message in &file.message_type {
            collect(file.package(), message, &mut messages)?;
        }
        for service in &file.service {
            for method in &service.method {
                requests.insert(method.input_type().trim_start_matches('.').to_owned());
            }
        }
    }
    let index: BTreeMap<&str, usize> = messages.keys().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
    // A map's entries take the rules of the map field itself: find each entry type's owner.
    let mut owners: BTreeMap<&str, (String, String)> = BTreeMap::new();
    for (name, message) in &messages {
        for f in &message.fields {
            if let Kind::Message(target) = &f.kind
                && messages.get(target).is_some_and(|t| t.map_entry)
            {
                owners.insert(target.as_str(), (short(name).to_owned(), f.name.clone()));
            }
        }
    }
    let mut src = String::from("// @generated by proto/build.rs from the descriptor set and src/limits/table.rs.\n\n");
    src.push_str("/// Every message of the diego packages, sorted by full name.\n");
    src.push_str("pub(crate) static MESSAGES: &[Schema] = &[\n");
    for (name, message) in &messages {
        writeln!(src, "    Schema {{ name: {name:?}, action: {}, fields: &[", name == "diego.models.v1.Action")?;
        for f in &message.fields {
            let (rule_message, rule_field) = match owners.get(name.as_str()) {
                Some((owner, field)) if f.name == "value" => (owner.as_str(), field.as_str()),
                _ => (short(name), f.name.as_str()),
            };
            let (kind, max_bytes, chars) = match &f.kind {
                Kind::String => {
                    let (max, chars) = table::string_limit(rule_message, rule_field);
                    ("Kind::String".to_owned(), max, text(chars))
                }
                Kind::Bytes => ("Kind::Bytes".to_owned(), table::bytes_limit(rule_message, rule_field), "Text::Raw"),
                Kind::Message(target) => {
                    let at = index.get(target.as_str()).ok_or_else(|| format!("{name}: unknown type {target}"))?;
                    (format!("Kind::Message({at})"), 0, "Text::Raw")
                }
                Kind::Other(kind) => ((*kind).to_owned(), 0, "Text::Raw"),
            };
            let max_count = if f.repeated { table::count_limit(rule_message, rule_field) } else { 0 };
            let range = match table::range_limit(rule_message, rule_field) {
                Some((min, max)) => format!("Some(({min}, {max}))"),
                None => "None".to_owned(),
            };
            writeln!(
                src,
                "        FieldSchema {{ number: {}, name: {:?}, kind: {kind}, repeated: {}, max_bytes: {max_bytes}, \
                 text: {chars}, max_count: {max_count}, range: {range} }},",
                f.number, f.name, f.repeated
            )?;
        }
        src.push_str("    ] },\n");
    }
    src.push_str("];\n\n/// The input type of every RPC, sorted.\npub(crate) static REQUESTS: &[&str] = &[\n");
    for name in &requests {
        writeln!(src, "    {name:?},")?;
    }
    src.push_str("];\n");
    Ok(src)
}

/// The package whose messages derive serde (under proto's `serde` feature).
const SERDE_PACKAGE: &str = "diego.models.v1";

/// The start of every serde attribute: they apply only with proto's `serde` feature.
const WITH_SERDE: &str = "#[cfg_attr(feature = \"serde\", ";

/// Puts serde derives on every message of [`SERDE_PACKAGE`] and returns the source of the enum
/// name modules their enum fields serialize through. The mapping: field names as in the
/// `.proto` (explicit renames), default values left out when serializing and filled in when
/// absent, unknown fields refused; enum fields by value name (a number is accepted too); a
/// message that is only a oneof (`Action`) is that oneof, `{"run_action": {...}}`; `bytes`
/// maps (the route documents) as the JSON they hold. A message whose oneof sits beside other
/// fields (the event envelopes) has no serde form: no file or output needs one. A shape with no
/// mapping yet (a repeated enum, a plain `bytes` field) fails the build rather than guess.
fn serde_attributes(
    config: &mut tonic_prost_build::Config,
    set: &FileDescriptorSet,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut enums = String::from("// @generated by proto/build.rs: one module per enum of the serde messages.\n\n");
    for file in set.file.iter().filter(|f| f.package() == SERDE_PACKAGE) {
        for e in &file.enum_type {
            enum_module(&format!("{SERDE_PACKAGE}.{}", e.name()), e, &mut enums)?;
        }
        for message in &file.message_type {
            for e in &message.enum_type {
                enum_module(&format!("{SERDE_PACKAGE}.{}.{}", message.name(), e.name()), e, &mut enums)?;
            }
            message_serde(config, &format!(".{SERDE_PACKAGE}.{}", message.name()), message)?;
        }
    }
    Ok(enums)
}

/// The serde attributes of one top-level message (full name `path`) and of its fields.
fn message_serde(
    config: &mut tonic_prost_build::Config,
    path: &str,
    message: &DescriptorProto,
) -> Result<(), Box<dyn std::error::Error>> {
    if message.nested_type.iter().any(|n| !n.options.as_ref().is_some_and(|o| o.map_entry())) {
        return Err(format!("{path}: nested messages have no serde mapping yet").into());
    }
    let in_oneof = |f: &prost_types::FieldDescriptorProto| f.oneof_index.is_some() && !f.proto3_optional();
    if !message.field.is_empty() && message.field.iter().all(in_oneof) {
        let [oneof] = message.oneof_decl.as_slice() else {
            return Err(format!("{path}: only a single oneof can be a message's serde form").into());
        };
        let oneof = format!("{path}.{}", oneof.name());
        config.message_attribute(
            path,
            format!("{WITH_SERDE}derive(::serde::Serialize, ::serde::Deserialize), serde(transparent))]"),
        );
        config.enum_attribute(&oneof, format!("{WITH_SERDE}derive(::serde::Serialize, ::serde::Deserialize))]"));
        for f in &message.field {
            config.field_attribute(
                format!("{oneof}.{}", f.name()),
                format!("{WITH_SERDE}serde(rename = {:?}))]", f.name()),
            );
        }
        return Ok(());
    }
    if message.field.iter().any(in_oneof) {
        return Ok(());
    }
    config.message_attribute(
        path,
        format!("{WITH_SERDE}derive(::serde::Serialize, ::serde::Deserialize), serde(default, deny_unknown_fields))]"),
    );
    for f in &message.field {
        config.field_attribute(format!("{path}.{}", f.name()), field_serde(path, message, f)?);
    }
    Ok(())
}

/// The serde attribute of one field (not in a oneof) of the message `path`.
fn field_serde(
    path: &str,
    message: &DescriptorProto,
    f: &prost_types::FieldDescriptorProto,
) -> Result<String, Box<dyn std::error::Error>> {
    let unsupported = |what: &str| Err(format!("{path}.{}: {what} have no serde mapping yet", f.name()).into());
    // A map field's type is a nested entry message; its `value` field says what the map holds.
    let map_value = message
        .nested_type
        .iter()
        .find(|entry| f.type_name() == format!("{path}.{}", entry.name()))
        .and_then(|entry| entry.field.iter().find(|v| v.name() == "value"))
        .map(|v| v.r#type());
    let with = match (f.r#type(), map_value) {
        (Type::Enum, _) if f.label() == Label::Repeated || f.proto3_optional() => {
            return unsupported("repeated or optional enums");
        }
        (Type::Enum, _) => format!(", with = \"crate::pb::json::enums::{}\"", enum_module_name(f.type_name())),
        (Type::Bytes, _) => return unsupported("bytes fields"),
        (Type::Message, Some(Type::Bytes)) => ", with = \"crate::pb::json::json_documents\"".to_owned(),
        (Type::Message, Some(Type::Enum)) => return unsupported("maps of enums"),
        _ => String::new(),
    };
    Ok(format!(
        "{WITH_SERDE}serde(rename = {:?}, skip_serializing_if = \"crate::pb::json::is_default\"{with}))]",
        f.name()
    ))
}

/// The module `crate::pb::json::enums::NAME` of an enum's full name (`.diego.models.v1.X`).
fn enum_module_name(full_name: &str) -> String {
    full_name.trim_start_matches('.').replace('.', "_").to_lowercase()
}

/// Writes the serde `with` module of one enum: its value names by number.
fn enum_module(
    full_name: &str,
    e: &prost_types::EnumDescriptorProto,
    src: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    writeln!(src, "/// `{full_name}` by value name.\npub mod {} {{", enum_module_name(full_name))?;
    src.push_str("    const NAMES: &[(i32, &str)] = &[");
    for value in &e.value {
        write!(src, "({}, {:?}), ", value.number(), value.name())?;
    }
    src.push_str("];\n");
    src.push_str(
        "    pub fn serialize<S: ::serde::Serializer>(value: &i32, serializer: S) -> Result<S::Ok, S::Error> {\n        \
         super::super::serialize_enum(NAMES, *value, serializer)\n    }\n",
    );
    src.push_str(
        "    pub fn deserialize<'de, D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {\n        \
         super::super::deserialize_enum(NAMES, deserializer)\n    }\n}\n\n",
    );
    Ok(())
}
