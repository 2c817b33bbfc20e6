//! The `cell-rep` binary: flags and config file, checked once (a refused one: one line, exit 64),
//! bind, [`cell_rep::run_with`]. Exits 1 when a listener cannot be bound or the rep fails.
//!
//! Signals: SIGINT or SIGTERM shut down, as in every diego-rs component: the rep stops at once
//! (servers close, its containers are stopped) without handing anything over. Evacuation is its
//! own operator action: SIGUSR1 (or the `Evacuate` RPC) evacuates the cell, and the rep exits once
//! it is empty or the evacuation timeout expired; SIGINT or SIGTERM during it still stop at once.

use std::process::ExitCode;

use anyhow::Context;
use cell_rep::{ConfigOverrides, Deps, Listeners, RepConfig};
use clap::Parser;
use svc::config::{ConfigFile, Flags};
use tokio::net::TcpListener;

/// Runs containers for the diego-rs scheduler on this machine.
#[derive(Debug, Parser)]
#[command(name = "cell-rep", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let config = match RepConfig::from_flags(Args::parse().flags) {
        Ok(config) => config,
        Err(e) => return e.exit("cell-rep"),
    };
    let serve = async {
        let bind = |address: String| async move {
            let listener = TcpListener::bind(&address).await.with_context(|| format!("cannot bind {address}"))?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            anyhow::Ok(listener)
        };
        let grpc = bind(config.listen_address.clone()).await?;
        let admin = bind(config.admin_address.clone()).await?;
        let deps = Deps { stop: svc::signals::on_terminate(), ..Deps::from_config(&config)? };
        let evacuate = svc::signals::on_sigusr1();
        cell_rep::run_with(config, Listeners { grpc, admin }, deps, evacuate).await?;
        anyhow::Ok(())
    };
    match serve.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cell-rep: {e:#}");
            ExitCode::FAILURE
        }
    }
}
