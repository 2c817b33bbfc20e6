//! Whether a lease is held, for every part of a process that must know.

use std::sync::Arc;

use tokio::sync::watch;

/// Whether a lease is held, observable by every part of a process. Cloning shares it.
#[derive(Debug, Clone)]
pub struct HeldStatus {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for HeldStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl HeldStatus {
    /// A status that says "not held".
    pub fn new() -> Self {
        Self { tx: Arc::new(watch::Sender::new(false)) }
    }

    /// True while the lease is held.
    pub fn is_held(&self) -> bool {
        *self.tx.borrow()
    }

    /// Records whether the lease is held; returns whether that changed.
    pub fn set(&self, held: bool) -> bool {
        self.tx.send_if_modified(|current| std::mem::replace(current, held) != held)
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Waits until the status is `held` (wrap it in a timeout).
    pub async fn wait_until(&self, held: bool) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|h| *h == held).await;
    }
}
