//! The `bbs` binary: flags and config file, checked once (a refused one: one line, exit 64), bind,
//! [`bbs::run`] until SIGINT or SIGTERM. Exit codes as every component's: [`svc::process`].

use std::process::ExitCode;

use bbs::config::{BbsConfig, ConfigOverrides};
use clap::Parser;
use svc::config::{ConfigFile, Flags};

/// The diego-rs BBS: the leader-elected gRPC API over the store.
#[derive(Debug, Parser)]
#[command(name = "bbs", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    svc::process::init_logging();
    let config = match BbsConfig::from_flags(Args::parse().flags) {
        Ok(config) => config,
        Err(e) => return e.exit("bbs"),
    };
    let bound = match svc::process::bind_listeners(&config.listen_address, &config.admin_address).await {
        Ok(bound) => bound,
        Err(e) => return e.exit("bbs"),
    };
    let listeners = bbs::Listeners { grpc: bound.grpc, admin: bound.admin };
    let shutdown = svc::signals::on_terminate();
    svc::process::exit("bbs", bbs::run(config, listeners, bbs::Overrides::default(), shutdown).await)
}
