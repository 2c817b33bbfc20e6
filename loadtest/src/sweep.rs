//! `benchmark-bbs sweep`: the scaling curve. The BBS workload ([`crate::run`]) at several sizes
//! (by default 50k, 125k, 250k, 500k and 1M LRPs, with the cells scaled to keep 250 LRPs per
//! cell), each size on its own fresh database, and every figure against the size in one chart
//! and one table, next to the raw-SQL baselines of the same runs.
//!
//! What the curve should show: every bulk loop (the nsync bulker's read, the route emitter's,
//! the convergence pass, seeding) grows linearly in the LRPs, and the per-cell fetch stays
//! flat, since each cell holds the same number of LRPs at every size. The table says per figure
//! whether it did ([`figures::GrowthCheck`]) and whether every bulk loop's slowest pass at the
//! largest size fits Diego's 30 s interval ([`figures::IntervalCheck`]); these are reported,
//! not asserted.
//!
//! Databases: a PostgreSQL or MySQL URL without a database name gets a fresh database per size,
//! dropped after it (as a single run does); `sqlite://FILE` becomes one file per size
//! (`FILE-<size>`), removed after it; no URL, a SQLite file in each size's directory. A named
//! server database is wiped before every size but the first (`--reseed`), and kept.
//!
//! Files: `<output>/size-<n>/` holds each run's own table, JSON and charts; `<output>/sweep.svg`,
//! `sweep.md` and `sweep.json` the curve, rewritten after every size so a sweep cut short keeps
//! what it measured.

pub mod chart;
pub mod figures;
pub mod table;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::{Config, RepStarts, SeedVia};
use crate::format::{ms, redact};

pub use self::figures::{GrowthCheck, IntervalCheck, SizePoint};

/// The issue's sizes.
pub const DEFAULT_SIZES: [usize; 5] = [50_000, 125_000, 250_000, 500_000, 1_000_000];

/// Diego's ratio of LRPs to cells (250,000 LRPs on 1,000 cells).
pub const DEFAULT_LRPS_PER_CELL: usize = 250;

/// Flags of the sweep.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Database of the in-process BBS: a server URL without a database name gets a fresh
    /// database per size; `sqlite://FILE` one file per size (FILE-<size>); none, a SQLite file in
    /// each size's directory.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Desired LRPs of each run, comma-separated (run smallest first).
    #[arg(long, value_delimiter = ',', default_value = "50000,125000,250000,500000,1000000")]
    pub sizes: Vec<usize>,
    /// LRPs per simulated cell: each size runs on ceil(size / this) cells.
    #[arg(long, default_value_t = DEFAULT_LRPS_PER_CELL)]
    pub lrps_per_cell: usize,
    /// Rounds of the workload per size.
    #[arg(long, default_value_t = 2)]
    pub trials: usize,
    /// Directory for sweep.svg, sweep.md, sweep.json and size-<n>/.
    #[arg(long, value_name = "DIR", default_value = "benchmark-bbs-sweep")]
    pub output: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How to seed: through the BBS (grpc) or straight into the database (store).
    #[arg(long, value_enum, default_value = "grpc")]
    pub seed_via: SeedVia,
    /// Concurrent seeding workers.
    #[arg(long, default_value_t = 32)]
    pub seed_workers: usize,
    /// Percent of instances written per rep loop.
    #[arg(long, default_value_t = 5.0)]
    pub percent_writes: f64,
    /// How each simulated rep re-asserts its instances per loop (as `benchmark-bbs --rep-starts`).
    #[arg(long, value_enum, default_value = "each")]
    pub rep_starts: RepStarts,
    /// HTTP/2 operator connections to the BBS.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Calls in flight at once across the simulator.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// LRP convergence passes timed per size.
    #[arg(long, default_value_t = 3)]
    pub convergence_passes: usize,
    /// Seconds before one call times out.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
    /// Seconds to wait after the trials for the expected events.
    #[arg(long, default_value_t = 60)]
    pub event_timeout: u64,
    /// Keep the databases (and SQLite files) the sweep created.
    #[arg(long)]
    pub keep_database: bool,
    /// No progress bars (the line per size is still printed).
    #[arg(long)]
    pub no_progress: bool,
    /// Run each size's BBS as its own process (the real `bbs` binary) and report its peak RSS
    /// apart (a column of the table).
    #[arg(long)]
    pub bbs_process: bool,
    /// The `bbs` binary of --bbs-process (default: the one next to benchmark-bbs).
    #[arg(long, value_name = "PATH", requires = "bbs_process")]
    pub bbs_binary: Option<PathBuf>,
}

/// A sweep: the sizes and the configuration every size's run shares (its `desired_lrps`,
/// `cells`, `output` and database are set per size).
#[derive(Debug, Clone, Serialize)]
pub struct SweepConfig {
    /// Desired LRPs of each run.
    pub sizes: Vec<usize>,
    /// LRPs per cell.
    pub lrps_per_cell: usize,
    /// Everything else; `output` is the sweep's directory.
    pub base: Config,
}

impl From<SweepArgs> for SweepConfig {
    fn from(a: SweepArgs) -> Self {
        SweepConfig {
            sizes: a.sizes,
            lrps_per_cell: a.lrps_per_cell,
            base: Config {
                database_url: a.database_url,
                trials: a.trials,
                output: a.output,
                seed: a.seed,
                seed_via: a.seed_via,
                seed_workers: a.seed_workers,
                percent_writes: a.percent_writes,
                rep_starts: a.rep_starts,
                connections: a.connections,
                max_in_flight: a.max_in_flight,
                convergence_passes: a.convergence_passes,
                request_timeout: Duration::from_secs(a.request_timeout),
                event_timeout: Duration::from_secs(a.event_timeout),
                keep_database: a.keep_database,
                progress: !a.no_progress,
                bbs_process: a.bbs_process,
                bbs_binary: a.bbs_binary,
                ..Config::default()
            },
        }
    }
}

/// Cells for `lrps` LRPs at `per_cell` LRPs a cell (at least one).
pub fn cells_for(lrps: usize, per_cell: usize) -> usize {
    lrps.div_ceil(per_cell.max(1)).max(1)
}

/// `sqlite://FILE[?query]` with `-<size>` put before FILE's extension; other URLs unchanged.
pub fn per_size_url(url: &str, size: usize) -> String {
    let Some(rest) = url.strip_prefix("sqlite://") else { return url.to_owned() };
    let (path, query) = rest.split_once('?').map_or((rest, None), |(p, q)| (p, Some(q)));
    let file_start = path.rfind('/').map_or(0, |i| i + 1);
    let path = match path[file_start..].rfind('.') {
        Some(dot) if dot > 0 => {
            let dot = file_start + dot;
            format!("{}-{size}{}", &path[..dot], &path[dot..])
        }
        _ => format!("{path}-{size}"),
    };
    match query {
        Some(q) => format!("sqlite://{path}?{q}"),
        None => format!("sqlite://{path}"),
    }
}

/// The file of a `sqlite://` URL.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    Some(PathBuf::from(rest.split_once('?').map_or(rest, |(p, _)| p)))
}

impl SweepConfig {
    /// The sizes in the order they run: ascending, each once.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = self.sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    /// The run of the `index`-th size (in [`SweepConfig::sizes`] order).
    pub fn run_config(&self, index: usize, lrps: usize) -> Config {
        let named_server = self
            .base
            .database_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("sqlite:") && !crate::target::database_name(u).is_empty());
        Config {
            desired_lrps: lrps,
            cells: cells_for(lrps, self.lrps_per_cell),
            output: self.base.output.join(format!("size-{lrps}")),
            database_url: self.base.database_url.as_deref().map(|u| per_size_url(u, lrps)),
            // A named server database holds the previous size's LRPs by now.
            reseed: self.base.reseed || (index > 0 && named_server),
            compare_tls: false,
            ..self.base.clone()
        }
    }

    /// Refuses a sweep any of whose runs would be refused, before the first one starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.sizes.is_empty(), "--sizes needs at least one size");
        anyhow::ensure!(self.lrps_per_cell >= 1, "--lrps-per-cell must be at least 1");
        anyhow::ensure!(self.base.bbs_address.is_none(), "the sweep starts its own BBS per size");
        for (i, lrps) in self.sizes().into_iter().enumerate() {
            // One line with the cause: a refused configuration is printed with `{e}`.
            self.run_config(i, lrps).validate().map_err(|e| anyhow::anyhow!("size {lrps}: {e}"))?;
        }
        Ok(())
    }
}

/// Where the sweep's files are.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepFiles {
    /// `sweep.svg`.
    pub chart: PathBuf,
    /// `sweep.md`.
    pub table: PathBuf,
    /// `sweep.json`.
    pub json: PathBuf,
}

/// What a sweep measured.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// The sweep.
    pub config: SweepConfig,
    /// The backend every run used.
    pub backend: Option<String>,
    /// One point per size that ran, ascending.
    pub points: Vec<SizePoint>,
    /// Each figure's growth over the sizes.
    pub growth: Vec<GrowthCheck>,
    /// The bulk loops at the largest size against 30 s.
    pub interval: Vec<IntervalCheck>,
    /// Where the files are.
    pub files: SweepFiles,
}

impl Sweep {
    /// The sweep of `points`, with its checks.
    pub fn of(config: SweepConfig, backend: Option<String>, mut points: Vec<SizePoint>) -> Sweep {
        points.sort_by_key(|p| p.lrps);
        Sweep {
            growth: figures::growth_checks(&points),
            interval: figures::interval_checks(&points),
            config,
            backend,
            points,
            files: SweepFiles::default(),
        }
    }

    /// Whether every run passed (no errors, event counts within tolerance).
    pub fn ok(&self) -> bool {
        !self.points.is_empty() && self.points.iter().all(|p| p.ok)
    }

    fn heading(&self) -> Vec<String> {
        let c = &self.config.base;
        vec![
            "# benchmark-bbs sweep".to_owned(),
            String::new(),
            format!(
                "{} backend{}, {} LRPs per cell, trials per size: {}, {}% writes, seed {}, seeding {}.",
                self.backend.as_deref().unwrap_or("unknown"),
                c.database_url.as_deref().map(|u| format!(" ({})", redact(u))).unwrap_or_default(),
                self.config.lrps_per_cell,
                c.trials,
                c.percent_writes,
                c.seed,
                match c.seed_via {
                    SeedVia::Grpc => "through gRPC",
                    SeedVia::Store => "straight into the store",
                }
            ),
        ]
    }

    /// The Markdown table (`sweep.md`).
    pub fn table(&self) -> String {
        table::markdown(&self.heading(), &self.points, &self.growth, &self.interval)
    }

    /// The chart (`sweep.svg`).
    pub fn chart(&self) -> String {
        let caption = format!(
            "benchmark-bbs sweep on {}: cost against LRPs ({} per cell)",
            self.backend.as_deref().unwrap_or("unknown"),
            self.config.lrps_per_cell
        );
        chart::svg(&self.points, &caption)
    }

    /// Writes `sweep.svg`, `sweep.md` and `sweep.json` into the sweep's directory.
    pub fn write(&mut self) -> anyhow::Result<()> {
        let dir = &self.config.base.output;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.files =
            SweepFiles { chart: dir.join("sweep.svg"), table: dir.join("sweep.md"), json: dir.join("sweep.json") };
        std::fs::write(&self.files.chart, self.chart())?;
        std::fs::write(&self.files.table, self.table())?;
        std::fs::write(&self.files.json, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS, so each size's peak is its own
/// rather than the largest so far; false where the kernel does not allow it. (Memory the
/// allocator kept from the previous size still counts: the reset starts from the current RSS.)
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One line of progress after a size.
fn progress_line(point: &SizePoint) -> String {
    let v = |key: &str| point.value(key).map_or_else(|| "-".into(), ms);
    format!(
        "  {} LRPs done in {:.0} s: RepBulkFetching p50 {} p99 {}, nsync {}, route emitter {}, convergence {}, \
         seeding {:.0} LRPs/s, peak RSS {}, BBS process peak RSS {}: {}",
        point.lrps,
        point.wall_time_s,
        v("rep-fetch-p50"),
        v("rep-fetch-p99"),
        v("nsync"),
        v("route-emitter"),
        v("convergence"),
        point.seeding_lrps_per_s,
        point.peak_rss_mib.map_or_else(|| "-".into(), |m| format!("{m:.0} MiB")),
        point.bbs_peak_rss_mib.map_or_else(|| "-".into(), |m| format!("{m:.0} MiB")),
        if point.ok { "OK".to_owned() } else { format!("FAILED ({} errors)", point.errors) }
    )
}

/// Runs the workload at every size, smallest first, each on a fresh database, and writes the
/// sweep's files after each size.
pub async fn run(config: SweepConfig) -> anyhow::Result<Sweep> {
    config.validate()?;
    let output = config.base.output.clone();
    std::fs::create_dir_all(&output).with_context(|| format!("cannot create {}", output.display()))?;
    let sizes = config.sizes();
    let mut points = Vec::with_capacity(sizes.len());
    let mut backend = None;
    let mut sweep = Sweep::of(config.clone(), None, vec![]);
    for (i, &lrps) in sizes.iter().enumerate() {
        let run_config = config.run_config(i, lrps);
        eprintln!(
            "benchmark-bbs sweep: size {} of {}: {} LRPs on {} cells ({})",
            i + 1,
            sizes.len(),
            lrps,
            run_config.cells,
            run_config.output.display()
        );
        let peak_rss_reset = reset_peak_rss();
        let file = run_config.database_url.as_deref().and_then(sqlite_file);
        if let Some(file) = &file {
            remove_sqlite(file);
        }
        let report = crate::run(run_config).await.with_context(|| format!("the run at {lrps} LRPs"));
        if let Some(file) = &file
            && !config.base.keep_database
        {
            remove_sqlite(file);
        }
        let report = report?;
        backend = backend.or_else(|| report.target.backend.clone());
        let point = SizePoint { peak_rss_reset, ..SizePoint::of(&report) };
        eprintln!("{}", progress_line(&point));
        points.push(point);
        sweep = Sweep::of(config.clone(), backend.clone(), points.clone());
        sweep.write()?;
    }
    Ok(sweep)
}

fn remove_sqlite(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> SweepConfig {
        let mut argv = vec!["benchmark-bbs", "sweep"];
        argv.extend_from_slice(args);
        match Cli::parse_from(argv).command {
            Some(Command::Sweep(args)) => args.into(),
            other => panic!("not a sweep: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_issues_sizes_at_250_per_cell() {
        let c = parse(&["--database-url", "postgres://postgres@127.0.0.1:5432"]);
        assert_eq!(c.sizes, DEFAULT_SIZES);
        assert_eq!(c.lrps_per_cell, 250);
        let cells: Vec<usize> = c.sizes().iter().enumerate().map(|(i, n)| c.run_config(i, *n).cells).collect();
        assert_eq!(cells, [200, 500, 1_000, 2_000, 4_000]);
        let run = c.run_config(2, 250_000);
        assert_eq!(run.output, PathBuf::from("benchmark-bbs-sweep/size-250000"));
        assert_eq!(run.database_url.as_deref(), Some("postgres://postgres@127.0.0.1:5432"));
        assert!(!run.reseed && run.progress);
    }

    #[test]
    fn flags_reach_every_run() {
        let c = parse(&[
            "--sizes",
            "400,200,400",
            "--lrps-per-cell",
            "100",
            "--trials",
            "3",
            "--output",
            "out",
            "--seed-via",
            "store",
            "--seed",
            "9",
            "--no-progress",
            "--database-url",
            "sqlite:///tmp/s.db?mode=rwc",
        ]);
        assert_eq!(c.sizes(), [200, 400]);
        c.validate().unwrap();
        let run = c.run_config(1, 400);
        assert_eq!((run.cells, run.trials, run.seed, run.seed_via), (4, 3, 9, SeedVia::Store));
        assert_eq!(run.database_url.as_deref(), Some("sqlite:///tmp/s-400.db?mode=rwc"));
        assert!(!run.progress && !run.reseed && !run.bbs_process);
        let process = parse(&["--sizes", "10", "--bbs-process", "--bbs-binary", "/x/bbs"]);
        let run = process.run_config(0, 10);
        assert!(run.bbs_process);
        assert_eq!(run.bbs_binary, Some(PathBuf::from("/x/bbs")));
    }

    #[test]
    fn named_server_databases_are_reseeded_after_the_first_size() {
        let mut c = parse(&["--sizes", "10,20"]);
        c.base.database_url = Some("mysql://root@127.0.0.1:3306/bench".into());
        assert!(!c.run_config(0, 10).reseed && c.run_config(1, 20).reseed);
        assert_eq!(c.run_config(1, 20).database_url.as_deref(), Some("mysql://root@127.0.0.1:3306/bench"));
    }

    #[test]
    fn bad_sweeps_are_refused_up_front() {
        let err = |args: &[&str]| parse(args).validate().unwrap_err().to_string();
        assert!(err(&["--lrps-per-cell", "0"]).contains("--lrps-per-cell"));
        assert_eq!(err(&["--sizes", "10,0"]), "size 0: --desired-lrps must be at least 1");
        assert!(err(&["--sizes", "10", "--trials", "0"]).contains("size 10"));
    }

    #[test]
    fn per_size_sqlite_files() {
        assert_eq!(per_size_url("sqlite:///tmp/a.db", 5), "sqlite:///tmp/a-5.db");
        assert_eq!(per_size_url("sqlite://rel/a", 5), "sqlite://rel/a-5");
        assert_eq!(per_size_url("sqlite:///t.x/a?mode=rwc", 5), "sqlite:///t.x/a-5?mode=rwc");
        assert_eq!(per_size_url("sqlite:///tmp/.hidden", 5), "sqlite:///tmp/.hidden-5");
        assert_eq!(per_size_url("postgres://h:1/db", 5), "postgres://h:1/db");
        assert_eq!(sqlite_file("sqlite:///tmp/a-5.db?mode=rwc"), Some(PathBuf::from("/tmp/a-5.db")));
        assert_eq!(cells_for(1, 250), 1);
        assert_eq!(cells_for(251, 250), 2);
    }
}
