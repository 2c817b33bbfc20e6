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
///
/// The fields are compared before anything is copied: nearly every start a cell sends is such a
/// re-assert (its bulk loop, every 30 s), and building the whole next row first to compare it
/// was a tenth of the BBS's CPU in a batch of starts (docs/performance.md).
pub fn run(row: &mut ActualLrp, instance_key: &ActualLrpInstanceKey, start: &StartInfo, now_ns: i64) {
    let unchanged = row.state == ActualLrpState::Running
        && row.instance_key.as_ref() == Some(instance_key)
        && row.net_info.as_ref() == Some(&start.net_info)
        && row.internal_routes == start.internal_routes
        && row.metric_tags == start.metric_tags
        && row.routable == start.routable
        && row.availability_zone == start.availability_zone
        && row.placement_error.is_empty();
    if unchanged {
        return;
    }
    row.state = ActualLrpState::Running;
    row.instance_key = Some(instance_key.clone());
    row.net_info = Some(start.net_info.clone());
    row.internal_routes.clone_from(&start.internal_routes);
    row.metric_tags.clone_from(&start.metric_tags);
    row.routable = start.routable;
    row.availability_zone.clone_from(&start.availability_zone);
    row.placement_error.clear();
    row.since = now_ns;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ActualLrpKey, CellId, DomainName, InstanceGuid, ProcessGuid};

    fn ikey(guid: &str) -> ActualLrpInstanceKey {
        ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(guid).unwrap(),
            cell_id: CellId::parse("cell-1").unwrap(),
        }
    }

    fn start() -> StartInfo {
        StartInfo {
            net_info: NetInfo { address: "10.0.0.1".into(), ..NetInfo::default() },
            internal_routes: vec!["a.apps.internal".into()],
            metric_tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            routable: true,
            availability_zone: "z1".into(),
        }
    }

    fn running() -> ActualLrp {
        let key = ActualLrpKey {
            process_guid: ProcessGuid::parse("p").unwrap(),
            index: 0,
            domain: DomainName::parse("d").unwrap(),
        };
        let mut row = ActualLrp::new_unclaimed(key, "epoch", 1);
        run(&mut row, &ikey("ig-1"), &start(), 2);
        row
    }

    #[test]
    fn a_re_assert_with_every_field_equal_leaves_the_row_as_it_is() {
        let mut row = running();
        assert_eq!(row.state, ActualLrpState::Running);
        assert_eq!(row.since, 2);
        let before = row.clone();
        run(&mut row, &ikey("ig-1"), &start(), 3);
        assert_eq!(row, before);
    }

    #[test]
    fn a_start_that_differs_in_any_field_writes_every_field_and_the_time() {
        type Change = Box<dyn Fn(&mut ActualLrp, &mut ActualLrpInstanceKey, &mut StartInfo)>;
        let changes: Vec<(&str, Change)> = vec![
            ("state", Box::new(|row, _, _| row.state = ActualLrpState::Claimed)),
            ("instance key", Box::new(|_, key, _| *key = ikey("ig-2"))),
            ("net info", Box::new(|_, _, start| start.net_info.address = "10.0.0.2".into())),
            ("internal routes", Box::new(|_, _, start| start.internal_routes.clear())),
            ("metric tags", Box::new(|_, _, start| start.metric_tags.clear())),
            ("routable", Box::new(|_, _, start| start.routable = false)),
            ("zone", Box::new(|_, _, start| start.availability_zone = "z2".into())),
            ("placement error", Box::new(|row, _, _| row.placement_error = "stale".into())),
        ];
        for (what, change) in changes {
            let (mut row, mut key, mut info) = (running(), ikey("ig-1"), start());
            change(&mut row, &mut key, &mut info);
            run(&mut row, &key, &info, 3);
            assert_eq!(row.since, 3, "{what}");
            assert_eq!(row.state, ActualLrpState::Running, "{what}");
            assert_eq!(row.instance_key.as_ref(), Some(&key), "{what}");
            assert_eq!(row.net_info.as_ref(), Some(&info.net_info), "{what}");
            assert_eq!(row.internal_routes, info.internal_routes, "{what}");
            assert_eq!(row.metric_tags, info.metric_tags, "{what}");
            assert_eq!(row.routable, info.routable, "{what}");
            assert_eq!(row.availability_zone, info.availability_zone, "{what}");
            assert!(row.placement_error.is_empty(), "{what}");
        }
    }
}
