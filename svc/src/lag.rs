//! How late the async runtime runs a task that is ready: the runtime's scheduling delay.
//!
//! A task woken by its socket (a transaction's next statement, a lease renewal, a request)
//! waits in the runtime's queues behind every other ready task, and the whole process waits for
//! the operating system to give its worker threads a core. Neither shows in any request's own
//! timing, yet a transaction whose task waits long enough between two statements is ended by the
//! database (the store's idle-transaction timeout, 2 to 5 s), and a lease renewal that waits too
//! long is a lost lease.
//!
//! [`spawn_monitor`] measures it from inside: a task asks to be woken every
//! [`LAG_PROBE_INTERVAL`] and records how much later than asked it ran, in
//! [`RUNTIME_SCHEDULING_DELAY`] (one monitor per process, labelled with the component that
//! started it). A delay of at least [`LAG_WARNING`] is logged once per stall,
//! with its length, so an operator who sees transactions cut off can tell a stalled process from
//! a slow database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Histogram: how much later than asked a task that slept [`LAG_PROBE_INTERVAL`] ran, in
/// seconds; label `component`.
pub const RUNTIME_SCHEDULING_DELAY: &str = "runtime_scheduling_delay_seconds";

/// How often the monitor measures.
pub const LAG_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The delay from which a stall is logged as a warning.
pub const LAG_WARNING: Duration = Duration::from_secs(1);

/// The largest delay seen by one [`Lag`] since it was made, and the stall being measured.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Lag {
    /// The longest delay so far.
    pub worst: Duration,
    /// Whether the last probe's delay was at least [`LAG_WARNING`]: a stall under way, whose
    /// next long delay is the same stall seen again and is not logged again.
    stalled: bool,
}

impl Lag {
    /// Takes one probe's delay; true when it starts a stall to log ([`LAG_WARNING`] or more,
    /// after a probe under it).
    pub fn observe(&mut self, delay: Duration) -> bool {
        self.worst = self.worst.max(delay);
        let stalled = delay >= LAG_WARNING;
        let starts = stalled && !self.stalled;
        self.stalled = stalled;
        starts
    }
}

/// Whether a monitor runs in this process: one is enough (the delay is the process's), and a
/// process running many components (a test cluster, the smoke benchmark's hundred reps) must not
/// run one each.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears [`RUNNING`] when the monitor's task ends or is dropped with its runtime.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// Spawns the monitor of the current runtime for `component` until `stop`, unless one runs in
/// this process already (then the task returns at once, with nothing measured).
pub fn spawn_monitor(component: &'static str, stop: CancellationToken) -> tokio::task::JoinHandle<Lag> {
    let first = RUNNING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok();
    tokio::spawn(async move {
        let mut lag = Lag::default();
        if !first {
            return lag;
        }
        let _running = Running;
        loop {
            let asked = Instant::now() + LAG_PROBE_INTERVAL;
            tokio::select! {
                () = stop.cancelled() => return lag,
                () = tokio::time::sleep_until(asked) => {}
            }
            let delay = Instant::now().saturating_duration_since(asked);
            // Looked up each time: the process's recorder may be installed after the monitor
            // starts (the admin server installs it).
            metrics::histogram!(RUNTIME_SCHEDULING_DELAY, "component" => component).record(delay.as_secs_f64());
            if lag.observe(delay) {
                tracing::warn!(
                    component,
                    delay_ms = delay.as_millis() as u64,
                    "the runtime ran a ready task late: the process is short of CPU or a task blocks a worker thread"
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_reported_once_until_it_ends() {
        let mut lag = Lag::default();
        assert!(!lag.observe(Duration::from_millis(3)));
        assert!(lag.observe(Duration::from_millis(1_500)));
        assert!(!lag.observe(Duration::from_millis(2_000)), "the same stall");
        assert!(!lag.observe(Duration::from_millis(10)));
        assert!(lag.observe(LAG_WARNING), "a new stall");
        assert_eq!(lag.worst, Duration::from_millis(2_000));
    }

    #[test]
    fn a_blocked_worker_shows_as_delay() {
        // One worker thread: a task that blocks it delays the monitor by about as long.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let lag = runtime.block_on(async {
            let stop = CancellationToken::new();
            let monitor = spawn_monitor("test", stop.clone());
            tokio::time::sleep(LAG_PROBE_INTERVAL / 2).await;
            std::thread::sleep(Duration::from_millis(400));
            tokio::time::sleep(LAG_PROBE_INTERVAL * 2).await;
            stop.cancel();
            monitor.await.unwrap()
        });
        assert!(lag.worst >= Duration::from_millis(300), "worst delay {:?}", lag.worst);
    }
}
