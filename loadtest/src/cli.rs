//! The `benchmark-bbs` command line: flags map one to one onto [`Config`] (and the smoke
//! benchmark's flags onto [`crate::smoke::SmokeConfig`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, RepStarts, RouteEmitters, SeedVia};

/// benchmark-bbs: simulates the load N cells, the nsync bulker and the route emitters put on a
/// BBS and its database, and reports per-operation latencies next to Diego's 2016 figures and
/// the same database's raw-SQL capability.
#[derive(Debug, Parser)]
#[command(name = "benchmark-bbs", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Run the cluster smoke benchmark or the scaling sweep instead.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The BBS workload's flags.
    #[command(flatten)]
    pub bbs: BbsArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The cluster smoke benchmark: desire K instances through a real BBS, auctioneer and `sim`
    /// reps, and time how long until all are RUNNING.
    Smoke(crate::smoke::SmokeArgs),
    /// The scaling curve: the BBS workload at several sizes (cells scaled with the LRPs), each on
    /// a fresh database, every figure against the size in sweep.svg, sweep.md and sweep.json.
    Sweep(crate::sweep::SweepArgs),
    /// The chaos soak: real BBS, auctioneer and cell processes on a PostgreSQL of its own under
    /// churn while a seeded chaos driver kills, pauses and cuts them; invariants checked every
    /// second; soak.md, soak.json and soak.svg (docs/soak.md).
    Soak(crate::soak::SoakArgs),
}

/// Flags of the BBS workload.
#[derive(Debug, Args)]
pub struct BbsArgs {
    /// Drive the BBS at this address (host:port) instead of starting one.
    #[arg(long, value_name = "ADDR")]
    pub bbs_address: Option<String>,
    /// Start a BBS in this process on this database (sqlite://FILE, postgres://…, mysql://…); a
    /// PostgreSQL/MySQL URL without a database name gets a fresh `benchmark_bbs_<seed>` database.
    /// With --bbs-address: that BBS's database (for baselines, convergence and store seeding).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Simulated cells.
    #[arg(long, default_value_t = 50)]
    pub cells: usize,
    /// Desired LRPs (one instance each).
    #[arg(long, default_value_t = 5_000)]
    pub desired_lrps: usize,
    /// Rounds of the workload.
    #[arg(long, default_value_t = 2)]
    pub trials: usize,
    /// Percent of instances written per rep loop (half claims, half the starts after them).
    #[arg(long, default_value_t = 5.0)]
    pub percent_writes: f64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for table.txt, report.json and charts/.
    #[arg(long, value_name = "DIR", default_value = "benchmark-bbs-output")]
    pub output: PathBuf,
    /// How to seed: through the BBS (grpc) or straight into the database (store).
    #[arg(long, value_enum, default_value = "grpc")]
    pub seed_via: SeedVia,
    /// Concurrent seeding workers.
    #[arg(long, default_value_t = 32)]
    pub seed_workers: usize,
    /// LRPs per seeding call through the BBS (DesireLRPs, then StartActualLRPs per cell); 1:
    /// DesireLRP and StartActualLRP per LRP.
    #[arg(long, value_name = "N", default_value_t = crate::config::DEFAULT_SEED_BATCH)]
    pub seed_batch: usize,
    /// HTTP/2 connections to the BBS.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Calls in flight at once across the simulator.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Operations in flight at once within one rep loop.
    #[arg(long, default_value_t = 16)]
    pub cell_concurrency: usize,
    /// How each simulated rep re-asserts its instances per loop: one StartActualLRP each
    /// (Diego's pattern) or StartActualLRPs of up to 1,000 (what the diego-rs rep does).
    #[arg(long, value_enum, default_value = "each")]
    pub rep_starts: RepStarts,
    /// Which route emitters to simulate.
    #[arg(long, value_enum, default_value = "both")]
    pub route_emitters: RouteEmitters,
    /// Accepted relative difference of the event counts (and share of failed seeds).
    #[arg(long, default_value_t = 0.05)]
    pub error_tolerance: f64,
    /// Seconds to wait after the trials for the expected events.
    #[arg(long, default_value_t = 60)]
    pub event_timeout: u64,
    /// Seconds before one call times out.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
    /// Event buffer per subscriber of the in-process BBS.
    #[arg(long, default_value_t = 1024)]
    pub event_buffer: usize,
    /// Leave TCP_NODELAY off on the in-process BBS's connections (as the BBS sets it today:
    /// responses of more than one segment then wait ~40 ms for a delayed ACK).
    #[arg(long)]
    pub no_nodelay_listener: bool,
    /// LRP convergence passes timed on the seeded data (needs the database).
    #[arg(long, default_value_t = 3)]
    pub convergence_passes: usize,
    /// Delete every desired LRP, actual LRP and cell presence of a named database first.
    #[arg(long)]
    pub reseed: bool,
    /// Keep a database this run created.
    #[arg(long)]
    pub keep_database: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Mutual TLS on every call: the BBS's certificate `diego://bbs`, the simulator's operator
    /// calls as `diego://operator/benchmark`, each simulated cell's rep calls as
    /// `diego://cell/<id>` (certificates issued into --tls-dir, default <output>/tls).
    #[arg(long, conflicts_with = "compare_tls")]
    pub tls: bool,
    /// The certificate directory (ca.pem, ca-key.pem) the identities are issued from; required
    /// with --bbs-address --tls (e.g. made by `diego certs init --dir D`).
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Run the same workload against in-process BBSs plaintext and under mutual TLS, --rounds
    /// times each in ABBA order (plaintext, TLS, TLS, plaintext, ...), each run on a fresh
    /// database, and report per operation the TLS/plaintext ratios per round and their median
    /// (<output>/round-<n>/plaintext, <output>/round-<n>/mutual-tls, then
    /// <output>/comparison.txt and comparison.json).
    #[arg(long)]
    pub compare_tls: bool,
    /// Rounds of --compare-tls (one plaintext and one TLS run each).
    #[arg(long, value_name = "N", default_value_t = crate::compare::DEFAULT_ROUNDS, requires = "compare_tls")]
    pub rounds: usize,
    /// Run the BBS as its own process (the real `bbs` binary, with a generated config in
    /// <output>/bbs.toml and its log in <output>/bbs.log) and report its peak RSS apart.
    #[arg(long, conflicts_with = "bbs_address")]
    pub bbs_process: bool,
    /// The `bbs` binary of --bbs-process (default: the one next to benchmark-bbs).
    #[arg(long, value_name = "PATH", requires = "bbs_process")]
    pub bbs_binary: Option<PathBuf>,
}

impl From<BbsArgs> for Config {
    fn from(a: BbsArgs) -> Self {
        Config {
            bbs_address: a.bbs_address,
            database_url: a.database_url,
            cells: a.cells,
            desired_lrps: a.desired_lrps,
            trials: a.trials,
            percent_writes: a.percent_writes,
            seed: a.seed,
            output: a.output,
            seed_via: a.seed_via,
            seed_workers: a.seed_workers,
            seed_batch: a.seed_batch,
            connections: a.connections,
            max_in_flight: a.max_in_flight,
            cell_concurrency: a.cell_concurrency,
            rep_starts: a.rep_starts,
            route_emitters: a.route_emitters,
            error_tolerance: a.error_tolerance,
            event_timeout: Duration::from_secs(a.event_timeout),
            request_timeout: Duration::from_secs(a.request_timeout),
            event_buffer: a.event_buffer,
            nodelay_listener: !a.no_nodelay_listener,
            convergence_passes: a.convergence_passes,
            reseed: a.reseed,
            keep_database: a.keep_database,
            progress: !a.no_progress,
            tls: a.tls,
            tls_dir: a.tls_dir,
            compare_tls: a.compare_tls,
            rounds: a.rounds,
            bbs_process: a.bbs_process,
            bbs_binary: a.bbs_binary,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flag_defaults_match_config_defaults() {
        let cli = Cli::parse_from(["benchmark-bbs"]);
        assert!(cli.command.is_none());
        let from_flags = serde_json::to_value(Config::from(cli.bbs)).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(from_flags, defaults);
    }

    #[test]
    fn architecture_flags_parse() {
        let cli = Cli::parse_from([
            "benchmark-bbs",
            "--database-url",
            "postgres://postgres@127.0.0.1:5432",
            "--cells",
            "1000",
            "--desired-lrps",
            "250000",
            "--trials",
            "3",
            "--percent-writes",
            "5",
            "--seed",
            "9",
            "--output",
            "out",
        ]);
        let config = Config::from(cli.bbs);
        assert_eq!((config.cells, config.desired_lrps, config.trials, config.seed), (1000, 250_000, 3, 9));
        assert_eq!(config.output, PathBuf::from("out"));
    }

    #[test]
    fn rounds_need_compare_tls() {
        let cli = Cli::parse_from(["benchmark-bbs", "--compare-tls", "--rounds", "5"]);
        let config = Config::from(cli.bbs);
        assert_eq!((config.compare_tls, config.rounds), (true, 5));
        assert_eq!(Config::from(Cli::parse_from(["benchmark-bbs", "--compare-tls"]).bbs).rounds, 3);
        let err = Cli::try_parse_from(["benchmark-bbs", "--rounds", "5"]).expect_err("--rounds alone is refused");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{err}");
        let zero = Config::from(Cli::parse_from(["benchmark-bbs", "--compare-tls", "--rounds", "0"]).bbs);
        assert!(zero.validate().unwrap_err().to_string().contains("--rounds"));
    }
}
