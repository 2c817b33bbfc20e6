//! The rep's admin routes on the shared admin server (`svc::admin`), localhost by default:
//! `GET /healthz` (and its old name `/ping`; 200 while the process runs, the body says whether
//! the cell evacuates and holds its presence) and `GET /metrics` (Prometheus text: capacity,
//! containers by state, bulk-sync duration, recorded from a fresh snapshot on every scrape).

use std::sync::Arc;

use svc::admin::Admin;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{CellSnapshot, record_snapshot};

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

/// The rep's admin server; registers the rep's metric descriptions.
pub fn admin(view: SnapshotFn) -> Admin {
    // The recorder first, so the descriptions land in it.
    let _ = svc::admin::metrics_handle();
    crate::metrics::describe();
    let scrape = view.clone();
    Admin::new()
        .healthz(move || {
            let view = view();
            let mode = if view.snapshot.evacuating { "evacuating" } else { "accepting work" };
            let presence = if view.presence_held { "presence held" } else { "presence not held" };
            format!("ok ({mode}, {presence})\n")
        })
        .healthz_alias("/ping")
        .before_metrics(move || record_snapshot(&scrape().snapshot))
}

/// Serves the admin endpoints on `listener` until `shutdown`, over HTTPS with `tls` when given.
pub async fn serve(
    listener: TcpListener,
    view: SnapshotFn,
    tls: Option<std::sync::Arc<svc::tls::MutualTls>>,
    shutdown: CancellationToken,
) {
    admin(view).tls(tls).serve(listener, shutdown).await;
}
