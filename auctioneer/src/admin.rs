//! The auctioneer's admin routes on the shared admin server (`svc::admin`): `GET /healthz` (200
//! while the process runs; the body says whether it auctions or stands by) and `GET /metrics`
//! (Prometheus text).

use svc::admin::Admin;

use crate::lock::LockStatus;

/// The auctioneer's admin server; registers the auctioneer's metric descriptions.
pub fn admin(lock: LockStatus) -> Admin {
    // The recorder first, so the descriptions land in it.
    let _ = svc::admin::metrics_handle();
    crate::metrics::describe();
    Admin::new().healthz(move || {
        let role = if lock.is_held() { "auctioning" } else { "standing by" };
        format!("ok ({role})\n")
    })
}
