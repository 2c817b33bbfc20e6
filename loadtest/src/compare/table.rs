//! The comparison as text: `comparison.txt` and what the command prints.

use super::*;

impl Comparison {
    /// The comparison table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let n = self.rounds.len();
        let ok = |ok: bool| if ok { "OK" } else { "FAILED" };
        let x = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}x"));
        let xs = |r: &Ratios| r.per_round.iter().map(|r| x(*r)).collect::<Vec<_>>().join(" ");
        let t = |v: Option<f64>| v.map_or("-".to_owned(), ms);
        let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.0}"));
        let _ = writeln!(
            out,
            "benchmark-bbs --compare-tls: {} cells, {} desired LRPs, {} trials, {}% writes, seed {}; {} connections \
             per run ({} operator + 1 per cell), the same in every run",
            c.cells, c.desired_lrps, c.trials, c.percent_writes, c.seed, self.connections_per_run, c.connections
        );
        let runs: Vec<String> = self.order.iter().map(|(r, m)| format!("{r} {}", m.label())).collect();
        let _ = writeln!(out, "{n} rounds in ABBA order, each run on a fresh database: {}", runs.join(", "));
        for r in &self.rounds {
            let _ = writeln!(
                out,
                "round {}: plaintext {} ({:.1} s), mutual TLS {} ({:.1} s)",
                r.number,
                ok(r.plaintext_ok),
                r.plaintext_wall_time_s,
                ok(r.tls_ok),
                r.tls_wall_time_s
            );
        }
        if let Some(r) = self.rounds.first() {
            let _ = writeln!(out, "plaintext {}", target_line(&r.plaintext.target));
            let _ = writeln!(out, "mutual TLS {}", target_line(&r.tls.target));
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Per operation, medians over the {n} rounds; × is the median of the rounds' TLS/plaintext ratios"
        );
        let _ = writeln!(
            out,
            "{:<8} {:<42} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7}",
            "phase",
            "operation",
            "p50",
            "TLS p50",
            "×",
            "mean",
            "TLS mean",
            "×",
            "p99",
            "TLS p99",
            "×",
            "op/s",
            "TLS op/s",
            "×"
        );
        for o in &self.operations {
            let (p, tl) = (&o.plaintext, &o.tls);
            let _ = writeln!(
                out,
                "{:<8} {:<42} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7}",
                o.phase,
                o.name,
                t(p.p50_ms),
                t(tl.p50_ms),
                x(o.p50_ratio.median),
                t(p.mean_ms),
                t(tl.mean_ms),
                x(o.mean_ratio.median),
                t(p.p99_ms),
                t(tl.p99_ms),
                x(o.p99_ratio.median),
                rate(p.throughput_per_s),
                rate(tl.throughput_per_s),
                x(o.throughput_ratio.median)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Headline, TLS/plaintext per round (rounds 1..{n}) and their median; the verdict is the median of the \
             p50 ratios, target within {:.1}x:",
            self.target_ratio
        );
        let within = |w: bool| if w { "within" } else { "BEYOND" };
        for h in &self.headline {
            let _ = writeln!(out, "{} ({})", h.what, h.operation);
            let Some(s) = &h.summary else {
                let _ = writeln!(out, "  not measured: BEYOND");
                continue;
            };
            let _ = writeln!(
                out,
                "  p50         {} plaintext, {} TLS; ratio per round {}; median {}: {}",
                t(s.plaintext.p50_ms),
                t(s.tls.p50_ms),
                xs(&s.p50_ratio),
                x(s.p50_ratio.median),
                within(h.within_target)
            );
            let _ = writeln!(
                out,
                "  mean        {} plaintext, {} TLS; ratio per round {}; median {} ({})",
                t(s.plaintext.mean_ms),
                t(s.tls.mean_ms),
                xs(&s.mean_ratio),
                x(s.mean_ratio.median),
                within(h.mean_within_target)
            );
            let _ = writeln!(
                out,
                "  throughput  {} plaintext, {} TLS op/s; ratio per round {}; median {}",
                rate(s.plaintext.throughput_per_s),
                rate(s.tls.throughput_per_s),
                xs(&s.throughput_ratio),
                x(s.throughput_ratio.median)
            );
        }
        let _ = writeln!(out);
        let figures = |f: fn(&Headline) -> Option<f64>| {
            self.headline.iter().map(|h| format!("{} {}", h.what, x(f(h)))).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            out,
            "TLS/plaintext p50 latency, median of {n} rounds, target within {:.1}x: {}: {} (mean latency: {}: {})",
            self.target_ratio,
            figures(Headline::p50_ratio),
            if self.within_target { "WITHIN" } else { "BEYOND" },
            figures(Headline::mean_ratio),
            if self.mean_within_target { "within" } else { "beyond" }
        );
        let _ = writeln!(
            out,
            "runs: {}/round-<n>/{{plaintext,mutual-tls}}; result: {}",
            self.config.output.display(),
            ok(self.ok())
        );
        out
    }
}
