//! [`Config`]: what one `benchmark-bbs` run simulates and against what. The flags in
//! [`crate::cli`] map onto it one to one; tests build it directly.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::format::{redacted, secs};

/// How the desired LRPs and their RUNNING instances are created before the trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SeedVia {
    /// Through the BBS: `DesireLRP`, then `StartActualLRP` on a random cell, per LRP, from
    /// `seed_workers` concurrent workers (Diego's seeding). Seeding latencies are reported.
    Grpc,
    /// Straight into the database through `db::Store` (`desire_lrp` + `start_actual_lrp`), for
    /// large runs where seeding through the API takes too long. Needs the database URL.
    Store,
}

/// How a simulated rep re-asserts its running instances in each bulk loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RepStarts {
    /// One `StartActualLRP` per instance (Diego's benchmark-bbs and Diego's rep).
    Each,
    /// `StartActualLRPs` of all of a cell's instances, at most 1,000 per call (the diego-rs
    /// cell rep's bulk sync).
    Batch,
}

/// Which route emitters are simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RouteEmitters {
    /// One global route emitter: all actual LRPs + all scheduling infos per trial.
    Global,
    /// One route emitter per cell (Diego's `local_route_emitters`): that cell's actual LRPs +
    /// the scheduling infos of their process guids, and a per-cell event subscriber.
    Local,
    /// Both.
    Both,
}

impl RouteEmitters {
    /// Whether the global route emitter runs.
    pub fn global(self) -> bool {
        matches!(self, Self::Global | Self::Both)
    }

    /// Whether the per-cell route emitters run.
    pub fn local(self) -> bool {
        matches!(self, Self::Local | Self::Both)
    }
}

/// One benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Drive this BBS (`host:port`) instead of starting one. With `database_url` too, that URL
    /// must be the same BBS's database: it is used for the raw-SQL baselines, the convergence
    /// pass and store seeding, and no BBS is started.
    pub bbs_address: Option<String>,
    /// Start a BBS in this process on this database (`sqlite://FILE`, `postgres://…`,
    /// `mysql://…`). A PostgreSQL or MySQL URL without a database name gets a fresh database
    /// `benchmark_bbs_<seed>` created on that server (and dropped afterwards unless
    /// `keep_database`). With neither this nor `bbs_address`: a fresh SQLite file in `output`.
    /// Serialized without its password.
    #[serde(serialize_with = "redacted")]
    pub database_url: Option<String>,
    /// Simulated cells (reps), Diego's `num_reps`.
    pub cells: usize,
    /// Desired LRPs, one instance each, Diego's `desired_lrps`.
    pub desired_lrps: usize,
    /// Rounds of the workload, Diego's `num_trials`.
    pub trials: usize,
    /// Percent of the instances written per rep loop (half claims, half the starts that follow
    /// them), Diego's `percent_writes`.
    pub percent_writes: f64,
    /// Seed of every random choice (records, placement, claims).
    pub seed: u64,
    /// Directory for the table, the JSON and the charts (created).
    pub output: PathBuf,
    /// How to seed.
    pub seed_via: SeedVia,
    /// Concurrent seeding workers (Diego's `num_populate_workers`).
    pub seed_workers: usize,
    /// LRPs per seeding call through the BBS: `DesireLRPs` of this many, then `StartActualLRPs`
    /// of up to this many per cell; 1: `DesireLRP` and `StartActualLRP` per LRP (Diego's way).
    pub seed_batch: usize,
    /// HTTP/2 connections to the BBS the simulator spreads its calls over.
    pub connections: usize,
    /// Calls in flight at once across the whole simulator (Diego's semaphore; latencies are
    /// measured from when a call gets its slot, so waiting for a slot is not counted).
    pub max_in_flight: usize,
    /// Operations in flight at once within one rep's bulk loop.
    pub cell_concurrency: usize,
    /// How the reps re-assert their instances each loop.
    pub rep_starts: RepStarts,
    /// Which route emitters run.
    pub route_emitters: RouteEmitters,
    /// Accepted relative difference between received and expected events (and seeding errors).
    pub error_tolerance: f64,
    /// How long to wait after the trials for the expected events.
    #[serde(with = "secs")]
    pub event_timeout: Duration,
    /// Deadline of one call.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Event buffer per subscriber of a BBS this process starts (the BBS default is 1024).
    pub event_buffer: usize,
    /// Give the in-process BBS a listening socket with TCP_NODELAY (inherited by accepted
    /// connections); see [`crate::target::TargetSpec::nodelay_listener`].
    pub nodelay_listener: bool,
    /// LRP convergence passes timed on the seeded data.
    pub convergence_passes: usize,
    /// Wipe the benchmark's tables first when the named database already holds desired LRPs
    /// (refused otherwise).
    pub reseed: bool,
    /// Keep a database this run created.
    pub keep_database: bool,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Mutual TLS on every call: the in-process BBS serves with `diego://bbs`, the simulator
    /// calls as `diego://operator/benchmark` and each cell as `diego://cell/<id>`
    /// ([`crate::target::Clients`]).
    pub tls: bool,
    /// The PKI directory of the identities under TLS. Default: `<output>/tls` (created with its
    /// CA). With `bbs_address`: required, the directory of that cluster's CA.
    pub tls_dir: Option<PathBuf>,
    /// Run the workload plaintext and under mutual TLS, `rounds` times each in ABBA order, each
    /// run on a fresh database, and report the TLS/plaintext ratios ([`crate::compare`]).
    pub compare_tls: bool,
    /// Rounds of `compare_tls` (one plaintext and one TLS run each); unused without it.
    pub rounds: usize,
    /// Run the BBS as its own process, the real `bbs` binary, instead of in this one
    /// ([`crate::target::Launch`]); its peak RSS is reported apart.
    pub bbs_process: bool,
    /// The `bbs` binary of `bbs_process`; `None`: the one next to this executable.
    pub bbs_binary: Option<PathBuf>,
}

/// The default [`Config::seed_batch`].
pub const DEFAULT_SEED_BATCH: usize = 500;

impl Default for Config {
    /// Defaults that finish in about a minute on a 2-core machine on SQLite.
    fn default() -> Self {
        Self {
            bbs_address: None,
            database_url: None,
            cells: 50,
            desired_lrps: 5_000,
            trials: 2,
            percent_writes: 5.0,
            seed: 1,
            output: PathBuf::from("benchmark-bbs-output"),
            seed_via: SeedVia::Grpc,
            seed_workers: 32,
            seed_batch: DEFAULT_SEED_BATCH,
            connections: 8,
            max_in_flight: 256,
            cell_concurrency: 16,
            rep_starts: RepStarts::Each,
            route_emitters: RouteEmitters::Both,
            error_tolerance: 0.05,
            event_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(600),
            event_buffer: 1024,
            nodelay_listener: true,
            convergence_passes: 3,
            reseed: false,
            keep_database: false,
            progress: true,
            tls: false,
            tls_dir: None,
            compare_tls: false,
            rounds: crate::compare::DEFAULT_ROUNDS,
            bbs_process: false,
            bbs_binary: None,
        }
    }
}

impl Config {
    /// Checks the values that would make a run meaningless.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.cells >= 1, "--cells must be at least 1");
        anyhow::ensure!(self.desired_lrps >= 1, "--desired-lrps must be at least 1");
        // Process guids are BENCHMARK-BBS-GUID-%06d over 0..N-1: a million fit.
        anyhow::ensure!(
            self.desired_lrps <= 1_000_000,
            "--desired-lrps must be at most 1,000,000 (guids BENCHMARK-BBS-GUID-000000..999999)"
        );
        anyhow::ensure!(self.trials >= 1, "--trials must be at least 1");
        anyhow::ensure!((0.0..=100.0).contains(&self.percent_writes), "--percent-writes must be between 0 and 100");
        anyhow::ensure!(self.seed_workers >= 1, "--seed-workers must be at least 1");
        anyhow::ensure!(
            (1..=proto::limits::MAX_BATCH_ITEMS).contains(&self.seed_batch),
            "--seed-batch must be between 1 and {}",
            proto::limits::MAX_BATCH_ITEMS
        );
        anyhow::ensure!(self.connections >= 1, "--connections must be at least 1");
        anyhow::ensure!(self.max_in_flight >= 1, "--max-in-flight must be at least 1");
        anyhow::ensure!(self.cell_concurrency >= 1, "--cell-concurrency must be at least 1");
        anyhow::ensure!((0.0..=1.0).contains(&self.error_tolerance), "--error-tolerance must be between 0 and 1");
        anyhow::ensure!(self.event_buffer >= 1, "--event-buffer must be at least 1");
        anyhow::ensure!(self.rounds >= 1, "--rounds must be at least 1");
        anyhow::ensure!(!(self.tls && self.compare_tls), "--tls and --compare-tls exclude each other");
        anyhow::ensure!(
            self.tls_dir.is_none() || self.tls || self.compare_tls,
            "--tls-dir needs --tls (or --compare-tls)"
        );
        anyhow::ensure!(self.bbs_binary.is_none() || self.bbs_process, "--bbs-binary needs --bbs-process");
        if self.bbs_address.is_some() {
            anyhow::ensure!(!self.bbs_process, "--bbs-process starts its own BBS: drop --bbs-address");
            anyhow::ensure!(
                !self.compare_tls,
                "--compare-tls starts its own BBSs (plaintext and TLS, every round): drop --bbs-address"
            );
            anyhow::ensure!(
                !self.tls || self.tls_dir.is_some(),
                "--tls with --bbs-address needs --tls-dir D, the directory of that cluster's CA (ca.pem, ca-key.pem)"
            );
        }
        if self.seed_via == SeedVia::Store {
            anyhow::ensure!(
                self.database_url.is_some() || self.bbs_address.is_none(),
                "--seed-via store needs --database-url when driving an external BBS"
            );
        }
        Ok(())
    }

    /// The PKI directory of a TLS run (`tls_dir`, else `<output>/tls`); `None` in plaintext.
    pub fn tls_dir(&self) -> Option<PathBuf> {
        self.tls.then(|| self.tls_dir.clone().unwrap_or_else(|| self.output.join("tls")))
    }

    /// Event streams the BBS a run starts must serve at once: the global subscriber and, with
    /// local route emitters, one per cell, with room for a few more (never below the BBS's own
    /// default, 1,024, so small runs see the production limit).
    pub fn max_event_subscribers(&self) -> usize {
        let streams = 1 + if self.route_emitters.local() { self.cells } else { 0 };
        (streams + 64).max(bbs::config::BbsConfig::default().max_event_subscribers)
    }

    /// The probability that a rep claims an instance right after re-asserting it.
    pub fn claim_probability(&self) -> f64 {
        (self.percent_writes / 200.0).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bbs_serves_a_stream_per_cell_and_the_global_one() {
        let default = bbs::config::BbsConfig::default().max_event_subscribers;
        let run = |cells, route_emitters| Config { cells, route_emitters, ..Config::default() };
        assert_eq!(run(3, RouteEmitters::Both).max_event_subscribers(), default);
        assert!(run(4_000, RouteEmitters::Local).max_event_subscribers() > 4_000);
        assert_eq!(run(4_000, RouteEmitters::Global).max_event_subscribers(), default);
    }
}
