//! Bulk sync (reference 2.6, `harmonizer/bulker.go`, `generator/generator.go`): a level-triggered
//! pass comparing the executor's containers with the BBS's actual LRPs and tasks for this cell.
//!
//! One [`BulkSync::tick`]:
//! 1. lists the BBS's actual LRPs and tasks on this cell and the executor's containers (a failed
//!    list skips the pass);
//! 2. runs the container operation of every container (the generator's state machine), which
//!    re-claims, re-starts (re-creating RUNNING records after a BBS data loss), reports crashes
//!    and completions that were missed, stops containers the BBS gave to another instance, and,
//!    while evacuating, asks again whether each evacuated instance's replacement runs. The
//!    RUNNING LRP containers of a cell that does not evacuate are re-asserted together, in one
//!    `StartActualLRPs` per 1,000 instances instead of one `StartActualLRP` each
//!    ([`Generator::enqueue_all`]), still one operation at a time per container;
//! 3. removes actual LRPs of this cell that have no container (`RemoveActualLRP`, or
//!    `RemoveEvacuatingActualLRP` for evacuating records) so the converger replaces them;
//! 4. fails tasks running on this cell that have no container.
//!
//! Each removal re-checks that the container is still absent just before acting, since a
//! `Perform` may have reserved it after the listing. [`run`] drives `tick` every polling
//! interval (the evacuation interval once the cell evacuates, starting at once).
//!
//! A rep that starts runs one [`BulkSync::startup`] pass first ([`startup`], as soon as its
//! presence is held): its executor is new, so every ordinary record of this cell belongs to a
//! previous run whose containers died with it. Waiting a polling interval to remove them, and a
//! convergence interval for their replacements, left dead RUNNING records for about a minute
//! (issue 17). Instead, a record whose index the desired LRP still wants is handed back at once
//! (`EvacuateClaimedActualLRP`: unclaimed and auctioned, no crash counted, as a draining rep hands
//! back an instance it gives up); one it no longer wants is removed as in a regular pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proto::error::ErrorCode;
use proto::models::{ActualLrpKey, Presence, TaskState};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::bbs_client::{BbsError, TaskCompletion};
use crate::generator::Generator;
use crate::presence::PresenceStatus;

/// The failure reason of a task whose container vanished.
pub const TASK_CONTAINER_MISSING: &str = "task container does not exist";

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkSyncReport {
    /// Containers whose operation ran.
    pub containers: usize,
    /// Ordinary actual LRPs removed because no container backs them.
    pub lrps_removed: usize,
    /// Evacuating actual LRPs removed because no container backs them.
    pub evacuating_removed: usize,
    /// Ordinary actual LRPs handed back for an immediate auction (startup pass only).
    pub lrps_handed_back: usize,
    /// Tasks failed because no container backs them.
    pub tasks_failed: usize,
}

/// The bulk sync of one cell.
#[derive(Debug, Clone)]
pub struct BulkSync {
    generator: Arc<Generator>,
}

impl BulkSync {
    /// A bulk sync driving `generator`'s operations.
    pub fn new(generator: Arc<Generator>) -> Self {
        Self { generator }
    }

    /// One pass; an error means a list call failed and nothing was done.
    pub async fn tick(&self) -> Result<BulkSyncReport, BbsError> {
        self.pass(Pass::Regular).await
    }

    /// The first pass of a rep that just started: as [`BulkSync::tick`], except that an ordinary
    /// record of this cell with no container (a previous run's) is handed back for an immediate
    /// auction while its desired LRP still wants its index, instead of being removed.
    pub async fn startup(&self) -> Result<BulkSyncReport, BbsError> {
        self.pass(Pass::Startup).await
    }

    async fn pass(&self, pass: Pass) -> Result<BulkSyncReport, BbsError> {
        let started = Instant::now();
        let result = self.sync(pass).await;
        let ctx = self.generator.context();
        crate::metrics::record_bulk_sync(ctx.cell.cell_id.as_str(), started.elapsed(), result.is_ok());
        match &result {
            Ok(report) => {
                tracing::debug!(cell_id = %ctx.cell.cell_id, ?report, elapsed = ?started.elapsed(), "bulk sync done")
            }
            Err(e) => tracing::warn!(cell_id = %ctx.cell.cell_id, error = %e, "bulk sync skipped"),
        }
        result
    }

    async fn sync(&self, pass: Pass) -> Result<BulkSyncReport, BbsError> {
        let ctx = self.generator.context();
        let cell_id = ctx.cell.cell_id.as_str();
        let (lrps, tasks) = tokio::join!(ctx.bbs.actual_lrps_by_cell(cell_id), ctx.bbs.tasks_by_cell(cell_id));
        let (lrps, tasks) = (lrps?, tasks?);
        let containers = ctx.executor.list();
        let mut report = BulkSyncReport { containers: containers.len(), ..BulkSyncReport::default() };

        self.generator.enqueue_all(&containers).await;
        // Desired instance counts, read once per process guid (startup pass only).
        let mut wanted: BTreeMap<String, i32> = BTreeMap::new();

        for lrp in lrps {
            let Some(instance) = lrp.instance_key.clone() else { continue };
            if instance.cell_id.as_str() != cell_id || ctx.executor.get(instance.instance_guid.as_str()).is_some() {
                continue;
            }
            match lrp.presence {
                Presence::Evacuating => {
                    tracing::info!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, instance_guid = %instance.instance_guid, "removing an evacuating actual lrp with no container");
                    match ctx.bbs.remove_evacuating_actual_lrp(&lrp.key, &instance).await {
                        Ok(()) => report.evacuating_removed += 1,
                        Err(e) => {
                            tracing::warn!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot remove the evacuating actual lrp")
                        }
                    }
                }
                // A suspect record is the BBS's to resolve: it promotes it back when this cell's
                // presence returns (and the next pass removes it), or retires it once a
                // replacement runs.
                Presence::Suspect => {}
                Presence::Ordinary if pass == Pass::Startup && self.still_wanted(&lrp.key, &mut wanted).await => {
                    tracing::info!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, instance_guid = %instance.instance_guid, state = lrp.state.as_str(), "handing back an instance of a previous run for an immediate auction");
                    match ctx.bbs.evacuate_claimed_actual_lrp(&lrp.key, &instance).await {
                        Ok(_) => report.lrps_handed_back += 1,
                        Err(e) if e.is(ErrorCode::ResourceNotFound) => {}
                        Err(e) => {
                            tracing::warn!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot hand back the actual lrp; the next pass removes it")
                        }
                    }
                }
                Presence::Ordinary => {
                    tracing::info!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, instance_guid = %instance.instance_guid, state = lrp.state.as_str(), "removing an actual lrp with no container");
                    match ctx.bbs.remove_actual_lrp(&lrp.key, &instance).await {
                        Ok(()) => report.lrps_removed += 1,
                        Err(e) if e.is(ErrorCode::ResourceNotFound) => {}
                        Err(e) => {
                            tracing::warn!(cell_id, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot remove the actual lrp")
                        }
                    }
                }
            }
        }

        for task in tasks {
            let guid = task.task_guid.as_str();
            if task.state != TaskState::Running || ctx.executor.get(guid).is_some() {
                continue;
            }
            tracing::info!(cell_id, task_guid = %guid, "failing a task with no container");
            let completion = TaskCompletion {
                task_guid: guid.to_owned(),
                cell_id: cell_id.to_owned(),
                failed: true,
                failure_reason: TASK_CONTAINER_MISSING.to_owned(),
                result: String::new(),
            };
            match ctx.bbs.complete_task(&completion).await {
                Ok(()) => report.tasks_failed += 1,
                Err(e) => tracing::warn!(cell_id, task_guid = %guid, error = %e, "cannot fail the task"),
            }
        }
        Ok(report)
    }
}

/// Which pass [`BulkSync::sync`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every polling interval: records with no container are removed (Diego's bulker).
    Regular,
    /// The first after the rep started: records with no container whose index is still desired
    /// are handed back.
    Startup,
}

impl BulkSync {
    /// Whether the desired LRP of `key` still wants its index (read once per process guid into
    /// `wanted`; a failed read says no, so the record is removed as in a regular pass).
    async fn still_wanted(&self, key: &ActualLrpKey, wanted: &mut BTreeMap<String, i32>) -> bool {
        let guid = key.process_guid.as_str();
        let instances = match wanted.get(guid) {
            Some(instances) => *instances,
            None => {
                let instances = match self.generator.context().bbs.desired_lrp(guid).await {
                    Ok(desired) => desired.scheduling.instances,
                    Err(e) => {
                        if !e.is(ErrorCode::ResourceNotFound) {
                            tracing::warn!(process_guid = guid, error = %e, "cannot read the desired lrp; removing its records with no container");
                        }
                        0
                    }
                };
                wanted.insert(guid.to_owned(), instances);
                instances
            }
        };
        key.index < instances
    }
}

/// How often the startup pass is retried while it fails (the BBS not leading yet, say).
const STARTUP_RETRY: Duration = Duration::from_secs(1);

/// The startup pass ([`BulkSync::startup`]): once `presence` is held (so an auction of what it
/// hands back may place it on this cell too), retried every second while it fails, for at most
/// `give_up_after` (the regular passes remove what is left then). Returns early on `shutdown`.
pub async fn startup(
    sync: &BulkSync,
    presence: &PresenceStatus,
    give_up_after: Duration,
    shutdown: &CancellationToken,
) {
    let deadline = Instant::now() + give_up_after;
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep_until(deadline) => return,
        () = presence.wait_until(true) => {}
    }
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sync.startup() => result,
        };
        if let Ok(report) = result {
            if report.lrps_handed_back + report.lrps_removed + report.evacuating_removed + report.tasks_failed > 0 {
                let ctx = sync.generator.context();
                tracing::info!(cell_id = %ctx.cell.cell_id, ?report, "startup sync: records of a previous run resolved");
            }
            return;
        }
        if Instant::now() + STARTUP_RETRY >= deadline {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(STARTUP_RETRY) => {}
        }
    }
}

/// Runs `sync.tick()` every `interval` (every `evacuation_interval` once the cell evacuates,
/// starting with an immediate pass), and whenever `kick` is notified, until `shutdown`.
pub async fn run(
    sync: BulkSync,
    interval: Duration,
    evacuation_interval: Duration,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let ctx = Arc::clone(sync.generator.context());
    let mut evacuation = ctx.evacuation.subscribe();
    let mut evacuating = *evacuation.borrow_and_update();
    let mut ticker = new_interval(if evacuating { evacuation_interval } else { interval });
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
            () = kick.notified() => {}
            changed = evacuation.changed(), if !evacuating => {
                if changed.is_err() {
                    return;
                }
                evacuating = *evacuation.borrow_and_update();
                if evacuating {
                    tracing::info!(cell_id = %ctx.cell.cell_id, ?evacuation_interval, "evacuating; syncing now and then every evacuation interval");
                    ticker = new_interval(evacuation_interval);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sync.tick() => {}
        }
    }
}

fn new_interval(period: Duration) -> tokio::time::Interval {
    // The first tick of an interval fires at once; skip it so passes start one period in
    // (the generator handles events meanwhile). Evacuation starts its own pass explicitly.
    let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpState, CellId, InstanceGuid, Presence};

    use crate::testing::{BbsCall, FakeBbs, TestCell, desired_lrp, lrp_key};

    /// A RUNNING record of a previous run on `cell-1`, whose container is gone.
    fn previous_run(process_guid: &str, index: i32, instance_guid: &str) -> ActualLrp {
        let mut lrp = ActualLrp::new_unclaimed(lrp_key(process_guid, index), "epoch", 0);
        lrp.state = ActualLrpState::Running;
        lrp.instance_key = Some(ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(instance_guid).expect("guid"),
            cell_id: CellId::parse("cell-1").expect("cell"),
        });
        lrp
    }

    #[tokio::test]
    async fn the_startup_pass_hands_back_still_desired_instances_of_a_previous_run_and_removes_the_rest() {
        let bbs = Arc::new(FakeBbs::new());
        bbs.desire_lrp(desired_lrp("web", 2, 64));
        bbs.put_actual_lrp(previous_run("web", 0, "old-0"));
        bbs.put_actual_lrp(previous_run("web", 3, "old-3"));
        bbs.put_actual_lrp(previous_run("gone", 0, "old-gone"));
        let cell = TestCell::start("cell-1", bbs.clone());

        let report = cell.bulk_sync.startup().await.expect("startup pass");
        assert_eq!((report.lrps_handed_back, report.lrps_removed), (1, 2), "{report:?}");
        let handed_back = bbs.actual_lrp("web", 0, Presence::Ordinary).expect("index 0 is kept");
        assert_eq!(handed_back.state, ActualLrpState::Unclaimed, "unclaimed for an immediate auction");
        assert!(handed_back.instance_key.is_none());
        assert_eq!(handed_back.crash_count, 0, "no crash is counted");
        assert!(bbs.actual_lrp("web", 3, Presence::Ordinary).is_none(), "an index beyond the desired count");
        assert!(bbs.actual_lrp("gone", 0, Presence::Ordinary).is_none(), "a desired lrp that is gone");
        assert!(bbs.calls().iter().any(|c| matches!(c, BbsCall::EvacuateClaimed(lrp) if lrp.instance_guid == "old-0")));
    }

    #[tokio::test]
    async fn a_regular_pass_still_removes_records_with_no_container() {
        let bbs = Arc::new(FakeBbs::new());
        bbs.desire_lrp(desired_lrp("web", 2, 64));
        bbs.put_actual_lrp(previous_run("web", 0, "old-0"));
        let cell = TestCell::start("cell-1", bbs.clone());

        let report = cell.bulk_sync.tick().await.expect("pass");
        assert_eq!((report.lrps_handed_back, report.lrps_removed), (0, 1), "{report:?}");
        assert!(bbs.actual_lrp("web", 0, Presence::Ordinary).is_none());
    }
}
