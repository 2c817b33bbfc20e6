//! The lifecycle timeline chart: one row per instance, coloured by state over time, with
//! Diego's published figure marked.

use std::path::Path;

use plotters::prelude::*;

use super::DIEGO_SECONDS;
use super::observer::Lifecycle;

/// The lifecycle timeline: one row per instance (ordered by desire time, then by when it ran),
/// coloured by state over time.
pub(super) fn chart(instances: &[Lifecycle], caption: &str, path: &Path) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("timeline chart: {e:?}");
    let mut rows: Vec<&Lifecycle> = instances.iter().collect();
    rows.sort_by(|a, b| {
        (a.desired_ms, a.running_ms.unwrap_or(f64::MAX))
            .partial_cmp(&(b.desired_ms, b.running_ms.unwrap_or(f64::MAX)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let last = rows
        .iter()
        .flat_map(|l| [Some(l.desired_ms), l.unclaimed_ms, l.claimed_ms, l.running_ms])
        .flatten()
        .fold(0.0, f64::max);
    let end_s = (last / 1_000.0 * 1.05).max(1.0);
    let root = SVGBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, legend) = root.split_horizontally(1180);
    let n = rows.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end_s, 0f64..n)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("seconds since the first DesireLRP")
        .y_desc("instance (by desire time)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    let colours = [
        ("desired, not yet announced", RGBColor(190, 190, 190)),
        ("UNCLAIMED", RGBColor(230, 190, 0)),
        ("CLAIMED", RGBColor(240, 120, 20)),
        ("RUNNING", RGBColor(40, 160, 60)),
    ];
    let mut rects = Vec::with_capacity(rows.len() * 4);
    for (y, l) in rows.iter().enumerate() {
        let times = [Some(l.desired_ms), l.unclaimed_ms, l.claimed_ms, l.running_ms];
        for (state, start) in times.iter().enumerate() {
            let Some(start) = start else { continue };
            let stop = times[state + 1..].iter().flatten().next().copied().unwrap_or(end_s * 1_000.0);
            if stop > *start {
                let (y0, y1) = (y as f64, y as f64 + 1.0);
                rects.push(Rectangle::new([(start / 1_000.0, y0), (stop / 1_000.0, y1)], colours[state].1.filled()));
            }
        }
    }
    chart.draw_series(rects).map_err(|e| err(&e))?;
    if rows.len() == 4_000 && DIEGO_SECONDS < end_s {
        chart
            .draw_series(LineSeries::new([(DIEGO_SECONDS, 0.0), (DIEGO_SECONDS, n)], RED.stroke_width(2)))
            .map_err(|e| err(&e))?;
    }
    for (i, (label, colour)) in colours.iter().enumerate() {
        let y = 80 + 26 * i as i32;
        legend.draw(&Rectangle::new([(10, y - 8), (34, y + 8)], colour.filled())).map_err(|e| err(&e))?;
        legend.draw(&Text::new(*label, (42, y - 7), ("sans-serif", 14).into_font())).map_err(|e| err(&e))?;
    }
    if rows.len() == 4_000 {
        let y = 80 + 26 * 4;
        legend.draw(&PathElement::new([(10, y), (34, y)], RED.stroke_width(2))).map_err(|e| err(&e))?;
        let label = if DIEGO_SECONDS < end_s { "Diego: < 30 s" } else { "Diego: < 30 s (beyond the axis)" };
        legend.draw(&Text::new(label, (42, y - 7), ("sans-serif", 14).into_font())).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
