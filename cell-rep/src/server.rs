//! The rep's gRPC port: `Rep`, `Recovery` (issue 19), `Logs` and `Exec` (issue 18), on the
//! server every component builds the same way (`svc::server`: health, reflection, limits,
//! TCP_NODELAY).
//!
//! No timeout or concurrency layer: every RPC answers from memory (reservations and stops run
//! in the background), so none can be slow; the decode limit bounds what one request costs.

use proto::pb::rep::v1::exec_server::ExecServer;
use proto::pb::rep::v1::logs_server::LogsServer;
use proto::pb::rep::v1::recovery_server::RecoveryServer;
use proto::pb::rep::v1::rep_server::RepServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::EvacuationFlag;
use crate::recovery::RecoveryService;
use crate::service::RepService;

/// What the port bounds, from the rep's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request message, in bytes.
    pub max_request_bytes: usize,
    /// Most `diego ssh` sessions at once.
    pub max_exec_sessions: usize,
}

/// Serves the services on `listener` until `shutdown`, within `limits`. The health of the `Rep` service is
/// SERVING until the cell evacuates, NOT_SERVING after; the overall status (`""`) is SERVING
/// while the process is up.
pub async fn serve(
    listener: TcpListener,
    service: RepService,
    recovery: RecoveryService,
    evacuation: EvacuationFlag,
    security: &svc::tls::Security,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let Limits { max_request_bytes, max_exec_sessions } = limits;
    let (health, router) = svc::server::grpc_server(&["diego.rep.v1.Rep"], max_request_bytes);
    health.set_serving::<RepServer<RepService>>().await;
    let follower = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = evacuation.wait() => health.set_not_serving::<RepServer<RepService>>().await,
            }
        })
    };
    let logs = crate::logs::service::LogsService::new(service.logs(), shutdown.clone());
    // `diego ssh` (issue 18): at most `max_exec_sessions` sessions at once.
    let exec = crate::exec::ExecService::new(std::sync::Arc::clone(service.context()), max_exec_sessions);
    let router = router
        .add_service(ExecServer::new(exec).max_decoding_message_size(max_request_bytes))
        .add_service(LogsServer::new(logs).max_decoding_message_size(max_request_bytes))
        .add_service(RepServer::new(service).max_decoding_message_size(max_request_bytes))
        .add_service(RecoveryServer::new(recovery).max_decoding_message_size(max_request_bytes));
    let result = svc::server::serve(router, listener, security, shutdown).await;
    follower.abort();
    result
}
