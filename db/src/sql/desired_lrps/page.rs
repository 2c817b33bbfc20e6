//! Paged desired-LRP listings ([`crate::sql::page`]): the three views (whole records,
//! scheduling infos, routing infos) a batch at a time, after a process guid.

use std::collections::BTreeMap;

use proto::models::{DesiredLrp, MetricTagValue, SchedulingInfo, ValidationError};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::rows::{decode_desired, decode_routing, decode_scheduling};
use super::{DesiredLrpFilter, SCHEDULING_COLUMNS, decode_or_skip, filter_clause};
use crate::sql::page::{Page, after_condition, batch_limit};
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
        let decode = |row: &AnyRow| decode_desired(self.keys(), row);
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

    async fn page_desired<T>(
        &self,
        op: &'static str,
        columns: &str,
        filter: &DesiredLrpFilter,
        after: Option<&str>,
        limit: usize,
        decode: impl Fn(&AnyRow) -> std::result::Result<T, String>,
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
        let mut query = self.backend.query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        if let Some(after) = after {
            query = query.bind(after.to_owned());
        }
        let limit = batch_limit(limit);
        let rows = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "desired lrp", after.unwrap_or("*"), e))?;
        let resume_after = match rows.last() {
            Some(last) if rows.len() as i64 == limit => Some(
                last.try_get::<String, _>("process_guid")
                    .map_err(|e| Error::from_sqlx(op, "desired lrp", after.unwrap_or("*"), e))?,
            ),
            _ => None,
        };
        let items = rows.iter().filter_map(|row| decode_or_skip(row, &decode)).map(|(_, value)| value).collect();
        Ok(Page { items, resume_after })
    }
}
