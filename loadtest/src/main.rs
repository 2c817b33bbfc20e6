//! `benchmark-bbs`: parse flags, check the run's configuration once (a refused one: one line on
//! stderr, exit 64, as every diego-rs binary), set up logging, run, print the table. Exits 1 when
//! the run fails or its report is not ok (with `--compare-tls` or `sweep`: any run's).

use std::process::ExitCode;

use clap::Parser;
use loadtest::cli::{Cli, Command};

svc::global_allocator!();

/// Prints a report's table and where its files are; failure when the report is not ok. (A
/// macro: the benchmark's and the smoke test's reports are different types with the same fields.)
macro_rules! report {
    ($report:expr) => {{
        let report = $report;
        print!("{}", report.table());
        println!("table: {}", report.files.table.display());
        println!("json: {}", report.files.json.display());
        println!(
            "charts: {} SVG files in {}",
            report.files.charts.len(),
            report.config.output.join("charts").display()
        );
        if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }};
}

/// A refused configuration: one line on stderr, exit 64.
fn refused(error: anyhow::Error) -> ExitCode {
    eprintln!("benchmark-bbs: {error}");
    ExitCode::from(svc::config::EXIT_INVALID_CONFIG)
}

#[tokio::main]
async fn main() -> ExitCode {
    svc::tune_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Smoke(args)) => {
            let config: loadtest::smoke::SmokeConfig = args.into();
            if let Err(e) = config.validate() {
                return refused(e);
            }
            loadtest::smoke::run(config).await.map(|report| report!(report))
        }
        Some(Command::Sweep(args)) => {
            let config: loadtest::sweep::SweepConfig = args.into();
            if let Err(e) = config.validate() {
                return refused(e);
            }
            loadtest::sweep::run(config).await.map(|sweep| {
                print!("{}", sweep.table());
                println!(
                    "chart: {}\ntable: {}\njson: {}",
                    sweep.files.chart.display(),
                    sweep.files.table.display(),
                    sweep.files.json.display()
                );
                if sweep.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            })
        }
        Some(Command::Soak(args)) => {
            if let Err(e) = args.validate() {
                return refused(e);
            }
            loadtest::soak::run(args).await.map(|soak| {
                print!("{}", soak.markdown());
                if soak.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            })
        }
        None => {
            let config: loadtest::config::Config = cli.bbs.into();
            if let Err(e) = config.validate() {
                return refused(e);
            }
            if config.compare_tls {
                loadtest::compare::run(config).await.map(|comparison| {
                    print!("{}", comparison.table());
                    println!("table: {}", comparison.files.table.display());
                    println!("json: {}", comparison.files.json.display());
                    if comparison.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                })
            } else {
                loadtest::run(config).await.map(|report| report!(report))
            }
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("benchmark-bbs: {e:#}");
            ExitCode::FAILURE
        }
    }
}
