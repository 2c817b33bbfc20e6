//! The `router` binary: flags and config file, checked once (a refused one: one line, exit 64),
//! bind the HTTP and admin listeners, [`router::run`] until SIGINT or SIGTERM. Exit codes as
//! every component's: [`svc::process`].

use std::process::ExitCode;

use clap::Parser;
use router::{ConfigOverrides, RouterConfig};
use svc::config::{ConfigFile, Flags};

svc::global_allocator!();

/// Routes HTTP requests by Host header to the ready instances of the LRP that names the host.
#[derive(Debug, Parser)]
#[command(name = "router", version)]
struct Args {
    #[command(flatten)]
    flags: Flags<ConfigOverrides>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // As svc::process::start, with the first listener named for what it serves: HTTP.
    svc::process::init_logging();
    let config = match RouterConfig::from_flags(Args::parse().flags) {
        Ok(config) => config,
        Err(e) => return e.exit("router"),
    };
    let http = match svc::server::bind("http", &config.listen_address).await {
        Ok(listener) => listener,
        Err(e) => return e.exit("router"),
    };
    let admin = match svc::server::bind("admin", &config.admin_address).await {
        Ok(listener) => listener,
        Err(e) => return e.exit("router"),
    };
    let listeners = router::Listeners { grpc: http, admin };
    svc::process::exit("router", router::run(config, listeners, svc::signals::on_terminate()).await)
}
