//! Paged desired-LRP listings ([`crate::sql::page`]): the three views (whole records,
//! scheduling infos, routing infos) a batch at a time, after a process guid, plus the wire form
//! of the scheduling view ([`Store::scheduling_infos_wire_page`]) that the streamed listing
//! sends as it is read. Each batch is one statement whose rows are decoded as they arrive
//! (`fetch`, not `fetch_all`), so no batch of raw rows is held beside its decoded items, from
//! the native driver's rows where the store has a native read pool ([`crate::store::reads`]).

use std::collections::BTreeMap;

use proto::models::{
    DesiredLrp, DomainName, MetricTagValue, ProcessGuid, SchedulingInfo, UpdateStrategy, ValidationError,
};
use proto::pb::models::v1 as pb;

use super::rows::{blob, decode_desired, decode_routes, decode_routing, decode_scheduling, int, text};
use super::{DesiredLrpFilter, SCHEDULING_COLUMNS, filter_clause};
use crate::codec::decode_json;
use crate::sql::page::{Page, after_condition, batch_limit};
use crate::store::reads::{AnyColumns, Bind, Columns, Reach};
use crate::{Error, Result, Store};

/// Most process guids plus app guids a paged listing binds: one statement carries the whole
/// filter, so the database orders and limits the union itself.
pub const MAX_PAGED_GUIDS: usize = proto::limits::MAX_FILTER_GUIDS;

impl Store {
    /// At most `limit` desired LRPs (clamped to 1..=[`MAX_BATCH`](crate::sql::page::MAX_BATCH))
    /// that `filter` selects, with a process guid after `after`, in primary-key order.
    /// [`Error::Invalid`] when the filter lists more than [`MAX_PAGED_GUIDS`] guids.
    pub async fn desired_lrps_page(
        &self,
        filter: &DesiredLrpFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<DesiredLrp, String>> {
        let columns = format!("{SCHEDULING_COLUMNS}, metric_tags, run_info");
        let decode = |row: &AnyColumns| decode_desired(self.keys(), row);
        self.page_desired("page desired lrps", &columns, filter, after, limit, decode).await
    }

    /// As [`Store::desired_lrps_page`], for the scheduling halves (`run_info` is not read).
    pub async fn scheduling_infos_page(
        &self,
        filter: &DesiredLrpFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<SchedulingInfo, String>> {
        self.page_desired("page scheduling infos", SCHEDULING_COLUMNS, filter, after, limit, decode_scheduling).await
    }

    /// As [`Store::desired_lrps_page`], for the routing view (`run_info` is not read).
    pub async fn routing_infos_page(
        &self,
        filter: &DesiredLrpFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<(SchedulingInfo, BTreeMap<String, MetricTagValue>), String>> {
        let columns = format!("{SCHEDULING_COLUMNS}, metric_tags");
        self.page_desired("page routing infos", &columns, filter, after, limit, decode_routing).await
    }

    /// As [`Store::scheduling_infos_page`], each row converted straight into its wire message
    /// (no domain value in between; the route blob's JSON becomes the message's route map). The
    /// rows the domain decoding refuses are refused here too (skipped with a warning), so both
    /// listings answer the same items.
    pub async fn scheduling_infos_wire_page(
        &self,
        filter: &DesiredLrpFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<pb::DesiredLrpSchedulingInfo, String>> {
        self.page_desired("stream scheduling infos", SCHEDULING_COLUMNS, filter, after, limit, scheduling_wire).await
    }

    async fn page_desired<T>(
        &self,
        op: &'static str,
        columns: &str,
        filter: &DesiredLrpFilter,
        after: Option<&str>,
        limit: usize,
        decode: impl Fn(&AnyColumns) -> std::result::Result<T, String>,
    ) -> Result<Page<T, String>> {
        if filter.process_guids.len() + filter.app_guids.len() > MAX_PAGED_GUIDS {
            return Err(Error::Invalid(ValidationError::new(
                "process_guids",
                format!("at most {MAX_PAGED_GUIDS} process and app guids per listing"),
            )));
        }
        let (clause, binds) = filter_clause(filter, &filter.process_guids, &filter.app_guids);
        let mut sql = format!("SELECT {columns} FROM desired_lrps{clause}");
        if after.is_some() {
            sql.push_str(if clause.is_empty() { " WHERE " } else { " AND " });
            sql.push_str(&after_condition(self.backend, &["process_guid"]));
        }
        sql.push_str(" ORDER BY process_guid LIMIT ?");
        let mut binds: Vec<Bind> = binds.into_iter().map(Bind::Text).collect();
        if let Some(after) = after {
            binds.push(Bind::Text(after.to_owned()));
        }
        let limit = batch_limit(limit);
        binds.push(Bind::Int(limit));
        let (mut items, mut read, mut last) = (Vec::new(), 0_i64, None);
        let keyed = !filter.process_guids.is_empty() || !filter.app_guids.is_empty();
        let reach = Reach::of_listing(keyed);
        self.read_rows(&sql, !filter.process_guids.is_empty(), reach, binds, |row| {
            read += 1;
            let guid = row.text(0)?;
            if read == limit {
                last = Some(guid.to_owned());
            }
            match decode(row) {
                Ok(value) => items.push(value),
                Err(reason) => tracing::warn!(process_guid = %guid, reason, "skipping corrupt desired lrp row"),
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::from_sqlx(op, "desired lrp", after.unwrap_or("*"), e))?;
        Ok(Page { items, resume_after: if read == limit { last } else { None } })
    }
}

/// A row of [`SCHEDULING_COLUMNS`] as its wire message, with the checks of
/// `rows::decode_scheduling` (guid and domain syntax, integer ranges, a known update strategy).
fn scheduling_wire<R: Columns + ?Sized>(row: &R) -> std::result::Result<pb::DesiredLrpSchedulingInfo, String> {
    let process_guid = ProcessGuid::parse(text(row, 0)?).map_err(|e| e.to_string())?.into_string();
    let domain = DomainName::parse(text(row, 1)?).map_err(|e| e.to_string())?.into_string();
    let update_strategy = int::<i32, _>(row, 14)?;
    if UpdateStrategy::from_i32(update_strategy).is_none() {
        return Err(format!("unknown update_strategy {update_strategy}"));
    }
    let driver_names: Vec<String> = decode_json(blob(row, 10)?).map_err(|e| format!("volume_placement: {e}"))?;
    let placement_tags: Vec<String> =
        serde_json::from_str(text(row, 11)?).map_err(|e| format!("placement_tags: {e}"))?;
    Ok(pb::DesiredLrpSchedulingInfo {
        desired_lrp_key: Some(pb::DesiredLrpKey { process_guid, domain, log_guid: text(row, 2)?.to_owned() }),
        annotation: text(row, 3)?.to_owned(),
        instances: int(row, 4)?,
        desired_lrp_resource: Some(pb::DesiredLrpResource {
            memory_mb: int(row, 5)?,
            disk_mb: int(row, 6)?,
            rootfs: text(row, 8)?.to_owned(),
            max_pids: int(row, 7)?,
        }),
        routes: decode_routes(blob(row, 9)?)?,
        modification_tag: Some(pb::ModificationTag { epoch: text(row, 12)?.to_owned(), index: int(row, 13)? }),
        volume_placement: Some(pb::VolumePlacement { driver_names }),
        placement_tags,
        update_strategy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoders_read_the_columns_of_every_view_in_their_order() {
        let names = |columns: &str| columns.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(names(SCHEDULING_COLUMNS), super::super::rows::COLUMN_NAMES[..15]);
        assert_eq!(names(&format!("{SCHEDULING_COLUMNS}, metric_tags")), super::super::rows::COLUMN_NAMES[..16]);
        assert_eq!(names(&format!("{SCHEDULING_COLUMNS}, metric_tags, run_info")), super::super::rows::COLUMN_NAMES);
    }
}
