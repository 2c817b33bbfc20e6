//! The BBS's admin address: the shared admin routes of `svc::admin` (`GET /healthz`, `GET /leader`
//! answering 200 `leader` or 503 `standby`, `GET /metrics`) and the read-only dashboard
//! ([`crate::dashboard`]): the page at `/`, its JSON under `/api/` and its event stream.
//!
//! The shared admin server answers each path with one synchronous plain-text reply; the
//! dashboard needs database reads, content types and a streamed body, so this module serves the
//! port itself (plain HTTP/1.1, or HTTPS with the BBS's certificate when `[tls] admin` is set)
//! and hands every path that is not the dashboard's to [`Admin::respond`]. Only `GET` and
//! `HEAD` are answered: nothing here changes anything.

use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use proto::models::ProcessGuid;
use svc::admin::Admin;
use svc::tls::MutualTls;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dashboard::{self, Dashboard, EventsRefused};
use crate::events::EventHub;
use crate::leader::Leadership;

/// A response body: a whole one or the event stream.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The same-origin-only policy of every dashboard answer: the page runs its own script and
/// style sheet and fetches its own JSON, nothing inline and nothing from elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The BBS's admin server: `/healthz`, `/leader`, `/metrics` and the dashboard.
pub struct BbsAdmin {
    routes: Admin,
    dashboard: Dashboard,
    tls: Option<Arc<MutualTls>>,
}

/// The BBS's admin server over `leadership` (the dashboard streams events once
/// [`BbsAdmin::events`] gives it the hub).
pub fn admin(leadership: Arc<Leadership>) -> BbsAdmin {
    let dashboard = Dashboard::new(leadership.clone());
    let routes = Admin::new()
        .route("/leader", move || {
            let leading = leadership.is_leader();
            (
                if leading { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
                format!("{}\n", if leading { "leader" } else { "standby" }),
            )
        })
        // Named in the 404 body; answered by `BbsAdmin::respond` before this.
        .route("/", || (StatusCode::OK, dashboard::INDEX_HTML.to_owned()));
    BbsAdmin { routes, dashboard, tls: None }
}

impl BbsAdmin {
    /// Serves HTTPS with the certificate of `tls` (what `TlsConfig::admin_tls` gives), or plain
    /// HTTP when `None`.
    pub fn tls(mut self, tls: Option<Arc<MutualTls>>) -> Self {
        self.tls = tls;
        self
    }

    /// Streams `hub`'s events on `/api/events`.
    pub fn events(mut self, hub: Arc<EventHub>) -> Self {
        self.dashboard = self.dashboard.with_events(hub);
        self
    }

    /// The same server with other dashboard bounds.
    pub fn limits(mut self, limits: dashboard::views::Limits) -> Self {
        self.dashboard = self.dashboard.with_limits(limits);
        self
    }

    /// The answer to `method path?query`.
    pub async fn respond(&self, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "read-only: only GET and HEAD\n".into());
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let mut response = match path {
            "/" => page(dashboard::INDEX_HTML, "text/html; charset=utf-8"),
            "/dashboard.js" => page(dashboard::SCRIPT_JS, "text/javascript; charset=utf-8"),
            "/dashboard.css" => page(dashboard::STYLE_CSS, "text/css; charset=utf-8"),
            "/api/status" => json(StatusCode::OK, dashboard::json(&self.dashboard.status())),
            "/api/cells" => read(self.dashboard.cells().await),
            "/api/tasks" => read(self.dashboard.tasks().await),
            "/api/lrps" => match after_param(query) {
                Ok(after) => read(self.dashboard.lrps(after.as_ref()).await),
                Err(message) => json(StatusCode::BAD_REQUEST, error_json(&message)),
            },
            "/api/events" => self.event_stream(),
            _ => {
                let (status, body) = self.routes.respond(path);
                return text(status, body);
            }
        };
        secure(response.headers_mut());
        response
    }

    fn event_stream(&self) -> Response<Body> {
        let refused = |message: String| json(StatusCode::SERVICE_UNAVAILABLE, error_json(&message));
        match self.dashboard.events() {
            Ok(stream) => {
                let frames = stream.map(|message| Ok::<_, Infallible>(Frame::data(Bytes::from(message))));
                let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(EventsRefused::NotWired) => refused("this bbs serves no event stream".into()),
            Err(EventsRefused::Standby { leader }) => refused(match leader {
                Some(leader) => format!("this bbs is a standby; events happen on the leader at {leader}"),
                None => "this bbs is a standby; events happen on the leader".into(),
            }),
            Err(EventsRefused::Full(message)) => refused(message),
        }
    }

    /// Serves on `listener` until `shutdown`; open connections (event streams included) end
    /// with it.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let admin = Arc::new(self);
        // Install the recorder before the first scrape, so series recorded meanwhile are kept.
        let _ = svc::admin::metrics_handle();
        let tls = admin.tls.clone();
        svc::admin::accept(listener, tls, shutdown, move |io, shutdown| admin.clone().serve_connection(io, shutdown))
            .await;
    }

    /// Answers the HTTP/1.1 requests of one connection until it closes or `shutdown`.
    async fn serve_connection(self: Arc<Self>, io: Box<dyn svc::admin::Stream>, shutdown: CancellationToken) {
        let admin = self;
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let admin = admin.clone();
            async move {
                let uri = req.uri();
                let response = admin.respond(req.method(), uri.path(), uri.query()).await;
                Ok::<_, Infallible>(response)
            }
        });
        let io = hyper_util::rt::TokioIo::new(io);
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::select! {
            _ = connection => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// The `after` parameter of `/api/lrps` (a process guid), if any.
fn after_param(query: Option<&str>) -> Result<Option<ProcessGuid>, String> {
    let Some(value) = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("after=")) else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(None);
    }
    // A process guid is `[A-Za-z0-9_-]+`: nothing in it is percent-encoded.
    ProcessGuid::parse(value).map(Some).map_err(|e| format!("after: {e}"))
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// A store read's answer: the view, or 503 naming the error.
fn read<T: serde::Serialize>(result: Result<T, db::Error>) -> Response<Body> {
    match result {
        Ok(view) => json(StatusCode::OK, dashboard::json(&view)),
        Err(e) => {
            tracing::debug!(error = %e, "dashboard read failed");
            json(StatusCode::SERVICE_UNAVAILABLE, error_json(&format!("cannot read the database: {e}")))
        }
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed_unsync(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    full(status, body, "text/plain; charset=utf-8")
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = full(status, body, "application/json");
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = full(StatusCode::OK, body, content_type);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The headers every dashboard answer carries.
fn secure(headers: &mut hyper::HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_after_parameter_is_a_process_guid_or_nothing() {
        assert_eq!(after_param(None), Ok(None));
        assert_eq!(after_param(Some("after=")), Ok(None));
        assert_eq!(after_param(Some("x=1&after=web-1")), Ok(Some(ProcessGuid::parse("web-1").unwrap())));
        let refused = after_param(Some("after=%3Cscript%3E")).unwrap_err();
        assert!(refused.starts_with("after: "), "{refused}");
    }
}
