//! SVG charts (plotters, SVG backend only): one latency distribution per operation (calls per
//! log-spaced latency bin, with the p50 and p99 marked) and one percentile chart with every
//! measured operation (latency against percentile, both on log scales).

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use crate::format::{ms, slug};
use crate::operations::OperationReport;

/// Distinct line colours (tab20-like, pale tints left out).
const PALETTE: [RGBColor; 14] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(0, 90, 50),
    RGBColor(120, 0, 120),
    RGBColor(200, 160, 0),
];

/// Bins of a distribution chart.
const BINS: usize = 40;

/// Writes every chart of a report's `operations` into `dir`; returns their paths.
pub fn write_all(operations: &[OperationReport], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for op in operations.iter().filter(|o| o.summary.count > 0) {
        let path = dir.join(format!("latency-{}.svg", slug(&op.name)));
        distribution(op, &path)?;
        written.push(path);
    }
    let path = dir.join("percentiles.svg");
    let measured: Vec<&OperationReport> =
        operations.iter().filter(|o| o.summary.count > 0 && o.phase != "setup").collect();
    if !measured.is_empty() {
        percentiles(&measured, &path)?;
        written.push(path);
    }
    Ok(written)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("chart: {e:?}")
}

/// Calls per latency bin (log-spaced), for one operation.
pub fn distribution(op: &OperationReport, path: &Path) -> anyhow::Result<()> {
    let values: Vec<(f64, u64)> = op.histogram.values.iter().map(|[us, n]| (*us as f64 / 1_000.0, *n)).collect();
    let lo = values.iter().map(|v| v.0).fold(f64::INFINITY, f64::min).max(0.001) * 0.9;
    let hi = values.iter().map(|v| v.0).fold(0.0, f64::max).max(lo * 2.0) * 1.1;
    let (llo, lhi) = (lo.ln(), hi.ln());
    let edge = |k: usize| (llo + (lhi - llo) * k as f64 / BINS as f64).exp();
    let mut bins = vec![0u64; BINS];
    for (v, n) in &values {
        let k = (((v.ln() - llo) / (lhi - llo)) * BINS as f64).floor().clamp(0.0, (BINS - 1) as f64) as usize;
        bins[k] += n;
    }
    let ymax = bins.iter().copied().max().unwrap_or(1).max(1);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let s = &op.summary;
    let caption =
        format!("{} — {} calls, p50 {}, p99 {}, max {}", op.name, s.count, ms(s.p50_ms), ms(s.p99_ms), ms(s.max_ms));
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), 0u64..(ymax + ymax / 10 + 1))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("calls")
        .x_label_formatter(&|v| format_ms(*v))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(
            bins.iter().enumerate().filter(|(_, n)| **n > 0).map(|(k, n)| {
                Rectangle::new([(edge(k), 0), (edge(k + 1), *n)], RGBColor(70, 130, 180).mix(0.8).filled())
            }),
        )
        .map_err(plot_err)?;
    for (label, value, color) in [("p50", s.p50_ms, GREEN), ("p99", s.p99_ms, RED)] {
        if value > 0.0 {
            chart
                .draw_series(LineSeries::new([(value, 0), (value, ymax)], color.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{label} {}", ms(value)))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Latency against percentile for every operation: x = -log10(1 - q), so 0 = 0%, 1 = 90%,
/// 2 = 99%, 3 = 99.9%.
fn percentiles(ops: &[&OperationReport], path: &Path) -> anyhow::Result<()> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = ops
        .iter()
        .map(|op| {
            let h = op.histogram.to_histogram();
            let points = (0..=60)
                .map(|k| {
                    let x = k as f64 * 0.05;
                    let q = 1.0 - 10f64.powf(-x);
                    (x, (h.value_at_quantile(q.min(1.0)) as f64 / 1_000.0).max(0.001))
                })
                .collect();
            (op.name.clone(), points)
        })
        .collect();
    let lo = curves.iter().flat_map(|(_, p)| p.iter().map(|v| v.1)).fold(f64::INFINITY, f64::min).max(0.001) * 0.8;
    let hi = curves.iter().flat_map(|(_, p)| p.iter().map(|v| v.1)).fold(0.0, f64::max).max(lo * 2.0) * 1.25;
    let root = SVGBackend::new(path, (1300, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (plot, legend) = root.split_horizontally(960);
    let mut chart = ChartBuilder::on(&plot)
        .caption("latency by percentile, per operation", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..3.0, (lo..hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(4)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-x));
            if q < 98.0 { format!("{q:.0}%") } else { format!("{q:.1}%") }
        })
        .y_label_formatter(&|v| format_ms(*v))
        .draw()
        .map_err(plot_err)?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(plot_err)?;
        let y = 60 + 22 * i as i32;
        legend.draw(&PathElement::new([(10, y), (40, y)], color.stroke_width(3))).map_err(plot_err)?;
        legend.draw(&Text::new(name, (48, y - 7), ("sans-serif", 14).into_font())).map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

fn format_ms(v: f64) -> String {
    if v >= 1_000.0 {
        format!("{:.1}s", v / 1_000.0)
    } else if v >= 1.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.2}ms")
    }
}
