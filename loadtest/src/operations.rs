//! One measured operation as a report lists it (count, errors, latency figures, the comparison
//! figures and the raw histogram), and where a report's files were written. Both the BBS
//! workload's [`crate::report`] and the [`crate::smoke`] benchmark build these from a
//! [`crate::stats::Recorder`] snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::format::ms;
use crate::stats::{OpStats, RawHistogram, Summary};

/// One operation in the report.
#[derive(Debug, Clone, Serialize)]
pub struct OperationReport {
    /// Diego's metric name where it had one.
    pub name: String,
    /// `setup`, `convergence`, `trials`, `quiet` or `baseline`.
    pub phase: String,
    /// Count, errors and latency figures.
    pub summary: Summary,
    /// Diego's 2016 average for this operation, in ms.
    pub diego_2016_mean_ms: Option<f64>,
    /// The raw-SQL baseline this operation is compared with.
    pub baseline: Option<String>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// The recorded latencies.
    pub histogram: RawHistogram,
}

impl OperationReport {
    /// Count, errors, mean, p50, p90, p99 and max as right-aligned table columns, under
    /// [`latency_headings`].
    pub fn latency_columns(&self) -> String {
        let m = &self.summary;
        format!(
            "{:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
            m.count,
            m.errors,
            ms(m.mean_ms),
            ms(m.p50_ms),
            ms(m.p90_ms),
            ms(m.p99_ms),
            ms(m.max_ms)
        )
    }
}

/// The headings of [`OperationReport::latency_columns`].
pub fn latency_headings() -> String {
    format!("{:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}", "count", "errors", "mean", "p50", "p90", "p99", "max")
}

/// Where the report was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Files {
    /// The printed table.
    pub table: PathBuf,
    /// The JSON report with the raw histograms.
    pub json: PathBuf,
    /// The SVG charts.
    pub charts: Vec<PathBuf>,
}

/// What a report knows about operations by name: the order they are listed in with their
/// phase, Diego's 2016 averages (ms) and the raw-SQL baseline each one is compared with.
#[derive(Debug, Clone, Copy)]
pub struct Catalogue<'a> {
    /// `(phase, name)` in listing order; unknown operations come last, in phase `other`.
    pub order: &'a [(&'a str, &'a str)],
    /// `(name, Diego's 2016 mean in ms)`.
    pub diego_2016_ms: &'a [(&'a str, f64)],
    /// `(name, baseline operation name)`.
    pub baseline_of: &'a [(&'a str, &'a str)],
}

impl Catalogue<'_> {
    /// Orders the recorded operations and attaches Diego's figures and the baselines.
    pub fn operations_of(&self, stats: &BTreeMap<&'static str, OpStats>) -> Vec<OperationReport> {
        let order = self.order;
        let diego: BTreeMap<&str, f64> = self.diego_2016_ms.iter().copied().collect();
        let baseline: BTreeMap<&str, &str> = self.baseline_of.iter().copied().collect();
        let phase_of: BTreeMap<&str, &str> = order.iter().map(|(phase, name)| (*name, *phase)).collect();
        let mut names: Vec<&str> = stats.keys().copied().collect();
        let rank = |name: &str| order.iter().position(|(_, n)| *n == name).unwrap_or(order.len());
        names.sort_by_key(|n| (rank(n), *n));
        names
            .into_iter()
            .map(|name| {
                let s = &stats[name];
                OperationReport {
                    name: name.to_owned(),
                    phase: phase_of.get(name).copied().unwrap_or("other").to_owned(),
                    summary: s.summary(),
                    diego_2016_mean_ms: diego.get(name).copied(),
                    baseline: baseline.get(name).map(|b| (*b).to_owned()),
                    error_samples: s.error_samples.clone(),
                    histogram: s.raw(),
                }
            })
            .collect()
    }
}
