//! The paged task listing ([`crate::sql::page`]): a batch of tasks after a task guid.

use proto::models::Task;
use sqlx::Row;

use super::TaskFilter;
use super::rows::{TASK_COLUMNS, decode_task};
use crate::sql::page::{Page, after_condition, batch_limit};
use crate::{Error, Result, Store};

impl Store {
    /// At most `limit` tasks (clamped to 1..=[`MAX_BATCH`](crate::sql::page::MAX_BATCH)) that
    /// `filter` selects, with a guid after `after`, in guid order. Undecodable rows are skipped
    /// with a warning.
    pub async fn tasks_page(
        &self,
        filter: &TaskFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Task, String>> {
        let op = "page tasks";
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        if let Some(domain) = &filter.domain {
            conditions.push("domain = ?".to_owned());
            binds.push(domain.as_str().to_owned());
        }
        if let Some(cell_id) = &filter.cell_id {
            conditions.push("cell_id = ?".to_owned());
            binds.push(cell_id.as_str().to_owned());
        }
        if let Some(after) = after {
            conditions.push(after_condition(self.backend, &["guid"]));
            binds.push(after.to_owned());
        }
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY guid LIMIT ?");
        let mut query = self.backend.query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let limit = batch_limit(limit);
        let rows = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "task", after.unwrap_or("*"), e))?;
        let resume_after = match rows.last() {
            Some(last) if rows.len() as i64 == limit => {
                Some(last.try_get::<String, _>("guid").map_err(|e| Error::from_sqlx(op, "task", "*", e))?)
            }
            _ => None,
        };
        let items = rows
            .iter()
            .filter_map(|row| match decode_task(self.keys(), row) {
                Ok(task) => Some(task),
                Err(reason) => {
                    let guid = row.try_get::<String, _>("guid").unwrap_or_default();
                    tracing::warn!(task_guid = %guid, reason, "skipping corrupt task row");
                    None
                }
            })
            .collect();
        Ok(Page { items, resume_after })
    }
}
