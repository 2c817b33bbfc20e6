//! The paged actual-LRP listing ([`crate::sql::page`]): a batch of rows after a primary key
//! (process guid, index, presence), in that order.

use futures::TryStreamExt;
use proto::models::{ActualLrp, ValidationError};
use sqlx::Row;

use super::ActualLrpFilter;
use super::row::{COLUMNS, WHAT, decode};
use crate::backend::placeholders;
use crate::sql::page::{ActualLrpCursor, Page, after_bind_counts, after_condition, batch_limit};
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
        let op = "page actual lrps";
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

        let mut stmt = self.backend.query(&sql);
        if let Some(domain) = &filter.domain {
            stmt = stmt.bind(domain.as_str().to_owned());
        }
        if let Some(cell_id) = &filter.cell_id {
            stmt = stmt.bind(cell_id.as_str().to_owned());
        }
        if let Some(guid) = &filter.process_guid {
            stmt = stmt.bind(guid.as_str().to_owned());
        }
        if let Some(index) = filter.index {
            stmt = stmt.bind(i64::from(index));
        }
        for guid in &guids {
            stmt = stmt.bind((*guid).to_owned());
        }
        if let Some(after) = after {
            let counts = after_bind_counts(self.backend, KEY.len());
            for _ in 0..counts[0] {
                stmt = stmt.bind(after.process_guid.clone());
            }
            for _ in 0..counts[1] {
                stmt = stmt.bind(after.index);
            }
            for _ in 0..counts[2] {
                stmt = stmt.bind(after.presence);
            }
        }
        let limit = batch_limit(limit);
        let mut rows = stmt.bind(limit).fetch(&self.pool);
        let (mut items, mut read, mut last) = (Vec::new(), 0_i64, None);
        while let Some(row) = rows.try_next().await.map_err(|e| Error::from_sqlx(op, WHAT, "page", e))? {
            read += 1;
            last = Some(ActualLrpCursor {
                process_guid: row.try_get(0).map_err(|e| Error::from_sqlx(op, WHAT, "page", e))?,
                index: row.try_get(1).map_err(|e| Error::from_sqlx(op, WHAT, "page", e))?,
                presence: row.try_get(2).map_err(|e| Error::from_sqlx(op, WHAT, "page", e))?,
            });
            match decode(&row) {
                Ok(lrp) => items.push(lrp),
                Err(e) => tracing::warn!(error = %e, "skipping undecodable actual lrp"),
            }
        }
        Ok(Page { items, resume_after: if read == limit { last } else { None } })
    }
}
