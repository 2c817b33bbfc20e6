//! The `auctioneer` binary: flags and config file, checked once (a refused one: one line, exit
//! 64), bind, [`auctioneer::run`] until SIGINT or SIGTERM. Exit codes as every component's:
//! [`svc::process`].

use std::process::ExitCode;

use auctioneer::{AuctioneerConfig, ConfigOverrides};
use clap::Parser;
use svc::config::Flags;

svc::global_allocator!();

/// Places LRP instances and tasks on cells while holding the `auctioneer` lock.
#[derive(Debug, Parser)]
#[command(name = "auctioneer", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let (config, listeners) = match svc::process::start::<AuctioneerConfig>("auctioneer", Args::parse().flags).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    svc::process::exit("auctioneer", auctioneer::run(config, listeners, svc::signals::on_terminate()).await)
}
