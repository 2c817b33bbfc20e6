//! Decoding `desired_lrps` rows into domain values, and the route map's stored form. Decoders
//! return the reason a row is unusable as a `String`; the caller turns it into
//! [`crate::Error::Corrupt`] or skips the row.

use std::collections::BTreeMap;

use proto::models::{
    DesiredLrp, DomainName, MetricTagValue, ModificationTag, ProcessGuid, RunInfo, SchedulingInfo, UpdateStrategy,
};
use proto::pb::models::v1 as pb;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Keyring;
use crate::codec::{decode_json, encode_json, open_proto};

/// One route value as stored: the opaque bytes as text when they are UTF-8 (they are JSON in
/// practice, so this keeps blobs compact and readable), else as a byte array. Lossless both ways.
#[derive(serde::Serialize, serde::Deserialize)]
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

/// Decodes a stored route map.
fn decode_routes(blob: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let stored: BTreeMap<String, StoredRoute> = decode_json(blob).map_err(|e| format!("routes: {e}"))?;
    Ok(stored
        .into_iter()
        .map(|(provider, value)| {
            let bytes = match value {
                StoredRoute::Text(text) => text.into_bytes(),
                StoredRoute::Bytes(bytes) => bytes,
            };
            (provider, bytes)
        })
        .collect())
}

/// A text column.
fn text(row: &AnyRow, name: &str) -> Result<String, String> {
    row.try_get::<String, _>(name).map_err(|e| format!("column {name}: {e}"))
}

/// A blob column.
fn blob(row: &AnyRow, name: &str) -> Result<Vec<u8>, String> {
    row.try_get::<Vec<u8>, _>(name).map_err(|e| format!("column {name}: {e}"))
}

/// An integer column that must fit `T`.
fn int<T: TryFrom<i64>>(row: &AnyRow, name: &str) -> Result<T, String> {
    let value = row.try_get::<i64, _>(name).map_err(|e| format!("column {name}: {e}"))?;
    T::try_from(value).map_err(|_| format!("column {name}: {value} is out of range"))
}

/// The scheduling columns of a row.
pub(super) fn decode_scheduling(row: &AnyRow) -> Result<SchedulingInfo, String> {
    let update_strategy = int::<i32>(row, "update_strategy")?;
    Ok(SchedulingInfo {
        process_guid: ProcessGuid::parse(text(row, "process_guid")?).map_err(|e| e.to_string())?,
        domain: DomainName::parse(text(row, "domain")?).map_err(|e| e.to_string())?,
        log_guid: text(row, "log_guid")?,
        annotation: text(row, "annotation")?,
        instances: int(row, "instances")?,
        memory_mb: int(row, "memory_mb")?,
        disk_mb: int(row, "disk_mb")?,
        max_pids: int(row, "max_pids")?,
        rootfs: text(row, "rootfs")?,
        routes: decode_routes(&blob(row, "routes")?)?,
        modification_tag: ModificationTag {
            epoch: text(row, "modification_tag_epoch")?,
            index: int(row, "modification_tag_index")?,
        },
        volume_placement: decode_json(&blob(row, "volume_placement")?).map_err(|e| format!("volume_placement: {e}"))?,
        placement_tags: serde_json::from_str(&text(row, "placement_tags")?)
            .map_err(|e| format!("placement_tags: {e}"))?,
        update_strategy: UpdateStrategy::from_i32(update_strategy)
            .ok_or_else(|| format!("unknown update_strategy {update_strategy}"))?,
    })
}

/// The `metric_tags` column of a row.
fn decode_metric_tags(row: &AnyRow) -> Result<BTreeMap<String, MetricTagValue>, String> {
    decode_json(&blob(row, "metric_tags")?).map_err(|e| format!("metric_tags: {e}"))
}

/// The `run_info` column of a row, decrypted with `keys` and validated.
fn decode_run_info(keys: &Keyring, row: &AnyRow) -> Result<RunInfo, String> {
    let message: pb::DesiredLrpRunInfo =
        open_proto(keys, &blob(row, "run_info")?).map_err(|e| format!("run_info: {e}"))?;
    proto::convert::run_info_from_pb(message).map_err(|e| format!("run_info: {e}"))
}

/// The routing view of a row: scheduling columns and metric tags.
pub(super) fn decode_routing(row: &AnyRow) -> Result<(SchedulingInfo, BTreeMap<String, MetricTagValue>), String> {
    Ok((decode_scheduling(row)?, decode_metric_tags(row)?))
}

/// A whole desired LRP, its run info decrypted with `keys`.
pub(super) fn decode_desired(keys: &Keyring, row: &AnyRow) -> Result<DesiredLrp, String> {
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
        assert_eq!(decode_routes(&blob).unwrap(), routes);
        assert!(decode_routes(b"nonsense").is_err());
    }
}
