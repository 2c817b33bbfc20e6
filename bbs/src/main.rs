//! The `bbs` binary: flags and config file, checked once (a refused one: one line, exit 64), bind,
//! [`bbs::run`] until SIGINT or SIGTERM. Exits 69 when a listener cannot be bound, 1 when the BBS
//! fails.

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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match BbsConfig::from_flags(Args::parse().flags) {
        Ok(config) => config,
        Err(e) => return e.exit("bbs"),
    };
    let listeners = match (
        svc::server::bind("grpc", &config.listen_address).await,
        svc::server::bind("admin", &config.admin_address).await,
    ) {
        (Ok(grpc), Ok(admin)) => bbs::Listeners { grpc, admin },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bbs: {e}");
            return ExitCode::from(69);
        }
    };
    let shutdown = svc::signals::on_terminate();
    match bbs::run(config, listeners, bbs::Overrides::default(), shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bbs: {e}");
            ExitCode::from(1)
        }
    }
}
