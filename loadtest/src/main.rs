//! `benchmark-bbs`: parse flags, set up logging, run, print the table.

use clap::Parser;
use loadtest::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Smoke(args)) => {
            let report = loadtest::smoke::run(args.into()).await?;
            print!("{}", report.table());
            println!("table: {}", report.files.table.display());
            println!("json: {}", report.files.json.display());
            println!(
                "charts: {} SVG files in {}",
                report.files.charts.len(),
                report.config.output.join("charts").display()
            );
            if !report.ok() {
                std::process::exit(1);
            }
        }
        None => {
            let report = loadtest::run(cli.bbs.into()).await?;
            print!("{}", report.table());
            println!("table: {}", report.files.table.display());
            println!("json: {}", report.files.json.display());
            println!(
                "charts: {} SVG files in {}",
                report.files.charts.len(),
                report.config.output.join("charts").display()
            );
            if !report.ok() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
