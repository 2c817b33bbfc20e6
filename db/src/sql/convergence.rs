//! Set-based reads and deletes for LRP convergence (bbs.md 6.2). The converger decides in memory
//! from one [`LrpSnapshot`] instead of Diego's dozen joins, then acts through the lifecycle calls
//! of [`crate::sql::actual_lrps`] and the bulk deletes here.
//!
//! - [`Store::lrp_convergence_snapshot`]: every desired LRP's scheduling columns, every actual
//!   LRP's plain columns and the fresh domains, in exactly three queries inside one read-only
//!   snapshot transaction, so the three lists are mutually consistent (an LRP desired between
//!   two of the reads cannot look like an orphan). No blob but `volume_placement` is read.
//! - [`Store::delete_actual_lrps`]: deletes a set of rows by primary key, in chunks.
//! - [`Store::delete_evacuating_not_on_cells`]: step 2 of convergence, deleting every
//!   EVACUATING row whose cell is not live, and returning them for the removal events.

use std::collections::HashSet;

use futures::TryStreamExt;
use proto::models::{
    ActualLrp, ActualLrpState, CellId, DomainName, InstanceGuid, ModificationTag, Presence, ProcessGuid,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::codec::decode_json;
use crate::sql::actual_lrps::row::{COLUMNS, WHAT, decode};
use crate::{Backend, Error, Result, Store};

/// Rows per chunk of a multi-row DELETE or locking SELECT (3 placeholders each).
const KEY_CHUNK: usize = 300;

/// An actual LRP row's primary key.
const KEY: [&str; 3] = ["process_guid", "instance_index", "presence"];

/// What convergence needs to know, read at one instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LrpSnapshot {
    /// Every desired LRP, sorted by process guid.
    pub desired: Vec<DesiredSummary>,
    /// Every actual LRP (all presences), sorted by process guid, index and presence.
    pub actual: Vec<ActualSummary>,
    /// The domains whose `expire_time` is after the snapshot's `now_ns`, sorted.
    pub fresh_domains: Vec<DomainName>,
}

/// The scheduling columns of a desired LRP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSummary {
    /// Primary key.
    pub process_guid: ProcessGuid,
    /// Freshness grouping.
    pub domain: DomainName,
    /// How many instances to keep running.
    pub instances: i32,
    /// Memory per instance in MB.
    pub memory_mb: i32,
    /// Disk per instance in MB.
    pub disk_mb: i32,
    /// Process limit per instance.
    pub max_pids: i32,
    /// Root filesystem URL.
    pub rootfs: String,
    /// Placement tags the cell must match.
    pub placement_tags: Vec<String>,
    /// Volume driver names the cell must offer.
    pub volume_placement: Vec<String>,
    /// The desired LRP's modification tag.
    pub modification_tag: ModificationTag,
}

/// The plain columns of an actual LRP row (no blobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualSummary {
    /// The desired LRP.
    pub process_guid: ProcessGuid,
    /// The instance index.
    pub index: i32,
    /// Which copy of the index.
    pub presence: Presence,
    /// The domain.
    pub domain: DomainName,
    /// The lifecycle state.
    pub state: ActualLrpState,
    /// The instance, while CLAIMED or RUNNING.
    pub instance_guid: Option<InstanceGuid>,
    /// The cell, while CLAIMED or RUNNING.
    pub cell_id: Option<CellId>,
    /// Consecutive crashes.
    pub crash_count: i32,
    /// Nanoseconds since the Unix epoch of the last state write.
    pub since: i64,
    /// The row's modification tag.
    pub modification_tag: ModificationTag,
}

const DESIRED_SQL: &str = "SELECT process_guid, domain, instances, memory_mb, disk_mb, max_pids, rootfs, \
     placement_tags, volume_placement, modification_tag_epoch, modification_tag_index FROM desired_lrps";

const ACTUAL_SQL: &str = "SELECT process_guid, instance_index, presence, domain, state, instance_guid, cell_id, \
     crash_count, since, modification_tag_epoch, modification_tag_index FROM actual_lrps";

const DOMAINS_SQL: &str = "SELECT domain FROM domains WHERE expire_time > ?";

/// The three statements of [`Store::lrp_convergence_snapshot`] (desired, actual, fresh
/// domains), with `?` placeholders, for benchmarks that compare against raw SQL. Only the last
/// takes a parameter (`now_ns`); bind nothing to the other two (an extra bound value makes the
/// MySQL driver wait forever).
pub const SNAPSHOT_SQL: [&str; 3] = [DESIRED_SQL, ACTUAL_SQL, DOMAINS_SQL];

/// The statement that opens a read-only transaction whose reads all see one snapshot.
fn begin_snapshot(backend: Backend) -> &'static str {
    match backend {
        // A deferred transaction reads one WAL snapshot from its first read on.
        Backend::Sqlite => "BEGIN",
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        Backend::Mysql => "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    }
}

impl Store {
    /// Reads every desired LRP (scheduling columns), every actual LRP (plain columns) and the
    /// fresh domains (`expire_time > now_ns`) in three queries within one snapshot. Rows that
    /// cannot be decoded are skipped with a warning.
    pub async fn lrp_convergence_snapshot(&self, now_ns: i64) -> Result<LrpSnapshot> {
        let op = "read convergence snapshot";
        let sql_err = |what: &'static str| move |e| Error::from_sqlx(op, what, "all", e);
        let mut tx = self.pool.begin_with(begin_snapshot(self.backend)).await.map_err(sql_err("snapshot"))?;

        let mut desired = Vec::new();
        {
            let mut rows = self.backend.query(DESIRED_SQL).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(sql_err("desired lrp"))? {
                match decode_desired(&row) {
                    Ok(d) => desired.push(d),
                    Err(reason) => {
                        tracing::warn!(%reason, "skipping undecodable desired lrp in convergence")
                    }
                }
            }
        }
        let mut actual = Vec::new();
        {
            let mut rows = self.backend.query(ACTUAL_SQL).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(sql_err(WHAT))? {
                match decode_actual(&row) {
                    Ok(a) => actual.push(a),
                    Err(reason) => {
                        tracing::warn!(%reason, "skipping undecodable actual lrp in convergence")
                    }
                }
            }
        }
        let mut fresh_domains = Vec::new();
        {
            let mut rows = self.backend.query(DOMAINS_SQL).bind(now_ns).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(sql_err("domain"))? {
                match row
                    .try_get::<String, usize>(0)
                    .map_err(|e| e.to_string())
                    .and_then(|d| DomainName::parse(d).map_err(|e| e.to_string()))
                {
                    Ok(d) => fresh_domains.push(d),
                    Err(reason) => {
                        tracing::warn!(%reason, "skipping undecodable domain in convergence")
                    }
                }
            }
        }
        tx.commit().await.map_err(sql_err("snapshot"))?;

        // Sorted in memory: the database's collation need not be bytewise.
        desired.sort_by(|a, b| a.process_guid.cmp(&b.process_guid));
        actual.sort_by(|a, b| {
            (a.process_guid.as_str(), a.index, a.presence).cmp(&(b.process_guid.as_str(), b.index, b.presence))
        });
        fresh_domains.sort();
        Ok(LrpSnapshot { desired, actual, fresh_domains })
    }

    /// Deletes the listed rows (process guid, index, presence) in one transaction, in chunks of
    /// 300 keys per statement. Rows that do not exist are ignored; returns how many were deleted.
    pub async fn delete_actual_lrps(&self, rows: &[(ProcessGuid, i32, Presence)]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let op = "delete actual lrps";
        let rows = rows.to_vec();
        self.write(op, move |tx| {
            let rows = rows.clone();
            Box::pin(async move {
                let mut deleted = 0;
                for chunk in rows.chunks(KEY_CHUNK) {
                    let sql = tx.backend.delete_by_keys("actual_lrps", &KEY, chunk.len());
                    let mut stmt = tx.backend.list_query(&sql);
                    for (guid, index, presence) in chunk {
                        stmt = stmt
                            .bind(guid.as_str().to_owned())
                            .bind(i64::from(*index))
                            .bind(i64::from(presence.as_i32()));
                    }
                    let done =
                        stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, &chunk_name(chunk), e))?;
                    deleted += done.rows_affected();
                }
                Ok(deleted)
            })
        })
        .await
    }

    /// Deletes every EVACUATING row whose cell is not in `live_cells` (every EVACUATING row
    /// when it is empty) and returns the rows deleted, sorted by process guid and index.
    ///
    /// The candidates are found with an unlocked scan of the (few) evacuating rows, then locked
    /// by primary key, checked again and deleted in one write transaction, so the scan never
    /// locks the table and a row that changed meanwhile is left alone. An undecodable
    /// candidate is skipped with a warning.
    pub async fn delete_evacuating_not_on_cells(&self, live_cells: &[CellId]) -> Result<Vec<ActualLrp>> {
        let op = "delete evacuating actual lrps on missing cells";
        let live: HashSet<String> = live_cells.iter().map(|c| c.as_str().to_owned()).collect();
        let evacuating = i64::from(Presence::Evacuating.as_i32());
        let scan = self
            .backend
            .query("SELECT process_guid, instance_index, cell_id FROM actual_lrps WHERE presence = ?")
            .bind(evacuating)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, WHAT, "evacuating", e))?;
        let mut candidates: Vec<(String, i64)> = Vec::new();
        for row in &scan {
            let fields =
                (row.try_get::<String, usize>(0), row.try_get::<i64, usize>(1), row.try_get::<String, usize>(2));
            match fields {
                (Ok(guid), Ok(index), Ok(cell)) if !live.contains(&cell) => candidates.push((guid, index)),
                (Ok(_), Ok(_), Ok(_)) => {}
                _ => tracing::warn!("skipping undecodable evacuating actual lrp"),
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut removed = self
            .write(op, move |tx| {
                let (candidates, live) = (candidates.clone(), live.clone());
                Box::pin(async move {
                    let mut doomed = Vec::new();
                    for chunk in candidates.chunks(KEY_CHUNK) {
                        let sql = format!(
                            "SELECT {COLUMNS} FROM {} WHERE presence = ? AND ({}){}",
                            tx.backend.by_primary_key("actual_lrps"),
                            tx.backend.keys_in(&KEY[..2], chunk.len()),
                            tx.backend.for_update()
                        );
                        let mut stmt = tx.backend.list_query(&sql).bind(evacuating);
                        for (guid, index) in chunk {
                            stmt = stmt.bind(guid.clone()).bind(*index);
                        }
                        let rows =
                            stmt.fetch_all(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, "evacuating", e))?;
                        for row in &rows {
                            match decode(row) {
                                Ok(lrp) => {
                                    let on_live_cell =
                                        lrp.instance_key.as_ref().is_some_and(|k| live.contains(k.cell_id.as_str()));
                                    if lrp.presence == Presence::Evacuating && !on_live_cell {
                                        doomed.push(lrp);
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "skipping undecodable evacuating actual lrp"),
                            }
                        }
                    }
                    for chunk in doomed.chunks(KEY_CHUNK) {
                        let sql = tx.backend.delete_by_keys("actual_lrps", &KEY, chunk.len());
                        let mut stmt = tx.backend.list_query(&sql);
                        for lrp in chunk {
                            stmt = stmt
                                .bind(lrp.key.process_guid.as_str().to_owned())
                                .bind(i64::from(lrp.key.index))
                                .bind(i64::from(lrp.presence.as_i32()));
                        }
                        stmt.execute(tx.conn()).await.map_err(|e| Error::from_sqlx(op, WHAT, "evacuating", e))?;
                    }
                    Ok(doomed)
                })
            })
            .await?;
        removed.sort_by(|a, b| {
            (a.key.process_guid.as_str(), a.key.index).cmp(&(b.key.process_guid.as_str(), b.key.index))
        });
        Ok(removed)
    }
}

/// How errors name a chunk of keys.
fn chunk_name(chunk: &[(ProcessGuid, i32, Presence)]) -> String {
    match chunk {
        [(guid, index, _)] => format!("{guid} index {index}"),
        _ => format!("{} rows", chunk.len()),
    }
}

fn int<T: TryFrom<i64>>(row: &AnyRow, i: usize, name: &str) -> Result<T, String> {
    let raw: i64 = row.try_get(i).map_err(|e| format!("{name}: {e}"))?;
    T::try_from(raw).map_err(|_| format!("{name} {raw} is out of range"))
}

fn text(row: &AnyRow, i: usize, name: &str) -> Result<String, String> {
    row.try_get(i).map_err(|e| format!("{name}: {e}"))
}

fn decode_desired(row: &AnyRow) -> Result<DesiredSummary, String> {
    let guid = text(row, 0, "process_guid")?;
    let within = |e: String| format!("desired lrp {guid}: {e}");
    let process_guid = ProcessGuid::parse(guid.as_str()).map_err(|e| within(e.to_string()))?;
    let domain = DomainName::parse(text(row, 1, "domain").map_err(within)?).map_err(|e| within(e.to_string()))?;
    let placement_tags: Vec<String> = serde_json::from_str(&text(row, 7, "placement_tags").map_err(within)?)
        .map_err(|e| within(format!("placement_tags: {e}")))?;
    let volume_blob: Vec<u8> = row.try_get(8).map_err(|e| within(format!("volume_placement: {e}")))?;
    let volume_placement: Vec<String> = if volume_blob.is_empty() {
        Vec::new()
    } else {
        decode_json(&volume_blob).map_err(|e| within(format!("volume_placement: {e}")))?
    };
    Ok(DesiredSummary {
        process_guid,
        domain,
        instances: int(row, 2, "instances").map_err(within)?,
        memory_mb: int(row, 3, "memory_mb").map_err(within)?,
        disk_mb: int(row, 4, "disk_mb").map_err(within)?,
        max_pids: int(row, 5, "max_pids").map_err(within)?,
        rootfs: text(row, 6, "rootfs").map_err(within)?,
        placement_tags,
        volume_placement,
        modification_tag: ModificationTag {
            epoch: text(row, 9, "modification_tag_epoch").map_err(within)?,
            index: int(row, 10, "modification_tag_index").map_err(within)?,
        },
    })
}

fn decode_actual(row: &AnyRow) -> Result<ActualSummary, String> {
    let guid = text(row, 0, "process_guid")?;
    let index: i32 = int(row, 1, "instance_index")?;
    let within = |e: String| format!("actual lrp {guid} index {index}: {e}");
    let process_guid = ProcessGuid::parse(guid.as_str()).map_err(|e| within(e.to_string()))?;
    let presence = Presence::from_i32(int(row, 2, "presence").map_err(within)?)
        .ok_or_else(|| within("unknown presence".to_owned()))?;
    let domain = DomainName::parse(text(row, 3, "domain").map_err(within)?).map_err(|e| within(e.to_string()))?;
    let state_text = text(row, 4, "state").map_err(within)?;
    let state = ActualLrpState::parse(&state_text).ok_or_else(|| within(format!("unknown state {state_text:?}")))?;
    let optional = |s: String| if s.is_empty() { None } else { Some(s) };
    let instance_guid = optional(text(row, 5, "instance_guid").map_err(within)?)
        .map(InstanceGuid::parse)
        .transpose()
        .map_err(|e| within(e.to_string()))?;
    let cell_id = optional(text(row, 6, "cell_id").map_err(within)?)
        .map(CellId::parse)
        .transpose()
        .map_err(|e| within(e.to_string()))?;
    Ok(ActualSummary {
        process_guid,
        index,
        presence,
        domain,
        state,
        instance_guid,
        cell_id,
        crash_count: int(row, 7, "crash_count").map_err(within)?,
        since: row.try_get(8).map_err(|e| within(format!("since: {e}")))?,
        modification_tag: ModificationTag {
            epoch: text(row, 9, "modification_tag_epoch").map_err(within)?,
            index: int(row, 10, "modification_tag_index").map_err(within)?,
        },
    })
}
