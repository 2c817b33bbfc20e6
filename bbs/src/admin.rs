//! The BBS's admin routes on the shared admin server (`svc::admin`): `GET /healthz` (200 while
//! serving), `GET /leader` (200 `leader` or 503 `standby`) and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use hyper::StatusCode;
use svc::admin::Admin;

use crate::leader::Leadership;

/// The BBS's admin server: `/healthz`, `/leader` and `/metrics`.
pub fn admin(leadership: Arc<Leadership>) -> Admin {
    Admin::new().route("/leader", move || {
        let leading = leadership.is_leader();
        (
            if leading { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
            format!("{}\n", if leading { "leader" } else { "standby" }),
        )
    })
}
