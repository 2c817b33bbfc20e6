//! The HTTP router with its route emitter built in (docs/router.md).
//!
//! - [`table`]: the pure route table: desired routes and running instances in, hostname →
//!   endpoints out; [`wire`] turns the BBS's messages into its changes.
//! - [`emitter`]: keeps the table in step with the BBS (events, a full sync every
//!   `sync_interval`, a new subscription and sync after a dropped stream); [`bbs`] is its source.
//! - [`proxy`] and [`balancer`]: the HTTP/1.1 proxy: Host header → route → instance
//!   (round-robin or least-connections), one retry on a refused connection.
//! - [`config`], [`admin`] (`/healthz`, `/routes`, `/metrics`), [`metrics`], [`error`].
//!
//! [`run`] takes already-bound listeners, so tests and `diego dev` run it on port 0.

pub mod admin;
pub mod balancer;
pub mod bbs;
pub mod config;
pub mod emitter;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod table;
pub mod wire;

use std::sync::Arc;

use svc::config::IntoValid;
use tokio_util::sync::CancellationToken;

pub use config::{Balancing, ConfigError, ConfigOverrides, RouterConfig};
pub use emitter::{EmitterStatus, RouteHandle, RouteSource};
pub use error::RouterError;
/// The router's listeners: `grpc` is the HTTP listener of the routed traffic.
pub use svc::process::Listeners;

/// Runs a router reading the BBS of `config` until `shutdown`.
pub async fn run(
    config: impl IntoValid<RouterConfig>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let config = config.into_valid()?;
    let security = config.tls.security()?;
    let source = bbs::GrpcSource::new(&config.bbs_address, config.communication_timeout, security.clone())?;
    serve(config, listeners, Arc::new(source), security, shutdown).await
}

/// Runs a router with routes from `source` until `shutdown`: the emitter, the proxy on
/// `listeners.grpc` and the admin server on `listeners.admin`.
pub async fn run_with(
    config: impl IntoValid<RouterConfig>,
    listeners: Listeners,
    source: Arc<dyn RouteSource>,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let config = config.into_valid()?;
    let security = config.tls.security()?;
    serve(config, listeners, source, security, shutdown).await
}

async fn serve(
    config: svc::config::Valid<RouterConfig>,
    listeners: Listeners,
    source: Arc<dyn RouteSource>,
    security: svc::tls::Security,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    let http = listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let admin_address = listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(http = %http, admin = %admin_address, bbs = %config.bbs_address, balancing = ?config.balancing, "router starting");
    let (routes, status) = (RouteHandle::default(), EmitterStatus::default());
    let stop = shutdown.child_token();
    let emitter =
        emitter::Emitter::new(source, routes.clone(), status.clone(), config.sync_interval, config.resync_interval);
    let emitter_task = tokio::spawn(emitter.run(stop.clone()));
    let admin = admin::admin(routes.clone(), status).tls(config.tls.admin_tls(&security));
    let admin_task = tokio::spawn(admin.serve(listeners.admin, stop.clone()));
    let proxy = Arc::new(proxy::Proxy::new(
        routes,
        balancer::Balancer::new(config.balancing, config.failure_ejection),
        config.connect_timeout,
        config.request_timeout,
        config.max_header_bytes,
    ));
    proxy.serve(listeners.grpc, config.max_connections, stop.clone()).await;
    stop.cancel();
    let _ = emitter_task.await;
    let _ = admin_task.await;
    tracing::info!("router stopped");
    Ok(())
}
