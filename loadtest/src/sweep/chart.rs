//! The sweep's chart, `sweep.svg`: every figure against the number of LRPs on log-log axes
//! (so linear growth is a line of slope 1 and flat growth a horizontal one), the raw-SQL
//! baselines dashed in the colour of the figure they are compared with, and a line at the
//! bulk loops' 30 s interval. Written by hand rather than with plotters so that each figure is
//! exactly one `<polyline>`, which the tests count.

use std::fmt::Write as _;

use super::figures::{FIGURES, Figure, INTERVAL_MS, SizePoint};

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 700.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 840.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 620.0;

/// Line colours of the BBS figures, in figure order (a baseline takes its figure's colour).
const COLOURS: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];

/// `text` safe inside an XML element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The label of the tick at 10^`decade` ms: 0.1 ms, 1 ms, 10 ms, 100 ms, 1 s, 10 s, 100 s.
pub fn tick_label(decade: i32) -> String {
    match u32::try_from(decade) {
        Ok(d) if d >= 3 => format!("{} s", 10u64.saturating_pow(d - 3)),
        Ok(d) => format!("{} ms", 10u64.pow(d)),
        Err(_) => format!("{:.*} ms", decade.unsigned_abs() as usize, 10f64.powi(decade)),
    }
}

/// A size for people: 200, 50k, 125k, 1M, 1.5M.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(100_000) {
        let m = n as f64 / 1_000_000.0;
        if n.is_multiple_of(1_000_000) { format!("{m:.0}M") } else { format!("{m:.1}M") }
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The colour of a figure: its own for a BBS figure, that of the figure it is the baseline of
/// for a raw one.
fn colour(figure: &Figure) -> &'static str {
    let owner = if figure.raw {
        FIGURES.iter().find(|f| f.baseline == Some(figure.key)).map_or(figure.key, |f| f.key)
    } else {
        figure.key
    };
    let index = FIGURES.iter().filter(|f| !f.raw).position(|f| f.key == owner).unwrap_or(0);
    COLOURS[index % COLOURS.len()]
}

/// A log10 axis from `lo` to `hi` (both > 0) onto pixels `from` to `to`.
struct LogAxis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl LogAxis {
    fn new(lo: f64, hi: f64, from: f64, to: f64) -> LogAxis {
        let (lo, hi) = (lo.log10(), hi.log10());
        let hi = if hi - lo < 0.2 { lo + 0.2 } else { hi };
        LogAxis { lo, hi, from, to }
    }

    fn at(&self, v: f64) -> f64 {
        self.from + (v.log10() - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

/// The SVG of `points` (any order): one polyline per figure measured at one size or more.
pub fn svg(points: &[SizePoint], caption: &str) -> String {
    let mut sorted: Vec<&SizePoint> = points.iter().filter(|p| p.lrps > 0).collect();
    sorted.sort_by_key(|p| p.lrps);
    let sizes: Vec<f64> = sorted.iter().map(|p| p.lrps as f64).collect();
    let (smin, smax) = (sizes.first().copied().unwrap_or(1.0), sizes.last().copied().unwrap_or(1.0));
    let x = LogAxis::new(smin / 1.3, smax * 1.3, LEFT, RIGHT);
    let values = sorted.iter().flat_map(|p| p.values_ms.values().copied()).filter(|v| *v > 0.0);
    let (vmin, vmax) = values.fold((INTERVAL_MS, INTERVAL_MS), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y = LogAxis::new(vmin / 2.0, vmax * 2.0, BOTTOM, TOP);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="32" font-size="20" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(caption)
    );

    // Axes, decade grid lines on y, one tick per size on x.
    let _ = writeln!(out, r##"<g class="axes" stroke="#000" stroke-width="1">"##);
    let _ = writeln!(out, r#"<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/>"#);
    let _ = writeln!(out, r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}"/>"#);
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, r#"<g class="ticks" font-size="12">"#);
    for decade in (y.lo.ceil() as i32)..=(y.hi.floor() as i32) {
        let v = 10f64.powi(decade);
        let py = y.at(v);
        let _ = writeln!(out, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="#ddd"/>"##);
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            escape(&tick_label(decade))
        );
    }
    for p in &sorted {
        let px = x.at(p.lrps as f64);
        let _ = writeln!(out, r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{BOTTOM}" stroke="#eee"/>"##);
        let _ = writeln!(
            out,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{} ({} cells)</text>"#,
            BOTTOM + 18.0,
            size_label(p.lrps),
            p.cells
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle">desired LRPs (log scale)</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 45.0
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="{:.1}" font-size="14" text-anchor="middle" transform="rotate(-90 20 {:.1})">time (log scale)</text>"#,
        (TOP + BOTTOM) / 2.0,
        (TOP + BOTTOM) / 2.0
    );

    // The 30 s interval.
    let iy = y.at(INTERVAL_MS);
    let _ = writeln!(
        out,
        r##"<line class="interval" x1="{LEFT}" y1="{iy:.1}" x2="{RIGHT}" y2="{iy:.1}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="2 3"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#d62728" text-anchor="end">30 s interval of the bulk loops</text>"##,
        RIGHT - 4.0,
        iy - 5.0
    );

    // One polyline (and its markers) per measured figure; the legend beside the plot.
    let mut legend_row = 0;
    for figure in &FIGURES {
        let curve: Vec<(f64, f64)> = sorted
            .iter()
            .filter_map(|p| p.value(figure.key).filter(|v| *v > 0.0).map(|v| (x.at(p.lrps as f64), y.at(v))))
            .collect();
        if curve.is_empty() {
            continue;
        }
        let colour = colour(figure);
        let dash = if figure.raw { r#" stroke-dasharray="7 4""# } else { "" };
        let points: Vec<String> = curve.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect();
        let _ = writeln!(
            out,
            r#"<polyline class="figure" data-figure="{}" fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            figure.key,
            points.join(" ")
        );
        for (px, py) in &curve {
            let _ = writeln!(out, r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{colour}"/>"#);
        }
        let ly = TOP + 10.0 + 24.0 * f64::from(legend_row);
        legend_row += 1;
        let _ = writeln!(
            out,
            r#"<line x1="860" y1="{ly:.1}" x2="895" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/>"#
        );
        let _ = writeln!(
            out,
            r#"<text class="legend" x="903" y="{:.1}" font-size="13">{}</text>"#,
            ly + 4.0,
            escape(figure.label)
        );
    }
    let note_y = TOP + 20.0 + 24.0 * f64::from(legend_row);
    let _ = writeln!(
        out,
        r#"<text x="860" y="{note_y:.1}" font-size="12">dashed: raw SQL on the same database, same run</text>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="860" y="{:.1}" font-size="12">slope 1: linear in LRPs; flat: independent of them</text>"#,
        note_y + 18.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::figures::tests::{ideal, point};
    use super::*;

    /// Checks that `xml` is well-formed as far as an SVG of ours goes: every tag closes in
    /// order, attributes are quoted, `&` only starts an entity, one root element. Returns the
    /// element names in document order.
    fn well_formed(xml: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = xml.trim();
        let mut roots = 0;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            check_text(text);
            let close = rest[open..].find('>').expect("a tag ends") + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "closing tag matches");
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "element name {name:?}");
            check_attributes(attrs);
            if stack.is_empty() {
                roots += 1;
            }
            names.push(name.to_owned());
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        check_text(rest);
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(roots, 1, "one root element");
        names
    }

    fn check_text(text: &str) {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..text[i..].find(';').map_or(text.len(), |j| i + j + 1)];
            assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity), "entity {entity:?}");
        }
        assert!(!text.contains('>'), "a stray > in {text:?}");
    }

    fn check_attributes(attrs: &str) {
        let mut rest = attrs.trim();
        while !rest.is_empty() {
            let (name, after) = rest.split_once('=').expect("an attribute has a value");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'), "attribute {name:?}");
            let after = after.strip_prefix('"').expect("quoted attribute");
            let end = after.find('"').expect("attribute closes");
            check_text(&after[..end]);
            assert!(!after[..end].contains('<'));
            rest = after[end + 1..].trim_start();
        }
    }

    #[test]
    fn the_chart_is_well_formed_with_one_polyline_per_figure_and_labels() {
        let points: Vec<SizePoint> = [1_000_000, 50_000, 125_000, 250_000, 500_000].map(ideal).into();
        let svg = svg(&points, "benchmark-bbs sweep <postgres> & friends");
        let names = well_formed(&svg);
        assert_eq!(names[0], "svg");
        assert_eq!(names.iter().filter(|n| *n == "polyline").count(), FIGURES.len());
        for f in &FIGURES {
            assert_eq!(svg.matches(&format!(r#"data-figure="{}""#, f.key)).count(), 1, "{}", f.key);
            assert!(svg.contains(&format!(">{}</text>", escape(f.label))), "legend of {}", f.key);
            // Every size is a vertex of every curve.
            let line = svg.lines().find(|l| l.contains(&format!(r#"data-figure="{}""#, f.key))).unwrap();
            let vertices = line.split("points=\"").nth(1).unwrap().trim_end_matches("\"/>").split(' ').count();
            assert_eq!(vertices, 5, "{line}");
            assert_eq!(line.contains("stroke-dasharray"), f.raw, "baselines are dashed: {line}");
        }
        for label in ["50k (200 cells)", "125k", "250k", "500k", "1M (4000 cells)", "30 s interval", "desired LRPs"] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains("&lt;postgres&gt; &amp; friends"));
        assert_eq!(svg.matches(r#"class="interval""#).count(), 1);
    }

    #[test]
    fn curves_rise_with_cost_and_unmeasured_figures_are_left_out() {
        let points = vec![
            point(1_000, |f, _| (f.key == "convergence").then_some(-1.0)),
            point(4_000, |f, _| (f.key == "convergence").then_some(-1.0)),
        ];
        let svg = svg(&points, "no convergence");
        well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), FIGURES.len() - 1);
        assert!(!svg.contains(r#"data-figure="convergence""#));
        // A linear figure's second vertex is higher on the page (smaller y), a flat one level.
        let ys = |key: &str| -> Vec<f64> {
            let line = svg.lines().find(|l| l.contains(&format!(r#"data-figure="{key}""#))).unwrap();
            let pts = line.split("points=\"").nth(1).unwrap().trim_end_matches("\"/>");
            pts.split(' ').map(|p| p.split(',').nth(1).unwrap().parse().unwrap()).collect()
        };
        let nsync = ys("nsync");
        assert!(nsync[1] < nsync[0], "{nsync:?}");
        let flat = ys("rep-fetch-p50");
        assert!((flat[1] - flat[0]).abs() < 0.05, "{flat:?}");
        // One size, or none, still makes a chart.
        well_formed(&super::svg(&[ideal(200)], "one size"));
        assert_eq!(well_formed(&super::svg(&[], "nothing")).iter().filter(|n| *n == "polyline").count(), 0);
    }

    #[test]
    fn size_labels() {
        let labels: Vec<String> = [200, 50_000, 125_000, 1_000_000, 1_500_000, 1_234].map(size_label).into();
        assert_eq!(labels, ["200", "50k", "125k", "1M", "1.5M", "1234"]);
        let ticks: Vec<String> = [-1, 0, 1, 2, 3, 4, 5].map(tick_label).into();
        assert_eq!(ticks, ["0.1 ms", "1 ms", "10 ms", "100 ms", "1 s", "10 s", "100 s"]);
    }
}
