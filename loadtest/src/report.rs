//! The report of a run: the table printed at the end (per operation: count, errors, mean, p50,
//! p90, p99, max; then every figure next to Diego's 2016 figure and the same run's raw-SQL
//! baseline, as ratios), the JSON file with the raw histograms, and the SVG charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::baseline::ops as raw;
use crate::config::Config;
use crate::convergence::{ConvergenceReport, ops as conv};
use crate::events::EventCheck;
use crate::format::{ms, ratio};
use crate::operations::{Catalogue, Files, OperationReport, latency_headings};
use crate::seed::{SeedingReport, ops as seed};
use crate::stats::OpStats;
use crate::target::TargetInfo;
use crate::target::process::ChildMemory;
use crate::workload::{TrialsReport, ops as work};

/// Diego's 2016 benchmark-bbs averages (200,000 LRPs, 1,000 reps, CF-MySQL;
/// docs/reference/performance-anchors.md anchor 4 and docs/reference/bbs.md §8), in milliseconds, by operation.
pub const DIEGO_2016_MS: [(&str, f64); 7] = [
    (work::REP_BULK_FETCHING, 78.0),
    (work::REP_BULK_LOOP, 89.0),
    (work::REP_START, 163.0),
    (work::REP_CLAIM, 434.0),
    (work::NSYNC_BULKER, 15_100.0),
    (work::ROUTE_EMITTER, 37_400.0),
    (conv::GATHER, 27_000.0),
];

/// The raw-SQL baseline each BBS operation is compared with.
pub const BASELINE_OF: [(&str, &str); 9] = [
    (work::REP_BULK_FETCHING, raw::PER_CELL),
    (raw::PER_CELL_UNDER_LOAD, raw::PER_CELL),
    (raw::QUIET_PER_CELL, raw::PER_CELL),
    (work::NSYNC_BULKER, raw::SCHEDULING_SCAN),
    (raw::QUIET_NSYNC, raw::SCHEDULING_SCAN),
    (work::ROUTE_EMITTER, raw::ROUTE_EMITTER),
    (raw::QUIET_ROUTE_EMITTER, raw::ROUTE_EMITTER),
    (conv::GATHER, raw::CONVERGENCE),
    (conv::PASS, raw::CONVERGENCE),
];

/// The BBS's loaded reads and the raw SQL timed under the same load, compared in the table's
/// "under the same load" section.
pub const UNDER_LOAD_OF: [(&str, &str); 3] = [
    (work::REP_BULK_FETCHING, raw::PER_CELL_UNDER_LOAD),
    (work::NSYNC_BULKER, raw::SCHEDULING_SCAN_UNDER_LOAD),
    (work::ROUTE_EMITTER, raw::ROUTE_EMITTER_UNDER_LOAD),
];

/// The order operations are listed in, with their phase.
const ORDER: &[(&str, &str)] = &[
    ("setup", seed::CELL_PRESENCE_SETTING),
    ("setup", seed::SEED_DESIRE),
    ("setup", seed::SEED_START),
    ("setup", seed::SEED_DESIRE_BATCH),
    ("setup", seed::SEED_START_BATCH),
    ("convergence", conv::PASS),
    ("convergence", conv::GATHER),
    ("trials", work::REP_BULK_LOOP),
    ("trials", work::REP_BULK_FETCHING),
    ("trials", work::REP_START),
    ("trials", work::REP_START_BATCH),
    ("trials", work::REP_CLAIM),
    ("trials", work::NSYNC_BULKER),
    ("trials", work::ROUTE_EMITTER),
    ("trials", work::ROUTE_EMITTER_LOCAL),
    ("trials", work::CELL_PRESENCE_FETCHING),
    ("trials", raw::PER_CELL_UNDER_LOAD),
    ("trials", raw::SCHEDULING_SCAN_UNDER_LOAD),
    ("trials", raw::ROUTE_EMITTER_UNDER_LOAD),
    ("quiet", raw::QUIET_PER_CELL),
    ("quiet", raw::QUIET_NSYNC),
    ("quiet", raw::QUIET_ROUTE_EMITTER),
    ("baseline", raw::PER_CELL),
    ("baseline", raw::ACTUAL_SCAN),
    ("baseline", raw::SCHEDULING_SCAN),
    ("baseline", raw::ROUTE_EMITTER),
    ("baseline", raw::CONVERGENCE),
];

/// Peak memory of this process, and of the BBS when it ran as its own process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// `VmHWM` from `/proc/self/status`, in KiB.
    pub peak_rss_kib: Option<u64>,
    /// What the figure covers.
    pub note: String,
    /// The BBS process's peak RSS (`--bbs-process`), in MiB: the larger of its `VmHWM` just
    /// before it was stopped and its largest sampled RSS. (The kernel does not raise `VmHWM`
    /// when memory is handed back with `madvise`, as mimalloc does, so a sample taken before
    /// such a return can exceed it.) `None` when the BBS did not run as its own process.
    pub bbs_peak_rss_mib: Option<f64>,
    /// The largest of the BBS process's RSS samples (one a second), in MiB.
    pub bbs_sampled_max_rss_mib: Option<f64>,
    /// RSS samples taken of the BBS process.
    pub bbs_rss_samples: u64,
}

impl Memory {
    /// This process's peak `own_kib` and, with `--bbs-process`, the child BBS's memory.
    pub fn of(own_kib: Option<u64>, note: &str, bbs: Option<ChildMemory>) -> Self {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let bbs = bbs.unwrap_or_default();
        Memory {
            peak_rss_kib: own_kib,
            note: note.to_owned(),
            bbs_peak_rss_mib: bbs.hwm_kib.max(bbs.sampled_max_kib).map(mib),
            bbs_sampled_max_rss_mib: bbs.sampled_max_kib.map(mib),
            bbs_rss_samples: bbs.samples,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The configuration.
    pub config: Config,
    /// What was driven.
    pub target: TargetInfo,
    /// Seeding.
    pub seeding: SeedingReport,
    /// The trials.
    pub trials: TrialsReport,
    /// Every operation (including the baselines), in report order.
    pub operations: Vec<OperationReport>,
    /// The event count check.
    pub events: EventCheck,
    /// The convergence passes, when the database was known.
    pub convergence: Option<ConvergenceReport>,
    /// Peak memory.
    pub memory: Memory,
    /// Wall time of the run, in seconds.
    pub wall_time_s: f64,
    /// Where the files are.
    pub files: Files,
}

impl Report {
    /// The section comparing the loaded reads with raw SQL timed under the same load
    /// ([`UNDER_LOAD_OF`]); nothing when no pair was recorded.
    fn under_load_table(&self, out: &mut String) {
        let pairs: Vec<_> = UNDER_LOAD_OF
            .iter()
            .filter_map(|(op, base)| Some((self.operation(op)?, self.operation(base)?)))
            .filter(|(op, base)| op.summary.count > 0 && base.summary.count > 0)
            .collect();
        if pairs.is_empty() {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>10} {:>10}   {:<44} {:>10} {:>10} {:>10} {:>9} {:>10} {:>9}",
            "under the same load",
            "p50",
            "mean",
            "p99",
            "raw SQL, same load",
            "raw p50",
            "raw mean",
            "raw p99",
            "p50÷raw",
            "mean÷raw",
            "p99÷raw"
        );
        for (op, base) in pairs {
            let (m, b) = (&op.summary, &base.summary);
            let _ = writeln!(
                out,
                "{:<40} {:>10} {:>10} {:>10}   {:<44} {:>10} {:>10} {:>10} {:>9} {:>10} {:>9}",
                op.name,
                ms(m.p50_ms),
                ms(m.mean_ms),
                ms(m.p99_ms),
                base.name,
                ms(b.p50_ms),
                ms(b.mean_ms),
                ms(b.p99_ms),
                ratio(m.p50_ms, b.p50_ms),
                ratio(m.mean_ms, b.mean_ms),
                ratio(m.p99_ms, b.p99_ms)
            );
        }
        let _ = writeln!(
            out,
            "(Raw SQL under load: the same rows read straight from the database during the trials: the per-cell read \
             right after each rep's fetch, on the simulator's pool; the scans started with the bulker and the global \
             route emitter, on connections of their own.)"
        );
    }

    /// Orders the recorded operations and attaches Diego's figures and the baselines.
    pub fn operations_of(stats: &BTreeMap<&'static str, OpStats>) -> Vec<OperationReport> {
        Catalogue { order: ORDER, diego_2016_ms: &DIEGO_2016_MS, baseline_of: &BASELINE_OF }.operations_of(stats)
    }

    /// The operation `name`, if it was recorded.
    pub fn operation(&self, name: &str) -> Option<&OperationReport> {
        self.operations.iter().find(|o| o.name == name)
    }

    /// Failed calls and failed count checks over every operation.
    pub fn errors(&self) -> u64 {
        self.operations.iter().map(|o| o.summary.errors).sum()
    }

    /// Whether the run passed: no errors and the event counts within the tolerance.
    pub fn ok(&self) -> bool {
        self.errors() == 0 && self.events.ok()
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(
            out,
            "benchmark-bbs: {} cells, {} desired LRPs, {} trials, {}% writes, seed {}",
            c.cells, c.desired_lrps, c.trials, c.percent_writes, c.seed
        );
        let _ = writeln!(out, "{}", target_line(&self.target));
        let s = &self.seeding;
        let _ = writeln!(
            out,
            "seeding ({:?}): {} LRPs in {:.1} s ({:.0} LRPs/s), {} errors",
            s.via, s.seeded, s.duration_s, s.lrps_per_s, s.errors
        );
        let trials: Vec<String> = self.trials.trial_durations_s.iter().map(|d| format!("{d:.1} s")).collect();
        let _ = writeln!(
            out,
            "trials: {} ({}); {} claims, {} writing starts",
            trials.len(),
            trials.join(", "),
            self.trials.claims,
            self.trials.writing_starts
        );
        if !self.trials.trial_cpu.is_empty() {
            let spent = crate::cpu::Spent::total(&self.trials.trial_cpu);
            let wall: f64 = self.trials.trial_durations_s.iter().sum();
            let (this, rest) = match spent.bbs_s {
                Some(bbs) => (format!("BBS {bbs:.1} s, simulator"), "database and the rest"),
                None => ("this process".to_owned(), "the rest"),
            };
            let _ = writeln!(
                out,
                "trials' CPU: {:.1} s busy in {wall:.1} s ({this} {:.1} s, {rest} {:.1} s)",
                spent.machine_s,
                spent.simulator_s,
                spent.rest_s()
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<12} {:<40} {}", "phase", "operation", latency_headings());
        for op in &self.operations {
            let _ = writeln!(out, "{:<12} {:<40} {}", op.phase, op.name, op.latency_columns());
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>10} {:>12} {:>9}   {:<32} {:>10} {:>9} {:>10} {:>9}",
            "comparison",
            "mean",
            "p50",
            "Diego 2016",
            "÷Diego",
            "raw SQL (same run)",
            "raw p50",
            "p50÷raw",
            "raw mean",
            "mean÷raw"
        );
        for op in &self.operations {
            if op.diego_2016_mean_ms.is_none() && op.baseline.is_none() {
                continue;
            }
            let m = &op.summary;
            let (d, dr) = match op.diego_2016_mean_ms {
                Some(d) => (ms(d), ratio(m.mean_ms, d)),
                None => ("-".into(), "-".into()),
            };
            let base = op.baseline.as_deref().and_then(|b| self.operation(b)).filter(|b| b.summary.count > 0);
            let (bname, bp50, rp50, bmean, rmean) = match base {
                Some(b) => (
                    b.name.clone(),
                    ms(b.summary.p50_ms),
                    ratio(m.p50_ms, b.summary.p50_ms),
                    ms(b.summary.mean_ms),
                    ratio(m.mean_ms, b.summary.mean_ms),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "{:<40} {:>10} {:>10} {:>12} {:>9}   {:<32} {:>10} {:>9} {:>10} {:>9}",
                op.name,
                ms(m.mean_ms),
                ms(m.p50_ms),
                d,
                dr,
                bname,
                bp50,
                rp50,
                bmean,
                rmean
            );
        }
        let _ = writeln!(
            out,
            "(Diego 2016: averages at 200,000 LRPs / 1,000 reps on CF-MySQL. Raw SQL: the same database in this run, \
             one statement at a time after the trials; \"(quiet)\": the same BBS call, one at a time after the trials. \
             RepBulkLoop here lasts until every start and claim of the loop has returned; Diego's timed the fetch \
             plus enqueueing them.)"
        );
        self.under_load_table(&mut out);
        let _ = writeln!(out);
        let e = &self.events;
        let _ = writeln!(
            out,
            "events: expected {}, received {} ({:+.2}%), tolerance ±{:.1}%: {}{}",
            e.expected,
            e.received,
            e.relative_difference * 100.0,
            e.tolerance * 100.0,
            if e.within_tolerance { "OK" } else { "FAILED" },
            e.per_cell
                .as_ref()
                .map(|p| format!(
                    "; per-cell subscribers: expected {}, received {}, {}/{} cells within tolerance",
                    p.expected, p.received, p.cells_within_tolerance, p.cells
                ))
                .unwrap_or_default()
        );
        for closed in &e.closed_streams {
            let _ = writeln!(out, "  stream closed early: {closed}");
        }
        if let Some(conv) = &self.convergence {
            let p = conv.phases_s;
            let _ = writeln!(
                out,
                "convergence: {} passes; last: cells {:.3} s, snapshot {:.3} s, plan {:.3} s, writes {:.3} s, calls {:.3} s; {} actions",
                conv.passes, p[0], p[1], p[2], p[3], p[4], conv.actions
            );
        } else {
            let _ = writeln!(out, "convergence: not timed (the database is unknown: pass --database-url)");
        }
        match self.memory.peak_rss_kib {
            Some(kib) => {
                let _ = writeln!(out, "peak memory: {:.1} MiB ({})", kib as f64 / 1024.0, self.memory.note);
            }
            None => {
                let _ = writeln!(out, "peak memory: unknown ({})", self.memory.note);
            }
        }
        if let Some(mib) = self.memory.bbs_peak_rss_mib {
            let _ = writeln!(
                out,
                "BBS process peak memory: {mib:.1} MiB (VmHWM or the largest of {} RSS samples, one a second: {})",
                self.memory.bbs_rss_samples,
                self.memory.bbs_sampled_max_rss_mib.map_or_else(|| "-".into(), |m| format!("{m:.1} MiB"))
            );
        }
        let _ =
            writeln!(out, "wall time: {:.1} s; result: {}", self.wall_time_s, if self.ok() { "OK" } else { "FAILED" });
        for op in self.operations.iter().filter(|o| !o.error_samples.is_empty()) {
            let _ = writeln!(out, "  {} errors, e.g.: {}", op.name, op.error_samples[0]);
        }
        out
    }

    /// Writes `table.txt`, `report.json` and the charts into `dir`, and records their paths.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.files.table = dir.join("table.txt");
        self.files.json = dir.join("report.json");
        self.files.charts = crate::charts::write_all(&self.operations, &dir.join("charts"))?;
        std::fs::write(&self.files.table, self.table())?;
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(&self.files.json, json)?;
        Ok(())
    }
}

/// The table line naming what a run drove: `target: <kind> BBS at <address>[ on <database>]`,
/// then the transport (`plaintext`, or `mutual TLS (certificates in DIR)`).
pub fn target_line(t: &TargetInfo) -> String {
    let transport = match (&t.tls_dir, t.tls) {
        (Some(dir), true) => format!("mutual TLS (certificates in {})", dir.display()),
        (None, true) => "mutual TLS".to_owned(),
        (_, false) => "plaintext".to_owned(),
    };
    format!(
        "target: {} BBS at {}{}{}, {transport}",
        t.kind,
        t.bbs_address,
        t.database.as_ref().map(|d| format!(" on {d}")).unwrap_or_default(),
        if t.nodelay { " (TCP_NODELAY set on its listener)" } else { "" }
    )
}

/// This process's peak resident set size (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::process::ChildMemory;

    #[test]
    fn the_bbs_peak_is_the_larger_of_its_high_water_mark_and_its_samples() {
        let of = |hwm_kib, sampled_max_kib| {
            Memory::of(None, "", Some(ChildMemory { hwm_kib, sampled_max_kib, samples: 1 })).bbs_peak_rss_mib
        };
        // A sample above VmHWM: memory handed back with madvise does not raise the mark.
        assert_eq!(of(Some(1024), Some(2048)), Some(2.0));
        assert_eq!(of(Some(2048), Some(1024)), Some(2.0));
        assert_eq!(of(None, Some(1024)), Some(1.0));
        assert_eq!(of(Some(1024), None), Some(1.0));
        assert_eq!(Memory::of(None, "", None).bbs_peak_rss_mib, None);
    }
}
