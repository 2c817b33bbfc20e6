//! The fields each state of an instance sets or clears: one function per target state, used by
//! the ordinary calls ([`super::apply`]) and the evacuation calls ([`super::evacuate`]) alike,
//! so changing what "running" (or "claimed", "unclaimed", "crashed") sets is one edit here.

use std::collections::BTreeMap;

use crate::lifecycle::crash::CrashPolicy;
use crate::models::validation::truncate_reason;
use crate::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpState, NetInfo};

/// What a rep reports when an instance's container is up (StartActualLRP, and the running
/// instance of EvacuateRunningActualLRP).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StartInfo {
    /// Where the instance is reachable; its address must not be empty.
    pub net_info: NetInfo,
    /// Internal route host names.
    pub internal_routes: Vec<String>,
    /// Resolved metric tags.
    pub metric_tags: BTreeMap<String, String>,
    /// Whether routers may send traffic to it (a request without the field means `true`).
    pub routable: bool,
    /// The cell's availability zone.
    pub availability_zone: String,
}

/// What a crash report decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashOutcome {
    /// The row was written UNCLAIMED: the caller requests an auction now.
    pub restart_now: bool,
    /// The crash count stored (a crashed suspect row is deleted and reports its own count).
    pub crash_count: i32,
}

/// CLAIMED by `instance_key`: the placement error and net info are cleared, `since = now_ns`.
pub fn claim(row: &mut ActualLrp, instance_key: &ActualLrpInstanceKey, now_ns: i64) {
    row.state = ActualLrpState::Claimed;
    row.instance_key = Some(instance_key.clone());
    row.placement_error.clear();
    row.net_info = None;
    row.since = now_ns;
}

/// RUNNING by `instance_key` with everything in `start`, the placement error cleared: the one
/// builder of a running instance. `since` becomes `now_ns` when anything changed; a RUNNING row
/// re-asserted with every field equal is left exactly as it is (the caller writes nothing).
pub fn run(row: &mut ActualLrp, instance_key: &ActualLrpInstanceKey, start: &StartInfo, now_ns: i64) {
    let next = ActualLrp {
        state: ActualLrpState::Running,
        instance_key: Some(instance_key.clone()),
        net_info: Some(start.net_info.clone()),
        internal_routes: start.internal_routes.clone(),
        metric_tags: start.metric_tags.clone(),
        routable: start.routable,
        availability_zone: start.availability_zone.clone(),
        placement_error: String::new(),
        ..row.clone()
    };
    if next != *row {
        *row = ActualLrp { since: now_ns, ..next };
    }
}

/// UNCLAIMED again (internal unclaim: evacuation, convergence): instance key, net info and
/// placement error cleared, `since = now_ns`; the crash count is kept.
pub fn unclaim(row: &mut ActualLrp, now_ns: i64) {
    row.state = ActualLrpState::Unclaimed;
    row.instance_key = None;
    row.net_info = None;
    row.placement_error.clear();
    row.since = now_ns;
}

/// A crash of the row's instance (bbs.md 3.2): the crash count becomes
/// `policy.next_crash_count(..)`, the instance key and net info are cleared, the reason is stored
/// (truncated to 1024 characters) and `since = now_ns`. The state is UNCLAIMED when
/// `policy.restart_immediately(count)` (`restart_now`), CRASHED otherwise.
pub fn crash(row: &mut ActualLrp, reason: &str, policy: &CrashPolicy, now_ns: i64) -> CrashOutcome {
    let was_running = row.state == ActualLrpState::Running;
    let crash_count = policy.next_crash_count(was_running, row.crash_count, row.since, now_ns);
    let restart_now = policy.restart_immediately(crash_count);
    row.state = if restart_now { ActualLrpState::Unclaimed } else { ActualLrpState::Crashed };
    row.instance_key = None;
    row.net_info = None;
    row.crash_count = crash_count;
    row.crash_reason = truncate_reason(reason);
    row.since = now_ns;
    CrashOutcome { restart_now, crash_count }
}

/// A placement failure of an UNCLAIMED row: the error is stored (truncated to 1024 characters)
/// and `since = now_ns`, which restarts the stale-unclaimed timer.
pub fn fail(row: &mut ActualLrp, placement_error: &str, now_ns: i64) {
    row.placement_error = truncate_reason(placement_error);
    row.since = now_ns;
}
