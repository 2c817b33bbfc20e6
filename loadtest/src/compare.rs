//! `--compare-tls`: the same workload against an in-process BBS on the same backend, plaintext
//! and under mutual TLS, for `--rounds` rounds, each run on a fresh database, and per operation
//! the TLS/plaintext ratios of the latencies and the throughput, per round and their median.
//!
//! Every run uses the same connection layout ([`crate::target::Clients`]: `connections` operator
//! connections plus one per simulated cell), so the ratios measure the TLS cost (handshakes,
//! record encryption, certificate checks, the per-request authorization) and nothing else. The
//! figures the issue asks for are [`HEADLINE`]: the rep's per-cell fetch, `DesireLRP` and
//! `StartActualLRP`.
//!
//! One pair of runs is not a measurement on a shared machine: run-to-run noise is larger than the
//! cost of TLS, and whichever mode runs first meets a colder system. So the runs alternate in
//! ABBA order ([`order`]: plaintext then TLS in odd rounds, TLS then plaintext in even ones),
//! which spreads a drift over the command evenly over both modes, and the figures are medians
//! over the rounds ([`median`]), which one disturbed round cannot move.
//!
//! The verdict ([`Headline::within_target`]) is the median over the rounds of the ratio of the
//! *median* latencies (p50) against [`TARGET_RATIO`]. The ratio of the means is reported next to
//! it, but it does not decide: TLS adds its cost to every call, so it moves the median as much as
//! the mean, while the mean also absorbs the rare stalls of a shared machine (another job taking
//! a core, a database checkpoint), which land on whichever run they happen to hit.
//!
//! Files: `<output>/round-<n>/plaintext/` and `<output>/round-<n>/mutual-tls/` hold each run's
//! own table, JSON and charts; `<output>/comparison.txt` and `<output>/comparison.json` the
//! comparison. The TLS runs' certificates are issued into `--tls-dir` (default `<output>/tls`).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::{Config, SeedVia};
use crate::format::ms;
use crate::report::{Report, target_line};
use crate::seed::ops as seed;
use crate::workload::ops as work;

mod table;

/// The ratio the target allows for the headline operations (TLS / plaintext latency).
pub const TARGET_RATIO: f64 = 1.2;

/// Rounds of `--compare-tls` unless `--rounds` says otherwise.
pub const DEFAULT_ROUNDS: usize = 3;

/// The latency statistic whose ratio decides the verdict (see the module documentation).
pub const VERDICT_ON: &str = "p50";

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

/// The transport of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plaintext.
    Plaintext,
    /// Mutual TLS on every call.
    MutualTls,
}

impl Mode {
    /// The run's directory under `<output>/round-<n>/`.
    pub fn dir(self) -> &'static str {
        match self {
            Mode::Plaintext => "plaintext",
            Mode::MutualTls => "mutual-tls",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Plaintext => "plaintext",
            Mode::MutualTls => "mutual TLS",
        }
    }
}

/// The runs of `rounds` rounds in the order they run, as `(round, mode)` with rounds counted
/// from 1: ABBA, i.e. plaintext then TLS in odd rounds and TLS then plaintext in even ones
/// (plaintext, TLS, TLS, plaintext, plaintext, TLS, ...). Each mode runs first in half the rounds
/// (one more for plaintext when the count is odd), and a drift over the command falls on both
/// modes alike.
pub fn order(rounds: usize) -> Vec<(usize, Mode)> {
    (1..=rounds)
        .flat_map(|round| {
            let pair =
                if round % 2 == 1 { [Mode::Plaintext, Mode::MutualTls] } else { [Mode::MutualTls, Mode::Plaintext] };
            pair.map(|mode| (round, mode))
        })
        .collect()
}

/// The median of `values` (the mean of the middle two for an even count); `None` for none.
/// Values that are not numbers are left out.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

/// Whether a ratio is within [`TARGET_RATIO`] (`None`, nothing measured, is not).
pub fn within(ratio: Option<f64>) -> bool {
    ratio.is_some_and(|r| r <= TARGET_RATIO)
}

/// One side of an operation's comparison in one round.
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

/// One operation measured in both runs of a round.
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

/// One round: a plaintext run and a TLS run, each on a fresh database.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// The round, from 1.
    pub number: usize,
    /// The mode that ran first ([`order`]).
    pub first: Mode,
    /// Whether the plaintext run passed (no errors, events within tolerance).
    pub plaintext_ok: bool,
    /// Whether the TLS run passed.
    pub tls_ok: bool,
    /// Wall time of the plaintext run, in seconds.
    pub plaintext_wall_time_s: f64,
    /// Wall time of the TLS run, in seconds.
    pub tls_wall_time_s: f64,
    /// The plaintext run's directory.
    pub plaintext_dir: PathBuf,
    /// The TLS run's directory.
    pub tls_dir: PathBuf,
    /// Every gRPC operation both runs measured, with this round's ratios.
    pub operations: Vec<OperationRatio>,
    /// The plaintext run's report (its operations, events, seeding).
    #[serde(skip)]
    pub plaintext: Report,
    /// The TLS run's report.
    #[serde(skip)]
    pub tls: Report,
}

/// One side of an operation over the rounds: the medians of each round's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Medians {
    /// Median over the rounds of the mean latency.
    pub mean_ms: Option<f64>,
    /// Median over the rounds of the median latency.
    pub p50_ms: Option<f64>,
    /// Median over the rounds of the 99th percentile.
    pub p99_ms: Option<f64>,
    /// Median over the rounds of the throughput.
    pub throughput_per_s: Option<f64>,
}

/// A TLS/plaintext ratio over the rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// Each round's ratio, in round order (`None` where a round has no figure).
    pub per_round: Vec<Option<f64>>,
    /// Their median.
    pub median: Option<f64>,
}

impl Ratios {
    fn of(per_round: Vec<Option<f64>>) -> Ratios {
        let median = median(per_round.iter().flatten().copied());
        Ratios { per_round, median }
    }
}

/// One operation over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct OperationSummary {
    /// The operation.
    pub name: String,
    /// Its phase.
    pub phase: String,
    /// The plaintext runs' medians.
    pub plaintext: Medians,
    /// The TLS runs' medians.
    pub tls: Medians,
    /// TLS/plaintext of the mean latency.
    pub mean_ratio: Ratios,
    /// TLS/plaintext of the median latency (the verdict's figure).
    pub p50_ratio: Ratios,
    /// TLS/plaintext of the 99th percentile.
    pub p99_ratio: Ratios,
    /// TLS/plaintext of the throughput (below 1: TLS is slower).
    pub throughput_ratio: Ratios,
}

impl OperationSummary {
    /// `name` over the rounds: `per_round[i]` is round i+1's pair, `None` when that round did
    /// not measure it in both runs.
    pub fn of(name: &str, phase: &str, per_round: &[Option<&OperationRatio>]) -> OperationSummary {
        let ratios =
            |f: fn(&OperationRatio) -> Option<f64>| Ratios::of(per_round.iter().map(|o| o.and_then(f)).collect());
        let medians = |side: fn(&OperationRatio) -> &Side| {
            let sides: Vec<&Side> = per_round.iter().flatten().map(|o| side(o)).collect();
            Medians {
                mean_ms: median(sides.iter().map(|s| s.mean_ms)),
                p50_ms: median(sides.iter().map(|s| s.p50_ms)),
                p99_ms: median(sides.iter().map(|s| s.p99_ms)),
                throughput_per_s: median(sides.iter().filter_map(|s| s.throughput_per_s)),
            }
        };
        OperationSummary {
            name: name.to_owned(),
            phase: phase.to_owned(),
            plaintext: medians(|o| &o.plaintext),
            tls: medians(|o| &o.tls),
            mean_ratio: ratios(|o| o.mean_ratio),
            p50_ratio: ratios(|o| o.p50_ratio),
            p99_ratio: ratios(|o| o.p99_ratio),
            throughput_ratio: ratios(|o| o.throughput_ratio),
        }
    }
}

/// One headline figure of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    /// What it stands for (`per-cell fetch`, `DesireLRP`, `StartActualLRP`).
    pub what: String,
    /// The operation measured.
    pub operation: String,
    /// The operation over the rounds (absent when no round measured it).
    pub summary: Option<OperationSummary>,
    /// Whether the median over the rounds of the p50 ratio is at most [`TARGET_RATIO`]: the
    /// verdict.
    pub within_target: bool,
    /// Whether the median over the rounds of the mean ratio is (reported, not the verdict).
    pub mean_within_target: bool,
}

impl Headline {
    /// The headline figure `what` from its operation's summary.
    pub fn of(what: &str, operation: &str, summary: Option<&OperationSummary>) -> Headline {
        Headline {
            what: what.to_owned(),
            operation: operation.to_owned(),
            within_target: within(summary.and_then(|s| s.p50_ratio.median)),
            mean_within_target: within(summary.and_then(|s| s.mean_ratio.median)),
            summary: summary.cloned(),
        }
    }

    fn p50_ratio(&self) -> Option<f64> {
        self.summary.as_ref().and_then(|s| s.p50_ratio.median)
    }

    fn mean_ratio(&self) -> Option<f64> {
        self.summary.as_ref().and_then(|s| s.mean_ratio.median)
    }
}

/// Where a comparison's files are.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComparisonFiles {
    /// `comparison.txt`.
    pub table: PathBuf,
    /// `comparison.json`.
    pub json: PathBuf,
}

/// What `--compare-tls` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The configuration every run shares (`tls`/`compare_tls` as given).
    pub config: Config,
    /// The backend every run used (`sqlite`, `postgres`, `mysql`).
    pub backend: Option<String>,
    /// Connections each run opened: the operator's plus one per cell.
    pub connections_per_run: usize,
    /// The ratio the headline operations should stay within.
    pub target_ratio: f64,
    /// The latency statistic whose ratio decides the verdict ([`VERDICT_ON`]).
    pub verdict_on: String,
    /// The runs in the order they ran, as `(round, mode)`.
    pub order: Vec<(usize, Mode)>,
    /// The rounds, in round order.
    pub rounds: Vec<Round>,
    /// The three figures.
    pub headline: Vec<Headline>,
    /// Whether every headline figure is within the target (the verdict).
    pub within_target: bool,
    /// Whether every headline figure's mean ratio is (reported, not the verdict).
    pub mean_within_target: bool,
    /// Every gRPC operation over the rounds.
    pub operations: Vec<OperationSummary>,
    /// Whether every plaintext run passed (no errors, events within tolerance).
    pub plaintext_ok: bool,
    /// Whether every TLS run passed.
    pub tls_ok: bool,
    /// Where the files are.
    pub files: ComparisonFiles,
}

/// Runs the workload plaintext and under mutual TLS for `config.rounds` rounds in ABBA order
/// ([`order`]), each run on a fresh database, and writes the comparison.
pub async fn run(config: Config) -> anyhow::Result<Comparison> {
    config.validate()?;
    anyhow::ensure!(config.compare_tls, "compare::run needs --compare-tls");
    anyhow::ensure!(
        config.seed_via == SeedVia::Grpc,
        "--compare-tls needs --seed-via grpc: DesireLRP is timed only when seeding through the BBS"
    );
    std::fs::create_dir_all(&config.output).with_context(|| format!("cannot create {}", config.output.display()))?;
    let tls_dir = config.tls_dir.clone().unwrap_or_else(|| config.output.join("tls"));
    let schedule = order(config.rounds);
    let mut reports: Vec<(usize, Mode, Report)> = Vec::with_capacity(schedule.len());
    for (i, &(round, mode)) in schedule.iter().enumerate() {
        eprintln!(
            "benchmark-bbs --compare-tls: run {} of {}, round {round} of {}, {}",
            i + 1,
            schedule.len(),
            config.rounds,
            mode.label()
        );
        let tls = mode == Mode::MutualTls;
        let run_config = Config {
            output: config.output.join(format!("round-{round}")).join(mode.dir()),
            tls,
            tls_dir: tls.then(|| tls_dir.clone()),
            compare_tls: false,
            // Its headline compares the per-call DesireLRP latency: seed one LRP per call.
            seed_batch: 1,
            // A named database holds the previous run's LRPs by now: start on an empty one. (A
            // server URL without a name gets a fresh database anyway, SQLite by default a fresh
            // file in the run's directory.)
            reseed: config.reseed || (i > 0 && config.database_url.is_some()),
            ..config.clone()
        };
        let report = crate::run(run_config).await.with_context(|| format!("round {round}'s {} run", mode.label()))?;
        reports.push((round, mode, report));
    }
    let mut rounds = Vec::with_capacity(config.rounds);
    for number in 1..=config.rounds {
        let take = |mode: Mode, reports: &mut Vec<(usize, Mode, Report)>| {
            let i =
                reports.iter().position(|(r, m, _)| *r == number && *m == mode).expect("every round ran both modes");
            reports.remove(i).2
        };
        let plaintext = take(Mode::Plaintext, &mut reports);
        let tls = take(Mode::MutualTls, &mut reports);
        let first = schedule.iter().find(|(r, _)| *r == number).map_or(Mode::Plaintext, |(_, m)| *m);
        rounds.push(Round::of(number, first, plaintext, tls));
    }
    let mut comparison = Comparison::of(config, rounds);
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

impl Round {
    /// Pairs the two runs' gRPC operations and computes the round's ratios.
    pub fn of(number: usize, first: Mode, plaintext: Report, tls: Report) -> Round {
        let operations = plaintext
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
        Round {
            number,
            first,
            plaintext_ok: plaintext.ok(),
            tls_ok: tls.ok(),
            plaintext_wall_time_s: plaintext.wall_time_s,
            tls_wall_time_s: tls.wall_time_s,
            plaintext_dir: plaintext.config.output.clone(),
            tls_dir: tls.config.output.clone(),
            operations,
            plaintext,
            tls,
        }
    }

    /// The round's pair for `name`.
    pub fn operation(&self, name: &str) -> Option<&OperationRatio> {
        self.operations.iter().find(|o| o.name == name)
    }
}

impl Comparison {
    /// Summarizes the rounds: per operation the medians over the rounds, and the verdict.
    pub fn of(config: Config, rounds: Vec<Round>) -> Comparison {
        let mut names: Vec<(&str, &str)> = Vec::new();
        for o in rounds.iter().flat_map(|r| &r.operations) {
            if !names.iter().any(|(n, _)| *n == o.name) {
                names.push((&o.name, &o.phase));
            }
        }
        let operations: Vec<OperationSummary> = names
            .iter()
            .map(|(name, phase)| {
                let per_round: Vec<Option<&OperationRatio>> = rounds.iter().map(|r| r.operation(name)).collect();
                OperationSummary::of(name, phase, &per_round)
            })
            .collect();
        let headline: Vec<Headline> = HEADLINE
            .iter()
            .map(|(what, name)| Headline::of(what, name, operations.iter().find(|o| o.name == *name)))
            .collect();
        Comparison {
            backend: rounds.first().and_then(|r| r.plaintext.target.backend.clone()),
            connections_per_run: config.connections + config.cells,
            target_ratio: TARGET_RATIO,
            verdict_on: VERDICT_ON.to_owned(),
            order: order(rounds.len()),
            within_target: headline.iter().all(|h| h.within_target),
            mean_within_target: headline.iter().all(|h| h.mean_within_target),
            headline,
            operations,
            plaintext_ok: rounds.iter().all(|r| r.plaintext_ok),
            tls_ok: rounds.iter().all(|r| r.tls_ok),
            files: ComparisonFiles::default(),
            config,
            rounds,
        }
    }

    /// Whether every run passed. (A ratio beyond the target is a finding, not a failure.)
    pub fn ok(&self) -> bool {
        self.plaintext_ok && self.tls_ok
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

#[cfg(test)]
mod tests;
