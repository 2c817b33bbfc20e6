//! Latency recording: one HDR histogram per operation (microseconds, 3 significant figures),
//! with its error count and a few error messages, shared by every task of a run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Largest latency a histogram holds: one hour, in microseconds (longer samples are clamped).
const HIGHEST_US: u64 = 3_600_000_000;
/// Error messages kept per operation.
const KEPT_ERRORS: usize = 10;

/// The samples of one operation.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Successful samples, in microseconds.
    pub histogram: Histogram<u64>,
    /// Failed calls (RPC errors and failed assertions such as a wrong row count).
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .unwrap_or_else(|e| unreachable!("constant histogram bounds are valid: {e}")),
            errors: 0,
            error_samples: Vec::new(),
        }
    }
}

impl OpStats {
    /// Adds one successful sample.
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).clamp(1, HIGHEST_US);
        self.histogram.saturating_record(us);
    }

    /// Adds one failure.
    pub fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < KEPT_ERRORS {
            self.error_samples.push(message);
        }
    }

    /// The summary of these samples.
    pub fn summary(&self) -> Summary {
        let h = &self.histogram;
        let ms = |us: u64| us as f64 / 1_000.0;
        let empty = h.is_empty();
        let pick = |f: &dyn Fn() -> f64| if empty { 0.0 } else { f() };
        Summary {
            count: h.len(),
            errors: self.errors,
            mean_ms: pick(&|| h.mean() / 1_000.0),
            p50_ms: pick(&|| ms(h.value_at_quantile(0.50))),
            p90_ms: pick(&|| ms(h.value_at_quantile(0.90))),
            p99_ms: pick(&|| ms(h.value_at_quantile(0.99))),
            max_ms: pick(&|| ms(h.max())),
            min_ms: pick(&|| ms(h.min())),
            stddev_ms: pick(&|| h.stdev() / 1_000.0),
        }
    }

    /// The recorded values, as `[value_us, count]` pairs (every distinct bucket, ascending).
    pub fn raw(&self) -> RawHistogram {
        RawHistogram {
            unit: "us".into(),
            lowest: self.histogram.low(),
            highest: self.histogram.high(),
            significant_figures: u32::from(self.histogram.sigfig()),
            values: self
                .histogram
                .iter_recorded()
                .map(|v| [self.histogram.highest_equivalent(v.value_iterated_to()), v.count_at_value()])
                .collect(),
        }
    }
}

/// Count, errors and latency figures of one operation, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Successful samples.
    pub count: u64,
    /// Failures.
    pub errors: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Standard deviation.
    pub stddev_ms: f64,
}

/// A histogram's recorded values: `values` holds `[value, count]` pairs, each value the
/// highest value equivalent to its bucket, in `unit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawHistogram {
    /// Unit of the values (`us`).
    pub unit: String,
    /// The histogram's lowest discernible value.
    pub lowest: u64,
    /// The histogram's highest trackable value.
    pub highest: u64,
    /// Precision.
    pub significant_figures: u32,
    /// `[value, count]` per non-empty bucket, ascending.
    pub values: Vec<[u64; 2]>,
}

impl RawHistogram {
    /// Rebuilds a histogram from the pairs (for tools that read the JSON back).
    pub fn to_histogram(&self) -> Histogram<u64> {
        let sigfig = u8::try_from(self.significant_figures).unwrap_or(3);
        let mut h = Histogram::new_with_bounds(self.lowest.max(1), self.highest.max(2), sigfig)
            .unwrap_or_else(|_| Histogram::new_with_bounds(1, HIGHEST_US, 3).unwrap_or_else(|e| unreachable!("{e}")));
        for [value, count] in &self.values {
            let _ = h.record_n(*value, *count);
        }
        h
    }

    /// Total samples.
    pub fn count(&self) -> u64 {
        self.values.iter().map(|[_, n]| n).sum()
    }
}

/// Every operation's stats, shared by the tasks of a run.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    ops: Arc<Mutex<BTreeMap<&'static str, OpStats>>>,
}

impl Recorder {
    /// A recorder with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, op: &'static str, f: impl FnOnce(&mut OpStats) -> T) -> T {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        f(ops.entry(op).or_default())
    }

    /// Records a success of `op` that took `elapsed`.
    pub fn record(&self, op: &'static str, elapsed: Duration) {
        self.with(op, |s| s.record(elapsed));
    }

    /// Records a failure of `op`.
    pub fn fail(&self, op: &'static str, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(op, error = %message, "operation failed");
        self.with(op, |s| s.fail(message));
    }

    /// Times `body` as `op`: its `Ok` is recorded as a sample, its `Err` as a failure. The
    /// result is passed through.
    pub async fn time<T, E: std::fmt::Display>(
        &self,
        op: &'static str,
        body: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        match body.await {
            Ok(value) => {
                self.record(op, started.elapsed());
                Ok(value)
            }
            Err(e) => {
                let message = e.to_string();
                self.fail(op, message.clone());
                Err(message)
            }
        }
    }

    /// A copy of one operation's stats (empty when nothing was recorded).
    pub fn get(&self, op: &str) -> OpStats {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.get(op).cloned().unwrap_or_default()
    }

    /// A copy of every operation's stats, by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, OpStats> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_raw_values_round_trip() {
        let mut s = OpStats::default();
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        s.fail("boom".into());
        let summary = s.summary();
        assert_eq!((summary.count, summary.errors), (100, 1));
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_ms - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
        let raw = s.raw();
        assert_eq!(raw.count(), 100);
        let back = raw.to_histogram();
        assert_eq!(back.len(), 100);
        assert_eq!(back.value_at_quantile(0.5), s.histogram.value_at_quantile(0.5));
    }

    #[tokio::test]
    async fn timing_records_successes_and_failures() {
        let r = Recorder::new();
        let ok: Result<u32, String> = r.time("op", async { Ok::<_, String>(1) }).await;
        assert_eq!(ok, Ok(1));
        let err = r.time("op", async { Err::<u32, _>("bad") }).await;
        assert_eq!(err, Err("bad".to_owned()));
        let s = r.get("op");
        assert_eq!((s.histogram.len(), s.errors, s.error_samples.len()), (1, 1, 1));
    }
}
