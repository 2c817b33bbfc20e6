//! Decoding `desired_lrps` rows into domain values, and the route map's stored form. Decoders
//! read any driver's row ([`Columns`]) by position ([`COLUMN_NAMES`]) and return the reason a
//! row is unusable as a `String`; the caller turns it into [`crate::Error::Corrupt`] or skips
//! the row.

use std::collections::BTreeMap;

use proto::models::{
    DesiredLrp, DomainName, MetricTagValue, ModificationTag, ProcessGuid, RunInfo, SchedulingInfo, UpdateStrategy,
};
use proto::pb::models::v1 as pb;

use crate::Keyring;
use crate::codec::{decode_json, encode_json, open_proto};
use crate::store::reads::Columns;

/// One route value as stored: the opaque bytes as text when they are UTF-8 (they are JSON in
/// practice, so this keeps blobs compact and readable), else as a byte array. Lossless both ways
/// ([`decode_routes`] reads both forms).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum StoredRoute {
    /// UTF-8 bytes.
    Text(String),
    /// Anything else.
    Bytes(Vec<u8>),
}

/// Encodes a route map into its stored blob.
pub(super) fn encode_routes(routes: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let stored: BTreeMap<&str, StoredRoute> = routes
        .iter()
        .map(|(provider, value)| {
            let value = match std::str::from_utf8(value) {
                Ok(text) => StoredRoute::Text(text.to_owned()),
                Err(_) => StoredRoute::Bytes(value.clone()),
            };
            (provider.as_str(), value)
        })
        .collect();
    encode_json(&stored)
}

/// Decodes a stored route map into any map of provider to bytes (the domain's `BTreeMap`, the
/// wire's `HashMap`): one pass over the JSON, each value read straight into its bytes.
pub(super) fn decode_routes<M: Default + Extend<(String, Vec<u8>)>>(blob: &[u8]) -> Result<M, String> {
    decode_json::<StoredRoutes<M>>(blob).map(|routes| routes.0).map_err(|e| format!("routes: {e}"))
}

/// The stored route map, read by [`decode_routes`].
struct StoredRoutes<M>(M);

impl<'de, M: Default + Extend<(String, Vec<u8>)>> serde::Deserialize<'de> for StoredRoutes<M> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<M>(std::marker::PhantomData<M>);
        impl<'de, M: Default + Extend<(String, Vec<u8>)>> serde::de::Visitor<'de> for Entries<M> {
            type Value = StoredRoutes<M>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of route providers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
                let mut routes = M::default();
                while let Some((provider, RouteBytes(bytes))) = entries.next_entry::<String, RouteBytes>()? {
                    routes.extend(std::iter::once((provider, bytes)));
                }
                Ok(StoredRoutes(routes))
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// One stored route value as its bytes, in either form [`StoredRoute`] writes. A visitor of its
/// own: `#[serde(untagged)]` would buffer every value before trying each form, which made the
/// route maps the largest cost of the streamed scheduling infos (about a sixth of the BBS's CPU
/// under the 250,000-LRP benchmark's load, `docs/performance.md`).
struct RouteBytes(Vec<u8>);

impl<'de> serde::Deserialize<'de> for RouteBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Value;
        impl<'de> serde::de::Visitor<'de> for Value {
            type Value = RouteBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a route value: a string or an array of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RouteBytes, E> {
                Ok(RouteBytes(text.as_bytes().to_vec()))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<RouteBytes, E> {
                Ok(RouteBytes(text.into_bytes()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<RouteBytes, A::Error> {
                let mut bytes = Vec::with_capacity(items.size_hint().unwrap_or(0));
                while let Some(byte) = items.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(RouteBytes(bytes))
            }
        }
        deserializer.deserialize_any(Value)
    }
}

/// The columns the decoders read, by position: `SCHEDULING_COLUMNS` in its order, then the
/// `metric_tags` and `run_info` that the routing and whole-record views append (a test keeps
/// the list in step with the statements).
pub(super) const COLUMN_NAMES: [&str; 17] = [
    "process_guid",
    "domain",
    "log_guid",
    "annotation",
    "instances",
    "memory_mb",
    "disk_mb",
    "max_pids",
    "rootfs",
    "routes",
    "volume_placement",
    "placement_tags",
    "modification_tag_epoch",
    "modification_tag_index",
    "update_strategy",
    "metric_tags",
    "run_info",
];

/// Text column `i`, borrowed from the row.
pub(super) fn text<R: Columns + ?Sized>(row: &R, i: usize) -> Result<&str, String> {
    row.text(i).map_err(|e| format!("column {}: {e}", COLUMN_NAMES[i]))
}

/// Blob column `i`, borrowed from the row.
pub(super) fn blob<R: Columns + ?Sized>(row: &R, i: usize) -> Result<&[u8], String> {
    row.blob(i).map_err(|e| format!("column {}: {e}", COLUMN_NAMES[i]))
}

/// Integer column `i`, which must fit `T`.
pub(super) fn int<T: TryFrom<i64>, R: Columns + ?Sized>(row: &R, i: usize) -> Result<T, String> {
    let value = row.int(i).map_err(|e| format!("column {}: {e}", COLUMN_NAMES[i]))?;
    T::try_from(value).map_err(|_| format!("column {}: {value} is out of range", COLUMN_NAMES[i]))
}

/// The scheduling columns of a row, from any driver's row.
pub(super) fn decode_scheduling<R: Columns + ?Sized>(row: &R) -> Result<SchedulingInfo, String> {
    let update_strategy = int::<i32, _>(row, 14)?;
    Ok(SchedulingInfo {
        process_guid: ProcessGuid::parse(text(row, 0)?).map_err(|e| e.to_string())?,
        domain: DomainName::parse(text(row, 1)?).map_err(|e| e.to_string())?,
        log_guid: text(row, 2)?.to_owned(),
        annotation: text(row, 3)?.to_owned(),
        instances: int(row, 4)?,
        memory_mb: int(row, 5)?,
        disk_mb: int(row, 6)?,
        max_pids: int(row, 7)?,
        rootfs: text(row, 8)?.to_owned(),
        routes: decode_routes(blob(row, 9)?)?,
        modification_tag: ModificationTag { epoch: text(row, 12)?.to_owned(), index: int(row, 13)? },
        volume_placement: decode_json(blob(row, 10)?).map_err(|e| format!("volume_placement: {e}"))?,
        placement_tags: serde_json::from_str(text(row, 11)?).map_err(|e| format!("placement_tags: {e}"))?,
        update_strategy: UpdateStrategy::from_i32(update_strategy)
            .ok_or_else(|| format!("unknown update_strategy {update_strategy}"))?,
    })
}

/// The `metric_tags` column of a row.
fn decode_metric_tags<R: Columns + ?Sized>(row: &R) -> Result<BTreeMap<String, MetricTagValue>, String> {
    decode_json(blob(row, 15)?).map_err(|e| format!("metric_tags: {e}"))
}

/// The `run_info` column of a row, decrypted with `keys` and validated.
fn decode_run_info<R: Columns + ?Sized>(keys: &Keyring, row: &R) -> Result<RunInfo, String> {
    let message: pb::DesiredLrpRunInfo = open_proto(keys, blob(row, 16)?).map_err(|e| format!("run_info: {e}"))?;
    proto::convert::run_info_from_pb(message).map_err(|e| format!("run_info: {e}"))
}

/// The routing view of a row: scheduling columns and metric tags.
pub(super) fn decode_routing<R: Columns + ?Sized>(
    row: &R,
) -> Result<(SchedulingInfo, BTreeMap<String, MetricTagValue>), String> {
    Ok((decode_scheduling(row)?, decode_metric_tags(row)?))
}

/// A whole desired LRP, its run info decrypted with `keys`.
pub(super) fn decode_desired<R: Columns + ?Sized>(keys: &Keyring, row: &R) -> Result<DesiredLrp, String> {
    Ok(DesiredLrp {
        scheduling: decode_scheduling(row)?,
        run_info: decode_run_info(keys, row)?,
        metric_tags: decode_metric_tags(row)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_whether_or_not_they_are_utf8() {
        let routes: BTreeMap<String, Vec<u8>> = [
            ("cf-router".to_owned(), br#"[{"hostnames":["a.example.com"],"port":8080}]"#.to_vec()),
            ("binary".to_owned(), vec![0xff, 0x00, 0x80]),
            ("empty".to_owned(), Vec::new()),
        ]
        .into();
        let blob = encode_routes(&routes);
        assert_eq!(decode_routes::<BTreeMap<_, _>>(&blob).unwrap(), routes);
        for bad in [&b"nonsense"[..], br#"{"cf-router": 7}"#, br#"{"cf-router": [256]}"#, br#"["cf-router"]"#] {
            let blob = [&crate::codec::encode_json(&())[..2], bad].concat();
            assert!(decode_routes::<BTreeMap<_, _>>(&blob).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(decode_routes::<BTreeMap<_, _>>(b"nonsense").is_err());
    }
}
