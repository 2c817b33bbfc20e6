//! The gRPC server, assembled in one place: `Auctioneer`, `grpc.health.v1.Health` and server
//! reflection, so grpcurl and generated clients in any language work without our `.proto`
//! files. TLS and further tower layers get switched on here.
//!
//! No timeout or concurrency layer: both RPCs only validate and enqueue, so they cannot be
//! slow; the decode limit below bounds what one request can cost.

use proto::pb::auctioneer::v1::auctioneer_server::AuctioneerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::lock::LockStatus;
use crate::service::AuctioneerService;

/// Largest request body the transport reads: twice the limit every request is held to
/// (`proto::limits::MAX_REQUEST_BYTES`, 4 MiB), so a body up to this size is refused by the
/// codec with INVALID_ARGUMENT naming the limit, and only a larger one by the transport
/// (OUT_OF_RANGE) without being buffered.
pub const MAX_REQUEST_BYTES: usize = 2 * proto::limits::MAX_REQUEST_BYTES;

/// Serves the services on `listener` until `shutdown`. The health status of the `Auctioneer`
/// service follows `lock`: SERVING while the lock is held, NOT_SERVING while standing by; the
/// overall status (`""`) is SERVING whenever the process is up.
pub async fn serve(
    listener: TcpListener,
    service: AuctioneerService,
    lock: LockStatus,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
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

    let follow = {
        let shutdown = shutdown.clone();
        async move {
            let mut changes = lock.subscribe();
            loop {
                let held = *changes.borrow_and_update();
                if held {
                    health.set_serving::<AuctioneerServer<AuctioneerService>>().await;
                } else {
                    health.set_not_serving::<AuctioneerServer<AuctioneerService>>().await;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        }
    };
    let follower = tokio::spawn(follow);

    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(AuctioneerServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await;
    follower.abort();
    result
}
