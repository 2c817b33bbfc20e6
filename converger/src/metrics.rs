//! The convergence metrics of bbs.md 6.2 / 6.3, declared once, recorded through the `metrics`
//! facade (the BBS installs the Prometheus recorder behind its `/metrics`). Names follow
//! Diego's with a `bbs_` prefix and Prometheus casing:
//!
//! | Diego | here |
//! |---|---|
//! | ConvergenceLRPDuration / Runs | `bbs_convergence_lrp_duration_seconds` (histogram), `bbs_convergence_lrp_runs_total{outcome}` |
//! | LRPsMissing / LRPsExtra | `bbs_lrps_missing`, `bbs_lrps_extra` |
//! | LRPsUnclaimed / Claimed / Running | `bbs_lrps_unclaimed`, `bbs_lrps_claimed`, `bbs_lrps_running` |
//! | CrashedActualLRPs / CrashingDesiredLRPs | `bbs_crashed_actual_lrps`, `bbs_crashing_desired_lrps` |
//! | SuspectRunning / SuspectClaimedActualLRPs | `bbs_suspect_running_actual_lrps`, `bbs_suspect_claimed_actual_lrps` |
//! | LRPsDesired | `bbs_lrps_desired` |
//! | PresentCells / SuspectCells | `bbs_present_cells`, `bbs_suspect_cells` |
//! | Domain.<name> | `bbs_domain_fresh{domain}` |
//! | ConvergenceTaskDuration / Runs | `bbs_convergence_task_duration_seconds`, `bbs_convergence_task_runs_total{outcome}` |
//! | TasksPending / Running / Completed / Resolving | `bbs_tasks{state}` |
//! | ConvergenceTasksPruned / Kicked | `bbs_convergence_tasks_pruned_total`, `bbs_convergence_tasks_kicked_total` |
//!
//! Added: `bbs_convergence_guarded_total{half, reason}` (passes whose destructive actions were
//! withheld) and `bbs_convergence_lrp_actions_total{action}` (what passes did).

use proto::models::DomainName;

use crate::report::{LrpTickReport, TaskTickReport};

/// Histogram: seconds per LRP pass.
pub const LRP_DURATION: &str = "bbs_convergence_lrp_duration_seconds";
/// Counter: LRP passes, by `outcome` (`ok`, `error`).
pub const LRP_RUNS: &str = "bbs_convergence_lrp_runs_total";
/// Gauge: indices with no ordinary row.
pub const LRPS_MISSING: &str = "bbs_lrps_missing";
/// Gauge: ordinary rows to retire (fresh domains).
pub const LRPS_EXTRA: &str = "bbs_lrps_extra";
/// Gauge: ordinary rows UNCLAIMED.
pub const LRPS_UNCLAIMED: &str = "bbs_lrps_unclaimed";
/// Gauge: ordinary rows CLAIMED.
pub const LRPS_CLAIMED: &str = "bbs_lrps_claimed";
/// Gauge: ordinary rows RUNNING.
pub const LRPS_RUNNING: &str = "bbs_lrps_running";
/// Gauge: ordinary rows CRASHED.
pub const CRASHED_ACTUAL_LRPS: &str = "bbs_crashed_actual_lrps";
/// Gauge: desired LRPs with a CRASHED instance.
pub const CRASHING_DESIRED_LRPS: &str = "bbs_crashing_desired_lrps";
/// Gauge: suspect rows RUNNING.
pub const SUSPECT_RUNNING: &str = "bbs_suspect_running_actual_lrps";
/// Gauge: suspect rows CLAIMED.
pub const SUSPECT_CLAIMED: &str = "bbs_suspect_claimed_actual_lrps";
/// Gauge: sum of desired instances.
pub const LRPS_DESIRED: &str = "bbs_lrps_desired";
/// Gauge: live cells.
pub const PRESENT_CELLS: &str = "bbs_present_cells";
/// Gauge: cells not live that hold CLAIMED or RUNNING rows.
pub const SUSPECT_CELLS: &str = "bbs_suspect_cells";
/// Gauge: 1 for each fresh domain, by `domain`.
pub const DOMAIN_FRESH: &str = "bbs_domain_fresh";
/// Counter: LRP actions applied, by `action`.
pub const LRP_ACTIONS: &str = "bbs_convergence_lrp_actions_total";
/// Histogram: seconds per task pass.
pub const TASK_DURATION: &str = "bbs_convergence_task_duration_seconds";
/// Counter: task passes, by `outcome`.
pub const TASK_RUNS: &str = "bbs_convergence_task_runs_total";
/// Gauge: tasks by `state` (`pending`, `running`, `completed`, `resolving`).
pub const TASKS: &str = "bbs_tasks";
/// Counter: completed tasks deleted.
pub const TASKS_PRUNED: &str = "bbs_convergence_tasks_pruned_total";
/// Counter: pending tasks sent to the auctioneer.
pub const TASKS_KICKED: &str = "bbs_convergence_tasks_kicked_total";
/// Counter: passes with destructive actions withheld, by `half` and `reason`.
pub const GUARDED: &str = "bbs_convergence_guarded_total";

/// Registers the descriptions of every metric above with the installed recorder. Optional;
/// call once after installing it.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(LRP_DURATION, metrics::Unit::Seconds, "duration of an lrp convergence pass");
    describe_counter!(LRP_RUNS, "lrp convergence passes by outcome");
    describe_gauge!(LRPS_MISSING, "desired instances with no actual lrp");
    describe_gauge!(
        LRPS_EXTRA,
        "actual lrps beyond their desired instances or without a desired lrp, in fresh domains"
    );
    describe_gauge!(LRPS_UNCLAIMED, "actual lrps unclaimed");
    describe_gauge!(LRPS_CLAIMED, "actual lrps claimed");
    describe_gauge!(LRPS_RUNNING, "actual lrps running");
    describe_gauge!(CRASHED_ACTUAL_LRPS, "actual lrps crashed");
    describe_gauge!(CRASHING_DESIRED_LRPS, "desired lrps with a crashed instance");
    describe_gauge!(SUSPECT_RUNNING, "suspect actual lrps running");
    describe_gauge!(SUSPECT_CLAIMED, "suspect actual lrps claimed");
    describe_gauge!(LRPS_DESIRED, "sum of desired instances");
    describe_gauge!(PRESENT_CELLS, "cells with a live presence");
    describe_gauge!(SUSPECT_CELLS, "cells without a live presence that hold claimed or running instances");
    describe_gauge!(DOMAIN_FRESH, "1 for each fresh domain");
    describe_counter!(LRP_ACTIONS, "lrp convergence actions applied, by action");
    describe_histogram!(TASK_DURATION, metrics::Unit::Seconds, "duration of a task convergence pass");
    describe_counter!(TASK_RUNS, "task convergence passes by outcome");
    describe_gauge!(TASKS, "tasks by state");
    describe_counter!(TASKS_PRUNED, "completed tasks deleted by convergence");
    describe_counter!(TASKS_KICKED, "pending tasks sent to the auctioneer by convergence");
    describe_counter!(GUARDED, "convergence passes that withheld destructive actions");
}

fn gauge(name: &'static str, value: usize) {
    // Counts stay far below 2^52: exact as f64.
    metrics::gauge!(name).set(value as f64);
}

/// Records a finished LRP pass.
pub(crate) fn record_lrp(report: &LrpTickReport, fresh_domains: &[DomainName]) {
    metrics::histogram!(LRP_DURATION).record(report.duration.as_secs_f64());
    metrics::counter!(LRP_RUNS, "outcome" => "ok").increment(1);
    let c = &report.counts;
    gauge(LRPS_MISSING, c.missing);
    gauge(LRPS_EXTRA, c.extra);
    gauge(LRPS_UNCLAIMED, c.unclaimed);
    gauge(LRPS_CLAIMED, c.claimed);
    gauge(LRPS_RUNNING, c.running);
    gauge(CRASHED_ACTUAL_LRPS, c.crashed);
    gauge(CRASHING_DESIRED_LRPS, c.crashing_desired);
    gauge(SUSPECT_RUNNING, c.suspect_running);
    gauge(SUSPECT_CLAIMED, c.suspect_claimed);
    metrics::gauge!(LRPS_DESIRED).set(c.desired_instances as f64);
    gauge(PRESENT_CELLS, c.present_cells);
    gauge(SUSPECT_CELLS, c.suspect_cells);
    for domain in fresh_domains {
        metrics::gauge!(DOMAIN_FRESH, "domain" => domain.as_str().to_owned()).set(1.0);
    }
    for (action, n) in [
        ("create", report.created),
        ("recover_desired", report.recovered),
        ("stale_auction", report.stale_auctioned),
        ("restart_crashed", report.restarted),
        ("suspect", report.suspected),
        ("unclaim_replacement", report.unclaimed),
        ("promote", report.promoted),
        ("retire_delete", usize::try_from(report.retired_deleted).unwrap_or(usize::MAX)),
        ("prune_evacuating", report.evacuating_pruned),
        ("stop", report.stops),
    ] {
        if n > 0 {
            metrics::counter!(LRP_ACTIONS, "action" => action).increment(n as u64);
        }
    }
    if let Some(reason) = &report.guard {
        metrics::counter!(GUARDED, "half" => "lrp", "reason" => reason.label()).increment(1);
    }
}

/// Counts an LRP pass that failed.
pub(crate) fn lrp_pass_failed() {
    metrics::counter!(LRP_RUNS, "outcome" => "error").increment(1);
}

/// Records a finished task pass.
pub(crate) fn record_task(report: &TaskTickReport) {
    metrics::histogram!(TASK_DURATION).record(report.duration.as_secs_f64());
    metrics::counter!(TASK_RUNS, "outcome" => "ok").increment(1);
    let c = &report.counts;
    for (state, n) in
        [("pending", c.pending), ("running", c.running), ("completed", c.completed), ("resolving", c.resolving)]
    {
        metrics::gauge!(TASKS, "state" => state).set(n as f64);
    }
    metrics::counter!(TASKS_PRUNED).increment(report.pruned as u64);
    metrics::counter!(TASKS_KICKED).increment(report.kicked as u64);
    if let Some(reason) = report.guard.as_ref().filter(|_| report.withheld > 0) {
        metrics::counter!(GUARDED, "half" => "task", "reason" => reason.label()).increment(1);
    }
}

/// Counts a task pass that failed.
pub(crate) fn task_pass_failed() {
    metrics::counter!(TASK_RUNS, "outcome" => "error").increment(1);
}
