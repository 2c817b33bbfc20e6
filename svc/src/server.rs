//! The one builder of a diego-rs gRPC server: every component's port serves its own services plus
//! `grpc.health.v1.Health` and server reflection (so grpcurl and generated clients in any language
//! work without our `.proto` files), with the same transport settings and request limits.
//! Transport security is switched on here, once, for every component: [`serve`] takes the
//! component's [`Security`] and, under mutual TLS, accepts only clients whose certificate the
//! cluster CA signed (`crate::tls`).
//!
//! A component calls [`grpc_server`] with the names of the services it serves and its
//! `max_request_bytes`, adds the services (each wrapped with `.max_decoding_message_size` of the
//! same limit, a backstop) and hands the router to [`serve`]. Every request message is held to
//! `max_request_bytes` as it arrives ([`RequestLimitLayer`]: RESOURCE_EXHAUSTED naming the size
//! and the limit) and to the per-field limits of `proto::limits` by the generated code's codec
//! (`proto::codec::BoundedCodec`), on every port alike.
//!
//! Every request that reaches a service carries its [`Peer`] in its extensions (read it with
//! `Peer::of(&request)`): [`Peer::Verified`] with the identity of the client certificate under
//! mutual TLS, [`Peer::Plaintext`] otherwise.

use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::transport::server::{Router, TcpConnectInfo, TcpIncoming};
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

mod limit;

pub use limit::{LimitedBody, RequestLimit, RequestLimitLayer};

use crate::identity::Peer;
use crate::tls::{Connection, Security};

/// The router [`grpc_server`] builds: every service behind the [`PeerLayer`], the
/// [`RequestLimitLayer`] and the [`crate::authz::AuthzLayer`].
pub type GrpcRouter = Router<Stack<crate::authz::AuthzLayer, Stack<RequestLimitLayer, Stack<PeerLayer, Identity>>>>;

/// The default of every server's `max_request_bytes`: the gRPC default every client accepts.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = proto::limits::MAX_REQUEST_BYTES;

/// Checks a configured `max_request_bytes`: between `proto::limits::MIN_REQUEST_BYTES_LIMIT`
/// (1 MiB: components split their batches to other servers below it) and
/// `proto::limits::MAX_REQUEST_BYTES_LIMIT` (256 MiB). The error is the config's message.
pub fn check_max_request_bytes(value: usize) -> Result<(), String> {
    let (min, max) = (proto::limits::MIN_REQUEST_BYTES_LIMIT, proto::limits::MAX_REQUEST_BYTES_LIMIT);
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("must be between {min} (1 MiB) and {max} (256 MiB) bytes, got {value}"))
    }
}

/// How often idle connections are pinged, so idle streams (event subscribers) stay open through
/// middleboxes.
const HTTP2_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// A server with health and reflection for `services` (full names, `diego.bbs.v1.Bbs`), and the
/// reporter the component sets their health with (the overall status `""` is SERVING while the
/// process is up). Reflection advertises exactly `services`, health and reflection: the shared
/// descriptor set also describes the other components' services. Every request message is held
/// to `max_request_bytes`.
pub fn grpc_server(services: &[&'static str], max_request_bytes: usize) -> (HealthReporter, GrpcRouter) {
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
        .layer(PeerLayer)
        .layer(RequestLimitLayer::new(max_request_bytes))
        // After the peer is known: refuse what its role may not call (`crate::authz`).
        .layer(crate::authz::AuthzLayer)
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
/// (small request/response pairs must not wait for Nagle's algorithm). Under
/// [`Security::Mutual`] every connection must complete a TLS 1.3 handshake with a client
/// certificate of the cluster CA naming a `diego://` identity, within 10 s; handshakes run
/// concurrently (at most 1024 at once) and a refused one is dropped with a debug line naming the
/// peer and the reason.
pub async fn serve(
    router: GrpcRouter,
    listener: TcpListener,
    security: &Security,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    match security {
        Security::Plaintext => {
            router
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown.cancelled_owned(),
                )
                .await
        }
        Security::Mutual(tls) => {
            let incoming = crate::tls::incoming(listener, tls.clone(), shutdown.clone());
            router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()).await
        }
    }
}

/// Puts the [`Peer`] of a request's connection into its extensions: the verified peer of a TLS
/// connection ([`Connection`]), [`Peer::Plaintext`] for a plain TCP one. A TLS connection's
/// addresses are also put there as tonic's [`TcpConnectInfo`], so `request.remote_addr()` works
/// in both modes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerLayer;

impl<S> tower::Layer<S> for PeerLayer {
    type Service = PeerService<S>;

    fn layer(&self, inner: S) -> PeerService<S> {
        PeerService(inner)
    }
}

/// The service of [`PeerLayer`].
#[derive(Debug, Clone)]
pub struct PeerService<S>(S);

impl<S, B> tower::Service<http::Request<B>> for PeerService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        let extensions = request.extensions_mut();
        match extensions.get::<Connection>().cloned() {
            Some(connection) => {
                extensions.insert(TcpConnectInfo { local_addr: connection.local, remote_addr: connection.remote });
                extensions.insert(connection.peer);
            }
            None => {
                extensions.insert(Peer::Plaintext);
            }
        }
        self.0.call(request)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_request_bytes_is_between_one_and_256_mib() {
        for ok in [1 << 20, 4 << 20, 256 << 20] {
            assert_eq!(super::check_max_request_bytes(ok), Ok(()), "{ok}");
        }
        for bad in [0, (1 << 20) - 1, (256 << 20) + 1] {
            let err = super::check_max_request_bytes(bad).expect_err("out of range");
            assert!(err.ends_with(&format!("got {bad}")), "{err}");
        }
    }
}
