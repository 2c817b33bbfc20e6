//! The injected wall clock: every stored timestamp (`since`, `created_at`, `updated_at`, ...)
//! comes from a [`Clock`], so tests control them with the one [`ManualClock`]. Durations and
//! timers use `tokio::time`, which tests pause instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Wall-clock time in nanoseconds since the Unix epoch. Any `Fn() -> i64` is a clock too.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now_ns(&self) -> i64;
}

impl<F: Fn() -> i64 + Send + Sync + 'static> Clock for F {
    fn now_ns(&self) -> i64 {
        self()
    }
}

/// The host's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        #[allow(clippy::disallowed_methods)] // the one place the real wall clock is read
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
    }
}

/// A clock tests set and advance by hand. Cheap to clone; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `now_ns`.
    pub fn new(now_ns: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_ns)))
    }

    /// Moves the clock forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(by)));
    }

    /// Sets the clock.
    pub fn set(&self, now_ns: i64) {
        self.0.store(now_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_is_shared_by_its_clones_and_saturates() {
        let clock = ManualClock::new(10);
        let other = clock.clone();
        clock.advance(Duration::from_nanos(5));
        assert_eq!(other.now_ns(), 15);
        other.set(i64::MAX - 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now_ns(), i64::MAX);
    }

    #[test]
    fn closures_and_the_system_clock_are_clocks() {
        let clock: Arc<dyn Clock> = Arc::new(|| 42_i64);
        assert_eq!(clock.now_ns(), 42);
        assert!(SystemClock.now_ns() > 1_600_000_000_000_000_000);
    }
}
