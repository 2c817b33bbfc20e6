//! The `desired_lrps` table (bbs.md 2.1, 5.1): desire, list, get, update and remove desired LRPs.
//!
//! A row is split as Diego splits it. The scheduling half is plain columns (routes and volume
//! placement as codec JSON blobs, placement tags as a JSON text column), metric tags are their
//! own codec JSON blob, and the run-time half is one codec protobuf blob (`run_info`). The
//! scheduling and routing views never select `run_info`, so a full scan by the auctioneer, the
//! converger or a route emitter neither transfers nor decodes it.
//!
//! Desiring an LRP inserts its UNCLAIMED actual LRPs in the same transaction, through
//! [`crate::sql::actual_lrps::insert_unclaimed`]; so does growing `instances`. Shrinking,
//! removal and the events are the caller's. Row decoding lives in [`rows`].

mod bulk;
mod page;
mod rows;

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::models::{
    ActualLrp, DesiredLrp, DesiredLrpUpdate, DomainName, MetricTagValue, ModificationTag, Presence, ProcessGuid,
    SchedulingInfo,
};
use sqlx::Row;
use sqlx::any::AnyRow;

pub use self::bulk::DesireOutcome;
pub use self::page::MAX_PAGED_GUIDS;
use self::rows::{decode_desired, decode_routing, decode_scheduling, encode_routes};
use crate::backend::placeholders;
use crate::codec::{encode_json, seal_proto};
use crate::sql::actual_lrps::insert_unclaimed;
use crate::{Error, Result, Store, Tx};

/// Which desired LRPs a listing returns. The guid lists are ORed together (an LRP matches when
/// its guid is listed or starts with a listed app guid); the domain is ANDed with them. Empty
/// lists and no domain select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredLrpFilter {
    /// Only LRPs of this domain.
    pub domain: Option<DomainName>,
    /// LRPs with one of these process guids.
    pub process_guids: Vec<ProcessGuid>,
    /// LRPs whose process guid starts with one of these app guids (Cloud Controller names
    /// process guids `<app guid>-<version>`).
    pub app_guids: Vec<String>,
}

/// The result of [`Store::update_desired_lrp`].
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredLrpUpdated {
    /// The record before the update.
    pub before: DesiredLrp,
    /// The record as stored now.
    pub after: DesiredLrp,
    /// The UNCLAIMED actual LRPs created for new indices when `instances` grew.
    pub created: Vec<ActualLrp>,
}

/// The scheduling columns, in the order the decoders read them by position (`desired_lrps::rows`;
/// a test in `desired_lrps/page.rs` checks the order of every view).
const SCHEDULING_COLUMNS: &str = "process_guid, domain, log_guid, annotation, instances, memory_mb, disk_mb, \
     max_pids, rootfs, routes, volume_placement, placement_tags, modification_tag_epoch, \
     modification_tag_index, update_strategy";

/// Largest number of process guids bound in one listing statement; longer lists are split.
const GUIDS_PER_QUERY: usize = 500;

/// The `WHERE` clause (possibly empty) and its binds for one statement of a filtered listing.
fn filter_clause(filter: &DesiredLrpFilter, guids: &[ProcessGuid], app_guids: &[String]) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(domain) = &filter.domain {
        conditions.push("domain = ?".to_owned());
        binds.push(domain.as_str().to_owned());
    }
    let mut any_of = Vec::new();
    if !guids.is_empty() {
        any_of.push(format!("process_guid IN ({})", placeholders(guids.len())));
        binds.extend(guids.iter().map(|g| g.as_str().to_owned()));
    }
    for app_guid in app_guids {
        // `!` escapes: MySQL treats a backslash in a literal as an escape itself.
        any_of.push("process_guid LIKE ? ESCAPE '!'".to_owned());
        binds.push(format!("{}%", escape_like(app_guid)));
    }
    if !any_of.is_empty() {
        conditions.push(format!("({})", any_of.join(" OR ")));
    }
    if conditions.is_empty() {
        return (String::new(), binds);
    }
    (format!(" WHERE {}", conditions.join(" AND ")), binds)
}

/// `s` with the LIKE wildcards and the escape character itself escaped by `!`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// Maps a listing row through `decode`, or logs and drops it (a row under an unknown key label
/// included: the warning names the label).
fn decode_or_skip<T>(row: &AnyRow, decode: &impl Fn(&AnyRow) -> std::result::Result<T, String>) -> Option<(String, T)> {
    let guid = row.try_get::<String, _>("process_guid").unwrap_or_default();
    match decode(row) {
        Ok(value) => Some((guid, value)),
        Err(reason) => {
            tracing::warn!(process_guid = %guid, reason, "skipping corrupt desired lrp row");
            None
        }
    }
}

/// Locks and decodes the row of `guid` inside `tx`.
async fn lock_desired(tx: &mut Tx, op: &'static str, guid: &ProcessGuid) -> Result<DesiredLrp> {
    let select = format!("SELECT {SCHEDULING_COLUMNS}, metric_tags, run_info FROM desired_lrps WHERE process_guid");
    let keys = tx.keys.clone();
    tx.lock_row(op, "desired lrp", &select, guid.as_str(), |row| decode_desired(&keys, row)).await
}

/// The indices in `from..to` that have no ordinary actual LRP of `guid` yet: rows left by a
/// recent scale-down (the caller has not stopped them yet) or by a removed desired LRP of the same
/// guid are kept, not duplicated. Mirrors Diego, whose controller creates each index and ignores
/// `ResourceExists`.
async fn missing_indices(tx: &mut Tx, op: &'static str, guid: &ProcessGuid, from: i32, to: i32) -> Result<Vec<i32>> {
    if from >= to {
        return Ok(Vec::new());
    }
    // A set: a scale-up over the leftovers of an unfinished scale-down checks up to 100,000
    // indices against as many rows.
    let existing: std::collections::HashSet<i64> = tx
        .backend
        .query_scalar(
            "SELECT instance_index FROM actual_lrps \
             WHERE process_guid = ? AND presence = ? AND instance_index >= ? AND instance_index < ?",
        )
        .bind(guid.as_str())
        .bind(i64::from(Presence::Ordinary.as_i32()))
        .bind(i64::from(from))
        .bind(i64::from(to))
        .fetch_all(tx.conn())
        .await
        .map_err(|e| Error::from_sqlx(op, "actual lrp", guid.as_str(), e))?
        .into_iter()
        .collect();
    Ok((from..to).filter(|i| !existing.contains(&i64::from(*i))).collect())
}

/// The columns a new `desired_lrps` row is inserted with, in [`NewDesired::bind`] order.
const INSERT_COLUMNS: &str = "process_guid, domain, log_guid, annotation, instances, memory_mb, disk_mb, max_pids, \
     rootfs, routes, volume_placement, placement_tags, metric_tags, modification_tag_epoch, modification_tag_index, \
     update_strategy, run_info, key_label";

/// How many columns [`INSERT_COLUMNS`] names.
const INSERT_COLUMN_COUNT: usize = 18;

/// `INSERT INTO desired_lrps (...) VALUES (...), ...` for `rows` rows, with `?` placeholders.
fn insert_desired_sql(rows: usize) -> String {
    let row = format!("({})", placeholders(INSERT_COLUMN_COUNT));
    format!("INSERT INTO desired_lrps ({INSERT_COLUMNS}) VALUES {}", vec![row; rows].join(", "))
}

/// A new desired LRP as it is stored: the one home of the rule for what DesireLRP and DesireLRPs
/// write. The record gets a fresh modification tag (a new epoch, index 0) and its run info's
/// `created_at` set to the desire's time; the run info is sealed with the store's active key.
#[derive(Debug, Clone)]
pub(crate) struct NewDesired {
    /// The record as stored (and returned to the caller).
    pub(crate) stored: DesiredLrp,
    /// The sealed run info blob.
    run_info: Vec<u8>,
    /// The label of the key it is sealed with (empty: unencrypted).
    key_label: String,
}

impl NewDesired {
    /// `lrp` as `store` stores it when desired at `now_ns`.
    pub(crate) fn new(store: &Store, lrp: DesiredLrp, now_ns: i64) -> Self {
        let mut stored = lrp;
        stored.scheduling.modification_tag = ModificationTag::new(uuid::Uuid::new_v4().to_string());
        stored.run_info.stamp_created_at(now_ns);
        let run_info = seal_proto(store.keys(), stored.run_info.as_pb());
        let key_label = store.keys().active_label().unwrap_or_default().to_owned();
        Self { stored, run_info, key_label }
    }

    /// Bytes this row binds beyond its fixed-size columns, about: for sizing multi-row inserts.
    pub(crate) fn payload_bytes(&self) -> usize {
        let s = &self.stored.scheduling;
        self.run_info.len() + s.routes.values().map(Vec::len).sum::<usize>() + s.annotation.len() + 1024
    }

    /// Binds the row's [`INSERT_COLUMNS`].
    pub(crate) fn bind(&self, stmt: RowStmt) -> RowStmt {
        let s = &self.stored.scheduling;
        let placement_tags = serde_json::to_string(&s.placement_tags).unwrap_or_else(|_| "[]".to_owned());
        stmt.bind(s.process_guid.as_str().to_owned())
            .bind(s.domain.as_str().to_owned())
            .bind(s.log_guid.clone())
            .bind(s.annotation.clone())
            .bind(i64::from(s.instances))
            .bind(i64::from(s.memory_mb))
            .bind(i64::from(s.disk_mb))
            .bind(i64::from(s.max_pids))
            .bind(s.rootfs.clone())
            .bind(encode_routes(&s.routes))
            .bind(encode_json(&s.volume_placement))
            .bind(placement_tags)
            .bind(encode_json(&self.stored.metric_tags))
            .bind(s.modification_tag.epoch.clone())
            .bind(i64::from(s.modification_tag.index))
            .bind(i64::from(s.update_strategy.as_i32()))
            .bind(self.run_info.clone())
            .bind(self.key_label.clone())
    }
}

/// A statement under construction.
pub(crate) type RowStmt = sqlx::query::Query<'static, sqlx::any::Any, sqlx::any::AnyArguments>;

/// Most instances of a desire that joins a group commit ([`Store::write_grouped`]).
const GROUPED_DESIRE_MAX_INSTANCES: i32 = 16;

impl Store {
    /// Stores `lrp` with a fresh modification tag (a new epoch, index 0) and its run info's
    /// `created_at` set to `now_ns`, together with UNCLAIMED actual LRPs for the indices
    /// `0..instances` that have no ordinary row yet (rows a removed LRP of the same guid left
    /// behind are kept), in one transaction. Returns the stored record and the created instances.
    /// [`Error::Exists`] when the process guid is taken; nothing is written then.
    pub async fn desire_lrp(&self, lrp: &DesiredLrp, now_ns: i64) -> Result<(DesiredLrp, Vec<ActualLrp>)> {
        let op = "desire lrp";
        // Sealed once, outside the transaction. The body must own what it uses: the transaction
        // helper re-runs it on deadlock.
        let row = Arc::new(NewDesired::new(self, lrp.clone(), now_ns));
        let shared = Arc::clone(&row);
        // A desire of a few instances is a single-record write; one of many holds its batch for
        // as long as its inserts take, so it runs on its own.
        let grouped = lrp.scheduling.instances <= GROUPED_DESIRE_MAX_INSTANCES;
        let created = self
            .write_grouped_if(grouped, op, move |tx| {
                let row = Arc::clone(&shared);
                Box::pin(async move {
                    let s = &row.stored.scheduling;
                    let sql = insert_desired_sql(1);
                    row.bind(tx.backend.query(&sql))
                        .execute(tx.conn())
                        .await
                        .map_err(|e| Error::from_sqlx(op, "desired lrp", s.process_guid.as_str(), e))?;
                    let indices = missing_indices(tx, op, &s.process_guid, 0, s.instances).await?;
                    insert_unclaimed(tx, &s.process_guid, &s.domain, &indices, now_ns).await
                })
            })
            .await?;
        let row = Arc::unwrap_or_clone(row);
        Ok((row.stored, created))
    }

    /// The desired LRPs `filter` selects, sorted by process guid. Rows that cannot be decoded
    /// are skipped with a warning.
    pub async fn desired_lrps(&self, filter: &DesiredLrpFilter) -> Result<Vec<DesiredLrp>> {
        let columns = format!("{SCHEDULING_COLUMNS}, metric_tags, run_info");
        self.list_desired("list desired lrps", &columns, filter, |row| decode_desired(self.keys(), row)).await
    }

    /// The desired LRP `guid`. [`Error::NotFound`] when absent, [`Error::Corrupt`] when its row
    /// cannot be decoded.
    pub async fn desired_lrp(&self, guid: &ProcessGuid) -> Result<DesiredLrp> {
        let columns = format!("{SCHEDULING_COLUMNS}, metric_tags, run_info");
        self.get_desired("get desired lrp", &columns, guid, |row| decode_desired(self.keys(), row)).await
    }

    /// The scheduling halves of the desired LRPs `filter` selects, sorted by process guid;
    /// `run_info` is neither read nor decoded. Undecodable rows are skipped with a warning.
    pub async fn scheduling_infos(&self, filter: &DesiredLrpFilter) -> Result<Vec<SchedulingInfo>> {
        self.list_desired("list scheduling infos", SCHEDULING_COLUMNS, filter, decode_scheduling).await
    }

    /// The scheduling half of the desired LRP `guid`, without reading `run_info`.
    /// [`Error::NotFound`] when absent, [`Error::Corrupt`] when its columns cannot be decoded.
    pub async fn scheduling_info(&self, guid: &ProcessGuid) -> Result<SchedulingInfo> {
        self.get_desired("get scheduling info", SCHEDULING_COLUMNS, guid, decode_scheduling).await
    }

    /// The routing view (scheduling half plus metric tags) of the desired LRPs `filter`
    /// selects, sorted by process guid; `run_info` is not read. Undecodable rows are skipped with
    /// a warning.
    pub async fn routing_infos(
        &self,
        filter: &DesiredLrpFilter,
    ) -> Result<Vec<(SchedulingInfo, BTreeMap<String, MetricTagValue>)>> {
        let columns = format!("{SCHEDULING_COLUMNS}, metric_tags");
        self.list_desired("list routing infos", &columns, filter, decode_routing).await
    }

    /// Applies the `Some` fields of `update` to the desired LRP `guid` and increments its
    /// modification tag index, in one transaction that locks the row. Image credentials live in
    /// the run info blob, which is re-encoded only when they change. When `instances` grows,
    /// UNCLAIMED actual LRPs are created in the same transaction for the new indices that have no
    /// ordinary row yet (a recent scale-down's rows may still be there); shrinking
    /// only changes the count (the caller stops the extra instances). [`Error::NotFound`] when
    /// absent, [`Error::Corrupt`] when the stored row cannot be decoded, [`Error::Invalid`] when
    /// the credentials end up half set.
    pub async fn update_desired_lrp(
        &self,
        guid: &ProcessGuid,
        update: &DesiredLrpUpdate,
        now_ns: i64,
    ) -> Result<DesiredLrpUpdated> {
        let op = "update desired lrp";
        let (guid, update) = (guid.clone(), Arc::new(update.clone()));
        self.write(op, move |tx| {
            let (guid, update) = (guid.clone(), Arc::clone(&update));
            Box::pin(async move {
                let guid = &guid;
                let before = lock_desired(tx, op, guid).await?;
                let mut after = before.clone();
                let s = &mut after.scheduling;
                if let Some(instances) = update.instances {
                    s.instances = instances;
                }
                if let Some(routes) = &update.routes {
                    s.routes = routes.clone();
                }
                if let Some(annotation) = &update.annotation {
                    s.annotation = annotation.clone();
                }
                s.modification_tag = s.modification_tag.incremented();
                if let Some(metric_tags) = &update.metric_tags {
                    after.metric_tags = metric_tags.clone();
                }
                let credentials_change = update.image_username.is_some() || update.image_password.is_some();
                if credentials_change {
                    let mut run_info = after.run_info.clone().into_pb();
                    if let Some(username) = &update.image_username {
                        run_info.image_username = username.clone();
                    }
                    if let Some(password) = &update.image_password {
                        run_info.image_password = password.clone();
                    }
                    after.run_info = proto::convert::run_info_from_pb(run_info)?;
                }
                let s = &after.scheduling;
                let mut sql = "UPDATE desired_lrps SET instances = ?, routes = ?, annotation = ?, metric_tags = ?, \
                               modification_tag_index = ?"
                    .to_owned();
                if credentials_change {
                    sql.push_str(", run_info = ?, key_label = ?");
                }
                sql.push_str(" WHERE process_guid = ?");
                let mut query = tx
                    .backend
                    .query(&sql)
                    .bind(i64::from(s.instances))
                    .bind(encode_routes(&s.routes))
                    .bind(s.annotation.clone())
                    .bind(encode_json(&after.metric_tags))
                    .bind(i64::from(s.modification_tag.index));
                if credentials_change {
                    query = query
                        .bind(seal_proto(&tx.keys, after.run_info.as_pb()))
                        .bind(tx.keys.active_label().unwrap_or_default().to_owned());
                }
                query
                    .bind(guid.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(|e| Error::from_sqlx(op, "desired lrp", guid.as_str(), e))?;
                let created = if s.instances > before.scheduling.instances {
                    let from = before.scheduling.instances.max(0);
                    let indices = missing_indices(tx, op, guid, from, s.instances).await?;
                    insert_unclaimed(tx, guid, &s.domain, &indices, now_ns).await?
                } else {
                    Vec::new()
                };
                Ok(DesiredLrpUpdated { before, after, created })
            })
        })
        .await
    }

    /// Deletes the desired LRP `guid` and returns it. Its actual LRPs are left to the caller.
    /// [`Error::NotFound`] when absent; [`Error::Corrupt`] (and nothing deleted) when the row
    /// cannot be decoded.
    pub async fn remove_desired_lrp(&self, guid: &ProcessGuid) -> Result<DesiredLrp> {
        let op = "remove desired lrp";
        let guid = guid.clone();
        self.write(op, move |tx| {
            let guid = guid.clone();
            Box::pin(async move {
                let guid = &guid;
                let before = lock_desired(tx, op, guid).await?;
                tx.backend
                    .query("DELETE FROM desired_lrps WHERE process_guid = ?")
                    .bind(guid.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(|e| Error::from_sqlx(op, "desired lrp", guid.as_str(), e))?;
                Ok(before)
            })
        })
        .await
    }

    /// One row of `columns` for `guid`, decoded by `decode`.
    async fn get_desired<T>(
        &self,
        op: &'static str,
        columns: &str,
        guid: &ProcessGuid,
        decode: impl Fn(&AnyRow) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let sql = format!("SELECT {columns} FROM desired_lrps WHERE process_guid = ?");
        let row = self
            .backend
            .query(&sql)
            .bind(guid.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "desired lrp", guid.as_str(), e))?
            .ok_or_else(|| Error::NotFound { what: "desired lrp", key: guid.to_string() })?;
        decode(&row).map_err(|reason| Error::Corrupt { what: "desired lrp", key: guid.to_string(), reason })
    }

    /// The rows of `columns` that `filter` selects, decoded by `decode`, sorted by process guid,
    /// undecodable rows skipped. Long guid lists are split over several statements.
    async fn list_desired<T>(
        &self,
        op: &'static str,
        columns: &str,
        filter: &DesiredLrpFilter,
        decode: impl Fn(&AnyRow) -> std::result::Result<T, String>,
    ) -> Result<Vec<T>> {
        let mut guid_chunks: Vec<&[ProcessGuid]> = filter.process_guids.chunks(GUIDS_PER_QUERY).collect();
        if guid_chunks.is_empty() {
            guid_chunks.push(&[]);
        }
        let mut found = BTreeMap::new();
        for (i, guids) in guid_chunks.into_iter().enumerate() {
            // The app guid patterns go with the first statement only.
            let app_guids: &[String] = if i == 0 { &filter.app_guids } else { &[] };
            if i > 0 && guids.is_empty() {
                continue;
            }
            let (clause, binds) = filter_clause(filter, guids, app_guids);
            let sql = format!("SELECT {columns} FROM desired_lrps{clause}");
            let mut query = self.backend.query(&sql).persistent(self.backend.keeps_prepared(!guids.is_empty()));
            for bind in binds {
                query = query.bind(bind);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(|e| Error::from_sqlx(op, "desired lrp", "*", e))?;
            found.extend(rows.iter().filter_map(|row| decode_or_skip(row, &decode)));
        }
        // Byte order of the guid, whatever the database's collation.
        Ok(found.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("a_b%c!d"), "a!_b!%c!!d");
        assert_eq!(escape_like("plain-guid"), "plain-guid");
    }

    #[test]
    fn filters_and_the_domain_with_the_ored_lists() {
        let filter = DesiredLrpFilter {
            domain: Some(DomainName::parse("cf-apps").unwrap()),
            process_guids: vec![ProcessGuid::parse("p1").unwrap(), ProcessGuid::parse("p2").unwrap()],
            app_guids: vec!["app_1".to_owned()],
        };
        let (clause, binds) = filter_clause(&filter, &filter.process_guids, &filter.app_guids);
        assert_eq!(clause, " WHERE domain = ? AND (process_guid IN (?, ?) OR process_guid LIKE ? ESCAPE '!')");
        assert_eq!(binds, ["cf-apps", "p1", "p2", "app!_1%"]);
        let (clause, binds) = filter_clause(&DesiredLrpFilter::default(), &[], &[]);
        assert_eq!((clause.as_str(), binds.len()), ("", 0));
    }
}
