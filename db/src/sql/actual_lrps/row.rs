//! One `actual_lrps` row: the column list every statement of the module selects, decoding into an
//! [`ActualLrp`] and binding an [`ActualLrp`] into a statement.
//!
//! Storage conventions:
//! - the instance key is two VARCHAR columns, both empty when there is none;
//! - `net_info` is a codec protobuf blob, empty when there is none;
//! - `internal_routes` (JSON list of host names) and `metric_tags` (JSON object) are codec JSON
//!   blobs, empty when the list or map is empty, so the common UNCLAIMED row stores no JSON;
//! - `routable` is 0 / 1, `presence` Diego's integer, `state` Diego's string.

use std::collections::BTreeMap;

use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellId, DomainName, InstanceGuid, ModificationTag,
    NetInfo, Presence, ProcessGuid,
};
use proto::pb::models::v1 as pb;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Decode, Row, Type};

use crate::codec::{decode_json, decode_proto, encode_json, encode_proto};
use crate::{Error, Result};

/// What errors call these records.
pub(crate) use proto::lifecycle::actual_lrp::refusal::WHAT;

/// The column list of [`COLUMNS`] as a literal, for `concat!`.
macro_rules! columns {
    () => {
        "process_guid, instance_index, presence, domain, state, instance_guid, cell_id, \
         placement_error, crash_count, crash_reason, since, net_info, internal_routes, metric_tags, \
         routable, availability_zone, modification_tag_epoch, modification_tag_index"
    };
}
pub(crate) use columns;

/// Every column, in the order [`decode`] reads and [`bind_row`] binds them.
pub(crate) const COLUMNS: &str = columns!();

/// How many columns [`COLUMNS`] names.
pub(crate) const COLUMN_COUNT: usize = 18;

/// The SET list of an update of every column outside the primary key, bound by
/// [`bind_mutable`].
pub(crate) const SET_MUTABLE: &str = "domain = ?, state = ?, instance_guid = ?, cell_id = ?, \
     placement_error = ?, crash_count = ?, crash_reason = ?, since = ?, net_info = ?, \
     internal_routes = ?, metric_tags = ?, routable = ?, availability_zone = ?, \
     modification_tag_epoch = ?, modification_tag_index = ?";

/// A statement under construction.
pub(crate) type Stmt = Query<'static, Any, AnyArguments>;

pub(crate) use proto::lifecycle::actual_lrp::rows::row_key;

fn corrupt(key: &str, reason: impl std::fmt::Display) -> Error {
    Error::Corrupt { what: WHAT, key: key.to_owned(), reason: reason.to_string() }
}

/// Column `i` of `row`, or [`Error::Corrupt`] naming `key`.
fn column<'r, T>(row: &'r AnyRow, i: usize, key: &str) -> Result<T>
where
    T: Decode<'r, Any> + Type<Any>,
{
    row.try_get::<T, usize>(i).map_err(|e| corrupt(key, format_args!("column {i}: {e}")))
}

/// Decodes a row selected with [`COLUMNS`]; anything that does not parse is
/// [`Error::Corrupt`].
pub(crate) fn decode(row: &AnyRow) -> Result<ActualLrp> {
    let guid: String = column(row, 0, "?")?;
    let raw_index: i64 = column(row, 1, &guid)?;
    let raw_presence: i64 = column(row, 2, &guid)?;
    let key = format!("{guid} index {raw_index} presence {raw_presence}");
    let bad = |reason: &dyn std::fmt::Display| corrupt(&key, reason);

    let process_guid = ProcessGuid::parse(guid.as_str()).map_err(|e| bad(&e))?;
    let index = i32::try_from(raw_index).map_err(|_| bad(&"instance_index is out of range"))?;
    let presence =
        i32::try_from(raw_presence).ok().and_then(Presence::from_i32).ok_or_else(|| bad(&"unknown presence"))?;
    let domain = DomainName::parse(column::<String>(row, 3, &key)?).map_err(|e| bad(&e))?;
    let state_text: String = column(row, 4, &key)?;
    let state = ActualLrpState::parse(&state_text).ok_or_else(|| bad(&format_args!("unknown state {state_text:?}")))?;
    let instance_guid: String = column(row, 5, &key)?;
    let cell_id: String = column(row, 6, &key)?;
    let instance_key = match (instance_guid.is_empty(), cell_id.is_empty()) {
        (true, true) => None,
        (false, false) => Some(ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(instance_guid).map_err(|e| bad(&e))?,
            cell_id: CellId::parse(cell_id).map_err(|e| bad(&e))?,
        }),
        _ => {
            return Err(bad(&"instance_guid and cell_id must be both set or both empty"));
        }
    };
    let placement_error: String = column(row, 7, &key)?;
    let crash_count = i32::try_from(column::<i64>(row, 8, &key)?).map_err(|_| bad(&"crash_count is out of range"))?;
    let crash_reason: String = column(row, 9, &key)?;
    let since: i64 = column(row, 10, &key)?;
    let net_blob: Vec<u8> = column(row, 11, &key)?;
    let net_info = if net_blob.is_empty() {
        None
    } else {
        let wire: pb::ActualLrpNetInfo = decode_proto(&net_blob).map_err(|e| bad(&format_args!("net_info: {e}")))?;
        Some(NetInfo::try_from(wire).map_err(|e| bad(&format_args!("net_info: {e}")))?)
    };
    let routes_blob: Vec<u8> = column(row, 12, &key)?;
    let internal_routes: Vec<String> = if routes_blob.is_empty() {
        Vec::new()
    } else {
        decode_json(&routes_blob).map_err(|e| bad(&format_args!("internal_routes: {e}")))?
    };
    let tags_blob: Vec<u8> = column(row, 13, &key)?;
    let metric_tags: BTreeMap<String, String> = if tags_blob.is_empty() {
        BTreeMap::new()
    } else {
        decode_json(&tags_blob).map_err(|e| bad(&format_args!("metric_tags: {e}")))?
    };
    let routable = column::<i64>(row, 14, &key)? != 0;
    let availability_zone: String = column(row, 15, &key)?;
    let epoch: String = column(row, 16, &key)?;
    let tag_index =
        u32::try_from(column::<i64>(row, 17, &key)?).map_err(|_| bad(&"modification_tag_index is out of range"))?;
    Ok(ActualLrp {
        key: ActualLrpKey { process_guid, index, domain },
        instance_key,
        net_info,
        crash_count,
        crash_reason,
        state,
        placement_error,
        since,
        modification_tag: ModificationTag { epoch, index: tag_index },
        presence,
        internal_routes,
        metric_tags,
        routable,
        availability_zone,
    })
}

/// Binds the columns outside the primary key, in [`SET_MUTABLE`] order.
pub(crate) fn bind_mutable(stmt: Stmt, lrp: &ActualLrp) -> Stmt {
    let (instance_guid, cell_id) = match &lrp.instance_key {
        Some(k) => (k.instance_guid.as_str().to_owned(), k.cell_id.as_str().to_owned()),
        None => (String::new(), String::new()),
    };
    let net_info =
        lrp.net_info.as_ref().map(|net| encode_proto(&pb::ActualLrpNetInfo::from(net.clone()))).unwrap_or_default();
    let internal_routes = if lrp.internal_routes.is_empty() { Vec::new() } else { encode_json(&lrp.internal_routes) };
    let metric_tags = if lrp.metric_tags.is_empty() { Vec::new() } else { encode_json(&lrp.metric_tags) };
    stmt.bind(lrp.key.domain.as_str().to_owned())
        .bind(lrp.state.as_str())
        .bind(instance_guid)
        .bind(cell_id)
        .bind(lrp.placement_error.clone())
        .bind(i64::from(lrp.crash_count))
        .bind(lrp.crash_reason.clone())
        .bind(lrp.since)
        .bind(net_info)
        .bind(internal_routes)
        .bind(metric_tags)
        .bind(i64::from(lrp.routable))
        .bind(lrp.availability_zone.clone())
        .bind(lrp.modification_tag.epoch.clone())
        .bind(i64::from(lrp.modification_tag.index))
}

/// Binds the primary key: process guid, index, presence.
pub(crate) fn bind_pk(stmt: Stmt, process_guid: &ProcessGuid, index: i32, presence: Presence) -> Stmt {
    stmt.bind(process_guid.as_str().to_owned()).bind(i64::from(index)).bind(i64::from(presence.as_i32()))
}

/// Binds every column, in [`COLUMNS`] order (primary key first).
pub(crate) fn bind_row(stmt: Stmt, lrp: &ActualLrp) -> Stmt {
    let stmt = bind_pk(stmt, &lrp.key.process_guid, lrp.key.index, lrp.presence);
    bind_mutable(stmt, lrp)
}

/// `(?, ?, ..., ?)` with one placeholder per column, for multi-row inserts.
pub(crate) fn row_placeholders() -> String {
    format!("({})", crate::backend::placeholders(COLUMN_COUNT))
}
