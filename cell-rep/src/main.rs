//! The `cell-rep` binary: flags and config file, checked once (a refused one: one line, exit 64),
//! bind, [`cell_rep::run_with`]. Exit codes as every component's: [`svc::process`].
//!
//! Signals: SIGINT or SIGTERM shut down, as in every diego-rs component: the rep stops at once
//! (servers close, its containers are stopped) without handing anything over. Evacuation is its
//! own operator action: SIGUSR1 (or the `Evacuate` RPC) evacuates the cell, and the rep exits once
//! it is empty or the evacuation timeout expired; SIGINT or SIGTERM during it still stop at once.

use std::process::ExitCode;

use cell_rep::{ConfigOverrides, Deps, RepConfig};
use clap::Parser;
use svc::config::Flags;

svc::global_allocator!();

/// Runs containers for the diego-rs scheduler on this machine.
#[derive(Debug, Parser)]
#[command(name = "cell-rep", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let (config, listeners) = match svc::process::start::<RepConfig>("cell-rep", Args::parse().flags).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let run = async {
        let deps = Deps { stop: svc::signals::on_terminate(), ..Deps::from_config(&config)? };
        let evacuate = svc::signals::on_sigusr1();
        cell_rep::run_with(config, listeners, deps, evacuate).await?;
        anyhow::Ok(())
    };
    svc::process::exit("cell-rep", run.await.map_err(|e| format!("{e:#}")))
}
