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
use crate::codec::{decode_json, decode_proto, encode_proto, is_proto, open_proto};
use crate::store::reads::Columns;

/// A stored route map since schema version 7: the protobuf map `routes = 1`, whose values its
/// readers copy out as they lie, where the JSON form before it escaped every quote of every
/// route (route values are JSON in practice) and its readers had to unescape them: that was the
/// largest cost of the streamed scheduling infos (docs/performance.md, eleventh round). Blobs
/// written before it stay JSON ([`StoredRoutes`]) and are read as they are.
#[derive(Clone, PartialEq, prost::Message)]
struct RoutesBlob {
    /// Provider name to its opaque route bytes.
    #[prost(btree_map = "string, bytes", tag = "1")]
    routes: BTreeMap<String, Vec<u8>>,
}

/// Encodes a route map into its stored blob.
pub(super) fn encode_routes(routes: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    encode_proto(&RoutesBlob { routes: routes.clone() })
}

/// Decodes a stored route map, in either form ([`RoutesBlob`], or the JSON of blobs written
/// before schema version 7), into any map of provider to bytes (the domain's `BTreeMap`, the
/// wire's `HashMap`).
pub(super) fn decode_routes<M: Default + Extend<(String, Vec<u8>)>>(blob: &[u8]) -> Result<M, String> {
    if is_proto(blob) {
        let mut routes = M::default();
        match blob.get(2..).and_then(route_entries) {
            Some(entries) => routes.extend(entries),
            None => routes.extend(decode_proto::<RoutesBlob>(blob).map_err(|e| format!("routes: {e}"))?.routes),
        }
        return Ok(routes);
    }
    decode_json::<StoredRoutes<M>>(blob).map(|routes| routes.0).map_err(|e| format!("routes: {e}"))
}

/// The entries of a [`RoutesBlob`]'s payload laid out as prost writes them, each key and value
/// copied once (prost's own decoding copies each value twice, through a `Bytes`). `None` for
/// any other layout (a field prost leaves out when empty, an unknown field, a malformed
/// length), which prost then reads or refuses; where this reads a payload, it reads what prost
/// does.
fn route_entries(mut payload: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut entries = Vec::with_capacity(2);
    while !payload.is_empty() {
        let mut entry = length_delimited(&mut payload, 0x0a)?;
        let key = std::str::from_utf8(length_delimited(&mut entry, 0x0a)?).ok()?;
        let value = length_delimited(&mut entry, 0x12)?;
        if !entry.is_empty() {
            return None;
        }
        entries.push((key.to_owned(), value.to_vec()));
    }
    Some(entries)
}

/// The length-delimited field whose one-byte key is `key` at the start of `buf`, which is
/// advanced past it.
fn length_delimited<'b>(buf: &mut &'b [u8], key: u8) -> Option<&'b [u8]> {
    let (&first, mut rest) = buf.split_first()?;
    if first != key {
        return None;
    }
    let mut len = 0usize;
    for shift in (0..35).step_by(7) {
        let (&byte, after) = rest.split_first()?;
        rest = after;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let value = rest.get(..len)?;
            *buf = &rest[len..];
            return Some(value);
        }
    }
    None
}

/// A route map as stored before schema version 7, read by [`decode_routes`]: a JSON object
/// whose values are the route bytes as a string when they were UTF-8, else as an array of bytes.
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

/// One route value of a [`StoredRoutes`] as its bytes, in either form. A visitor of its own:
/// `#[serde(untagged)]` buffers every value before trying each form.
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

    fn routes() -> BTreeMap<String, Vec<u8>> {
        [
            ("cf-router".to_owned(), br#"[{"hostnames":["a.example.com"],"port":8080}]"#.to_vec()),
            ("binary".to_owned(), vec![0xff, 0x00, 0x80]),
            ("empty".to_owned(), Vec::new()),
        ]
        .into()
    }

    #[test]
    fn routes_round_trip_whether_or_not_they_are_utf8() {
        let blob = encode_routes(&routes());
        assert!(is_proto(&blob));
        assert_eq!(decode_routes::<BTreeMap<_, _>>(&blob).unwrap(), routes());
        assert_eq!(
            decode_routes::<std::collections::HashMap<_, _>>(&blob).unwrap().into_iter().collect::<BTreeMap<_, _>>(),
            routes()
        );
        let mut cut = blob.clone();
        cut.truncate(blob.len() - 3);
        assert!(decode_routes::<BTreeMap<_, _>>(&cut).is_err());
    }

    /// The quick reading of a route blob reads what prost reads, or leaves the blob to prost:
    /// for maps of every shape (empty values, which prost leaves out, long values whose lengths
    /// take several bytes) and for every blob cut short or with one byte changed.
    #[test]
    fn route_entries_read_what_prost_reads() {
        let long = "x".repeat(300).into_bytes();
        let maps: Vec<BTreeMap<String, Vec<u8>>> = vec![
            BTreeMap::new(),
            routes(),
            [("cf-router".to_owned(), long.clone()), ("".to_owned(), b"v".to_vec())].into(),
            [("only".to_owned(), long)].into(),
        ];
        let prost_reads = |payload: &[u8]| {
            <RoutesBlob as prost::Message>::decode(payload).ok().map(|b| b.routes.into_iter().collect::<Vec<_>>())
        };
        for map in maps {
            let blob = encode_routes(&map);
            let payload = &blob[2..];
            let whole = map.iter().all(|(k, v)| !k.is_empty() && !v.is_empty());
            match route_entries(payload) {
                Some(entries) => assert_eq!(entries.into_iter().collect::<BTreeMap<_, _>>(), map),
                // Prost leaves empty keys and values out; every other map reads the quick way.
                None => assert!(!whole, "{map:?}"),
            }
            assert_eq!(decode_routes::<BTreeMap<_, _>>(&blob).unwrap(), map);
            let mut variants: Vec<Vec<u8>> = (0..payload.len()).map(|n| payload[..n].to_vec()).collect();
            for at in 0..payload.len() {
                for byte in [0x00, 0x01, 0x0a, 0x12, 0x7f, 0x80, 0xff] {
                    let mut changed = payload.to_vec();
                    changed[at] = byte;
                    variants.push(changed);
                }
            }
            for variant in variants {
                if let Some(entries) = route_entries(&variant) {
                    let ours: BTreeMap<_, _> = entries.into_iter().collect();
                    let theirs = prost_reads(&variant).map(|e| e.into_iter().collect::<BTreeMap<_, _>>());
                    assert_eq!(Some(ours), theirs, "{variant:?}");
                }
            }
        }
    }

    /// Route maps written before schema version 7 are JSON: UTF-8 values as strings, others as
    /// arrays of bytes. They read as they were written.
    #[test]
    fn routes_stored_as_json_before_version_7_still_read() {
        let legacy = serde_json::json!({
            "cf-router": r#"[{"hostnames":["a.example.com"],"port":8080}]"#,
            "binary": [0xff, 0x00, 0x80],
            "empty": "",
        });
        let blob = crate::codec::encode_json(&legacy);
        assert_eq!(decode_routes::<BTreeMap<_, _>>(&blob).unwrap(), routes());
        for bad in [&b"nonsense"[..], br#"{"cf-router": 7}"#, br#"{"cf-router": [256]}"#, br#"["cf-router"]"#] {
            let blob = [&crate::codec::encode_json(&())[..2], bad].concat();
            assert!(decode_routes::<BTreeMap<_, _>>(&blob).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(decode_routes::<BTreeMap<_, _>>(b"nonsense").is_err());
    }
}
