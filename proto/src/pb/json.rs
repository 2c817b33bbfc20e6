//! The serde helpers the generated `diego.models.v1` messages name in their attributes (see
//! `serde_attributes` in proto/build.rs). The mapping is the proto's JSON shape in proto field
//! names: default values are left out, enums are their value names, and a route map's `bytes`
//! values are the JSON documents they hold.

use std::collections::{BTreeMap, HashMap};

use serde::de::{Deserializer, Error as _, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Whether a field holds its proto3 default (and is left out when serializing).
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// One module per enum (`serialize` / `deserialize` of its `i32` field), generated.
pub mod enums {
    include!(concat!(env!("OUT_DIR"), "/serde_enums.rs"));
}

/// An enum field as its value name; a number no value has stays a number.
pub(crate) fn serialize_enum<S: Serializer>(
    names: &[(i32, &str)],
    value: i32,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match names.iter().find(|(number, _)| *number == value) {
        Some((_, name)) => serializer.serialize_str(name),
        None => serializer.serialize_i32(value),
    }
}

/// An enum field from its value name or number.
pub(crate) fn deserialize_enum<'de, D: Deserializer<'de>>(
    names: &[(i32, &str)],
    deserializer: D,
) -> Result<i32, D::Error> {
    struct EnumVisitor<'a>(&'a [(i32, &'a str)]);
    impl Visitor<'_> for EnumVisitor<'_> {
        type Value = i32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let names: Vec<&str> = self.0.iter().map(|(_, name)| *name).collect();
            write!(f, "one of {}", names.join(", "))
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<i32, E> {
            self.0
                .iter()
                .find(|(_, name)| *name == value)
                .map(|(number, _)| *number)
                .ok_or_else(|| E::invalid_value(Unexpected::Str(value), &self))
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<i32, E> {
            i32::try_from(value).map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<i32, E> {
            i32::try_from(value).map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
        }
    }
    deserializer.deserialize_any(EnumVisitor(names))
}

/// A `map<string, bytes>` of JSON documents (the routes, Diego's `json.RawMessage`): each value
/// as the JSON it holds, in key order; a value that is not JSON is shown as a string.
pub mod json_documents {
    use super::*;

    /// Each document as JSON.
    pub fn serialize<S: Serializer>(map: &HashMap<String, Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        let documents: BTreeMap<&str, serde_json::Value> = map
            .iter()
            .map(|(key, bytes)| {
                let value = serde_json::from_slice(bytes)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()));
                (key.as_str(), value)
            })
            .collect();
        documents.serialize(serializer)
    }

    /// Any JSON per key, stored as its compact text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HashMap<String, Vec<u8>>, D::Error> {
        let documents = HashMap::<String, serde_json::Value>::deserialize(deserializer)?;
        documents
            .into_iter()
            .map(|(key, value)| serde_json::to_vec(&value).map(|bytes| (key, bytes)).map_err(D::Error::custom))
            .collect()
    }
}
