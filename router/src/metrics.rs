//! The router's metric names, declared once, and the helpers that record them. Per-route series
//! carry `route` = the hostname (`unknown` for hosts no LRP routes, so a client cannot grow the
//! series without bound).

use std::time::Duration;

use hyper::StatusCode;

/// Requests answered; labels `route`, `status` (`2xx`, `4xx`, ...).
pub const REQUESTS: &str = "router_requests_total";
/// Time from a request's head to its response head; label `route`.
pub const REQUEST_DURATION: &str = "router_request_duration_seconds";
/// Failures talking to instances; labels `route`, `kind` (`connect`, `response`, `timeout`,
/// `no_instance`).
pub const UPSTREAM_ERRORS: &str = "router_upstream_errors_total";
/// Hostnames in the route table.
pub const ROUTES: &str = "router_routes";
/// Endpoints over every hostname.
pub const ENDPOINTS: &str = "router_endpoints";
/// Full syncs; label `changed` (`true` when the sync found something the events missed).
pub const SYNCS: &str = "router_syncs_total";
/// Times the emitter subscribed again after a dropped stream or a failed sync.
pub const RESYNCS: &str = "router_resyncs_total";

/// The `route` label of a host no LRP routes.
pub const UNKNOWN_ROUTE: &str = "unknown";

/// Registers descriptions and units with the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "requests answered by the router, per route and status class");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "time to the response head, per route");
    describe_counter!(UPSTREAM_ERRORS, "failures talking to instances, per route and kind");
    describe_gauge!(ROUTES, "hostnames in the route table");
    describe_gauge!(ENDPOINTS, "instance endpoints over every hostname");
    describe_counter!(SYNCS, "full syncs of the route table from the bbs");
    describe_counter!(RESYNCS, "new subscriptions after a dropped event stream or a failed sync");
}

fn class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

pub(crate) fn record_request(route: &str, status: StatusCode, elapsed: Duration) {
    let route = route.to_owned();
    metrics::counter!(REQUESTS, "route" => route.clone(), "status" => class(status)).increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

pub(crate) fn record_upstream_error(route: &str, kind: &'static str) {
    metrics::counter!(UPSTREAM_ERRORS, "route" => route.to_owned(), "kind" => kind).increment(1);
}

pub(crate) fn record_table(routes: usize, endpoints: usize) {
    metrics::gauge!(ROUTES).set(routes as f64);
    metrics::gauge!(ENDPOINTS).set(endpoints as f64);
}

pub(crate) fn record_sync(changed: bool) {
    metrics::counter!(SYNCS, "changed" => if changed { "true" } else { "false" }).increment(1);
}

pub(crate) fn record_resync() {
    metrics::counter!(RESYNCS).increment(1);
}
