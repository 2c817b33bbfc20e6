//! The soak's report: `soak.md` (the table), `soak.json` (everything) and `soak.svg` (RSS per
//! component, the churn p99, running versus desired, over time, with the chaos events marked).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use serde::Serialize;

use super::chaos::{ALL, Event};
use super::check::Observed;

/// First versus last window of a figure, and whether it grew beyond the tolerance.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// Mean over the first window.
    pub start: f64,
    /// Mean over the last window.
    pub end: f64,
    /// `end` beyond the tolerance of `start`.
    pub grew: bool,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    /// Seconds soaked.
    pub duration_s: f64,
    /// The seed.
    pub seed: u64,
    /// How the database was stopped.
    pub database: String,
    /// Churn operations by kind: (acknowledged, failed).
    pub operations: BTreeMap<String, (u64, u64)>,
    /// Instance processes killed on process cells.
    pub crashes: u64,
    /// Chaos events done.
    pub events: Vec<Event>,
    /// RSS (MiB) per component, first versus last window.
    pub rss_mib: BTreeMap<String, Trend>,
    /// Churn p99 (ms), first versus last window.
    pub p99_ms: Trend,
    /// What the checker saw.
    pub observed: Observed,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

impl SoakReport {
    /// The trends from the samples: windows of a tenth of the run (at least 30 s) after the
    /// first `warmup_s`, and before the end.
    pub fn trends(&mut self, warmup_s: f64) {
        let w = (self.duration_s / 10.0).max(30.0);
        let first = |t: f64| t >= warmup_s && t <= warmup_s + w;
        let last = |t: f64| t >= self.duration_s - w;
        let names: std::collections::BTreeSet<String> =
            self.observed.rss.iter().flat_map(|s| s.kib.keys().cloned()).collect();
        for name in names {
            let series = |keep: &dyn Fn(f64) -> bool| {
                mean(
                    self.observed
                        .rss
                        .iter()
                        .filter(|s| keep(s.at_s))
                        .filter_map(|s| s.kib.get(&name))
                        .map(|k| *k as f64 / 1024.0),
                )
            };
            if let (Some(start), Some(end)) = (series(&first), series(&last)) {
                self.rss_mib.insert(name, Trend { start, end, grew: end > start * 1.5 + 16.0 });
            }
        }
        let p99 = |keep: &dyn Fn(f64) -> bool| {
            mean(self.observed.latency.iter().filter(|l| keep(l.at_s) && l.calls > 0).map(|l| l.p99_ms))
        };
        let (start, end) = (p99(&first).unwrap_or(0.0), p99(&last).unwrap_or(0.0));
        self.p99_ms = Trend { start, end, grew: end > (start * 2.0).max(start + 25.0) };
    }

    /// The markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let o = &self.observed;
        let _ = writeln!(s, "# Soak: {:.0} s, seed {}\n", self.duration_s, self.seed);
        let _ = writeln!(s, "| figure | value |\n|---|---|");
        let _ = writeln!(s, "| duration | {:.0} s |", self.duration_s);
        let _ = writeln!(s, "| database stop | {} |", self.database);
        let ops: Vec<String> = self.operations.iter().map(|(k, (ok, failed))| format!("{k} {ok}/{failed}")).collect();
        let _ = writeln!(s, "| churn (acknowledged/failed) | {} |", ops.join(", "));
        let _ = writeln!(s, "| instance processes crashed | {} |", self.crashes);
        let _ = writeln!(s, "| tasks succeeded / failed | {} / {} |", o.tasks_succeeded, o.tasks_failed);
        let _ = writeln!(s, "| chaos events | {} |", self.events.len());
        let _ = writeln!(s, "| invariant violations | **{}** |", o.violations.len());
        let _ = writeln!(s, "| longest double RUNNING index | {} ms |", o.longest_double_ms);
        let _ = writeln!(
            s,
            "| checks unreadable (BBS or database down) | {} of {} |",
            o.unreadable,
            o.samples.len() as u64 + o.unreadable
        );
        let verdict = |t: &Trend| if t.grew { "GREW" } else { "stable" };
        let _ = writeln!(
            s,
            "| churn p99 start → end | {:.1} ms → {:.1} ms ({}) |",
            self.p99_ms.start,
            self.p99_ms.end,
            verdict(&self.p99_ms)
        );
        for (name, t) in &self.rss_mib {
            let _ = writeln!(s, "| RSS {name} start → end | {:.1} MiB → {:.1} MiB ({}) |", t.start, t.end, verdict(t));
        }
        let _ = writeln!(
            s,
            "\n## Chaos: recovery times\n\n| kind | events | recovered | min | median | max |\n|---|---|---|---|---|---|"
        );
        for kind in ALL {
            let mut times: Vec<u64> =
                self.events.iter().filter(|e| e.chaos == kind).filter_map(|e| e.recovery_ms).collect();
            let n = self.events.iter().filter(|e| e.chaos == kind).count();
            times.sort_unstable();
            let f = |v: Option<&u64>| v.map(|ms| format!("{:.1} s", *ms as f64 / 1000.0)).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {kind:?} | {n} | {} | {} | {} | {} |",
                times.len(),
                f(times.first()),
                f(times.get(times.len() / 2)),
                f(times.last())
            );
        }
        let _ =
            writeln!(s, "\n## Events\n\n| at | kind | target | fault | recovery | error |\n|---|---|---|---|---|---|");
        for e in &self.events {
            let rec = e.recovery_ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {:.1} s | {:?} | {} | {:.1} s | {rec} | {} |",
                e.at_s,
                e.chaos,
                e.target,
                e.fault_ms as f64 / 1000.0,
                e.error.as_deref().unwrap_or("")
            );
        }
        if !o.violations.is_empty() {
            let _ = writeln!(s, "\n## Violations\n");
            for v in o.violations.iter().take(200) {
                let _ = writeln!(s, "- {:.1} s {}: {}", v.at_s, v.kind, v.detail);
            }
        }
        s
    }

    /// Writes soak.md, soak.json and soak.svg into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("soak.md"), self.markdown())?;
        std::fs::write(dir.join("soak.json"), serde_json::to_vec_pretty(self)?)?;
        self.chart(&dir.join("soak.svg"))
    }

    fn chart(&self, path: &Path) -> anyhow::Result<()> {
        let err = |e: &dyn std::fmt::Debug| anyhow!("chart: {e:?}");
        let root = SVGBackend::new(path, (1100, 1000)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let panels = root.split_evenly((3, 1));
        let x = 0.0..self.duration_s.max(1.0);
        let o = &self.observed;
        let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK, RGBColor(255, 127, 14), RGBColor(140, 86, 75)];
        // RSS.
        let names: std::collections::BTreeSet<&String> = o.rss.iter().flat_map(|s| s.kib.keys()).collect();
        let ymax = o.rss.iter().flat_map(|s| s.kib.values()).copied().max().unwrap_or(1) as f64 / 1024.0 * 1.1 + 1.0;
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("RSS per component (MiB)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x.clone(), 0.0..ymax)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("s").draw().map_err(|e| err(&e))?;
        for (i, name) in names.iter().enumerate() {
            let color = colors[i % colors.len()];
            let points: Vec<(f64, f64)> =
                o.rss.iter().filter_map(|s| Some((s.at_s, *s.kib.get(*name)? as f64 / 1024.0))).collect();
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        // p99.
        let ymax = o.latency.iter().map(|l| l.p99_ms).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&panels[1])
            .caption("churn call p99 per 10 s window (ms)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x.clone(), 0.0..ymax)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("s").draw().map_err(|e| err(&e))?;
        let points: Vec<(f64, f64)> = o.latency.iter().filter(|l| l.calls > 0).map(|l| (l.at_s, l.p99_ms)).collect();
        chart.draw_series(LineSeries::new(points, BLUE)).map_err(|e| err(&e))?;
        self.mark_events(&mut chart, ymax)?;
        // Running versus desired.
        let ymax = o.samples.iter().map(|s| s.desired.max(s.running)).max().unwrap_or(1) as f64 * 1.1 + 1.0;
        let mut chart = ChartBuilder::on(&panels[2])
            .caption("running (green) versus desired (blue) instances; chaos events in red", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x, 0.0..ymax)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("s").draw().map_err(|e| err(&e))?;
        let desired: Vec<(f64, f64)> = o.samples.iter().map(|s| (s.at_s, s.desired as f64)).collect();
        let running: Vec<(f64, f64)> = o.samples.iter().map(|s| (s.at_s, s.running as f64)).collect();
        chart.draw_series(LineSeries::new(desired, BLUE)).map_err(|e| err(&e))?;
        chart.draw_series(LineSeries::new(running, GREEN)).map_err(|e| err(&e))?;
        self.mark_events(&mut chart, ymax)?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }

    fn mark_events<DB: DrawingBackend>(
        &self,
        chart: &mut ChartContext<
            '_,
            DB,
            Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
        >,
        ymax: f64,
    ) -> anyhow::Result<()> {
        for e in &self.events {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(e.at_s, 0.0), (e.at_s, ymax)], RED.mix(0.4))))
                .map_err(|e| anyhow!("chart: {e:?}"))?;
        }
        Ok(())
    }
}
