//! The `auctioneer` binary: flags and config file, checked once (a refused one: one line, exit
//! 64), bind, [`auctioneer::run`] until SIGINT or SIGTERM. Exit codes as every component's:
//! [`svc::process`].

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
    svc::process::init_logging();
    let config = match AuctioneerConfig::from_flags(Args::parse().flags) {
        Ok(config) => config,
        Err(e) => return e.exit("auctioneer"),
    };
    let bound = match svc::process::bind_listeners(&config.listen_address, &config.admin_address).await {
        Ok(bound) => bound,
        Err(e) => return e.exit("auctioneer"),
    };
    let listeners = Listeners { grpc: bound.grpc, admin: bound.admin };
    svc::process::exit("auctioneer", auctioneer::run(config, listeners, svc::signals::on_terminate()).await)
}
