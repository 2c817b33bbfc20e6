//! The auctioneer's gRPC port: `Auctioneer`, on the server every component builds the same way
//! (`svc::server`: health, reflection, limits, TCP_NODELAY).
//!
//! No timeout or concurrency layer: both RPCs only validate and enqueue, so they cannot be
//! slow; the decode limit bounds what one request can cost.

use proto::pb::auctioneer::v1::auctioneer_server::AuctioneerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::lock::LockStatus;
use crate::service::AuctioneerService;

/// Serves the services on `listener` until `shutdown`, holding every request message to
/// `max_request_bytes`. The health status of the `Auctioneer`
/// service follows `lock`: SERVING while the lock is held, NOT_SERVING while standing by; the
/// overall status (`""`) is SERVING whenever the process is up.
pub async fn serve(
    listener: TcpListener,
    service: AuctioneerService,
    lock: LockStatus,
    security: &svc::tls::Security,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, router) = svc::server::grpc_server(&["diego.auctioneer.v1.Auctioneer"], max_request_bytes);
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
    let router = router.add_service(AuctioneerServer::new(service).max_decoding_message_size(max_request_bytes));
    let result = svc::server::serve(router, listener, security, shutdown).await;
    follower.abort();
    result
}
