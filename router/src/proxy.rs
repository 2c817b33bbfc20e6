//! The HTTP/1.1 proxy: the `Host` header picks the route, the [`Balancer`] an instance of it,
//! and the request goes there on a fresh connection; the response streams back.
//!
//! | situation | answer |
//! |---|---|
//! | no LRP routes the host | 404 `no route for host H` |
//! | the route has no ready instance | 502 `no ready instance for host H` |
//! | an instance refuses the connection (or does not accept it within `connect_timeout`) | the request goes once to another instance; 502 when that fails too |
//! | no response headers within `request_timeout` | 504 |
//! | a request head larger than `max_header_bytes` | 431 |
//!
//! Connecting is the only step retried: nothing of the request has been sent by then, so a
//! retry cannot run it twice. At most `max_connections` client connections are served at once;
//! past it the listener waits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::balancer::{Balancer, InFlight};
use crate::emitter::RouteHandle;
use crate::metrics;
use crate::table::{Endpoint, normalise_host};

/// The body of every response the proxy gives.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Headers that concern one hop only, never forwarded.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"];

/// The proxy's settings and state.
#[derive(Debug)]
pub struct Proxy {
    routes: RouteHandle,
    balancer: Balancer,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_header_bytes: usize,
}

impl Proxy {
    /// A proxy serving `routes`.
    pub fn new(
        routes: RouteHandle,
        balancer: Balancer,
        connect_timeout: Duration,
        request_timeout: Duration,
        max_header_bytes: usize,
    ) -> Self {
        Self { routes, balancer, connect_timeout, request_timeout, max_header_bytes }
    }

    /// Serves `listener` until `shutdown`, at most `max_connections` connections at once.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, max_connections: usize, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(max_connections));
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => return,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "router accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (proxy, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move {
                let _permit = permit;
                proxy.serve_connection(stream, peer, shutdown).await;
            });
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(request, peer).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .max_buf_size(self.max_header_bytes)
            .timer(TokioTimer::new())
            .header_read_timeout(self.request_timeout)
            .serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            _ = connection => {}
            () = shutdown.cancelled() => {}
        }
    }

    /// Answers one request: routes it, or says why not.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        // hyper refuses a head that overflows its read buffer; one that arrived whole is
        // measured here.
        let head: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
        if head + request.uri().to_string().len() > self.max_header_bytes {
            metrics::record_request(
                metrics::UNKNOWN_ROUTE,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                started.elapsed(),
            );
            return text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("request head larger than {} bytes\n", self.max_header_bytes),
            );
        }
        let host = request
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .map(normalise_host)
            .unwrap_or_default();
        let routes = self.routes.current();
        let Some(endpoints) = routes.get(&host) else {
            metrics::record_request(metrics::UNKNOWN_ROUTE, StatusCode::NOT_FOUND, started.elapsed());
            return text(StatusCode::NOT_FOUND, format!("no route for host {host:?}\n"));
        };
        let response = self.forward(&host, endpoints, request, peer).await;
        metrics::record_request(&host, response.status(), started.elapsed());
        response
    }

    async fn forward(
        &self,
        host: &str,
        endpoints: &[Endpoint],
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let Some(first) = self.balancer.pick(endpoints, None) else {
            metrics::record_upstream_error(host, "no_instance");
            return text(StatusCode::BAD_GATEWAY, format!("no ready instance for host {host}\n"));
        };
        let (endpoint, stream) = match self.connect(first).await {
            Ok(stream) => (first, stream),
            Err(e) => {
                self.balancer.failed(&first.address);
                metrics::record_upstream_error(host, "connect");
                tracing::info!(host, instance = %first.address, error = %e, "instance refused the connection; trying another");
                let Some(second) = self.balancer.pick(endpoints, Some(&first.address)) else {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("the only instance of {host} refused the connection\n"),
                    );
                };
                match self.connect(second).await {
                    Ok(stream) => (second, stream),
                    Err(e) => {
                        self.balancer.failed(&second.address);
                        metrics::record_upstream_error(host, "connect");
                        tracing::warn!(host, instance = %second.address, error = %e, "the retry's instance refused the connection too");
                        return text(StatusCode::BAD_GATEWAY, format!("no instance of {host} accepted a connection\n"));
                    }
                }
            }
        };
        self.balancer.answered(&endpoint.address);
        let in_flight = self.balancer.begin(&endpoint.address);
        let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                metrics::record_upstream_error(host, "response");
                return text(StatusCode::BAD_GATEWAY, format!("instance of {host} failed: {e}\n"));
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        let request = prepare(request, peer);
        match tokio::time::timeout(self.request_timeout, sender.send_request(request)).await {
            Err(_) => {
                metrics::record_upstream_error(host, "timeout");
                text(StatusCode::GATEWAY_TIMEOUT, format!("the instance of {host} did not answer in time\n"))
            }
            Ok(Err(e)) => {
                metrics::record_upstream_error(host, "response");
                text(StatusCode::BAD_GATEWAY, format!("the instance of {host} failed: {e}\n"))
            }
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Tracked { body, _in_flight: in_flight }.boxed())
            }
        }
    }

    async fn connect(&self, endpoint: &Endpoint) -> std::io::Result<TcpStream> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(endpoint.address.as_str()))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// The request as it goes to the instance: hop-by-hop headers dropped, `X-Forwarded-For` and
/// `X-Forwarded-Proto` added, the path and query only (origin form).
fn prepare(request: Request<Incoming>, peer: SocketAddr) -> Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let forwarded_for = match parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    parts.headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    if let Some(path) = parts.uri.path_and_query().cloned() {
        parts.uri = hyper::Uri::from(path);
    }
    Request::from_parts(parts, body)
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// A plain-text answer of the router itself.
fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// An instance's response body, counting its request in flight until the body is done.
struct Tracked {
    body: Incoming,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
