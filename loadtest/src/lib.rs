//! benchmark-bbs: the load simulator operators use to size a deployment (docs/reference/bbs.md §8).
//!
//! It plays N cells' reps, the nsync bulker and the route emitters against a BBS and its
//! database without running real cells, and reports per-operation latencies next to Diego's
//! 2016 figures and the same database's raw-SQL capability measured in the same run.
//!
//! A run ([`run`]):
//! 1. [`target`]: start a BBS in this process on a database URL (SQLite / PostgreSQL / MySQL), or
//!    drive one by address;
//! 2. [`seed`]: register the cells' presences through Locket, then desire D heavy LRPs
//!    ([`generator`]) and start each one's instance on a random cell;
//! 3. [`convergence`]: time LRP convergence passes on the seeded data;
//! 4. [`events`] + [`workload`]: subscribe to instance events, run the trials, check the event
//!    count against the writes made;
//! 5. [`baseline`]: the BBS's reads one at a time on the quiet system, and the raw SQL they boil
//!    down to on the same database;
//! 6. [`report`] + [`charts`]: the table, the JSON with the raw histograms ([`stats`]) and the
//!    SVG charts.
//!
//! [`smoke`] is the other benchmark: a whole cluster's time to run K instances, on `diego dev`'s
//! in-process cluster. Both report through [`operations`]; [`format`] holds the formatting helpers
//! they share. [`sweep`] runs the workload at several sizes and draws the scaling curve.
//!
//! Transport: plaintext, or with `--tls` mutual TLS on every call, each simulated actor under
//! the identity the role table requires ([`target::Clients`]). [`compare`] (`--compare-tls`)
//! runs the workload both ways for `--rounds` rounds in ABBA order and reports the TLS/plaintext
//! ratios per round and their medians.
//!
//! Everything random comes from `--seed` (ChaCha8 streams per purpose, [`generator::stream`]).

pub mod baseline;
pub mod charts;
pub mod cli;
pub mod compare;
pub mod config;
pub mod convergence;
pub mod cpu;
pub mod events;
pub mod format;
pub mod generator;
pub mod listing;
pub mod operations;
pub mod progress;
pub mod report;
pub mod seed;
pub mod smoke;
pub mod soak;
pub mod stats;
pub mod sweep;
pub mod target;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

pub use crate::config::{Config, RepStarts, RouteEmitters, SeedVia};
pub use crate::report::Report;

use crate::generator::Placement;
use crate::operations::Files;
use crate::progress::Progress;
use crate::stats::Recorder;
use crate::target::{Clients, Target};

/// Runs one benchmark: setup, convergence, trials, event check, baselines; writes the table,
/// the JSON and the charts into `config.output` and returns the report. A run that measured
/// errors still returns its report (see [`Report::ok`]); only a run that could not be carried out
/// returns an error.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    config.validate()?;
    anyhow::ensure!(!config.compare_tls, "--compare-tls runs through compare::run");
    std::fs::create_dir_all(&config.output).with_context(|| format!("cannot create {}", config.output.display()))?;
    let started = Instant::now();
    let progress = Progress::new(config.progress);
    let target = Target::launch(&(&config).into(), &target::Launch::of(&config)).await?;
    let result = run_on(&config, &target, &progress, started).await;
    if let Err(e) = target.stop().await {
        tracing::warn!(error = %e, "cleaning up the target failed");
    }
    let mut report = result?;
    report.write(&config.output)?;
    Ok(report)
}

async fn run_on(config: &Config, target: &Target, progress: &Progress, started: Instant) -> anyhow::Result<Report> {
    let clients = Clients::new(
        &target.info.bbs_address,
        config.connections,
        config.cells,
        config.request_timeout,
        target.pki.as_deref(),
    )?;
    clients.wait_for_leader(Duration::from_secs(60)).await?;
    let recorder = Recorder::new();
    let placement = Arc::new(Placement::new(config.seed, config.cells, config.desired_lrps));

    progress.println(&format!("registering {} cell presences", config.cells));
    seed::register_presences(config, &clients, &recorder).await?;
    let presences = seed::keep_presences(config, &clients);
    let seeding = seed::seed(config, &clients, target.store.as_ref(), &placement, &recorder, progress).await?;
    seed::verify(config, &clients).await?;
    progress.println(&format!(
        "seeded {} LRPs in {:.1} s ({:.0}/s)",
        seeding.seeded, seeding.duration_s, seeding.lrps_per_s
    ));

    let convergence = match &target.store {
        Some(store) if config.convergence_passes > 0 => {
            let spinner = progress.spinner("timing LRP convergence passes on the seeded data");
            let report = convergence::run(store, config.convergence_passes, &recorder).await;
            spinner.finish();
            report
        }
        _ => None,
    };

    let subscribers = events::Subscribers::start(&clients, config.cells, config.route_emitters.local()).await?;
    let trials =
        workload::run(config, &clients, target.bbs_pid(), target.store.as_ref(), &placement, &recorder, progress).await;
    let spinner = progress.spinner("waiting for the expected instance events");
    let expected_cells = if config.route_emitters.local() { trials.expected_events_by_cell.clone() } else { vec![] };
    let waited = subscribers.wait_for(trials.expected_events, &expected_cells, config.event_timeout).await;
    let events =
        events::EventCheck::of(&subscribers, trials.expected_events, &expected_cells, config.error_tolerance, waited);
    subscribers.stop().await;
    spinner.finish();

    baseline::run_quiet(config, &clients, &placement, &recorder, progress).await;
    if let Some(store) = &target.store {
        baseline::run(config, store, &placement, &recorder, progress).await;
    }
    drop(presences);
    seed::release_presences(config, &clients).await;

    let memory = target.memory();
    Ok(Report {
        config: config.clone(),
        target: target.info.clone(),
        seeding,
        trials,
        operations: Report::operations_of(&recorder.snapshot()),
        events,
        convergence,
        memory,
        wall_time_s: started.elapsed().as_secs_f64(),
        files: Files::default(),
    })
}
