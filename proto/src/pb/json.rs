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

#[cfg(test)]
mod tests {
    use crate::pb::models::v1 as pb;

    #[test]
    fn enums_are_value_names_and_numbers_read_too() {
        let tag =
            pb::MetricTagValue { r#static: String::new(), dynamic: pb::metric_tag_value::DynamicValue::Index as i32 };
        assert_eq!(serde_json::to_value(&tag).unwrap(), serde_json::json!({"dynamic": "INDEX"}));
        let read: pb::MetricTagValue = serde_json::from_str(r#"{"dynamic": 2}"#).unwrap();
        assert_eq!(read.dynamic, pb::metric_tag_value::DynamicValue::InstanceGuid as i32);
        let unknown = pb::MetricTagValue { r#static: String::new(), dynamic: 7 };
        assert_eq!(serde_json::to_value(&unknown).unwrap(), serde_json::json!({"dynamic": 7}));
        let error = serde_json::from_str::<pb::MetricTagValue>(r#"{"dynamic": "INDEXX"}"#).unwrap_err();
        assert!(error.to_string().contains("INDEX, INSTANCE_GUID"), "{error}");
    }

    #[test]
    fn routes_are_the_json_they_hold_and_defaults_are_left_out() {
        let lrp: pb::DesiredLrp =
            serde_json::from_str(r#"{"process_guid": "a", "routes": {"r": {"port": 8080}}, "instances": 0}"#).unwrap();
        assert_eq!(lrp.routes["r"], br#"{"port":8080}"#.to_vec());
        let printed = serde_json::to_value(&lrp).unwrap();
        assert_eq!(printed, serde_json::json!({"process_guid": "a", "routes": {"r": {"port": 8080}}}));
        let raw = pb::DesiredLrp { routes: [("r".to_owned(), b"not json".to_vec())].into(), ..Default::default() };
        assert_eq!(serde_json::to_value(&raw).unwrap(), serde_json::json!({"routes": {"r": "not json"}}));
    }

    #[test]
    fn an_action_is_its_oneof_key() {
        let action: pb::Action =
            serde_json::from_str(r#"{"try_action": {"action": {"run_action": {"path": "/x"}}}}"#).unwrap();
        let Some(pb::action::Action::TryAction(inner)) = &action.action else { panic!("{action:?}") };
        assert!(inner.action.is_some());
        assert_eq!(
            serde_json::to_value(&action).unwrap(),
            serde_json::json!({"try_action": {"action": {"run_action": {"path": "/x"}}}})
        );
    }
}
