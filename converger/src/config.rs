//! [`ConvergenceConfig`]: every interval, threshold and limit of both convergence loops, with
//! Diego's defaults (docs/reference/bbs.md 6.1, docs/architecture.md "Defaults"). Tests shorten them; nothing here
//! branches on `cfg!(test)`.
//!
//! There is no serde here: the BBS owns the operator-facing config file and maps its fields onto
//! this struct, then calls [`ConvergenceConfig::validate`].

use std::time::Duration;

use proto::lifecycle::crash::CrashPolicy;

/// How convergence behaves. `Default` gives Diego's values.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceConfig {
    /// Time between passes (Diego's `converge_repeat_interval`, 30 s). A kick runs a pass at
    /// once; the next periodic pass then comes a full interval after it.
    pub interval: Duration,
    /// An UNCLAIMED instance older than this is auctioned again (Diego's
    /// `StaleUnclaimedActualLRPDuration`, 30 s; strictly older: `since < now - 30 s`).
    pub stale_unclaimed: Duration,
    /// When crashed instances restart (3 immediate restarts, 30 s doubling up to 16 min, give up
    /// at 200).
    pub crash_policy: CrashPolicy,
    /// The guard: a pass whose live cell set shrank by more than this fraction of the previous
    /// pass's, counting only cells not known to have expired, does nothing destructive
    /// (default 0.5; 0 guards against any unexplained loss, 1 disables the shrink check).
    pub max_cell_loss_fraction: f64,
    /// How many consecutive passes an unexplained shrink holds the guard before the smaller
    /// cell set is accepted as the new normal (default 10, five minutes at 30 s). Cells that
    /// left without their presence expiring (released, or deleted by hand) are then treated as
    /// lost like any other.
    pub shrink_guard_passes: u32,
    /// How long a cell reported lost (its presence expired) counts as "known expired" for the
    /// guard (default 5 min). A cell that is live again is forgotten at once.
    pub lost_cell_memory: Duration,
    /// Per-instance writes and rep stops run at most this many at once (Diego's
    /// `convergence_workers`, 20).
    pub workers: usize,
    /// How long convergence holds back creations and orphan retirements the cells' reports
    /// contradict, or that wait for a cell that did not answer (issue 19; `lrp::recovery`):
    /// one rep sync, the reps' 30 s polling interval, plus 5 s for its calls (default 35 s).
    pub cell_sync_grace: Duration,
    /// A PENDING task older than this (by `created_at`) is failed with "not started within time
    /// limit" (Diego's `expire_pending_task_duration`, 30 min).
    pub expire_pending_task: Duration,
    /// A RESOLVING task not updated for this long goes back to COMPLETED, and a COMPLETED task
    /// not updated for this long gets its completion callback again (Diego's
    /// `kick_task_duration`, 30 s).
    pub kick_task: Duration,
    /// A COMPLETED task whose first completion is older than this is deleted (Diego's
    /// `expire_completed_task_duration`, 120 s).
    pub expire_completed_task: Duration,
}

impl Default for ConvergenceConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            stale_unclaimed: Duration::from_secs(30),
            crash_policy: CrashPolicy::default(),
            max_cell_loss_fraction: 0.5,
            shrink_guard_passes: 10,
            lost_cell_memory: Duration::from_secs(5 * 60),
            workers: 20,
            cell_sync_grace: Duration::from_secs(35),
            expire_pending_task: Duration::from_secs(30 * 60),
            kick_task: Duration::from_secs(30),
            expire_completed_task: Duration::from_secs(120),
        }
    }
}

/// Why a [`ConvergenceConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("convergence config: {field} must be greater than zero")]
    ZeroDuration {
        /// The field.
        field: &'static str,
    },
    /// The loss fraction is not a number in `0..=1`.
    #[error("convergence config: max_cell_loss_fraction must be between 0 and 1, not {value}")]
    LossFraction {
        /// The value given.
        value: f64,
    },
    /// `workers` is zero.
    #[error("convergence config: workers must be at least 1")]
    NoWorkers,
}

impl ConvergenceConfig {
    /// Checks the values and returns the config unchanged when they are usable.
    pub fn validate(self) -> Result<Self, ConfigError> {
        for (field, value) in [("interval", self.interval), ("lost_cell_memory", self.lost_cell_memory)] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        if !(0.0..=1.0).contains(&self.max_cell_loss_fraction) {
            return Err(ConfigError::LossFraction { value: self.max_cell_loss_fraction });
        }
        if self.workers == 0 {
            return Err(ConfigError::NoWorkers);
        }
        Ok(self)
    }
}

/// A duration in nanoseconds, saturating at `i64::MAX`.
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_diegos() {
        let c = ConvergenceConfig::default();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.stale_unclaimed, Duration::from_secs(30));
        assert_eq!(c.crash_policy, CrashPolicy::default());
        assert_eq!(c.max_cell_loss_fraction, 0.5);
        assert_eq!(c.workers, 20);
        assert_eq!(c.expire_pending_task, Duration::from_secs(1800));
        assert_eq!(c.kick_task, Duration::from_secs(30));
        assert_eq!(c.expire_completed_task, Duration::from_secs(120));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let zero = ConvergenceConfig { interval: Duration::ZERO, ..Default::default() };
        assert_eq!(zero.validate().unwrap_err().to_string(), "convergence config: interval must be greater than zero");
        for value in [-0.1, 1.5, f64::NAN] {
            let bad = ConvergenceConfig { max_cell_loss_fraction: value, ..Default::default() };
            assert!(matches!(bad.validate(), Err(ConfigError::LossFraction { .. })));
        }
        let none = ConvergenceConfig { workers: 0, ..Default::default() };
        assert_eq!(none.validate(), Err(ConfigError::NoWorkers));
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::from_secs(2)), 2_000_000_000);
        assert_eq!(nanos(Duration::MAX), i64::MAX);
    }
}
