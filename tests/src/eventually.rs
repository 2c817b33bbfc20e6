//! Polling with bounded patience: an end-to-end assertion waits for the cluster to converge but
//! never forever, and says what it was waiting for when it gives up.

use std::time::Duration;

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    cli::cluster::wait_for(what, limit, probe).await.unwrap_or_else(|e| panic!("{e}"))
}
