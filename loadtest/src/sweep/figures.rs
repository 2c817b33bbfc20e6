//! What the sweep plots and tabulates: the figures taken from each size's [`Report`]
//! ([`FIGURES`]), one [`SizePoint`] per size, and the two checks on the curve: how each figure
//! grows from the smallest size to the largest ([`GrowthCheck`]) and whether every bulk loop's
//! slowest pass at the largest size fits its 30 s interval ([`IntervalCheck`]). All pure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::baseline::ops as raw;
use crate::convergence::ops as conv;
use crate::report::Report;
use crate::workload::ops as work;

/// Diego's bulk loops run every 30 s (the rep's bulk loop, the nsync bulker, the route
/// emitter's sync, the converger): each pass must finish within it.
pub const INTERVAL_MS: f64 = 30_000.0;

/// How far the cost per LRP (a linear figure) or the cost itself (a flat one) may rise from
/// the smallest size to the largest and still count as linear or flat. Wider than measurement
/// noise on a shared 2-core machine, far narrower than the 20x a quadratic cost shows over
/// the default sizes.
pub const GROWTH_TOLERANCE: f64 = 1.5;

/// How a figure should grow with the number of LRPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Growth {
    /// Proportional to the LRPs: a bulk read or pass over all of them.
    Linear,
    /// Independent of the LRPs: per-cell work, with the LRPs per cell held constant.
    Flat,
}

/// Which statistic of an operation's latencies a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stat {
    /// The mean.
    Mean,
    /// The median.
    P50,
    /// The 99th percentile.
    P99,
}

/// Where a figure's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A statistic of a recorded operation.
    Operation(&'static str, Stat),
    /// The wall time of the whole seeding.
    Seeding,
}

/// One curve of the chart and one column of the table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Its key in [`SizePoint::values_ms`] and the JSON.
    pub key: &'static str,
    /// Its label in the chart's legend and the table's heading.
    pub label: &'static str,
    /// Its value.
    pub source: Source,
    /// How it should grow.
    pub growth: Growth,
    /// A raw-SQL baseline (drawn dashed) rather than a figure of the BBS.
    pub raw: bool,
    /// The key of its raw baseline, for a figure of the BBS.
    pub baseline: Option<&'static str>,
}

const fn bbs(
    key: &'static str,
    label: &'static str,
    source: Source,
    growth: Growth,
    baseline: Option<&'static str>,
) -> Figure {
    Figure { key, label, source, growth, raw: false, baseline }
}

const fn base(key: &'static str, label: &'static str, source: Source, growth: Growth) -> Figure {
    Figure { key, label, source, growth, raw: true, baseline: None }
}

/// The figures, in table order, each BBS figure followed by its raw baseline.
pub const FIGURES: [Figure; 12] = [
    bbs(
        "rep-fetch-p50",
        "RepBulkFetching p50",
        Source::Operation(work::REP_BULK_FETCHING, Stat::P50),
        Growth::Flat,
        Some("raw-per-cell-p50"),
    ),
    base("raw-per-cell-p50", "raw per-cell p50", Source::Operation(raw::PER_CELL, Stat::P50), Growth::Flat),
    bbs(
        "rep-fetch-p99",
        "RepBulkFetching p99",
        Source::Operation(work::REP_BULK_FETCHING, Stat::P99),
        Growth::Flat,
        Some("raw-per-cell-p99"),
    ),
    base("raw-per-cell-p99", "raw per-cell p99", Source::Operation(raw::PER_CELL, Stat::P99), Growth::Flat),
    bbs("rep-loop", "RepBulkLoop mean", Source::Operation(work::REP_BULK_LOOP, Stat::Mean), Growth::Flat, None),
    bbs(
        "nsync",
        "NsyncBulkerFetching mean",
        Source::Operation(work::NSYNC_BULKER, Stat::Mean),
        Growth::Linear,
        Some("raw-scheduling"),
    ),
    base("raw-scheduling", "raw scheduling scan", Source::Operation(raw::SCHEDULING_SCAN, Stat::Mean), Growth::Linear),
    bbs(
        "route-emitter",
        "route-emitter fetch mean",
        Source::Operation(work::ROUTE_EMITTER, Stat::Mean),
        Growth::Linear,
        Some("raw-route-emitter"),
    ),
    base(
        "raw-route-emitter",
        "raw actual + scheduling scans",
        Source::Operation(raw::ROUTE_EMITTER, Stat::Mean),
        Growth::Linear,
    ),
    bbs(
        "convergence",
        "convergence pass mean",
        Source::Operation(conv::PASS, Stat::Mean),
        Growth::Linear,
        Some("raw-convergence"),
    ),
    base("raw-convergence", "raw convergence gather", Source::Operation(raw::CONVERGENCE, Stat::Mean), Growth::Linear),
    bbs("seeding", "seeding, all LRPs", Source::Seeding, Growth::Linear, None),
];

/// The bulk loops whose slowest pass must fit [`INTERVAL_MS`], with their labels.
pub const BULK_LOOPS: [(&str, &str); 4] = [
    (work::REP_BULK_LOOP, "rep bulk loop"),
    (work::NSYNC_BULKER, "nsync bulker"),
    (work::ROUTE_EMITTER, "route emitter"),
    (conv::PASS, "convergence pass"),
];

/// The figure with this key.
pub fn figure(key: &str) -> Option<&'static Figure> {
    FIGURES.iter().find(|f| f.key == key)
}

/// What one size measured.
#[derive(Debug, Clone, Serialize)]
pub struct SizePoint {
    /// Desired LRPs.
    pub lrps: usize,
    /// Simulated cells.
    pub cells: usize,
    /// Each measured figure by key, in milliseconds (a figure not measured is absent).
    pub values_ms: BTreeMap<String, f64>,
    /// Each bulk loop's slowest pass by operation name, in milliseconds.
    pub loop_max_ms: BTreeMap<String, f64>,
    /// Seeded LRPs per second.
    pub seeding_lrps_per_s: f64,
    /// Peak RSS of this process during the size's run, in MiB (in-process BBS plus simulator,
    /// or the simulator alone with `--bbs-process`).
    pub peak_rss_mib: Option<f64>,
    /// Peak RSS of the BBS process (`--bbs-process`), in MiB: its own, fresh for every size.
    pub bbs_peak_rss_mib: Option<f64>,
    /// Whether the peak RSS was reset before this size, so it is this size's own peak (else it
    /// is the peak of the whole process so far).
    pub peak_rss_reset: bool,
    /// Failed calls and failed count checks.
    pub errors: u64,
    /// Whether the run passed (no errors, event counts within tolerance).
    pub ok: bool,
    /// Wall time of the run, in seconds.
    pub wall_time_s: f64,
    /// The run's own table, JSON and charts.
    pub dir: PathBuf,
}

impl SizePoint {
    /// The figures of one size's report.
    pub fn of(report: &Report) -> SizePoint {
        let mut values_ms = BTreeMap::new();
        for f in &FIGURES {
            let value = match f.source {
                Source::Operation(name, stat) => report.operation(name).filter(|o| o.summary.count > 0).map(|o| {
                    let s = &o.summary;
                    match stat {
                        Stat::Mean => s.mean_ms,
                        Stat::P50 => s.p50_ms,
                        Stat::P99 => s.p99_ms,
                    }
                }),
                Source::Seeding => (report.seeding.seeded > 0).then_some(report.seeding.duration_s * 1_000.0),
            };
            if let Some(v) = value {
                values_ms.insert(f.key.to_owned(), v);
            }
        }
        let loop_max_ms = BULK_LOOPS
            .iter()
            .filter_map(|(name, _)| {
                let op = report.operation(name).filter(|o| o.summary.count > 0)?;
                Some(((*name).to_owned(), op.summary.max_ms))
            })
            .collect();
        SizePoint {
            lrps: report.config.desired_lrps,
            cells: report.config.cells,
            values_ms,
            loop_max_ms,
            seeding_lrps_per_s: report.seeding.lrps_per_s,
            peak_rss_mib: report.memory.peak_rss_kib.map(|k| k as f64 / 1024.0),
            bbs_peak_rss_mib: report.memory.bbs_peak_rss_mib,
            peak_rss_reset: false,
            errors: report.errors(),
            ok: report.ok(),
            wall_time_s: report.wall_time_s,
            dir: report.config.output.clone(),
        }
    }

    /// The value of figure `key`, if measured.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.values_ms.get(key).copied()
    }
}

/// How one figure grew from the smallest measured size to the largest.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthCheck {
    /// The figure's key.
    pub key: String,
    /// How it should grow.
    pub growth: Growth,
    /// The smallest size that measured it and its value there (ms).
    pub smallest: (usize, f64),
    /// The largest size that measured it and its value there (ms).
    pub largest: (usize, f64),
    /// Value at the largest size ÷ value at the smallest.
    pub cost_ratio: f64,
    /// Cost per LRP at the largest size ÷ cost per LRP at the smallest: 1 for exactly linear
    /// growth, below 1 when fixed costs weigh more at small sizes, above it for superlinear.
    pub per_lrp_ratio: f64,
    /// The exponent `b` of the least-squares fit `value = a · LRPs^b` over every measured size
    /// (1: linear, 0: flat, 2: quadratic).
    pub exponent: Option<f64>,
    /// Whether the figure grew as it should: the per-LRP ratio (linear) or the cost ratio
    /// (flat) at most [`GROWTH_TOLERANCE`].
    pub holds: bool,
}

impl GrowthCheck {
    /// The figure's growth over `points`; `None` unless two different sizes measured it above 0.
    pub fn of(figure: &Figure, points: &[SizePoint]) -> Option<GrowthCheck> {
        let mut measured: Vec<(usize, f64)> =
            points.iter().filter_map(|p| p.value(figure.key).filter(|v| *v > 0.0).map(|v| (p.lrps, v))).collect();
        measured.sort_by_key(|m| m.0);
        let (&smallest, &largest) = (measured.first()?, measured.last()?);
        if smallest.0 == largest.0 || smallest.0 == 0 {
            return None;
        }
        let cost_ratio = largest.1 / smallest.1;
        let per_lrp_ratio = cost_ratio * smallest.0 as f64 / largest.0 as f64;
        let decisive = match figure.growth {
            Growth::Linear => per_lrp_ratio,
            Growth::Flat => cost_ratio,
        };
        Some(GrowthCheck {
            key: figure.key.to_owned(),
            growth: figure.growth,
            smallest,
            largest,
            cost_ratio,
            per_lrp_ratio,
            exponent: log_log_slope(&measured),
            holds: decisive <= GROWTH_TOLERANCE,
        })
    }

    /// The ratio the verdict is on: per LRP for a linear figure, the cost for a flat one.
    pub fn decisive_ratio(&self) -> f64 {
        match self.growth {
            Growth::Linear => self.per_lrp_ratio,
            Growth::Flat => self.cost_ratio,
        }
    }
}

/// The growth of every figure over `points` (those measured at two sizes), in figure order.
pub fn growth_checks(points: &[SizePoint]) -> Vec<GrowthCheck> {
    FIGURES.iter().filter_map(|f| GrowthCheck::of(f, points)).collect()
}

/// The least-squares slope of `ln(value)` against `ln(size)`; `None` for fewer than two sizes.
pub fn log_log_slope(points: &[(usize, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> =
        points.iter().filter(|(n, v)| *n > 0 && *v > 0.0).map(|(n, v)| ((*n as f64).ln(), v.ln())).collect();
    let n = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (logs.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// One bulk loop at the largest size against its 30 s interval.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalCheck {
    /// The loop's operation.
    pub operation: String,
    /// For people.
    pub label: String,
    /// The size.
    pub lrps: usize,
    /// Its slowest pass there, in ms.
    pub max_ms: f64,
    /// Whether that pass fits [`INTERVAL_MS`].
    pub within: bool,
}

/// Every bulk loop measured at the largest size of `points`, against [`INTERVAL_MS`].
pub fn interval_checks(points: &[SizePoint]) -> Vec<IntervalCheck> {
    let Some(largest) = points.iter().max_by_key(|p| p.lrps) else { return vec![] };
    BULK_LOOPS
        .iter()
        .filter_map(|(name, label)| {
            let max_ms = *largest.loop_max_ms.get(*name)?;
            Some(IntervalCheck {
                operation: (*name).to_owned(),
                label: (*label).to_owned(),
                lrps: largest.lrps,
                max_ms,
                within: max_ms <= INTERVAL_MS,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A point whose every figure is `scale(figure) · value(lrps)`: linear figures cost
    /// `lrps / 1000` ms, flat ones 2 ms, unless `bend` says otherwise.
    pub(crate) fn point(lrps: usize, bend: impl Fn(&Figure, usize) -> Option<f64>) -> SizePoint {
        let values_ms = FIGURES
            .iter()
            .filter_map(|f| {
                bend(f, lrps)
                    .or(Some(match f.growth {
                        Growth::Linear => lrps as f64 / 1_000.0,
                        Growth::Flat => 2.0,
                    }))
                    .filter(|v| *v >= 0.0)
                    .map(|v| (f.key.to_owned(), v))
            })
            .collect();
        let loop_max_ms = BULK_LOOPS.iter().map(|(n, _)| ((*n).to_owned(), lrps as f64 / 100.0)).collect();
        SizePoint {
            lrps,
            cells: lrps.div_ceil(250),
            values_ms,
            loop_max_ms,
            seeding_lrps_per_s: 10_000.0,
            peak_rss_mib: Some(lrps as f64 / 1_000.0 + 50.0),
            bbs_peak_rss_mib: None,
            peak_rss_reset: true,
            errors: 0,
            ok: true,
            wall_time_s: 10.0,
            dir: PathBuf::from(format!("size-{lrps}")),
        }
    }

    pub(crate) fn ideal(lrps: usize) -> SizePoint {
        point(lrps, |_, _| None)
    }

    #[test]
    fn every_baseline_names_a_raw_figure_and_keys_are_unique() {
        for f in &FIGURES {
            assert_eq!(FIGURES.iter().filter(|g| g.key == f.key).count(), 1, "{}", f.key);
            if let Some(b) = f.baseline {
                let b = figure(b).unwrap_or_else(|| panic!("{}'s baseline {b} is a figure", f.key));
                assert!(b.raw && !f.raw && b.growth == f.growth, "{} vs {}", f.key, b.key);
            }
        }
    }

    #[test]
    fn ideal_curves_are_linear_and_flat() {
        let points: Vec<SizePoint> = [50_000, 125_000, 250_000, 500_000, 1_000_000].map(ideal).into();
        let checks = growth_checks(&points);
        assert_eq!(checks.len(), FIGURES.len());
        for c in &checks {
            assert!(c.holds, "{c:?}");
            let (ratio, exponent) = match c.growth {
                Growth::Linear => (c.per_lrp_ratio, 1.0),
                Growth::Flat => (c.cost_ratio, 0.0),
            };
            assert!((ratio - 1.0).abs() < 1e-9 && (c.exponent.unwrap() - exponent).abs() < 1e-9, "{c:?}");
            assert_eq!((c.smallest.0, c.largest.0), (50_000, 1_000_000));
        }
    }

    #[test]
    fn quadratic_bulk_and_growing_per_cell_fetch_fail_their_checks() {
        let points: Vec<SizePoint> = [50_000, 100_000, 200_000]
            .map(|n| {
                point(n, |f, n| match f.key {
                    "nsync" => Some((n as f64 / 1_000.0).powi(2)),
                    "rep-fetch-p99" => Some(n as f64 / 10_000.0),
                    _ => None,
                })
            })
            .into();
        let checks = growth_checks(&points);
        let of = |key: &str| checks.iter().find(|c| c.key == key).unwrap();
        let nsync = of("nsync");
        assert!(
            !nsync.holds && (nsync.per_lrp_ratio - 4.0).abs() < 1e-9 && (nsync.exponent.unwrap() - 2.0).abs() < 1e-9
        );
        let p99 = of("rep-fetch-p99");
        assert!(!p99.holds && (p99.decisive_ratio() - 4.0).abs() < 1e-9, "{p99:?}");
        assert!(of("route-emitter").holds && of("rep-fetch-p50").holds);
        // Sublinear (fixed costs dominate the small sizes) counts as linear.
        let sub: Vec<SizePoint> = [1_000, 8_000].map(|n| point(n, |_, n| Some(10.0 + n as f64 / 1_000.0))).into();
        assert!(growth_checks(&sub).iter().filter(|c| c.growth == Growth::Linear).all(|c| c.holds));
    }

    #[test]
    fn a_figure_measured_at_one_size_has_no_growth() {
        let points = vec![ideal(1_000), point(2_000, |f, _| (f.key == "convergence").then_some(-1.0))];
        let checks = growth_checks(&points);
        assert!(checks.iter().all(|c| c.key != "convergence"));
        assert_eq!(checks.len(), FIGURES.len() - 1);
        assert!(growth_checks(&[ideal(1_000)]).is_empty());
        assert_eq!(log_log_slope(&[(10, 1.0)]), None);
    }

    #[test]
    fn bulk_loops_are_checked_at_the_largest_size_only() {
        let mut big = ideal(4_000_000);
        big.loop_max_ms.insert(work::NSYNC_BULKER.to_owned(), 31_000.0);
        big.loop_max_ms.insert(work::ROUTE_EMITTER.to_owned(), 29_000.0);
        big.loop_max_ms.remove(conv::PASS);
        let checks = interval_checks(&[big, ideal(1_000)]);
        assert_eq!(checks.len(), 3);
        assert!(checks.iter().all(|c| c.lrps == 4_000_000));
        let within: Vec<(&str, bool)> = checks.iter().map(|c| (c.operation.as_str(), c.within)).collect();
        assert_eq!(within, [(work::REP_BULK_LOOP, false), (work::NSYNC_BULKER, false), (work::ROUTE_EMITTER, true)]);
        let fits = interval_checks(&[ideal(1_000_000)]);
        assert!(fits.iter().all(|c| c.within && c.max_ms == 10_000.0), "{fits:?}");
        assert!(interval_checks(&[]).is_empty());
    }
}
