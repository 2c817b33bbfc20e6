//! The queue of a SQLite store's writers.
//!
//! SQLite lets one transaction write at a time. Left to SQLite, the others wait in its busy
//! handler, which sleeps and tries again (up to 100 ms between tries): a writer asleep when the
//! lock comes free loses it to whoever asks next, again and again. In the smoke benchmark one
//! `DesireLRPs` batch waited 2.6 s this way behind the cells' thousands of claims. So a SQLite
//! store queues its writers itself, first come first served, before `BEGIN IMMEDIATE`: one
//! [`WriteGate`] shared by the store, its clones and its dedicated pools (they write to the
//! same file). A writer holds its turn until its transaction ends.
//!
//! PostgreSQL and MySQL lock rows, not the database: their writers need no queue, and their
//! gate is open.
//!
//! A writer that waits longer than SQLite's own busy timeout for its turn goes ahead without
//! it and lets SQLite arbitrate, as before: a transaction that (wrongly) began another write
//! while holding its turn then fails after the busy timeout instead of hanging.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::Backend;

/// How long a writer waits for its turn: SQLite's busy timeout (`PRAGMA busy_timeout = 5000`).
const TURN_WAIT: Duration = Duration::from_secs(5);

/// The writers' queue of one database (open for server databases).
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Option<Arc<Mutex<()>>>);

/// A writer's turn: the others wait until it is dropped.
pub(crate) type Turn = Option<OwnedMutexGuard<()>>;

impl WriteGate {
    /// The gate of a store on `backend`.
    pub(crate) fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self(Some(Arc::new(Mutex::new(())))),
            Backend::Postgres | Backend::Mysql => Self(None),
        }
    }

    /// Waits for this writer's turn (at once when the gate is open).
    pub(crate) async fn turn(&self) -> Turn {
        self.turn_within(TURN_WAIT).await
    }

    /// [`WriteGate::turn`], going ahead without a turn after `wait`.
    async fn turn_within(&self, wait: Duration) -> Turn {
        let queue = self.0.as_ref()?;
        match tokio::time::timeout(wait, Arc::clone(queue).lock_owned()).await {
            Ok(turn) => Some(turn),
            Err(_) => {
                tracing::debug!("no turn to write within the busy timeout; leaving it to SQLite");
                None
            }
        }
    }
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WriteGate").field(&self.0.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_writers_take_turns_in_the_order_they_asked() {
        let gate = WriteGate::for_backend(Backend::Sqlite);
        let first = gate.turn().await;
        assert!(first.is_some());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..5 {
            let (gate, order) = (gate.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = gate.turn().await;
                order.lock().unwrap().push(i);
            }));
            // Let it queue before the next one asks.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(order.lock().unwrap().is_empty(), "nobody writes while the first holds its turn");
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn server_databases_have_an_open_gate() {
        for backend in [Backend::Postgres, Backend::Mysql] {
            let gate = WriteGate::for_backend(backend);
            let (a, b) = (gate.turn().await, gate.turn().await);
            assert!(a.is_none() && b.is_none(), "{backend:?}");
        }
    }

    #[tokio::test]
    async fn a_writer_waiting_past_the_busy_timeout_goes_ahead() {
        let gate = WriteGate::for_backend(Backend::Sqlite);
        let _held = gate.turn().await;
        assert!(gate.turn_within(Duration::from_millis(20)).await.is_none());
    }
}
