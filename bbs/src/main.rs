//! The `bbs` binary: flags and config file, checked once (a refused one: one line, exit 64), bind,
//! [`bbs::run`] until SIGINT or SIGTERM. Exit codes as every component's: [`svc::process`].

use std::process::ExitCode;

use bbs::config::{BbsConfig, ConfigOverrides};
use clap::Parser;
use svc::config::Flags;

svc::global_allocator!();

/// The diego-rs BBS: the leader-elected gRPC API over the store.
#[derive(Debug, Parser)]
#[command(name = "bbs", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let (config, listeners) = match svc::process::start::<BbsConfig>("bbs", Args::parse().flags).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let shutdown = svc::signals::on_terminate();
    svc::process::exit("bbs", bbs::run(config, listeners, bbs::Overrides::default(), shutdown).await)
}
