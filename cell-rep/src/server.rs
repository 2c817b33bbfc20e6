//! The gRPC server, assembled in one place: `Rep`, `grpc.health.v1.Health` and server
//! reflection, so grpcurl and generated clients in any language work without our `.proto`
//! files. TLS and further tower layers get switched on here.
//!
//! No timeout or concurrency layer: every RPC answers from memory (reservations and stops run
//! in the background), so none can be slow; the decode limit bounds what one request costs.

use proto::pb::rep::v1::rep_server::RepServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::EvacuationFlag;
use crate::service::RepService;

/// Largest request body the transport reads: twice the limit every request is held to
/// (`proto::limits::MAX_REQUEST_BYTES`, 4 MiB), so a body up to this size is refused by the
/// codec with INVALID_ARGUMENT naming the limit, and only a larger one by the transport
/// (OUT_OF_RANGE) without being buffered.
pub const MAX_REQUEST_BYTES: usize = 2 * proto::limits::MAX_REQUEST_BYTES;

/// Serves the services on `listener` until `shutdown`. The health of the `Rep` service is
/// SERVING until the cell evacuates, NOT_SERVING after; the overall status (`""`) is SERVING
/// while the process is up.
pub async fn serve(
    listener: TcpListener,
    service: RepService,
    evacuation: EvacuationFlag,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RepServer<RepService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection = match reflection {
        Ok(reflection) => Some(reflection),
        Err(e) => {
            // The embedded descriptor set is built with the crate, so this cannot happen; if it
            // did, serve without reflection rather than not at all.
            tracing::error!(error = %e, "cannot build grpc reflection; serving without it");
            None
        }
    };
    let follower = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = evacuation.wait() => health.set_not_serving::<RepServer<RepService>>().await,
            }
        })
    };
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(RepServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await;
    follower.abort();
    result
}
