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
use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

use crate::codec::{decode_json, decode_proto, encode_json, encode_proto};
use crate::store::reads::Columns;
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

pub(super) fn corrupt(key: &dyn std::fmt::Display, reason: impl std::fmt::Display) -> Error {
    Error::Corrupt { what: WHAT, key: key.to_string(), reason: reason.to_string() }
}

/// A row's primary key as errors name it, formatted only when one is.
pub(super) struct RowKey<'a>(pub(super) &'a str, pub(super) i64, pub(super) i64);

impl std::fmt::Display for RowKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} index {} presence {}", self.0, self.1, self.2)
    }
}

/// Reads the columns of one row (text and blobs borrowed from it); a column that does not
/// decode is [`Error::Corrupt`] naming `key`.
pub(super) struct Reader<'r, R: ?Sized> {
    row: &'r R,
    key: &'r dyn std::fmt::Display,
}

impl<'r, R: Columns + ?Sized> Reader<'r, R> {
    pub(super) fn new(row: &'r R, key: &'r dyn std::fmt::Display) -> Self {
        Self { row, key }
    }

    fn error(&self, i: usize, e: sqlx::Error) -> Error {
        corrupt(self.key, format_args!("column {i}: {e}"))
    }

    /// Text column `i`.
    pub(super) fn text(&self, i: usize) -> Result<&'r str> {
        self.row.text(i).map_err(|e| self.error(i, e))
    }

    /// Blob column `i`.
    pub(super) fn blob(&self, i: usize) -> Result<&'r [u8]> {
        self.row.blob(i).map_err(|e| self.error(i, e))
    }

    /// Integer column `i`.
    pub(super) fn int(&self, i: usize) -> Result<i64> {
        self.row.int(i).map_err(|e| self.error(i, e))
    }
}

/// Decodes a row selected with [`COLUMNS`], from any driver's row; anything that does not parse
/// is [`Error::Corrupt`].
pub(crate) fn decode<R: Columns + ?Sized>(row: &R) -> Result<ActualLrp> {
    let guid = Reader::new(row, &"?").text(0)?;
    let raw_index = Reader::new(row, &guid).int(1)?;
    let raw_presence = Reader::new(row, &guid).int(2)?;
    let key = RowKey(guid, raw_index, raw_presence);
    let bad = |reason: &dyn std::fmt::Display| corrupt(&key, reason);
    let at = Reader::new(row, &key);

    let process_guid = ProcessGuid::parse(guid).map_err(|e| bad(&e))?;
    let index = i32::try_from(raw_index).map_err(|_| bad(&"instance_index is out of range"))?;
    let presence =
        i32::try_from(raw_presence).ok().and_then(Presence::from_i32).ok_or_else(|| bad(&"unknown presence"))?;
    let domain = DomainName::parse(at.text(3)?).map_err(|e| bad(&e))?;
    let state_text = at.text(4)?;
    let state = ActualLrpState::parse(state_text).ok_or_else(|| bad(&format_args!("unknown state {state_text:?}")))?;
    let instance_guid = at.text(5)?;
    let cell_id = at.text(6)?;
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
    let placement_error = at.text(7)?.to_owned();
    let crash_count = i32::try_from(at.int(8)?).map_err(|_| bad(&"crash_count is out of range"))?;
    let crash_reason = at.text(9)?.to_owned();
    let since = at.int(10)?;
    let net_blob = at.blob(11)?;
    let net_info = if net_blob.is_empty() {
        None
    } else {
        let wire: pb::ActualLrpNetInfo = decode_proto(net_blob).map_err(|e| bad(&format_args!("net_info: {e}")))?;
        Some(NetInfo::try_from(wire).map_err(|e| bad(&format_args!("net_info: {e}")))?)
    };
    let routes_blob = at.blob(12)?;
    let internal_routes: Vec<String> = if routes_blob.is_empty() {
        Vec::new()
    } else {
        decode_json(routes_blob).map_err(|e| bad(&format_args!("internal_routes: {e}")))?
    };
    let tags_blob = at.blob(13)?;
    let metric_tags: BTreeMap<String, String> = if tags_blob.is_empty() {
        BTreeMap::new()
    } else {
        decode_json(tags_blob).map_err(|e| bad(&format_args!("metric_tags: {e}")))?
    };
    let routable = at.int(14)? != 0;
    let availability_zone = at.text(15)?.to_owned();
    let epoch = at.text(16)?.to_owned();
    let tag_index = u32::try_from(at.int(17)?).map_err(|_| bad(&"modification_tag_index is out of range"))?;
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
