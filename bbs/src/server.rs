//! The BBS's gRPC port: `Bbs` and `Locket`, on the server every component builds the same way
//! (`svc::server`: health, reflection, limits, TCP_NODELAY).

use proto::pb::bbs::v1::bbs_server::BbsServer;
use proto::pb::locket::v1::locket_server::LocketServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc::BbsService;
use crate::locket::LocketService;

/// Serves the services on `listener` until `shutdown`, holding every request message to
/// `max_request_bytes`.
pub async fn serve(
    listener: TcpListener,
    bbs: BbsService,
    locket: LocketService,
    security: &svc::tls::Security,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, router) = svc::server::grpc_server(&["diego.bbs.v1.Bbs", "diego.locket.v1.Locket"], max_request_bytes);
    health.set_serving::<BbsServer<BbsService>>().await;
    health.set_serving::<LocketServer<LocketService>>().await;
    let router = router
        .add_service(BbsServer::new(bbs).max_decoding_message_size(max_request_bytes))
        .add_service(LocketServer::new(locket).max_decoding_message_size(max_request_bytes));
    svc::server::serve(router, listener, security, shutdown).await
}
