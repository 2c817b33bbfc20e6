//! `--compare-tls`: the same workload twice against an in-process BBS on the same backend,
//! plaintext then mutual TLS, each on a fresh database, and per operation the TLS/plaintext
//! ratios of the latencies and the throughput.
//!
//! Both runs use the same connection layout ([`crate::target::Clients`]: `connections` operator
//! connections plus one per simulated cell), so the ratios measure the TLS cost (handshakes,
//! record encryption, certificate checks, the per-request authorization) and nothing else. The
//! figures the issue asks for are [`HEADLINE`]: the rep's per-cell fetch, `DesireLRP` and
//! `StartActualLRP`, whose mean-latency ratios should stay within [`TARGET_RATIO`].
//!
//! Files: `<output>/plaintext/` and `<output>/mutual-tls/` hold each run's own table, JSON and
//! charts; `<output>/comparison.txt` and `<output>/comparison.json` the comparison. The TLS run's
//! certificates are issued into `--tls-dir` (default `<output>/tls`).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::{Config, SeedVia};
use crate::format::{ms, ratio};
use crate::report::{Report, target_line};
use crate::seed::ops as seed;
use crate::workload::ops as work;

/// The ratio the target allows for the headline operations (TLS mean / plaintext mean).
pub const TARGET_RATIO: f64 = 1.2;

/// The operations the closing note reports, with what they stand for: the rep's
/// per-cell fetch (`ActualLRPs{cell_id}` in the trials), `DesireLRP` (while seeding) and the
/// rep's `StartActualLRP` (in the trials).
pub const HEADLINE: [(&str, &str); 3] = [
    ("per-cell fetch", work::REP_BULK_FETCHING),
    ("DesireLRP", seed::SEED_DESIRE),
    ("StartActualLRP", work::REP_START),
];

/// The phases whose operations are gRPC calls (the raw-SQL baselines and the convergence pass
/// do not touch the transport and are left out).
const GRPC_PHASES: [&str; 3] = ["setup", "trials", "quiet"];

/// One side of an operation's comparison.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Side {
    /// Successful calls.
    pub count: u64,
    /// Failed calls and failed count checks.
    pub errors: u64,
    /// Mean latency.
    pub mean_ms: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Calls per second over the phase's wall time (seeding for `setup`, the trials for
    /// `trials`); `None` for the one-at-a-time `quiet` reads.
    pub throughput_per_s: Option<f64>,
}

/// One operation measured in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct OperationRatio {
    /// The operation (as in the runs' reports).
    pub name: String,
    /// Its phase.
    pub phase: String,
    /// The plaintext run's figures.
    pub plaintext: Side,
    /// The TLS run's figures.
    pub tls: Side,
    /// TLS mean latency / plaintext mean latency.
    pub mean_ratio: Option<f64>,
    /// TLS median / plaintext median.
    pub p50_ratio: Option<f64>,
    /// TLS p99 / plaintext p99.
    pub p99_ratio: Option<f64>,
    /// TLS throughput / plaintext throughput (below 1: TLS is slower).
    pub throughput_ratio: Option<f64>,
}

/// One headline figure of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// What it stands for (`per-cell fetch`, `DesireLRP`, `StartActualLRP`).
    pub what: String,
    /// The operation measured.
    pub operation: String,
    /// TLS mean latency / plaintext mean latency (`None` when either run has no sample).
    pub mean_ratio: Option<f64>,
    /// TLS throughput / plaintext throughput.
    pub throughput_ratio: Option<f64>,
    /// Whether `mean_ratio` is at most [`TARGET_RATIO`].
    pub within_target: bool,
}

/// Where a comparison's files are.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComparisonFiles {
    /// `comparison.txt`.
    pub table: PathBuf,
    /// `comparison.json`.
    pub json: PathBuf,
    /// The plaintext run's directory.
    pub plaintext: PathBuf,
    /// The TLS run's directory.
    pub tls: PathBuf,
}

/// What `--compare-tls` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The configuration both runs share (`tls`/`compare_tls` as given).
    pub config: Config,
    /// The backend both runs used (`sqlite`, `postgres`, `mysql`).
    pub backend: Option<String>,
    /// Connections each run opened: the operator's plus one per cell.
    pub connections_per_run: usize,
    /// The ratio the headline operations should stay within.
    pub target_ratio: f64,
    /// The three figures.
    pub headline: Vec<Headline>,
    /// Whether every headline figure is within the target.
    pub within_target: bool,
    /// Every gRPC operation both runs measured.
    pub operations: Vec<OperationRatio>,
    /// Whether the plaintext run passed (no errors, events within tolerance).
    pub plaintext_ok: bool,
    /// Whether the TLS run passed.
    pub tls_ok: bool,
    /// Wall time of the plaintext run, in seconds.
    pub plaintext_wall_time_s: f64,
    /// Wall time of the TLS run, in seconds.
    pub tls_wall_time_s: f64,
    /// Where the files are.
    pub files: ComparisonFiles,
    /// The plaintext run's report (its operations, events, seeding).
    #[serde(skip)]
    pub plaintext: Report,
    /// The TLS run's report.
    #[serde(skip)]
    pub tls: Report,
}

/// Runs the workload plaintext, then under mutual TLS, and writes the comparison.
pub async fn run(config: Config) -> anyhow::Result<Comparison> {
    config.validate()?;
    anyhow::ensure!(config.compare_tls, "compare::run needs --compare-tls");
    anyhow::ensure!(
        config.seed_via == SeedVia::Grpc,
        "--compare-tls needs --seed-via grpc: DesireLRP is timed only when seeding through the BBS"
    );
    std::fs::create_dir_all(&config.output).with_context(|| format!("cannot create {}", config.output.display()))?;
    let plain_config = Config {
        output: config.output.join("plaintext"),
        tls: false,
        tls_dir: None,
        compare_tls: false,
        ..config.clone()
    };
    let tls_config = Config {
        output: config.output.join("mutual-tls"),
        tls: true,
        tls_dir: Some(config.tls_dir.clone().unwrap_or_else(|| config.output.join("tls"))),
        compare_tls: false,
        // A named database holds the plaintext run's LRPs by now: start the TLS run on an
        // empty one. (A server URL without a name gets a fresh database anyway.)
        reseed: config.reseed || config.database_url.is_some(),
        ..config.clone()
    };
    eprintln!("benchmark-bbs --compare-tls: run 1 of 2, plaintext");
    let plaintext = crate::run(plain_config).await.context("the plaintext run")?;
    eprintln!("benchmark-bbs --compare-tls: run 2 of 2, mutual TLS");
    let tls = crate::run(tls_config).await.context("the mutual TLS run")?;
    let mut comparison = Comparison::of(config, plaintext, tls);
    comparison.write()?;
    Ok(comparison)
}

/// `tls / plaintext` when both are positive.
fn factor(tls: f64, plaintext: f64) -> Option<f64> {
    (tls > 0.0 && plaintext > 0.0).then(|| tls / plaintext)
}

/// The wall time of `phase` in `report`: seeding for `setup`, every trial for `trials`.
fn phase_seconds(report: &Report, phase: &str) -> Option<f64> {
    match phase {
        "setup" => Some(report.seeding.duration_s),
        "trials" => Some(report.trials.trial_durations_s.iter().sum()),
        _ => None,
    }
    .filter(|s| *s > 0.0)
}

fn side(report: &Report, name: &str) -> Option<Side> {
    let op = report.operation(name)?;
    let s = &op.summary;
    Some(Side {
        count: s.count,
        errors: s.errors,
        mean_ms: s.mean_ms,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        throughput_per_s: phase_seconds(report, &op.phase).map(|secs| s.count as f64 / secs),
    })
}

impl Comparison {
    /// Pairs the two runs' gRPC operations and computes the ratios.
    pub fn of(config: Config, plaintext: Report, tls: Report) -> Comparison {
        let operations: Vec<OperationRatio> = plaintext
            .operations
            .iter()
            .filter(|op| GRPC_PHASES.contains(&op.phase.as_str()))
            .filter_map(|op| {
                let (p, t) = (side(&plaintext, &op.name)?, side(&tls, &op.name)?);
                Some(OperationRatio {
                    name: op.name.clone(),
                    phase: op.phase.clone(),
                    plaintext: p,
                    tls: t,
                    mean_ratio: factor(t.mean_ms, p.mean_ms),
                    p50_ratio: factor(t.p50_ms, p.p50_ms),
                    p99_ratio: factor(t.p99_ms, p.p99_ms),
                    throughput_ratio: factor(t.throughput_per_s.unwrap_or(0.0), p.throughput_per_s.unwrap_or(0.0)),
                })
            })
            .collect();
        let headline: Vec<Headline> = HEADLINE
            .iter()
            .map(|(what, name)| {
                let op = operations.iter().find(|o| o.name == *name);
                let mean_ratio = op.and_then(|o| o.mean_ratio);
                Headline {
                    what: (*what).to_owned(),
                    operation: (*name).to_owned(),
                    mean_ratio,
                    throughput_ratio: op.and_then(|o| o.throughput_ratio),
                    within_target: mean_ratio.is_some_and(|r| r <= TARGET_RATIO),
                }
            })
            .collect();
        Comparison {
            backend: plaintext.target.backend.clone(),
            connections_per_run: config.connections + config.cells,
            target_ratio: TARGET_RATIO,
            within_target: headline.iter().all(|h| h.within_target),
            headline,
            operations,
            plaintext_ok: plaintext.ok(),
            tls_ok: tls.ok(),
            plaintext_wall_time_s: plaintext.wall_time_s,
            tls_wall_time_s: tls.wall_time_s,
            files: ComparisonFiles {
                plaintext: plaintext.config.output.clone(),
                tls: tls.config.output.clone(),
                ..ComparisonFiles::default()
            },
            config,
            plaintext,
            tls,
        }
    }

    /// Whether both runs passed. (A ratio beyond the target is a finding, not a failure.)
    pub fn ok(&self) -> bool {
        self.plaintext_ok && self.tls_ok
    }

    /// The comparison table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(
            out,
            "benchmark-bbs --compare-tls: {} cells, {} desired LRPs, {} trials, {}% writes, seed {}; {} connections \
             per run ({} operator + 1 per cell), the same in both runs",
            c.cells, c.desired_lrps, c.trials, c.percent_writes, c.seed, self.connections_per_run, c.connections
        );
        let ok = |ok: bool| if ok { "OK" } else { "FAILED" };
        let _ = writeln!(
            out,
            "plaintext: {} ({:.1} s); {}",
            ok(self.plaintext_ok),
            self.plaintext_wall_time_s,
            target_line(&self.plaintext.target)
        );
        let _ = writeln!(
            out,
            "mutual TLS: {} ({:.1} s); {}",
            ok(self.tls_ok),
            self.tls_wall_time_s,
            target_line(&self.tls.target)
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<8} {:<42} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7}",
            "phase",
            "operation",
            "mean",
            "TLS mean",
            "×",
            "p50",
            "TLS p50",
            "×",
            "p99",
            "TLS p99",
            "×",
            "op/s",
            "TLS op/s",
            "×"
        );
        let x = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}x"));
        let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.0}"));
        for o in &self.operations {
            let (p, t) = (&o.plaintext, &o.tls);
            let _ = writeln!(
                out,
                "{:<8} {:<42} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7}",
                o.phase,
                o.name,
                ms(p.mean_ms),
                ms(t.mean_ms),
                x(o.mean_ratio),
                ms(p.p50_ms),
                ms(t.p50_ms),
                x(o.p50_ratio),
                ms(p.p99_ms),
                ms(t.p99_ms),
                x(o.p99_ratio),
                rate(p.throughput_per_s),
                rate(t.throughput_per_s),
                x(o.throughput_ratio)
            );
        }
        let _ = writeln!(out);
        let figures: Vec<String> = self
            .headline
            .iter()
            .map(|h| {
                format!(
                    "{} ({}) {} (throughput {})",
                    h.what,
                    h.operation,
                    h.mean_ratio.map_or("-".into(), |r| ratio(r, 1.0)),
                    h.throughput_ratio.map_or("-".into(), |r| ratio(r, 1.0))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "TLS/plaintext mean latency, target within {:.1}x: {}: {}",
            self.target_ratio,
            figures.join(", "),
            if self.within_target { "WITHIN" } else { "BEYOND" }
        );
        let _ = writeln!(
            out,
            "runs: {} and {}; result: {}",
            self.files.plaintext.display(),
            self.files.tls.display(),
            ok(self.ok())
        );
        out
    }

    /// Writes `comparison.txt` and `comparison.json` into the output directory.
    pub fn write(&mut self) -> anyhow::Result<()> {
        self.files.table = self.config.output.join("comparison.txt");
        self.files.json = self.config.output.join("comparison.json");
        std::fs::write(&self.files.table, self.table())
            .with_context(|| format!("cannot write {}", self.files.table.display()))?;
        std::fs::write(&self.files.json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", self.files.json.display()))?;
        Ok(())
    }
}
