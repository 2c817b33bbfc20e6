//! The `cell-rep` binary: flags, tracing, bind, [`cell_rep::run_with`]. SIGTERM (or Ctrl-C)
//! evacuates the cell and exits once it is empty; a second signal stops at once. Exits 64 on a
//! bad configuration, 1 when a listener cannot be bound or the rep fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cell_rep::{ConfigOverrides, Deps, Listeners, RepConfig};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs containers for the diego-rs scheduler on this machine.
#[derive(Debug, Parser)]
#[command(name = "cell-rep", version)]
struct Args {
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: ConfigOverrides,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let args = Args::parse();
    let config = match RepConfig::load(args.config.as_deref(), args.overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cell-rep: {e}");
            return ExitCode::from(64);
        }
    };
    if let Err(e) = serve(config).await {
        eprintln!("cell-rep: {e:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn serve(config: RepConfig) -> anyhow::Result<()> {
    let bind = |address: String| async move {
        let listener = TcpListener::bind(&address).await.with_context(|| format!("cannot bind {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        anyhow::Ok(listener)
    };
    let grpc = bind(config.listen_address.clone()).await?;
    let admin = bind(config.admin_address.clone()).await?;
    let deps = Deps::from_config(&config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signalled(shutdown.clone(), deps.stop.clone()));
    cell_rep::run_with(config, Listeners { grpc, admin }, deps, shutdown).await?;
    Ok(())
}

/// The first SIGTERM / SIGINT evacuates (`shutdown`); the next one stops at once (`stop`).
async fn signalled(shutdown: CancellationToken, stop: CancellationToken) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return tracing::warn!("cannot listen for SIGTERM");
    };
    for token in [shutdown, stop] {
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        token.cancel();
    }
}
