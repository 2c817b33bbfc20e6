//! The crash restart policy of ActualLRPs (bbs.md 3.2).
//!
//! Mirrors `bbs/models/restart_calculator.go` (`RestartCalculator.ShouldRestart`) and the crash
//! count logic of `CrashActualLRP` in `bbs/db/sqldb/actual_lrp_db.go`.
//!
//! The flow is:
//! 1. CrashActualLRP computes [`CrashPolicy::next_crash_count`];
//! 2. if [`CrashPolicy::restart_immediately`] holds for that count, the row is written UNCLAIMED
//!    and auctioned at once, otherwise it is written CRASHED;
//! 3. convergence restarts a CRASHED row once [`CrashPolicy::should_restart`] holds, and never
//!    once the count reaches [`CrashPolicy::give_up_at`].
//!
//! Arithmetic saturates: no count or timestamp makes these functions panic or overflow. Time
//! differences are computed in `i128`, so any pair of `i64` timestamps is exact.

use std::time::Duration;

/// Diego's crash restart parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPolicy {
    /// Crash counts below this restart at once, with no back-off (Diego: 3).
    pub immediate_restarts_below: i32,
    /// The wait after the first delayed restart (Diego: 30 s, `CrashBackoffMinDuration`).
    pub base_backoff: Duration,
    /// The wait never exceeds this (Diego: 16 min).
    pub max_backoff: Duration,
    /// The doubling exponent is capped here (Diego: 5, derived from 16 min / 30 s = 2^5).
    pub max_backoff_exponent: u32,
    /// From this crash count on, the instance is never restarted again (Diego: 200).
    pub give_up_at: i32,
    /// A RUNNING instance that crashes after running longer than this starts counting again
    /// from 1 (Diego: 5 min, `CrashResetTimeout`).
    pub reset_after: Duration,
}

impl Default for CrashPolicy {
    /// Diego's defaults: 3 immediate restarts, 30 s doubling up to 16 min, give up at 200,
    /// reset after 5 min of running.
    fn default() -> Self {
        CrashPolicy {
            immediate_restarts_below: 3,
            base_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(16 * 60),
            max_backoff_exponent: 5,
            give_up_at: 200,
            reset_after: Duration::from_secs(5 * 60),
        }
    }
}

impl CrashPolicy {
    /// The crash count to store after a crash.
    ///
    /// It is 1 if the row was RUNNING and `now_ns - since_ns` is strictly greater than
    /// [`reset_after`](Self::reset_after); otherwise it is `previous_count + 1`. The result
    /// saturates at `i32::MAX`. A negative stored count, which is invalid, counts as 0.
    pub fn next_crash_count(&self, was_running: bool, previous_count: i32, since_ns: i64, now_ns: i64) -> i32 {
        if was_running && elapsed_ns(since_ns, now_ns) > duration_ns(self.reset_after) {
            1
        } else {
            previous_count.max(0).saturating_add(1)
        }
    }

    /// Whether a crash that produced `new_count` restarts at once.
    ///
    /// True when `new_count` is below [`immediate_restarts_below`](Self::immediate_restarts_below):
    /// the row is then written UNCLAIMED instead of CRASHED and auctioned right away. With the
    /// defaults this is the 1st and 2nd consecutive crash.
    pub fn restart_immediately(&self, new_count: i32) -> bool {
        new_count < self.immediate_restarts_below
    }

    /// How long a CRASHED row with `crash_count` waits, measured from its `since`.
    ///
    /// - `Some(Duration::ZERO)` below [`immediate_restarts_below`](Self::immediate_restarts_below)
    ///   (checked first, as in Go);
    /// - `None` (never restart) when `crash_count >= give_up_at`;
    /// - otherwise `base_backoff * 2^min(crash_count - immediate_restarts_below,
    ///   max_backoff_exponent)`, capped at [`max_backoff`](Self::max_backoff).
    pub fn backoff(&self, crash_count: i32) -> Option<Duration> {
        if crash_count < self.immediate_restarts_below {
            return Some(Duration::ZERO);
        }
        if crash_count >= self.give_up_at {
            return None;
        }
        // Non-negative here because crash_count >= immediate_restarts_below.
        let exponent =
            crash_count.saturating_sub(self.immediate_restarts_below).unsigned_abs().min(self.max_backoff_exponent);
        let wait = 1u32
            .checked_shl(exponent)
            .and_then(|factor| self.base_backoff.checked_mul(factor))
            .unwrap_or(Duration::MAX);
        Some(wait.min(self.max_backoff))
    }

    /// Whether convergence should restart a CRASHED row now.
    ///
    /// Counts below [`immediate_restarts_below`](Self::immediate_restarts_below) restart
    /// regardless of time. Otherwise the row restarts once `now_ns - since_ns` reaches the
    /// [`backoff`](Self::backoff) (a restart at exactly the back-off is due, as in Go's
    /// `nextRestartTime <= now`), and never once the count reaches
    /// [`give_up_at`](Self::give_up_at).
    pub fn should_restart(&self, crash_count: i32, since_ns: i64, now_ns: i64) -> bool {
        if crash_count < self.immediate_restarts_below {
            return true;
        }
        match self.backoff(crash_count) {
            None => false,
            Some(wait) => elapsed_ns(since_ns, now_ns) >= duration_ns(wait),
        }
    }
}

/// `now - since` in nanoseconds, exact for any pair of `i64`.
fn elapsed_ns(since_ns: i64, now_ns: i64) -> i128 {
    i128::from(now_ns) - i128::from(since_ns)
}

/// A duration in nanoseconds as `i128`; every `Duration` fits.
fn duration_ns(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;
    const MIN: i64 = 60 * SEC;

    #[test]
    fn default_is_diegos_policy() {
        let p = CrashPolicy::default();
        assert_eq!(p.immediate_restarts_below, 3);
        assert_eq!(p.base_backoff, Duration::from_secs(30));
        assert_eq!(p.max_backoff, Duration::from_secs(960));
        assert_eq!(p.max_backoff_exponent, 5);
        assert_eq!(p.give_up_at, 200);
        assert_eq!(p.reset_after, Duration::from_secs(300));
    }

    /// (crash_count, restart_immediately, backoff), by hand from the table in bbs.md 3.2.
    #[rustfmt::skip]
    const COUNTS: &[(i32, bool, Option<Duration>)] = &[
        (i32::MIN, true, Some(Duration::ZERO)),
        (-1, true, Some(Duration::ZERO)),
        (0, true, Some(Duration::ZERO)),
        (1, true, Some(Duration::ZERO)),
        (2, true, Some(Duration::ZERO)),
        (3, false, Some(Duration::from_secs(30))),
        (4, false, Some(Duration::from_secs(60))),
        (5, false, Some(Duration::from_secs(2 * 60))),
        (6, false, Some(Duration::from_secs(4 * 60))),
        (7, false, Some(Duration::from_secs(8 * 60))),
        (8, false, Some(Duration::from_secs(16 * 60))),
        (9, false, Some(Duration::from_secs(16 * 60))),
        (40, false, Some(Duration::from_secs(16 * 60))),
        (199, false, Some(Duration::from_secs(16 * 60))),
        (200, false, None),
        (201, false, None),
        (i32::MAX, false, None),
    ];

    #[test]
    fn restart_immediately_and_backoff_follow_the_table() {
        let p = CrashPolicy::default();
        for &(count, immediate, backoff) in COUNTS {
            assert_eq!(p.restart_immediately(count), immediate, "restart_immediately({count})");
            assert_eq!(p.backoff(count), backoff, "backoff({count})");
        }
    }

    /// (crash_count, elapsed since `since` in ns, should_restart), by hand from bbs.md 3.2.
    #[rustfmt::skip]
    const RESTARTS: &[(i32, i64, bool)] = &[
        // Below 3: always, even with a `since` in the future.
        (0, 0, true), (1, 0, true), (2, 0, true), (2, -MIN, true),
        // Exactly the back-off restarts; one nanosecond earlier does not.
        (3, 0, false), (3, 30 * SEC - 1, false), (3, 30 * SEC, true),
        (4, 30 * SEC, false), (4, MIN - 1, false), (4, MIN, true),
        (5, 2 * MIN - 1, false), (5, 2 * MIN, true),
        (6, 4 * MIN - 1, false), (6, 4 * MIN, true),
        (7, 8 * MIN - 1, false), (7, 8 * MIN, true),
        (8, 16 * MIN - 1, false), (8, 16 * MIN, true),
        (9, 16 * MIN - 1, false), (9, 16 * MIN, true),
        (199, 16 * MIN - 1, false), (199, 16 * MIN, true),
        // From 200 on: never.
        (200, 16 * MIN, false), (200, i64::MAX, false),
        (201, i64::MAX, false), (i32::MAX, i64::MAX, false),
        // A `since` in the future never satisfies a back-off.
        (3, -1, false), (8, -16 * MIN, false),
    ];

    #[test]
    fn should_restart_follows_the_table() {
        let p = CrashPolicy::default();
        let since = 1_700_000_000 * SEC;
        for &(count, elapsed, expected) in RESTARTS {
            assert_eq!(
                p.should_restart(count, since, since.saturating_add(elapsed)),
                expected,
                "should_restart({count}, elapsed {elapsed} ns)"
            );
        }
    }

    /// (was_running, previous_count, elapsed ns, new count), by hand from bbs.md 3.2.
    #[rustfmt::skip]
    const NEXT_COUNTS: &[(bool, i32, i64, i32)] = &[
        // Running for more than 5 min resets the count to 1.
        (true, 0, 5 * MIN + 1, 1),
        (true, 7, 5 * MIN + 1, 1),
        (true, 199, 60 * MIN, 1),
        (true, i32::MAX, 5 * MIN + 1, 1),
        // Exactly 5 min is not "more than": the count grows.
        (true, 7, 5 * MIN, 8),
        (true, 0, 0, 1),
        (true, 2, 5 * MIN - 1, 3),
        // A row that was not RUNNING (CLAIMED) never resets.
        (false, 0, 0, 1),
        (false, 2, 5 * MIN + 1, 3),
        (false, 7, 60 * MIN, 8),
        (false, 199, 60 * MIN, 200),
        // Saturates; a negative stored count counts as 0.
        (false, i32::MAX, 0, i32::MAX),
        (true, i32::MAX, 5 * MIN, i32::MAX),
        (false, -5, 0, 1),
        (false, i32::MIN, 0, 1),
        // A `since` in the future never resets.
        (true, 4, -60 * MIN, 5),
    ];

    #[test]
    fn next_crash_count_follows_the_table() {
        let p = CrashPolicy::default();
        let since = 1_700_000_000 * SEC;
        for &(was_running, previous, elapsed, expected) in NEXT_COUNTS {
            assert_eq!(
                p.next_crash_count(was_running, previous, since, since.saturating_add(elapsed)),
                expected,
                "next_crash_count({was_running}, {previous}, elapsed {elapsed} ns)"
            );
        }
    }

    #[test]
    fn extreme_timestamps_neither_overflow_nor_panic() {
        let p = CrashPolicy::default();
        // now - since overflows i64 in both directions.
        assert!(p.should_restart(8, i64::MIN, i64::MAX));
        assert!(!p.should_restart(8, i64::MAX, i64::MIN));
        assert_eq!(p.next_crash_count(true, 3, i64::MIN, i64::MAX), 1);
        assert_eq!(p.next_crash_count(true, 3, i64::MAX, i64::MIN), 4);
        assert_eq!(p.next_crash_count(true, i32::MAX, i64::MAX, i64::MIN), i32::MAX);
        assert!(!p.should_restart(i32::MAX, i64::MIN, i64::MAX));
        assert!(p.should_restart(i32::MIN, i64::MAX, i64::MIN));
    }

    #[test]
    fn extreme_policies_saturate_the_backoff() {
        let p = CrashPolicy {
            immediate_restarts_below: i32::MIN,
            base_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            max_backoff_exponent: u32::MAX,
            give_up_at: i32::MAX,
            reset_after: Duration::MAX,
        };
        assert_eq!(p.backoff(i32::MAX - 1), Some(Duration::MAX));
        assert_eq!(p.backoff(0), Some(Duration::MAX));
        assert!(!p.should_restart(0, i64::MIN, i64::MAX));
        assert_eq!(p.next_crash_count(true, 1, i64::MIN, i64::MAX), 2);
    }
}
