//! The admin HTTP server: `GET /healthz` (200 while serving), `GET /leader` (whether this process
//! leads) and `GET /metrics` (Prometheus text). It runs on the listener it is given, like every
//! server here.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::leader::Leadership;

/// The process-wide Prometheus recorder (installed once, shared by every component in the
/// process, e.g. under `diego dev`).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test binary); ours then just renders
            // an empty page rather than failing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, leadership: Arc<Leadership>, shutdown: CancellationToken) {
    let handle = metrics_handle();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let leadership = leadership.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = respond(req.uri().path(), &handle, &leadership);
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

fn respond(path: &str, handle: &PrometheusHandle, leadership: &Leadership) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/leader" => {
            let leading = leadership.is_leader();
            (
                if leading { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
                format!("{}\n", if leading { "leader" } else { "standby" }),
            )
        }
        "/metrics" => {
            handle.run_upkeep();
            (StatusCode::OK, handle.render())
        }
        _ => (StatusCode::NOT_FOUND, "not found: try /healthz, /leader or /metrics\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
