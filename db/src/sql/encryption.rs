//! Re-encryption of the sealed blobs (bbs.md 5.3, "Rotation"): finds the rows whose `key_label`
//! is not the active key's (older keys, and `''` for rows written before encryption) through
//! the `key_label` index, and re-seals them under the active key, a bounded batch per
//! transaction. A batch walks the table in primary-key order after a cursor, so rows that cannot
//! be re-sealed (their key is unknown) are reported once per pass and never stall it; a restart
//! simply starts a new pass, which finds only the rows still left.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::Row;

use crate::codec::reseal_proto;
use crate::sql::page::batch_limit;
use crate::{Error, Result, Store};

/// A table whose rows carry a sealed blob and its key label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedTable {
    /// `desired_lrps.run_info`.
    DesiredLrps,
    /// `tasks.task_definition`.
    Tasks,
}

impl SealedTable {
    /// Every sealed table.
    pub const ALL: [SealedTable; 2] = [Self::DesiredLrps, Self::Tasks];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::DesiredLrps => "desired_lrps",
            Self::Tasks => "tasks",
        }
    }

    /// The primary-key column.
    fn key_column(self) -> &'static str {
        match self {
            Self::DesiredLrps => "process_guid",
            Self::Tasks => "guid",
        }
    }

    /// The sealed blob column.
    fn blob_column(self) -> &'static str {
        match self {
            Self::DesiredLrps => "run_info",
            Self::Tasks => "task_definition",
        }
    }

    /// The kind of record, for errors.
    fn what(self) -> &'static str {
        match self {
            Self::DesiredLrps => "desired lrp",
            Self::Tasks => "task",
        }
    }
}

/// What one [`Store::reseal_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealBatch {
    /// Rows re-sealed under the active key.
    pub resealed: usize,
    /// Rows that could not be re-sealed, with the reason (an unknown key label is named).
    pub unreadable: Vec<(String, String)>,
    /// The key of the last row read when the batch was full: pass it as the next `after`.
    /// `None` when this pass over the table is done.
    pub resume_after: Option<String>,
}

impl Store {
    /// How many rows of `table` are sealed under each key label (`""`: unencrypted).
    pub async fn key_label_counts(&self, table: SealedTable) -> Result<BTreeMap<String, u64>> {
        let sql = format!("SELECT key_label, COUNT(*) AS n FROM {} GROUP BY key_label", table.name());
        let rows = self
            .backend
            .query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx("count key labels", table.what(), "*", e))?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let label: String =
                row.try_get("key_label").map_err(|e| Error::Sql { op: "count key labels", source: e })?;
            let n: i64 = row.try_get("n").map_err(|e| Error::Sql { op: "count key labels", source: e })?;
            counts.insert(label, u64::try_from(n).unwrap_or_default());
        }
        Ok(counts)
    }

    /// How many rows of every sealed table are not under the active key. 0 when this store
    /// has no keys (it cannot seal anything).
    pub async fn rows_to_reseal(&self) -> Result<u64> {
        let Some(active) = self.keys().active_label() else { return Ok(0) };
        let mut total = 0;
        for table in SealedTable::ALL {
            let counts = self.key_label_counts(table).await?;
            total += counts.iter().filter(|(label, _)| label.as_str() != active).map(|(_, n)| n).sum::<u64>();
        }
        Ok(total)
    }

    /// Re-seals under the active key at most `limit` rows (clamped to
    /// 1..=[`MAX_BATCH`](crate::sql::page::MAX_BATCH)) of `table` that are not under it, with a
    /// key after `after`, in one write transaction (fenced like every write). Rows whose blob
    /// does not open are left as they are and reported. Nothing to do for a store without keys.
    pub async fn reseal_batch(&self, table: SealedTable, after: Option<&str>, limit: usize) -> Result<ResealBatch> {
        let op = "reseal";
        let Some(active) = self.keys().active_label() else { return Ok(ResealBatch::default()) };
        let (key, blob) = (table.key_column(), table.blob_column());
        let mut select = format!("SELECT {key}, {blob} FROM {} WHERE key_label <> ?", table.name());
        if after.is_some() {
            select.push_str(&format!(" AND {key} > ?"));
        }
        select.push_str(&format!(" ORDER BY {key} LIMIT ?{}", self.backend.for_update()));
        let update: Arc<str> = format!("UPDATE {} SET {blob} = ?, key_label = ? WHERE {key} = ?", table.name()).into();
        let select: Arc<str> = select.into();
        let (active, after): (Arc<str>, Option<Arc<str>>) = (active.into(), after.map(Into::into));
        let limit = batch_limit(limit);
        self.write(op, move |tx| {
            let (select, update, active, after) = (select.clone(), update.clone(), active.clone(), after.clone());
            Box::pin(async move {
                let mut query = tx.backend.query(&select).bind(active.to_string());
                if let Some(after) = &after {
                    query = query.bind(after.to_string());
                }
                let rows = query
                    .bind(limit)
                    .fetch_all(tx.conn())
                    .await
                    .map_err(|e| Error::from_sqlx(op, table.what(), after.as_deref().unwrap_or("*"), e))?;
                let mut batch = ResealBatch::default();
                let mut last = None;
                for row in &rows {
                    let id: String = row.try_get(key).map_err(|e| Error::Sql { op, source: e })?;
                    let sealed: Vec<u8> = row.try_get(blob).map_err(|e| Error::Sql { op, source: e })?;
                    match reseal_proto(&tx.keys, &sealed) {
                        Ok(resealed) => {
                            tx.backend
                                .query(&update)
                                .bind(resealed)
                                .bind(active.to_string())
                                .bind(id.clone())
                                .execute(tx.conn())
                                .await
                                .map_err(|e| Error::from_sqlx(op, table.what(), &id, e))?;
                            batch.resealed += 1;
                        }
                        Err(e) => batch.unreadable.push((id.clone(), format!("{blob}: {e}"))),
                    }
                    last = Some(id);
                }
                if rows.len() as i64 == limit {
                    batch.resume_after = last;
                }
                Ok(batch)
            })
        })
        .await
    }
}
