//! The sweep's table, `sweep.md`: one Markdown table with a row per size (every figure, each
//! BBS figure beside its raw baseline, then the seeding rate, the peak RSS of benchmark-bbs and
//! of the BBS when it ran as its own process, and the run's result), followed by the rows that judge the curve: growth from the smallest to the largest
//! size (per LRP for the bulk figures, absolute for the per-cell ones), the fitted exponent,
//! the verdict, and each bulk loop's slowest pass at the largest size against 30 s.

use std::fmt::Write as _;

use super::figures::{FIGURES, GROWTH_TOLERANCE, Growth, GrowthCheck, INTERVAL_MS, IntervalCheck, SizePoint, Source};
use crate::format::ms;

/// The table of a sweep: `heading` lines first (as given), then the table, then the notes.
pub fn markdown(
    heading: &[String],
    points: &[SizePoint],
    growth: &[GrowthCheck],
    interval: &[IntervalCheck],
) -> String {
    let mut sorted: Vec<&SizePoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.lrps);
    let mut out = String::new();
    for line in heading {
        let _ = writeln!(out, "{line}");
    }
    if !heading.is_empty() {
        let _ = writeln!(out);
    }
    let extra = ["seeding rate", "peak RSS", "BBS peak RSS", "wall time", "result"];
    let mut header: Vec<String> = vec!["LRPs".into(), "cells".into()];
    header.extend(FIGURES.iter().map(|f| f.label.to_owned()));
    header.extend(extra.iter().map(|s| (*s).to_owned()));
    row(&mut out, &header);
    let mut rule = vec!["---:".to_owned(); header.len()];
    rule[header.len() - 1] = "---".into();
    row(&mut out, &rule);

    for p in &sorted {
        let mut cells = vec![p.lrps.to_string(), p.cells.to_string()];
        cells.extend(FIGURES.iter().map(|f| p.value(f.key).map_or_else(|| "-".into(), ms)));
        cells.push(format!("{:.0} LRPs/s", p.seeding_lrps_per_s));
        cells.push(p.peak_rss_mib.map_or_else(
            || "-".into(),
            |m| if p.peak_rss_reset { format!("{m:.0} MiB") } else { format!("{m:.0} MiB (peak so far)") },
        ));
        cells.push(p.bbs_peak_rss_mib.map_or_else(|| "-".into(), |m| format!("{m:.0} MiB")));
        cells.push(format!("{:.0} s", p.wall_time_s));
        cells.push(if p.ok { "OK".into() } else { format!("FAILED ({} errors)", p.errors) });
        row(&mut out, &cells);
    }

    let check = |f: &str| growth.iter().find(|c| c.key == f);
    let judged = |label: &str, cell: &dyn Fn(&GrowthCheck) -> String| {
        let mut cells = vec![format!("**{label}**"), String::new()];
        cells.extend(FIGURES.iter().map(|f| check(f.key).map_or_else(|| "-".into(), cell)));
        cells.extend(extra.iter().map(|_| String::new()));
        cells
    };
    row(
        &mut out,
        &judged("growth, largest ÷ smallest", &|c| match c.growth {
            Growth::Linear => format!("{:.2}x per LRP", c.per_lrp_ratio),
            Growth::Flat => format!("{:.2}x", c.cost_ratio),
        }),
    );
    row(
        &mut out,
        &judged("exponent b (cost ∝ LRPs^b)", &|c| c.exponent.map_or_else(|| "-".into(), |b| format!("{b:.2}"))),
    );
    row(
        &mut out,
        &judged("verdict", &|c| {
            let what = match c.growth {
                Growth::Linear => "linear",
                Growth::Flat => "flat",
            };
            if c.holds { format!("{what}: yes") } else { format!("{what}: NO") }
        }),
    );
    if let Some(largest) = sorted.last() {
        let mut cells = vec![format!("**slowest pass at {} LRPs ≤ 30 s**", largest.lrps), String::new()];
        cells.extend(FIGURES.iter().map(|f| {
            let check = match f.source {
                Source::Operation(op, _) if !f.raw => interval.iter().find(|c| c.operation == op),
                _ => None,
            };
            check.map_or_else(String::new, |c| format!("{} {}", ms(c.max_ms), if c.within { "yes" } else { "NO" }))
        }));
        cells.extend(extra.iter().map(|_| String::new()));
        row(&mut out, &cells);
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Linear: the cost per LRP at the largest size is at most {GROWTH_TOLERANCE}x that at the smallest (below 1: \
         fixed costs weigh more at small sizes). Flat: the cost itself rises at most {GROWTH_TOLERANCE}x. The \
         exponent is the least-squares slope of log(cost) against log(LRPs) over every size. Bulk-loop figures are \
         means over the trials; \"slowest pass\" is the worst single pass, against Diego's {}-second loop interval. \
         Raw columns: the same SQL straight on the same database in the same run, one statement at a time after \
         the trials. RepBulkLoop: every cell's loop starts at the same moment of a trial and shares the \
         simulator's --max-in-flight call slots with all the others, so it includes queueing behind the other \
         cells' calls and grows with the cells; Diego's reps spread their loops over the interval. Peak RSS: this process (the in-process BBS plus the simulator), its high-water mark reset \
         before each size where the kernel allows it.",
        INTERVAL_MS / 1_000.0
    );
    let failed: Vec<String> =
        interval.iter().filter(|c| !c.within).map(|c| format!("{} ({})", c.label, ms(c.max_ms))).collect();
    if !failed.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Over the 30 s interval at the largest size: {}.", failed.join(", "));
    }
    out
}

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
}

#[cfg(test)]
mod tests {
    use super::super::figures::tests::{ideal, point};
    use super::super::figures::{growth_checks, interval_checks};
    use super::*;

    fn table_rows(md: &str) -> Vec<Vec<String>> {
        md.lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect())
            .collect()
    }

    #[test]
    fn one_row_per_size_in_order_then_the_verdicts() {
        let points: Vec<SizePoint> = [250_000, 50_000, 125_000].map(ideal).into();
        let md = markdown(&["# sweep".into()], &points, &growth_checks(&points), &interval_checks(&points));
        assert!(md.starts_with("# sweep\n\n|"));
        let rows = table_rows(&md);
        let width = 2 + FIGURES.len() + 5;
        assert!(rows.iter().all(|r| r.len() == width), "{md}");
        let sizes: Vec<&str> = rows[2..].iter().map(|r| r[0].as_str()).filter(|c| c.parse::<usize>().is_ok()).collect();
        assert_eq!(sizes, ["50000", "125000", "250000"]);
        assert_eq!(rows[2][1], "200");
        let col = |label: &str| rows[0].iter().position(|h| h == label).unwrap();
        assert_eq!(rows[2][col("NsyncBulkerFetching mean")], "50.0 ms");
        assert_eq!(rows[4][col("NsyncBulkerFetching mean")], "250 ms");
        assert_eq!(rows[2][col("result")], "OK");
        assert_eq!(rows[2][col("peak RSS")], "100 MiB");
        assert_eq!(rows[2][col("BBS peak RSS")], "-", "the BBS ran in benchmark-bbs's process");
        let verdict = rows.iter().find(|r| r[0] == "**verdict**").unwrap();
        assert_eq!(verdict[col("NsyncBulkerFetching mean")], "linear: yes");
        assert_eq!(verdict[col("RepBulkFetching p99")], "flat: yes");
        let growth = rows.iter().find(|r| r[0].starts_with("**growth")).unwrap();
        assert_eq!(growth[col("route-emitter fetch mean")], "1.00x per LRP");
        assert_eq!(growth[col("raw per-cell p50")], "1.00x");
        let within = rows.iter().find(|r| r[0].contains("≤ 30 s")).unwrap();
        assert!(within[0].contains("250000"));
        assert_eq!(within[col("NsyncBulkerFetching mean")], "2.50 s yes");
        assert_eq!(within[col("raw scheduling scan")], "");
        assert!(!md.contains("Over the 30 s interval"));
    }

    #[test]
    fn a_superlinear_figure_a_slow_loop_and_a_failed_run_show() {
        let mut points: Vec<SizePoint> = [1_000, 10_000]
            .map(|n| point(n, |f, n| (f.key == "route-emitter").then_some((n as f64).powi(2) / 1_000.0)))
            .into();
        points[1].loop_max_ms.insert(crate::workload::ops::ROUTE_EMITTER.into(), 45_000.0);
        points[1].ok = false;
        points[1].errors = 3;
        points[1].values_ms.remove("seeding");
        points[1].peak_rss_reset = false;
        points[1].bbs_peak_rss_mib = Some(41.6);
        let md = markdown(&[], &points, &growth_checks(&points), &interval_checks(&points));
        let rows = table_rows(&md);
        let col = |label: &str| rows[0].iter().position(|h| h == label).unwrap();
        let verdict = rows.iter().find(|r| r[0] == "**verdict**").unwrap();
        assert_eq!(verdict[col("route-emitter fetch mean")], "linear: NO");
        assert_eq!(verdict[col("seeding, all LRPs")], "-");
        assert_eq!(rows[3][col("seeding, all LRPs")], "-");
        assert_eq!(rows[3][col("result")], "FAILED (3 errors)");
        assert_eq!(rows[3][col("peak RSS")], "60 MiB (peak so far)");
        assert_eq!(rows[3][col("BBS peak RSS")], "42 MiB");
        let within = rows.iter().find(|r| r[0].contains("≤ 30 s")).unwrap();
        assert_eq!(within[col("route-emitter fetch mean")], "45.00 s NO");
        assert!(md.contains("Over the 30 s interval at the largest size: route emitter (45.00 s)."), "{md}");
    }
}
