//! The `bbs` binary: parse flags and config, set up logging, bind listeners, run.

use std::path::PathBuf;

use bbs::config::BbsConfig;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The diego-rs BBS: the leader-elected gRPC API over the store.
#[derive(Debug, Parser)]
#[command(name = "bbs", version)]
struct Flags {
    /// TOML configuration file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Database URL (sqlite://, postgres://, mysql://); default: a SQLite file in --data-dir.
    #[arg(long)]
    database_url: Option<String>,
    /// gRPC listen address (default 127.0.0.1:8889; port 0 picks a free port).
    #[arg(long)]
    listen_address: Option<String>,
    /// Admin listen address for /healthz and /metrics (default 127.0.0.1:8890).
    #[arg(long)]
    admin_address: Option<String>,
    /// Address other components reach this BBS at (default: the bound gRPC address).
    #[arg(long)]
    advertise_address: Option<String>,
    /// The auctioneer's address (default: the value of its Locket lock).
    #[arg(long)]
    auctioneer_address: Option<String>,
    /// Directory of the default SQLite database.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn load(flags: Flags) -> Result<BbsConfig, bbs::config::ConfigError> {
    let mut config = match &flags.config {
        Some(path) => BbsConfig::from_file(path)?,
        None => BbsConfig::default(),
    };
    if let Some(v) = flags.database_url {
        config.database_url = v;
    }
    if let Some(v) = flags.listen_address {
        config.listen_address = v;
    }
    if let Some(v) = flags.admin_address {
        config.admin_address = v;
    }
    if let Some(v) = flags.advertise_address {
        config.advertise_address = v;
    }
    if let Some(v) = flags.auctioneer_address {
        config.auctioneer_address = v;
    }
    if let Some(v) = flags.data_dir {
        config.data_dir = v;
    }
    config.validate()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match load(Flags::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bbs: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let bind = |address: String| async move {
        tokio::net::TcpListener::bind(&address).await.map_err(|e| format!("cannot listen on {address}: {e}"))
    };
    let listeners = match (bind(config.listen_address.clone()).await, bind(config.admin_address.clone()).await) {
        (Ok(grpc), Ok(admin)) => bbs::Listeners { grpc, admin },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bbs: {e}");
            return std::process::ExitCode::from(69);
        }
    };
    for (name, listener) in [("grpc", &listeners.grpc), ("admin", &listeners.admin)] {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "{name} listening");
        }
    }
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        on_signal.cancel();
    });
    match bbs::run(config, listeners, bbs::Overrides::default(), shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bbs: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
