//! The paged actual-LRP listing ([`crate::sql::page`]): a batch of rows after a primary key
//! (process guid, index, presence), in that order, as domain values
//! ([`Store::actual_lrps_page`]) or straight as wire messages ([`Store::actual_lrps_wire_page`],
//! what the streamed listing sends). Rows are decoded as the statement yields them, from the
//! native driver's rows where the store has a native read pool ([`crate::store::reads`]).

use std::collections::HashMap;

use proto::models::{
    ActualLrp, ActualLrpState, CellId, DomainName, InstanceGuid, Presence, ProcessGuid, ValidationError,
};
use proto::pb::models::v1 as pb;

use super::ActualLrpFilter;
use super::row::{COLUMNS, Reader, RowKey, WHAT, corrupt, decode};
use crate::backend::placeholders;
use crate::codec::{decode_json, decode_proto};
use crate::sql::page::{ActualLrpCursor, Page, after_bind_counts, after_condition, batch_limit};
use crate::store::reads::{AnyColumns, Bind, Columns, Reach};
use crate::{Error, Result, Store};

/// Most process guids a paged listing binds: one statement carries the whole filter, so the
/// database orders and limits the union itself.
pub const MAX_PAGED_GUIDS: usize = proto::limits::MAX_FILTER_GUIDS;

/// The primary key, leading column first.
const KEY: [&str; 3] = ["process_guid", "instance_index", "presence"];

impl Store {
    /// At most `limit` actual LRPs (clamped to 1..=[`MAX_BATCH`](crate::sql::page::MAX_BATCH),
    /// every presence) that `filter` selects, with a primary key after `after`, in primary-key
    /// order. [`Error::Invalid`] when `process_guids` lists more than [`MAX_PAGED_GUIDS`].
    pub async fn actual_lrps_page(
        &self,
        filter: &ActualLrpFilter,
        after: Option<&ActualLrpCursor>,
        limit: usize,
    ) -> Result<Page<ActualLrp, ActualLrpCursor>> {
        self.page_actual("page actual lrps", filter, after, limit, decode).await
    }

    /// As [`Store::actual_lrps_page`], each row converted straight into its wire message (the
    /// net info blob decoded into its message, never into the domain's). A row the domain
    /// decoding refuses is refused here too (skipped with a warning), so both listings answer
    /// the same items.
    pub async fn actual_lrps_wire_page(
        &self,
        filter: &ActualLrpFilter,
        after: Option<&ActualLrpCursor>,
        limit: usize,
    ) -> Result<Page<pb::ActualLrp, ActualLrpCursor>> {
        self.page_actual("stream actual lrps", filter, after, limit, decode_wire).await
    }

    async fn page_actual<T>(
        &self,
        op: &'static str,
        filter: &ActualLrpFilter,
        after: Option<&ActualLrpCursor>,
        limit: usize,
        decode: impl Fn(&AnyColumns) -> Result<T>,
    ) -> Result<Page<T, ActualLrpCursor>> {
        let mut guids: Vec<&str> = filter.process_guids.iter().map(|g| g.as_str()).collect();
        guids.sort_unstable();
        guids.dedup();
        if guids.len() > MAX_PAGED_GUIDS {
            return Err(Error::Invalid(ValidationError::new(
                "process_guids",
                format!("at most {MAX_PAGED_GUIDS} per listing"),
            )));
        }
        let mut clauses: Vec<String> = Vec::new();
        if filter.domain.is_some() {
            clauses.push("domain = ?".into());
        }
        if filter.cell_id.is_some() {
            clauses.push("cell_id = ?".into());
        }
        if filter.process_guid.is_some() {
            clauses.push("process_guid = ?".into());
        }
        if filter.index.is_some() {
            clauses.push("instance_index = ?".into());
        }
        if !guids.is_empty() {
            clauses.push(format!("process_guid IN ({})", placeholders(guids.len())));
        }
        if after.is_some() {
            clauses.push(after_condition(self.backend, &KEY));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM actual_lrps");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY process_guid, instance_index, presence LIMIT ?");

        let mut binds = Vec::new();
        if let Some(domain) = &filter.domain {
            binds.push(Bind::Text(domain.as_str().to_owned()));
        }
        if let Some(cell_id) = &filter.cell_id {
            binds.push(Bind::Text(cell_id.as_str().to_owned()));
        }
        if let Some(guid) = &filter.process_guid {
            binds.push(Bind::Text(guid.as_str().to_owned()));
        }
        if let Some(index) = filter.index {
            binds.push(Bind::Int(i64::from(index)));
        }
        binds.extend(guids.iter().map(|guid| Bind::Text((*guid).to_owned())));
        if let Some(after) = after {
            let counts = after_bind_counts(self.backend, KEY.len());
            binds.extend(std::iter::repeat_n(Bind::Text(after.process_guid.clone()), counts[0]));
            binds.extend(std::iter::repeat_n(Bind::Int(after.index), counts[1]));
            binds.extend(std::iter::repeat_n(Bind::Int(after.presence), counts[2]));
        }
        let limit = batch_limit(limit);
        binds.push(Bind::Int(limit));
        let (mut items, mut read, mut last) = (Vec::new(), 0_i64, None);
        let keyed = filter.cell_id.is_some() || filter.process_guid.is_some() || !guids.is_empty();
        let reach = Reach::of_listing(keyed);
        self.read_rows(&sql, !guids.is_empty(), reach, binds, |row| {
            read += 1;
            if read == limit {
                last = Some(ActualLrpCursor {
                    process_guid: row.text(0)?.to_owned(),
                    index: row.int(1)?,
                    presence: row.int(2)?,
                });
            }
            match decode(row) {
                Ok(lrp) => items.push(lrp),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable actual lrp"),
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::from_sqlx(op, WHAT, "page", e))?;
        Ok(Page { items, resume_after: if read == limit { last } else { None } })
    }
}

/// A row of [`COLUMNS`] as its wire message, with the checks of `row::decode` (names, ranges,
/// known enums, the instance key's two halves set together, a known preferred address).
fn decode_wire<R: Columns + ?Sized>(row: &R) -> Result<pb::ActualLrp> {
    let guid = Reader::new(row, &"?").text(0)?;
    let index = Reader::new(row, &guid).int(1)?;
    let presence = Reader::new(row, &guid).int(2)?;
    let key = RowKey(guid, index, presence);
    let bad = |reason: &dyn std::fmt::Display| corrupt(&key, reason);
    let at = Reader::new(row, &key);

    let process_guid = ProcessGuid::parse(guid).map_err(|e| bad(&e))?.into_string();
    let index = i32::try_from(index).map_err(|_| bad(&"instance_index is out of range"))?;
    let presence =
        i32::try_from(presence).ok().and_then(Presence::from_i32).ok_or_else(|| bad(&"unknown presence"))?.as_i32();
    let domain = DomainName::parse(at.text(3)?).map_err(|e| bad(&e))?.into_string();
    let state_text = at.text(4)?;
    let state = ActualLrpState::parse(state_text).ok_or_else(|| bad(&format_args!("unknown state {state_text:?}")))?;
    let instance_guid = at.text(5)?;
    let cell_id = at.text(6)?;
    let instance_key = match (instance_guid.is_empty(), cell_id.is_empty()) {
        (true, true) => None,
        (false, false) => Some(pb::ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(instance_guid).map_err(|e| bad(&e))?.into_string(),
            cell_id: CellId::parse(cell_id).map_err(|e| bad(&e))?.into_string(),
        }),
        _ => return Err(bad(&"instance_guid and cell_id must be both set or both empty")),
    };
    let crash_count = i32::try_from(at.int(8)?).map_err(|_| bad(&"crash_count is out of range"))?;
    let net_blob = at.blob(11)?;
    let net_info = if net_blob.is_empty() {
        None
    } else {
        let net: pb::ActualLrpNetInfo = decode_proto(net_blob).map_err(|e| bad(&format_args!("net_info: {e}")))?;
        if pb::actual_lrp_net_info::PreferredAddress::try_from(net.preferred_address).is_err() {
            return Err(bad(&"net_info: unknown preferred_address"));
        }
        Some(net)
    };
    let routes_blob = at.blob(12)?;
    let internal_routes: Vec<String> = if routes_blob.is_empty() {
        Vec::new()
    } else {
        decode_json(routes_blob).map_err(|e| bad(&format_args!("internal_routes: {e}")))?
    };
    let tags_blob = at.blob(13)?;
    let metric_tags: HashMap<String, String> = if tags_blob.is_empty() {
        HashMap::new()
    } else {
        decode_json(tags_blob).map_err(|e| bad(&format_args!("metric_tags: {e}")))?
    };
    let modification_index = u32::try_from(at.int(17)?).map_err(|_| bad(&"modification_tag_index is out of range"))?;
    Ok(pb::ActualLrp {
        actual_lrp_key: Some(pb::ActualLrpKey { process_guid, index, domain }),
        actual_lrp_instance_key: instance_key,
        actual_lrp_net_info: net_info,
        crash_count,
        crash_reason: at.text(9)?.to_owned(),
        state: pb::ActualLrpState::from(state) as i32,
        placement_error: at.text(7)?.to_owned(),
        since: at.int(10)?,
        modification_tag: Some(pb::ModificationTag { epoch: at.text(16)?.to_owned(), index: modification_index }),
        presence,
        actual_lrp_internal_routes: internal_routes
            .into_iter()
            .map(|hostname| pb::ActualLrpInternalRoute { hostname })
            .collect(),
        metric_tags,
        routable: Some(at.int(14)? != 0),
        availability_zone: at.text(15)?.to_owned(),
    })
}
