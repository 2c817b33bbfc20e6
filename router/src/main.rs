//! The `router` binary: flags and config file, checked once (a refused one: one line, exit 64),
//! bind the HTTP and admin listeners, [`router::run`] until SIGINT or SIGTERM. Exit codes as
//! every component's: [`svc::process`].

use std::process::ExitCode;

use clap::Parser;
use router::{ConfigOverrides, RouterConfig};
use svc::config::Flags;

/// Routes HTTP requests by Host header to the ready instances of the LRP that names the host.
#[derive(Debug, Parser)]
#[command(name = "router", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let (config, listeners) = match svc::process::start::<RouterConfig>("router", Args::parse().flags).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    svc::process::exit("router", router::run(config, listeners, svc::signals::on_terminate()).await)
}
