//! The `auctioneer` binary: flags and config file, checked once (a refused one: one line, exit
//! 64), bind, [`auctioneer::run`] until SIGINT or SIGTERM. Exits 1 when a listener cannot be
//! bound or the server fails.

use std::process::ExitCode;

use auctioneer::{AuctioneerConfig, ConfigOverrides, Listeners};
use clap::Parser;
use svc::config::{ConfigFile, Flags};

/// Places LRP instances and tasks on cells while holding the `auctioneer` lock.
#[derive(Debug, Parser)]
#[command(name = "auctioneer", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let config = match AuctioneerConfig::from_flags(Args::parse().flags) {
        Ok(config) => config,
        Err(e) => return e.exit("auctioneer"),
    };
    let serve = async {
        let grpc = svc::server::bind("grpc", &config.listen_address).await?;
        let admin = svc::server::bind("admin", &config.admin_address).await?;
        auctioneer::run(config, Listeners { grpc, admin }, svc::signals::on_terminate()).await?;
        anyhow::Ok(())
    };
    match serve.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auctioneer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
