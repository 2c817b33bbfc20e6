//! The gRPC server, assembled in one place: `Bbs`, `Locket`, `grpc.health.v1.Health` and server
//! reflection, so grpcurl and generated clients in any language work without our `.proto` files.
//! TLS and request-size limits get switched on here.

use proto::pb::bbs::v1::bbs_server::BbsServer;
use proto::pb::locket::v1::locket_server::LocketServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc::BbsService;
use crate::locket::LocketService;

/// Largest request body the transport reads: twice the limit every request is held to
/// (`proto::limits::MAX_REQUEST_BYTES`, 4 MiB), so a body up to this size is refused by the
/// codec with INVALID_ARGUMENT naming the limit, and only a larger one by the transport
/// (OUT_OF_RANGE) without being buffered.
pub const MAX_REQUEST_BYTES: usize = 2 * proto::limits::MAX_REQUEST_BYTES;

/// Serves the services on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    bbs: BbsService,
    locket: LocketService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<BbsServer<BbsService>>().await;
    health.set_serving::<LocketServer<LocketService>>().await;
    // Advertise exactly what this port serves (the shared descriptor set also describes the
    // auctioneer's and rep's services).
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("diego.bbs.v1.Bbs")
        .with_service_name("diego.locket.v1.Locket")
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()
        .unwrap_or_else(|e| unreachable!("the embedded descriptor set is valid: {e}"));
    tonic::transport::Server::builder()
        // Keep idle streams (event subscribers) alive through middleboxes.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(BbsServer::new(bbs).max_decoding_message_size(MAX_REQUEST_BYTES))
        .add_service(LocketServer::new(locket).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
}
