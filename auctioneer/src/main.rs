//! The `auctioneer` binary: flags, tracing, bind, [`auctioneer::run`]. Exits 64 on a bad
//! configuration, 1 when a listener cannot be bound or the server fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auctioneer::{AuctioneerConfig, ConfigOverrides, Listeners};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Places LRP instances and tasks on cells while holding the `auctioneer` lock.
#[derive(Debug, Parser)]
#[command(name = "auctioneer", version)]
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
    let config = match AuctioneerConfig::load(args.config.as_deref(), args.overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("auctioneer: {e}");
            return ExitCode::from(64);
        }
    };
    if let Err(e) = serve(config).await {
        eprintln!("auctioneer: {e:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn serve(config: AuctioneerConfig) -> anyhow::Result<()> {
    let bind = |address: String| async move {
        TcpListener::bind(&address).await.with_context(|| format!("cannot bind {address}"))
    };
    let (grpc, admin) = (bind(config.listen_address.clone()).await?, bind(config.admin_address.clone()).await?);
    let shutdown = CancellationToken::new();
    tokio::spawn(signalled(shutdown.clone()));
    auctioneer::run(config, Listeners { grpc, admin }, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM (unix only, like the rest of diego-rs).
async fn signalled(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => drop(term.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {} }
    tracing::info!("shutting down");
    shutdown.cancel();
}
