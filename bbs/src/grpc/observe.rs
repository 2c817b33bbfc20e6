//! Per-RPC metrics (`bbs_requests_total`, `bbs_request_duration_seconds`) and the mapping of a
//! body's error to a gRPC status.

use tokio::time::Instant;
use tonic::Response;

use super::GrpcResult;
use crate::Result;

/// Runs one RPC body, recording its count, outcome and latency, and mapping its error. An
/// unrecoverable store error (the schema is broken) cancels `fatal`, and nothing else does: no
/// request, whatever its content, can make the server step down.
pub(super) async fn observe<T>(
    rpc: &'static str,
    body: impl Future<Output = Result<T>>,
    fatal: &tokio_util::sync::CancellationToken,
) -> GrpcResult<T> {
    let start = Instant::now();
    let result = body.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code().name(),
    };
    metrics::counter!("bbs_requests_total", "rpc" => rpc, "outcome" => outcome).increment(1);
    metrics::histogram!("bbs_request_duration_seconds", "rpc" => rpc).record(start.elapsed().as_secs_f64());
    match result {
        Ok(value) => Ok(Response::new(value)),
        Err(e) => {
            if e.is_unrecoverable() {
                tracing::error!(rpc, error = %e, "unrecoverable store error; stepping down");
                fatal.cancel();
            }
            Err(e.into())
        }
    }
}
