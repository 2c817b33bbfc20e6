//! The thin executor of an [`LrpPlan`]: applies the actions in batches and fills the report.
//!
//! Order (each phase waits for the one before):
//! 1. prunes: expired domains, evacuating rows on lost cells (two set-based statements);
//! 2. retirement deletes: ordinary rows without a container (the leftovers of a scale-down or a
//!    removal, possibly 100,000 of one process guid) per process guid in bounded batches that lock
//!    and re-check their rows (`db::sql::retire`), each removal published under its key lock; for
//!    the other doomed rows, the full rows are read in one query per 512 process guids (for the
//!    removal events), rows whose modification tag changed since the snapshot are left alone, the
//!    rest deleted in one transaction;
//! 3. per-index writes (suspect, unclaim, promote, crash restart), at most `workers` at once,
//!    each under its key lock and re-checked inside its transaction;
//! 4. missing rows, one multi-row insert per desired LRP, at most `workers` at once; then the
//!    desired LRPs rebuilt from the cells' reports (issue 19), one desire each, their rows
//!    a cell does not report running auctioned with the others;
//! 5. one auction call with every start of the pass, grouped per process guid;
//! 6. rep stops, at most `workers` at once.
//!
//! A write that fails is logged, counted and left to the next pass, except a fenced write: this
//! BBS lost its lease, so the pass stops at once with [`Error::Store`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use db::Store;
use db::sql::actual_lrps::{ActualLrpFilter, IndexChange, IndexRows};
use db::sql::convergence::{DesiredSummary, LrpSnapshot};
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use proto::lifecycle::actual_lrp::{apply_promote, apply_suspect_and_replace, apply_unclaim};
use proto::models::{ActualLrp, ActualLrpState, CellId, DesiredLrp, Presence, ProcessGuid};
use tokio::time::Instant;

use super::plan::{LrpAction, LrpPlan, Placement, RowRef};
use crate::ConvergenceConfig;
use crate::cells::CellSet;
use crate::effects::{Effects, LockKey, LrpStartRequest, StopInstance};
use crate::error::{Error, Result};
use crate::report::LrpTickReport;

/// Everything a pass's execution reads.
pub(crate) struct Executor<'a> {
    pub store: &'a Store,
    pub effects: &'a dyn Effects,
    pub config: &'a ConvergenceConfig,
    pub cells: &'a CellSet,
    pub snapshot: &'a LrpSnapshot,
    /// The desired LRPs the cells reported for process guids the snapshot has none for.
    pub recovered: &'a BTreeMap<ProcessGuid, DesiredLrp>,
    pub now_ns: i64,
}

/// A per-index write and what it leads to.
enum IndexWrite<'p> {
    Restart(&'p ProcessGuid, i32),
    Suspect(&'p ProcessGuid, i32, &'p CellId),
    Unclaim(&'p ProcessGuid, i32, &'p CellId),
    Promote(&'p ProcessGuid, i32, &'p CellId),
}

/// What a store write phase hands on.
#[derive(Default)]
struct Followups {
    /// Indices to start, per process guid.
    starts: BTreeMap<ProcessGuid, Vec<i32>>,
    /// Containers to stop.
    stops: Vec<StopInstance>,
}

impl Followups {
    fn start(&mut self, guid: &ProcessGuid, index: i32) {
        self.starts.entry(guid.clone()).or_default().push(index);
    }

    fn stop(&mut self, guid: &ProcessGuid, index: i32, placement: &Placement) {
        self.stops.push(StopInstance {
            cell_id: placement.cell_id.clone(),
            process_guid: guid.clone(),
            instance_guid: placement.instance_guid.clone(),
            index,
        });
    }
}

/// Turns a store error into the pass's error if it is fatal (fenced), else logs and counts it.
fn check(step: &'static str, e: db::Error, errors: &mut usize) -> Result<()> {
    if matches!(e, db::Error::Fenced { .. }) {
        return Err(Error::Store { step, source: e });
    }
    tracing::warn!(step, error = %e, "convergence write failed; the next pass retries");
    *errors += 1;
    Ok(())
}

impl Executor<'_> {
    /// Applies `plan`, recording what happened in `report`.
    pub async fn run(&self, plan: &LrpPlan, report: &mut LrpTickReport) -> Result<()> {
        let writes_started = Instant::now();
        let mut next = Followups::default();
        self.prune(plan, report).await?;
        self.delete_retired(plan, report, &mut next).await?;
        report.phases.deletes = writes_started.elapsed();
        let started = Instant::now();
        self.write_indices(plan, report, &mut next).await?;
        report.phases.index_writes = started.elapsed();
        let started = Instant::now();
        self.create_missing(plan, report, &mut next).await?;
        let recovered_starts = self.recover_desired(plan, report).await?;
        report.phases.creates = started.elapsed();
        report.phases.writes = writes_started.elapsed();

        let calls_started = Instant::now();
        for action in &plan.actions {
            match action {
                LrpAction::AuctionStaleUnclaimed { process_guid, index } => {
                    report.stale_auctioned += 1;
                    next.start(process_guid, *index);
                }
                LrpAction::Retire { row, stop: Some(placement), delete: false, .. } => {
                    next.stop(&row.process_guid, row.index, placement)
                }
                _ => {}
            }
        }
        self.auction(next.starts, report).await;
        if !recovered_starts.is_empty() {
            let count: usize = recovered_starts.iter().map(|r| r.indices.len()).sum();
            report.starts += count;
            if let Err(e) = self.effects.request_lrp_auctions(recovered_starts).await {
                tracing::warn!(instances = count, error = %e, "lrp auction request failed; the next pass retries");
                report.auction_error = Some(e.to_string());
            }
        }
        self.stop(next.stops, report).await;
        report.phases.calls = calls_started.elapsed();
        Ok(())
    }

    async fn prune(&self, plan: &LrpPlan, report: &mut LrpTickReport) -> Result<()> {
        for action in &plan.actions {
            match action {
                LrpAction::PruneExpiredDomains => match self.store.delete_expired_domains(self.now_ns).await {
                    Ok(n) => report.domains_pruned = n,
                    Err(e) => check("prune expired domains", e, &mut report.write_errors)?,
                },
                LrpAction::PruneEvacuating { .. } => {
                    let live: Vec<CellId> = self.cells.live.iter().cloned().collect();
                    match self.store.delete_evacuating_not_on_cells(&live).await {
                        Ok(removed) => {
                            for lrp in &removed {
                                self.effects.publish_removed(lrp);
                            }
                            report.evacuating_pruned = removed.len();
                        }
                        Err(e) => check("prune evacuating", e, &mut report.write_errors)?,
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Retirements that delete rows: the ordinary rows without a container in bounded batches
    /// per process guid; the others with one read of the full rows (for the events) and one
    /// transaction of chunked deletes.
    async fn delete_retired(&self, plan: &LrpPlan, report: &mut LrpTickReport, next: &mut Followups) -> Result<()> {
        let (unplaced, doomed): (Vec<(&RowRef, Option<&Placement>)>, Vec<_>) = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                LrpAction::Retire { row, delete: true, stop, .. } => Some((row, stop.as_ref())),
                _ => None,
            })
            .partition(|(row, stop)| stop.is_none() && self.unplaced_ordinary(row));
        let guids: BTreeSet<&ProcessGuid> = unplaced.iter().map(|(row, _)| &row.process_guid).collect();
        for guid in guids {
            // From index 0: the store never deletes below the desired LRP's current count.
            let publish = |batch: Vec<ActualLrp>| async move {
                for lrp in batch {
                    let guard = self.effects.lock_key(LockKey::Instance(&lrp.key.process_guid, lrp.key.index)).await;
                    self.effects.publish_removed(&lrp);
                    drop(guard);
                }
            };
            match self.store.retire_unplaced_actual_lrps(guid, 0, publish).await {
                Ok(retired) => report.retired_deleted += retired.deleted,
                Err(e) => check("retire rows without a container", e, &mut report.write_errors)?,
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let guids: HashSet<&ProcessGuid> = doomed.iter().map(|(r, _)| &r.process_guid).collect();
        let filter =
            ActualLrpFilter { process_guids: guids.into_iter().cloned().collect(), ..ActualLrpFilter::default() };
        let current = match self.store.actual_lrps(&filter).await {
            Ok(rows) => rows,
            Err(e) => return check("read retired rows", e, &mut report.write_errors),
        };
        let by_key: HashMap<(&ProcessGuid, i32, Presence), &ActualLrp> =
            current.iter().map(|l| ((&l.key.process_guid, l.key.index, l.presence), l)).collect();
        let mut keys = Vec::new();
        let mut rows = Vec::new();
        for (row, stop) in doomed {
            match by_key.get(&(&row.process_guid, row.index, row.presence)) {
                Some(lrp) if lrp.modification_tag == row.modification_tag => {
                    keys.push((row.process_guid.clone(), row.index, row.presence));
                    rows.push((*lrp, stop));
                }
                _ => report.skipped += 1,
            }
        }
        match self.store.delete_actual_lrps(&keys).await {
            Ok(n) => {
                report.retired_deleted += n;
                for (lrp, stop) in rows {
                    self.effects.publish_removed(lrp);
                    if let Some(placement) = stop {
                        next.stop(&lrp.key.process_guid, lrp.key.index, placement);
                    }
                }
                Ok(())
            }
            Err(e) => check("delete retired rows", e, &mut report.write_errors),
        }
    }

    /// Whether the snapshot shows `row` as an ordinary row without a container.
    fn unplaced_ordinary(&self, row: &RowRef) -> bool {
        let key = (row.process_guid.as_str(), row.index, row.presence);
        row.presence == Presence::Ordinary
            && self
                .snapshot
                .actual
                .binary_search_by(|a| (a.process_guid.as_str(), a.index, a.presence).cmp(&key))
                .is_ok_and(|i| {
                    matches!(self.snapshot.actual[i].state, ActualLrpState::Unclaimed | ActualLrpState::Crashed)
                })
    }

    async fn write_indices(&self, plan: &LrpPlan, report: &mut LrpTickReport, next: &mut Followups) -> Result<()> {
        let writes: Vec<IndexWrite<'_>> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                LrpAction::RestartCrashed { process_guid, index, .. } => {
                    Some(IndexWrite::Restart(process_guid, *index))
                }
                LrpAction::SuspectAndReplace { process_guid, index, cell_id } => {
                    Some(IndexWrite::Suspect(process_guid, *index, cell_id))
                }
                LrpAction::UnclaimReplacement { process_guid, index, cell_id } => {
                    Some(IndexWrite::Unclaim(process_guid, *index, cell_id))
                }
                LrpAction::Promote { process_guid, index, cell_id } => {
                    Some(IndexWrite::Promote(process_guid, *index, cell_id))
                }
                _ => None,
            })
            .collect();
        // Boxed before they go into the stream: the pass future must be Send, and boxing keeps
        // the compiler from having to prove that for every lifetime of an unboxed closure.
        type Written<'w> = (IndexWrite<'w>, db::Result<IndexChange<()>>);
        let futures: Vec<BoxFuture<'_, Written<'_>>> = writes
            .into_iter()
            .map(|w| -> BoxFuture<'_, Written<'_>> {
                Box::pin(async move {
                    let outcome = self.write_index(&w).await;
                    (w, outcome)
                })
            })
            .collect();
        let mut results = stream::iter(futures).buffer_unordered(self.config.workers.max(1));
        let mut fenced = None;
        while let Some((write, outcome)) = results.next().await {
            let change = match outcome {
                Ok(change) => change,
                // The row went away since the snapshot: nothing to do.
                Err(db::Error::NotFound { .. }) => {
                    report.skipped += 1;
                    continue;
                }
                Err(e) => {
                    if let Err(stop) = check("per-index write", e, &mut report.write_errors) {
                        fenced.get_or_insert(stop);
                    }
                    continue;
                }
            };
            if !change.changed() {
                report.skipped += 1;
                continue;
            }
            match write {
                IndexWrite::Restart(guid, index) => {
                    report.restarted += 1;
                    next.start(guid, index);
                }
                IndexWrite::Suspect(guid, index, _) => {
                    report.suspected += 1;
                    next.start(guid, index);
                }
                IndexWrite::Unclaim(..) => report.unclaimed += 1,
                IndexWrite::Promote(guid, index, _) => {
                    report.promoted += 1;
                    // The discarded replacement's container, if it has one on a live cell.
                    if let Some(old) = &change.before.ordinary {
                        let promoted = change.after.ordinary.as_ref().and_then(|o| o.instance_key.as_ref());
                        if let Some(key) = old.instance_key.as_ref().filter(|k| Some(*k) != promoted) {
                            let placed = matches!(old.state, ActualLrpState::Claimed | ActualLrpState::Running);
                            if placed && self.cells.is_live(&key.cell_id) {
                                let placement = Placement {
                                    cell_id: key.cell_id.clone(),
                                    instance_guid: key.instance_guid.clone(),
                                };
                                next.stop(guid, index, &placement);
                            }
                        }
                    }
                }
            }
        }
        fenced.map_or(Ok(()), Err)
    }

    /// One per-index write under its key lock, re-checked against the rows as locked; the
    /// events are published before the lock is released.
    async fn write_index(&self, write: &IndexWrite<'_>) -> db::Result<IndexChange<()>> {
        let (guid, index) = match write {
            IndexWrite::Restart(g, i)
            | IndexWrite::Suspect(g, i, _)
            | IndexWrite::Unclaim(g, i, _)
            | IndexWrite::Promote(g, i, _) => (*g, *i),
        };
        let _guard = self.effects.lock_key(LockKey::Instance(guid, index)).await;
        let now = self.now_ns;
        let on = |row: &ActualLrp, cell: &CellId| {
            row.instance_key.as_ref().is_some_and(|k| k.cell_id == *cell)
                && matches!(row.state, ActualLrpState::Claimed | ActualLrpState::Running)
        };
        let change = match *write {
            IndexWrite::Restart(..) => {
                let policy = self.config.crash_policy;
                self.store
                    .modify_index("restart crashed actual lrp", guid, index, move |rows| {
                        let due = rows.ordinary.as_ref().filter(|o| {
                            o.state == ActualLrpState::Crashed && policy.should_restart(o.crash_count, o.since, now)
                        });
                        if let Some(key) = due.map(|o| o.key.clone()) {
                            apply_unclaim(rows, &key, now)?;
                        }
                        Ok(())
                    })
                    .await?
            }
            IndexWrite::Suspect(_, _, cell) => {
                self.store
                    .modify_index("suspect actual lrp", guid, index, move |rows| {
                        // Re-checked under the lock: still on the lost cell, and no suspect yet.
                        if rows.suspect.is_none() && rows.ordinary.as_ref().is_some_and(|o| on(o, cell)) {
                            apply_suspect_and_replace(rows, guid, index, now)?;
                        }
                        Ok(())
                    })
                    .await?
            }
            IndexWrite::Unclaim(_, _, cell) => {
                self.store
                    .modify_index("unclaim replacement actual lrp", guid, index, move |rows| {
                        let replacement = rows.ordinary.as_ref().filter(|o| on(o, cell));
                        if rows.suspect.is_some()
                            && let Some(key) = replacement.map(|o| o.key.clone())
                        {
                            apply_unclaim(rows, &key, now)?;
                        }
                        Ok(())
                    })
                    .await?
            }
            IndexWrite::Promote(_, _, cell) => {
                self.store
                    .modify_index("promote suspect actual lrp", guid, index, move |rows| {
                        // The replacement goes whatever its state.
                        if rows.suspect.as_ref().is_some_and(|s| on(s, cell)) {
                            apply_promote(rows, guid, index)?;
                        }
                        Ok(())
                    })
                    .await?
            }
        };
        if change.changed() {
            self.effects.publish_index_change(&change);
        }
        Ok(change)
    }

    async fn create_missing(&self, plan: &LrpPlan, report: &mut LrpTickReport, next: &mut Followups) -> Result<()> {
        type Created<'c> = (&'c ProcessGuid, db::Result<Vec<ActualLrp>>);
        let creates: Vec<BoxFuture<'_, Created<'_>>> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                LrpAction::CreateMissing { process_guid, domain, indices } => Some((process_guid, domain, indices)),
                _ => None,
            })
            .map(|(guid, domain, indices)| -> BoxFuture<'_, Created<'_>> {
                Box::pin(async move {
                    let outcome = self.store.create_unclaimed_actual_lrps(guid, domain, indices, self.now_ns).await;
                    match outcome {
                        // A concurrent desire or scale-up created some of them: one by one.
                        Err(db::Error::Exists { .. }) if indices.len() > 1 => {
                            let mut created = Vec::new();
                            for index in indices {
                                match self
                                    .store
                                    .create_unclaimed_actual_lrps(guid, domain, &[*index], self.now_ns)
                                    .await
                                {
                                    Ok(rows) => created.extend(rows),
                                    Err(db::Error::Exists { .. }) => {}
                                    Err(e) => return (guid, Err(e)),
                                }
                            }
                            (guid, Ok(created))
                        }
                        other => (guid, other),
                    }
                })
            })
            .collect();
        let mut results = stream::iter(creates).buffer_unordered(self.config.workers.max(1));
        let mut fenced = None;
        while let Some((guid, outcome)) = results.next().await {
            match outcome {
                Ok(rows) => {
                    for row in rows {
                        self.effects.publish_index_change(&IndexChange {
                            value: (),
                            before: IndexRows::default(),
                            after: IndexRows { ordinary: Some(row.clone()), ..IndexRows::default() },
                        });
                        report.created += 1;
                        next.start(guid, row.key.index);
                    }
                }
                Err(db::Error::Exists { .. }) => report.skipped += 1,
                Err(e) => {
                    if let Err(stop) = check("create missing", e, &mut report.write_errors) {
                        fenced.get_or_insert(stop);
                    }
                }
            }
        }
        fenced.map_or(Ok(()), Err)
    }

    /// Desires each desired LRP rebuilt from the cells' reports (marked recovered, the plan's
    /// instance count), publishing it and the rows created for its indices with no row; returns
    /// the starts of those rows no cell reports running. A desire of the same process guid that
    /// came first wins (the rebuild is skipped), and so does a removal of it served lately
    /// ([`Effects::removed_lately`]): the reps still report what they were asked to stop.
    async fn recover_desired(&self, plan: &LrpPlan, report: &mut LrpTickReport) -> Result<Vec<LrpStartRequest>> {
        let mut starts = Vec::new();
        for action in &plan.actions {
            let LrpAction::RecoverDesired { process_guid, instances, running } = action else { continue };
            let Some(reported) = self.recovered.get(process_guid) else { continue };
            if self.effects.removed_lately(process_guid) {
                tracing::info!(process_guid = %process_guid, "not rebuilding a desired lrp removed lately");
                report.skipped += 1;
                continue;
            }
            let mut lrp = reported.clone();
            lrp.scheduling.instances = *instances;
            lrp.scheduling.annotation = super::recovery::recovered_annotation(&lrp.scheduling.annotation);
            match self.store.desire_lrp(&lrp, self.now_ns).await {
                Ok((stored, created)) => {
                    tracing::warn!(process_guid = %process_guid, instances, running = running.len(), "desired lrp rebuilt from the cells' reports");
                    report.recovered += 1;
                    self.effects.publish_desired_recovered(&stored);
                    let mut indices = Vec::new();
                    for row in created {
                        if !running.contains(&row.key.index) {
                            indices.push(row.key.index);
                        }
                        self.effects.publish_index_change(&IndexChange {
                            value: (),
                            before: IndexRows::default(),
                            after: IndexRows { ordinary: Some(row), ..IndexRows::default() },
                        });
                    }
                    if !indices.is_empty() {
                        let s = &stored.scheduling;
                        starts.push(LrpStartRequest {
                            process_guid: s.process_guid.clone(),
                            domain: s.domain.clone(),
                            indices,
                            memory_mb: s.memory_mb,
                            disk_mb: s.disk_mb,
                            max_pids: s.max_pids,
                            rootfs: s.rootfs.clone(),
                            placement_tags: s.placement_tags.clone(),
                            volume_drivers: s.volume_placement.clone(),
                        });
                    }
                }
                Err(db::Error::Exists { .. }) => report.skipped += 1,
                Err(e) => check("recover desired lrp", e, &mut report.write_errors)?,
            }
        }
        Ok(starts)
    }

    /// One call with every start of the pass.
    async fn auction(&self, starts: BTreeMap<ProcessGuid, Vec<i32>>, report: &mut LrpTickReport) {
        let desired: HashMap<&ProcessGuid, &DesiredSummary> =
            self.snapshot.desired.iter().map(|d| (&d.process_guid, d)).collect();
        let mut requests = Vec::with_capacity(starts.len());
        for (guid, mut indices) in starts {
            let Some(d) = desired.get(&guid) else { continue };
            indices.sort_unstable();
            indices.dedup();
            requests.push(LrpStartRequest {
                process_guid: guid,
                domain: d.domain.clone(),
                indices,
                memory_mb: d.memory_mb,
                disk_mb: d.disk_mb,
                max_pids: d.max_pids,
                rootfs: d.rootfs.clone(),
                placement_tags: d.placement_tags.clone(),
                volume_drivers: d.volume_placement.clone(),
            });
        }
        if requests.is_empty() {
            return;
        }
        let count: usize = requests.iter().map(|r| r.indices.len()).sum();
        report.starts = count;
        if let Err(e) = self.effects.request_lrp_auctions(requests).await {
            tracing::warn!(instances = count, error = %e, "lrp auction request failed; the next pass retries");
            report.auction_error = Some(e.to_string());
        }
    }

    async fn stop(&self, mut stops: Vec<StopInstance>, report: &mut LrpTickReport) {
        stops.sort();
        stops.dedup();
        report.stops = stops.len();
        type Stopped = ((CellId, ProcessGuid, i32), Result<(), crate::EffectError>);
        let calls: Vec<BoxFuture<'_, Stopped>> = stops
            .into_iter()
            .map(|stop| -> BoxFuture<'_, Stopped> {
                Box::pin(async move {
                    let what = (stop.cell_id.clone(), stop.process_guid.clone(), stop.index);
                    (what, self.effects.stop_instance(stop).await)
                })
            })
            .collect();
        let mut results = stream::iter(calls).buffer_unordered(self.config.workers.max(1));
        while let Some(((cell_id, process_guid, index), outcome)) = results.next().await {
            if let Err(e) = outcome {
                tracing::warn!(%cell_id, %process_guid, index, error = %e, "stop request failed; the next pass retries");
                report.stops_failed += 1;
            }
        }
    }
}
