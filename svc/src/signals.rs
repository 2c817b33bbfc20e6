//! Signals, handled the same way by every binary: SIGINT or SIGTERM means shutdown (stop serving,
//! release leases, end), through a [`CancellationToken`] the binary hands to its `run()`. A
//! component with another operator action gives it its own signal: the cell rep evacuates on
//! SIGUSR1 ([`on_sigusr1`]).
//!
//! Unix only, like the rest of diego-rs. The handlers are registered before these functions
//! return, so a signal that arrives just after is not lost.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. Needs a tokio runtime.
pub fn on_terminate() -> CancellationToken {
    token_on(&[SignalKind::interrupt(), SignalKind::terminate()], "shutting down")
}

/// A token cancelled on the first SIGUSR1. Needs a tokio runtime.
pub fn on_sigusr1() -> CancellationToken {
    token_on(&[SignalKind::user_defined1()], "sigusr1 received")
}

/// Waits for SIGINT or SIGTERM.
pub async fn terminated() {
    on_terminate().cancelled_owned().await;
}

/// A token cancelled (and `what` logged) when any of `kinds` arrives.
fn token_on(kinds: &[SignalKind], what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let mut streams: Vec<Signal> = Vec::new();
    for kind in kinds {
        match signal(*kind) {
            Ok(stream) => streams.push(stream),
            Err(e) => tracing::warn!(signal = ?kind, error = %e, "cannot listen for a signal"),
        }
    }
    let cancel = token.clone();
    tokio::spawn(async move {
        if streams.is_empty() {
            return;
        }
        let any = futures::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv())));
        tokio::select! {
            _ = any => {
                tracing::info!("{what}");
                cancel.cancel();
            }
            () = cancel.cancelled() => {}
        }
    });
    token
}
