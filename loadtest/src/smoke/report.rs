//! The smoke benchmark's report: the printed table (time to all RUNNING next to Diego's figure,
//! placement, per-phase latencies), `smoke-report.json` and the charts.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::config::SmokeConfig;
use super::observer::Lifecycle;
use super::{DIEGO_SECONDS, timeline};
use crate::format::slug;
use crate::operations::{Files, OperationReport, latency_headings};
use crate::report::target_line;
use crate::target::TargetInfo;

/// The smoke benchmark's report.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    /// The configuration.
    pub config: SmokeConfig,
    /// What was driven.
    pub target: TargetInfo,
    /// Whether every instance reached RUNNING within the timeout.
    pub all_running: bool,
    /// First DesireLRP sent → the last instance's RUNNING event.
    pub time_to_all_running_s: Option<f64>,
    /// First DesireLRP sent → the first poll that saw every instance RUNNING (250 ms polls).
    pub time_to_all_running_polled_s: Option<f64>,
    /// Time to send every DesireLRP.
    pub desire_duration_s: f64,
    /// Instances RUNNING at the last poll.
    pub running: usize,
    /// Cells that run at least one instance, and the fewest / most instances on one.
    pub cells_used: usize,
    /// Fewest instances on a used cell.
    pub min_per_cell: usize,
    /// Most instances on one cell.
    pub max_per_cell: usize,
    /// Instance events received, and crash / removal events among them.
    pub events: u64,
    /// Crashes and removals seen (zero in a healthy run).
    pub crashes_or_removals: u64,
    /// Why the event stream ended early, if it did.
    pub event_stream_closed: Option<String>,
    /// Per-phase latencies.
    pub operations: Vec<OperationReport>,
    /// Every instance's lifecycle.
    pub instances: Vec<Lifecycle>,
    /// Wall time of the run.
    pub wall_time_s: f64,
    /// The table file, the JSON file and the charts.
    pub files: Files,
}

impl SmokeReport {
    /// Whether every instance ran within the timeout and nothing crashed or failed.
    pub fn ok(&self) -> bool {
        self.all_running && self.crashes_or_removals == 0 && self.operations.iter().all(|o| o.summary.errors == 0)
    }

    /// The printed table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(
            out,
            "smoke benchmark: {} instances across {} apps on {} {}",
            c.instances,
            c.apps,
            if c.bbs_address.is_some() {
                "the cells of an existing cluster".to_owned()
            } else {
                format!("{} sim cells", c.cells)
            },
            if c.bbs_address.is_some() {
                String::new()
            } else {
                format!("(sim start delay {} ms)", c.sim_start_delay.as_millis())
            }
        );
        let _ = writeln!(out, "{}", target_line(&self.target));
        let _ = writeln!(out, "desired every app in {:.2} s", self.desire_duration_s);
        match (self.time_to_all_running_s, self.time_to_all_running_polled_s) {
            (Some(events), Some(polled)) => {
                let _ = writeln!(
                    out,
                    "time to all RUNNING: {events:.2} s (last RUNNING event; first full poll {polled:.2} s); Diego: under {DIEGO_SECONDS:.0} s for 4,000 instances on 100 cells ({:.2}x)",
                    events / DIEGO_SECONDS
                );
            }
            (None, Some(polled)) => {
                let _ =
                    writeln!(out, "time to all RUNNING: {polled:.2} s (by polling; some RUNNING events were not seen)");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "NOT all RUNNING within {:.0} s: {} of {} running",
                    c.timeout.as_secs_f64(),
                    self.running,
                    c.instances
                );
            }
        }
        let _ = writeln!(
            out,
            "placement: {} cells used, {}..{} instances per cell; {} instance events, {} crashes/removals{}",
            self.cells_used,
            self.min_per_cell,
            self.max_per_cell,
            self.events,
            self.crashes_or_removals,
            self.event_stream_closed.as_ref().map(|c| format!("; event stream closed early: {c}")).unwrap_or_default()
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<24} {}", "phase", latency_headings());
        for op in &self.operations {
            let _ = writeln!(out, "{:<24} {}", op.name, op.latency_columns());
        }
        let _ =
            writeln!(out, "wall time: {:.1} s; result: {}", self.wall_time_s, if self.ok() { "OK" } else { "FAILED" });
        out
    }

    /// Writes `smoke-table.txt`, `smoke-report.json` and the charts into `dir`.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<()> {
        let charts = dir.join("charts");
        std::fs::create_dir_all(&charts)?;
        self.files.table = dir.join("smoke-table.txt");
        self.files.json = dir.join("smoke-report.json");
        let mut written = Vec::new();
        let timeline = charts.join("smoke-timeline.svg");
        let caption = match self.time_to_all_running_s.or(self.time_to_all_running_polled_s) {
            Some(t) => {
                format!("{} instances on {} cells: all RUNNING after {t:.2} s", self.instances.len(), self.cells_used)
            }
            None => format!("{} instances: NOT all RUNNING ({} running)", self.instances.len(), self.running),
        };
        timeline::chart(&self.instances, &caption, &timeline)?;
        written.push(timeline);
        for op in self.operations.iter().filter(|o| o.summary.count > 0) {
            let path = charts.join(format!("smoke-latency-{}.svg", slug(&op.name)));
            crate::charts::distribution(op, &path)?;
            written.push(path);
        }
        self.files.charts = written;
        std::fs::write(&self.files.table, self.table())?;
        std::fs::write(&self.files.json, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}
