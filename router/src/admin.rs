//! The router's admin routes on the shared admin server (`svc::admin`): `GET /healthz` (200; the
//! body says whether the route table is in step with the BBS), `GET /routes` (the table: one
//! line per hostname with its instances) and `GET /metrics`.

use hyper::StatusCode;
use svc::admin::Admin;

use crate::emitter::{EmitterStatus, RouteHandle};

/// The router's admin server; registers the router's metric descriptions.
pub fn admin(routes: RouteHandle, status: EmitterStatus) -> Admin {
    let _ = svc::admin::metrics_handle();
    crate::metrics::describe();
    let healthz_routes = routes.clone();
    Admin::new()
        .healthz(move || {
            let current = healthz_routes.current();
            let (hosts, endpoints) = (current.len(), current.endpoints());
            match status.problem() {
                None => format!("ok ({hosts} routes, {endpoints} endpoints)\n"),
                Some(problem) => format!("ok ({hosts} routes, {endpoints} endpoints; out of step: {problem})\n"),
            }
        })
        .route("/routes", move || (StatusCode::OK, render(&routes)))
}

/// `HOST -> ADDR (GUID/INDEX), ...`, one line per hostname.
fn render(routes: &RouteHandle) -> String {
    let current = routes.current();
    let mut out = String::new();
    for (host, endpoints) in current.iter() {
        let list: Vec<String> =
            endpoints.iter().map(|e| format!("{} ({}/{})", e.address, e.process_guid, e.index)).collect();
        out.push_str(&format!(
            "{host} -> {}\n",
            if list.is_empty() { "(none ready)".to_owned() } else { list.join(", ") }
        ));
    }
    if out.is_empty() {
        out.push_str("no routes\n");
    }
    out
}
