//! The admin HTTP server (localhost by default): `GET /healthz` (200 while the process runs;
//! the body says whether the cell evacuates and holds its presence) and `GET /metrics`
//! (Prometheus text: capacity, containers by state, bulk-sync duration). It serves on the
//! listener it is given, like every server here.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{CellSnapshot, record_snapshot};

/// The process-wide Prometheus recorder, installed on first use.
///
/// If another recorder is already installed (another component of the same process, or a test
/// binary), that one keeps receiving the metrics and this handle renders only what it sees.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder is already installed; /metrics shows only this recorder");
            }
            crate::metrics::describe();
            handle
        })
        .clone()
}

/// What the admin endpoints read: a fresh snapshot of the cell on every request.
pub type SnapshotFn = Arc<dyn Fn() -> AdminView + Send + Sync>;

/// The cell as `/healthz` and `/metrics` show it.
#[derive(Debug, Clone, Default)]
pub struct AdminView {
    /// Capacity and containers.
    pub snapshot: CellSnapshot,
    /// Whether the presence is held.
    pub presence_held: bool,
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, view: SnapshotFn, shutdown: CancellationToken) {
    let handle = metrics_handle();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    // Back off so a persistent error (out of file descriptors) does not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let view = view.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = respond(req.uri().path(), &handle, &view);
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

fn respond(path: &str, handle: &PrometheusHandle, view: &SnapshotFn) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" | "/ping" => {
            let view = view();
            let mode = if view.snapshot.evacuating { "evacuating" } else { "accepting work" };
            let presence = if view.presence_held { "presence held" } else { "presence not held" };
            (StatusCode::OK, format!("ok ({mode}, {presence})\n"))
        }
        "/metrics" => {
            record_snapshot(&view().snapshot);
            handle.run_upkeep();
            (StatusCode::OK, handle.render())
        }
        _ => (StatusCode::NOT_FOUND, "not found: try /healthz or /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
