//! The admin HTTP server: `GET /healthz` (200 while the process runs; the body says whether it
//! auctions or stands by) and `GET /metrics` (Prometheus text). It serves on the listener it
//! is given, like every server here.

use std::convert::Infallible;
use std::sync::OnceLock;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::lock::LockStatus;

/// The process-wide Prometheus recorder, installed on first use.
///
/// If another recorder is already installed (another component of the same process, or a test
/// binary), that one keeps receiving the metrics and this handle renders an empty page.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder is already installed; /metrics stays empty");
            }
            crate::metrics::describe();
            handle
        })
        .clone()
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, lock: LockStatus, shutdown: CancellationToken) {
    let handle = metrics_handle();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    // Back off briefly so a persistent error (e.g. out of file descriptors)
                    // does not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let lock = lock.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = respond(req.uri().path(), &handle, &lock);
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
            tokio::select! {
                _ = connection => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn respond(path: &str, handle: &PrometheusHandle, lock: &LockStatus) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => {
            let role = if lock.is_held() { "auctioning" } else { "standing by" };
            (StatusCode::OK, format!("ok ({role})\n"))
        }
        "/metrics" => {
            handle.run_upkeep();
            (StatusCode::OK, handle.render())
        }
        _ => (StatusCode::NOT_FOUND, "not found: try /healthz or /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
