//! What a pass did: [`LrpTickReport`], [`TaskTickReport`] and the combined [`PassReport`], plus
//! the one structured summary log line per pass ([`PassReport::log`]).

use std::time::Duration;

use crate::cells::GuardReason;
use crate::error::Error;
use crate::lrp::plan::LrpCounts;
use crate::task::plan::TaskCounts;

/// Where an LRP pass spent its time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LrpPhases {
    /// Reading the cell presences.
    pub cells: Duration,
    /// Reading the snapshot (three queries).
    pub snapshot: Duration,
    /// Deciding (pure).
    pub plan: Duration,
    /// Every store write (prunes, deletes, per-index writes, creates).
    pub writes: Duration,
    /// Of `writes`: the prunes and the set-based retirement deletes.
    pub deletes: Duration,
    /// Of `writes`: the per-index writes (suspect, unclaim, promote, crash restart).
    pub index_writes: Duration,
    /// Of `writes`: creating missing rows.
    pub creates: Duration,
    /// The auction call and the rep stops.
    pub calls: Duration,
}

/// What one LRP convergence pass saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LrpTickReport {
    /// Wall time of the pass.
    pub duration: Duration,
    /// Where the time went.
    pub phases: LrpPhases,
    /// Why destructive actions were withheld, if they were.
    pub guard: Option<GuardReason>,
    /// How many destructive actions the guard withheld.
    pub withheld: usize,
    /// The state of the world before the pass.
    pub counts: LrpCounts,
    /// Expired domain rows deleted.
    pub domains_pruned: u64,
    /// EVACUATING rows on lost cells deleted.
    pub evacuating_pruned: usize,
    /// Missing instances created.
    pub created: usize,
    /// Desired LRPs rebuilt from the cells' reports (issue 19).
    pub recovered: usize,
    /// What the hold held back while awaiting the cells' word, if anything.
    pub hold: Option<crate::lrp::recovery::Hold>,
    /// Stale UNCLAIMED instances auctioned again.
    pub stale_auctioned: usize,
    /// CRASHED instances whose back-off elapsed, unclaimed.
    pub restarted: usize,
    /// Instances on lost cells moved to SUSPECT and replaced.
    pub suspected: usize,
    /// Replacements on lost cells unclaimed.
    pub unclaimed: usize,
    /// Suspects whose cell came back, promoted.
    pub promoted: usize,
    /// Rows deleted by retirement (extra, orphaned, suspects).
    pub retired_deleted: u64,
    /// Planned writes skipped because the row changed since the snapshot.
    pub skipped: usize,
    /// Rep stops requested.
    pub stops: usize,
    /// Rep stops that failed.
    pub stops_failed: usize,
    /// Instances in the auction call.
    pub starts: usize,
    /// Why the auction call failed, if it did.
    pub auction_error: Option<String>,
    /// Store writes that failed (retried by the next pass).
    pub write_errors: usize,
}

/// What one task convergence pass saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskTickReport {
    /// Wall time of the pass.
    pub duration: Duration,
    /// Why the destructive action (failing tasks on lost cells) was withheld, if it was.
    pub guard: Option<GuardReason>,
    /// How many tasks the guard kept from being failed.
    pub withheld: usize,
    /// Tasks by state before the pass.
    pub counts: TaskCounts,
    /// PENDING tasks failed for being too old.
    pub expired_pending: usize,
    /// RUNNING tasks failed because their cell is lost.
    pub failed_on_lost_cells: usize,
    /// RESOLVING tasks put back to COMPLETED.
    pub demoted: usize,
    /// COMPLETED tasks deleted (Diego's ConvergenceTasksPruned).
    pub pruned: usize,
    /// PENDING tasks sent to the auctioneer (ConvergenceTasksKicked).
    pub kicked: usize,
    /// Completion callbacks queued again.
    pub callbacks: usize,
    /// Planned writes skipped because the task changed since the snapshot.
    pub skipped: usize,
    /// Why the auction call failed, if it did.
    pub auction_error: Option<String>,
    /// Store writes that failed (retried by the next pass).
    pub write_errors: usize,
}

/// One pass of both halves, which ran concurrently.
#[derive(Debug)]
pub struct PassReport {
    /// The LRP half.
    pub lrp: Result<LrpTickReport, Error>,
    /// The task half.
    pub task: Result<TaskTickReport, Error>,
}

impl PassReport {
    /// Whether neither half ran because this BBS does not lead.
    pub fn not_leading(&self) -> bool {
        matches!((&self.lrp, &self.task), (Err(Error::NotLeading), Err(Error::NotLeading)))
    }

    /// Logs the pass as one structured line: info when both halves ran, warn otherwise.
    /// Nothing is logged (beyond debug) when this BBS does not lead.
    pub fn log(&self) {
        if self.not_leading() {
            tracing::debug!("not leading: convergence pass skipped");
            return;
        }
        let lrp = self.lrp.as_ref().ok();
        let task = self.task.as_ref().ok();
        let lrp_error = self.lrp.as_ref().err().map(|e| e.to_string());
        let task_error = self.task.as_ref().err().map(|e| e.to_string());
        let guard =
            lrp.and_then(|r| r.guard.as_ref()).or_else(|| task.and_then(|r| r.guard.as_ref())).map(|g| g.to_string());
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        macro_rules! summary {
            ($level:ident) => {
                tracing::$level!(
                    lrp_duration_ms = lrp.map(|r| ms(r.duration)),
                    task_duration_ms = task.map(|r| ms(r.duration)),
                    guard,
                    lrp_error,
                    task_error,
                    present_cells = lrp.map(|r| r.counts.present_cells),
                    suspect_cells = lrp.map(|r| r.counts.suspect_cells),
                    lrps_desired = lrp.map(|r| r.counts.desired_instances),
                    lrps_running = lrp.map(|r| r.counts.running),
                    lrps_claimed = lrp.map(|r| r.counts.claimed),
                    lrps_unclaimed = lrp.map(|r| r.counts.unclaimed),
                    lrps_crashed = lrp.map(|r| r.counts.crashed),
                    lrps_missing = lrp.map(|r| r.counts.missing),
                    lrps_extra = lrp.map(|r| r.counts.extra),
                    suspect_running = lrp.map(|r| r.counts.suspect_running),
                    suspect_claimed = lrp.map(|r| r.counts.suspect_claimed),
                    created = lrp.map(|r| r.created),
                    recovered = lrp.map(|r| r.recovered),
                    lrp_held = lrp.map(|r| r.hold.as_ref().map_or(0, |h| h.adopting + h.orphans + h.creations)),
                    restarted = lrp.map(|r| r.restarted),
                    suspected = lrp.map(|r| r.suspected),
                    promoted = lrp.map(|r| r.promoted),
                    retired = lrp.map(|r| r.retired_deleted),
                    stops = lrp.map(|r| r.stops),
                    lrp_starts = lrp.map(|r| r.starts),
                    lrp_withheld = lrp.map(|r| r.withheld),
                    tasks_pending = task.map(|r| r.counts.pending),
                    tasks_running = task.map(|r| r.counts.running),
                    tasks_completed = task.map(|r| r.counts.completed),
                    tasks_resolving = task.map(|r| r.counts.resolving),
                    tasks_kicked = task.map(|r| r.kicked),
                    tasks_failed = task.map(|r| r.expired_pending + r.failed_on_lost_cells),
                    tasks_pruned = task.map(|r| r.pruned),
                    callbacks = task.map(|r| r.callbacks),
                    write_errors = lrp.map_or(0, |r| r.write_errors) + task.map_or(0, |r| r.write_errors),
                    "convergence pass"
                )
            };
        }
        if lrp_error.is_none() && task_error.is_none() {
            summary!(info);
        } else {
            summary!(warn);
        }
    }
}
