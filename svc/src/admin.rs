//! The admin HTTP server every component runs on its admin listener: `GET /healthz`, `GET /metrics`
//! (Prometheus text) and whatever routes the component adds (the BBS's `/leader`).
//!
//! The port speaks plain HTTP/1.1, or HTTPS with the component's own certificate when its config
//! says `[tls] admin = true` ([`Admin::tls`]; no client certificate is asked for).
//!
//! `/metrics` renders the one Prometheus recorder of the process ([`metrics_handle`]). The
//! `metrics` crate has exactly one global recorder per process, so this is the one process-wide
//! value in diego-rs: every component of a process (the BBS, the auctioneer and the cells of
//! `diego dev`, a test binary) records into it, and each admin page shows all of their series.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::tls::MutualTls;

/// The process's Prometheus recorder, installed on first use and shared by every component.
///
/// If a recorder that is not this one was installed first (by a test binary), that one keeps
/// receiving the metrics and this handle renders an empty page.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("another metrics recorder is installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}

/// A route's answer: status and plain-text body.
pub type Reply = (StatusCode, String);

type Handler = Arc<dyn Fn() -> Reply + Send + Sync>;

/// One component's admin server: `/healthz`, `/metrics` and the routes it adds.
#[derive(Clone)]
pub struct Admin {
    /// `/healthz` first, then the added routes in order; `listed` ones are named in the 404 body.
    routes: Vec<Route>,
    /// Run before each `/metrics` render (gauges read from the component's state on a scrape).
    before_metrics: Option<Arc<dyn Fn() + Send + Sync>>,
    /// HTTPS with these certificates; plain HTTP when `None`.
    tls: Option<Arc<MutualTls>>,
}

#[derive(Clone)]
struct Route {
    path: &'static str,
    listed: bool,
    /// `None`: answers as `/healthz` does.
    handler: Option<Handler>,
}

impl Default for Admin {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.routes.iter().map(|r| r.path).collect();
        f.debug_struct("Admin").field("routes", &paths).finish_non_exhaustive()
    }
}

impl Admin {
    /// `/healthz` answering `ok` and `/metrics`.
    pub fn new() -> Self {
        let ok: Handler = Arc::new(|| (StatusCode::OK, "ok\n".to_owned()));
        Self {
            routes: vec![Route { path: "/healthz", listed: true, handler: Some(ok) }],
            before_metrics: None,
            tls: None,
        }
    }

    /// `/healthz` answers 200 with `body()` (a component says there what it is doing).
    pub fn healthz(mut self, body: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let body = Arc::new(body);
        self.routes[0].handler = Some(Arc::new(move || (StatusCode::OK, body())));
        self
    }

    /// Adds `path`, named in the 404 body.
    pub fn route(mut self, path: &'static str, handler: impl Fn() -> Reply + Send + Sync + 'static) -> Self {
        self.routes.push(Route { path, listed: true, handler: Some(Arc::new(handler)) });
        self
    }

    /// Adds `path` answering as `/healthz` does, not named in the 404 body (an old name kept
    /// for probes that use it).
    pub fn healthz_alias(mut self, path: &'static str) -> Self {
        self.routes.push(Route { path, listed: false, handler: None });
        self
    }

    /// Serves HTTPS with the certificate of `tls` (what `TlsConfig::admin_tls` gives), or plain
    /// HTTP when `None`.
    pub fn tls(mut self, tls: Option<Arc<MutualTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Runs `hook` before every `/metrics` render.
    pub fn before_metrics(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.before_metrics = Some(Arc::new(hook));
        self
    }

    /// The answer to `GET path`.
    pub fn respond(&self, path: &str) -> Reply {
        if path == "/metrics" {
            if let Some(hook) = &self.before_metrics {
                hook();
            }
            let handle = metrics_handle();
            handle.run_upkeep();
            return (StatusCode::OK, handle.render());
        }
        match self.routes.iter().find(|r| r.path == path) {
            Some(Route { handler: Some(handler), .. }) => handler(),
            Some(Route { handler: None, .. }) => self.respond("/healthz"),
            None => (StatusCode::NOT_FOUND, format!("not found: try {}\n", self.listed_paths())),
        }
    }

    /// `/healthz, /leader or /metrics`.
    fn listed_paths(&self) -> String {
        let mut paths: Vec<&str> = self.routes.iter().filter(|r| r.listed).map(|r| r.path).collect();
        paths.push("/metrics");
        let last = paths.pop().unwrap_or_default();
        if paths.is_empty() { last.to_owned() } else { format!("{} or {last}", paths.join(", ")) }
    }

    /// Serves on `listener` until `shutdown`; open connections end with it.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let admin = Arc::new(self);
        // Install the recorder before the first scrape, so series recorded meanwhile are kept.
        let _ = metrics_handle();
        let tls = admin.tls.clone();
        accept(listener, tls, shutdown, move |io, shutdown| admin.clone().serve_connection(io, shutdown)).await;
    }

    /// Answers the HTTP/1.1 requests of one connection until it closes or `shutdown`.
    async fn serve_connection(self: Arc<Self>, io: Box<dyn Stream>, shutdown: CancellationToken) {
        let admin = self;
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let (status, body) = admin.respond(req.uri().path());
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            async move { Ok::<_, Infallible>(response) }
        });
        let io = hyper_util::rt::TokioIo::new(io);
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::select! {
            _ = connection => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// One accepted connection's bytes: plain TCP, or TLS over it.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The accept loop of every admin server (this one, the BBS's dashboard): accepts on `listener`
/// until `shutdown` and hands each connection to `serve` on a task of its own, after a TLS
/// handshake with `tls`'s admin configuration (this certificate, no client certificate asked
/// for) when it is set. A failed accept (out of file descriptors) pauses the loop briefly.
pub async fn accept<F, Fut>(listener: TcpListener, tls: Option<Arc<MutualTls>>, shutdown: CancellationToken, serve: F)
where
    F: Fn(Box<dyn Stream>, CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
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
        let (serve, tls, shutdown) = (serve.clone(), tls.clone(), shutdown.clone());
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve(Box::new(stream), shutdown).await;
            };
            // The certificate as `MutualTls` keeps it (reloaded when its files change).
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.admin_config());
            match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve(Box::new(stream), shutdown).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "admin TLS handshake refused"),
                Err(_) => tracing::debug!("admin TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_404_names_the_listed_routes() {
        let plain = Admin::new();
        assert_eq!(plain.respond("/nope"), (StatusCode::NOT_FOUND, "not found: try /healthz or /metrics\n".into()));
        let bbs = Admin::new().route("/leader", || (StatusCode::OK, "leader\n".into())).healthz_alias("/ping");
        assert_eq!(bbs.respond("/nope").1, "not found: try /healthz, /leader or /metrics\n", "an alias is not listed");
        assert_eq!(bbs.respond("/leader"), (StatusCode::OK, "leader\n".into()));
        assert_eq!(bbs.respond("/ping"), (StatusCode::OK, "ok\n".into()));
    }

    #[test]
    fn healthz_says_what_the_component_reports() {
        let admin = Admin::new().healthz_alias("/ping").healthz(|| "ok (auctioning)\n".into());
        assert_eq!(admin.respond("/healthz"), (StatusCode::OK, "ok (auctioning)\n".into()));
        assert_eq!(admin.respond("/ping"), (StatusCode::OK, "ok (auctioning)\n".into()));
    }
}
