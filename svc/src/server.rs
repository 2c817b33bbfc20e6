//! The one builder of a diego-rs gRPC server: every component's port serves its own services plus
//! `grpc.health.v1.Health` and server reflection (so grpcurl and generated clients in any language
//! work without our `.proto` files), with the same transport settings and request limits.
//! Transport security gets switched on here, once, for every component.
//!
//! A component calls [`grpc_server`] with the names of the services it serves, adds them (each
//! wrapped with `.max_decoding_message_size(MAX_REQUEST_BYTES)`) and hands the router to
//! [`serve`]. Every request is also held to the per-field limits of `proto::limits` by the
//! generated code's codec (`proto::codec::BoundedCodec`), on every port alike.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::server::HealthReporter;

/// Largest request body the transport reads: twice the limit every request is held to
/// (`proto::limits::MAX_REQUEST_BYTES`, 4 MiB), so a body up to this size is refused by the
/// codec with INVALID_ARGUMENT naming the limit, and only a larger one by the transport
/// (OUT_OF_RANGE) without being buffered.
pub const MAX_REQUEST_BYTES: usize = 2 * proto::limits::MAX_REQUEST_BYTES;

/// How often idle connections are pinged, so idle streams (event subscribers) stay open through
/// middleboxes.
const HTTP2_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// A server with health and reflection for `services` (full names, `diego.bbs.v1.Bbs`), and the
/// reporter the component sets their health with (the overall status `""` is SERVING while the
/// process is up). Reflection advertises exactly `services`, health and reflection: the shared
/// descriptor set also describes the other components' services.
pub fn grpc_server(services: &[&'static str]) -> (HealthReporter, Router) {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = services
        .iter()
        .chain(&["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"])
        .fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(*name),
        )
        .build_v1();
    let reflection = match reflection {
        Ok(reflection) => Some(reflection),
        Err(e) => {
            // The embedded descriptor sets are built with the crates, so this cannot happen; if
            // it did, serve without reflection rather than not at all.
            tracing::error!(error = %e, "cannot build grpc reflection; serving without it");
            None
        }
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .add_service(health_service)
        .add_optional_service(reflection);
    (health, router)
}

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct BindError {
    /// The address.
    pub address: String,
    /// The IO error.
    pub source: std::io::Error,
}

/// Binds a component's listener on `address` (`host:port`; port 0 picks a free one) and logs
/// where it listens as `name`: what a binary does before `run()`, which takes bound listeners.
pub async fn bind(name: &str, address: &str) -> Result<TcpListener, BindError> {
    let listener =
        TcpListener::bind(address).await.map_err(|source| BindError { address: address.to_owned(), source })?;
    if let Ok(local) = listener.local_addr() {
        tracing::info!(address = %local, "{name} listening");
    }
    Ok(listener)
}

/// Serves `router` on `listener` until `shutdown`, with TCP_NODELAY on every accepted connection
/// (small request/response pairs must not wait for Nagle's algorithm).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    router
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown.cancelled_owned())
        .await
}
