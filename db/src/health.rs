//! Database reachability, and the gated pool every store operation goes through.
//!
//! Without this, a request made while the database is down waits for the pool's whole acquire
//! timeout (sqlx keeps retrying a refused connect until then), so clients pile up. Instead:
//!
//! - every [`Pool`] of one database shares a [`Health`]: up, or down since some instant;
//! - while it is down, every operation fails at once, before acquiring a connection, with an
//!   UNAVAILABLE error saying `database unreachable since <T>` (RFC 3339, UTC);
//! - an operation that fails the way an unreachable database fails (I/O, TLS, pool timeout,
//!   connection-class SQLSTATE), or that is still waiting for its first result after
//!   [`SUSPECT_AFTER`] (sqlx retries a refused connect silently inside `acquire`), wakes the
//!   background probe, which opens a fresh connection outside the pool and runs `SELECT 1`.
//!   Only probes that cannot reach the server, twice in a row, flip the state to down (a busy
//!   pool alone never does), and a failed probe during which any operation got its answer from
//!   the database does not count (on a slow, lossy link a fresh connection can take longer than
//!   the probe may, while the pooled ones keep working); requests still waiting for a pooled
//!   connection then fail at once;
//! - while down, the probe retries every `probe_interval`; the first success flips the state
//!   back to up, so recovery needs no restart.

use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream};
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{AnyPool, Either, Execute, Executor, SqlSafeStr, SqlStr, Transaction};
use tokio::sync::{Notify, watch};

use crate::error::{SqlClass, classify};
use crate::store::reads::{Native, Reach};
use crate::targets::Targets;

/// Gauge: 1 while the store can reach its database, 0 while it is known to be unreachable.
pub const DATABASE_REACHABLE: &str = "db_database_reachable";

/// How long an operation may wait for its first result before the probe is woken to check that
/// the database is still there (the operation itself goes on waiting unless the probe fails).
pub const SUSPECT_AFTER: Duration = Duration::from_secs(1);

/// How often the probe runs while the database is down, and how long one probe may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeOptions {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Whether the database is reachable, shared by every pool of one store.
#[derive(Debug)]
pub(crate) struct Health {
    /// `Some(since)` while the database is known to be unreachable.
    down: watch::Sender<Option<SystemTime>>,
    /// When the first suspicious failure since the last good probe happened.
    suspect_since: Mutex<Option<SystemTime>>,
    /// Wakes the probe.
    wake: Notify,
    /// How many gated operations have had an answer from the database: proof of life that a
    /// failed probe is weighed against.
    answers: AtomicU64,
}

impl Health {
    /// A reachable database, and its probe task (on the current runtime) trying the servers of
    /// `targets`. The task ends a few seconds after the last handle to the returned health is
    /// dropped.
    pub(crate) fn spawn(targets: Arc<Targets>, options: ProbeOptions) -> Arc<Health> {
        let health = Arc::new(Health {
            down: watch::Sender::new(None),
            suspect_since: Mutex::new(None),
            wake: Notify::new(),
            answers: AtomicU64::new(0),
        });
        tokio::spawn(probe_loop(Arc::downgrade(&health), targets, options));
        health
    }

    /// When the database became unreachable, while it is.
    pub(crate) fn down_since(&self) -> Option<SystemTime> {
        *self.down.borrow()
    }

    /// Fails at once while the database is down.
    fn check(&self) -> Result<(), sqlx::Error> {
        match self.down_since() {
            Some(since) => Err(unreachable(since)),
            None => Ok(()),
        }
    }

    /// Records that an operation got its answer from the database.
    fn answered(&self) {
        self.answers.fetch_add(1, Ordering::Relaxed);
    }

    /// How many operations have had an answer so far.
    fn answers(&self) -> u64 {
        self.answers.load(Ordering::Relaxed)
    }

    /// Wakes the probe after a failure that an unreachable database would cause.
    pub(crate) fn observe(&self, err: &sqlx::Error) {
        if is_suspicious(err) {
            self.suspect();
        }
    }

    /// Wakes the probe: something looks like the database may be gone.
    fn suspect(&self) {
        if self.down_since().is_some() {
            return;
        }
        if let Ok(mut since) = self.suspect_since.lock() {
            since.get_or_insert_with(wall_clock_now);
        }
        self.wake.notify_one();
    }

    /// Resolves when the database is (or becomes) down, with the instant it went down.
    fn went_down(self: &Arc<Self>) -> BoxFuture<'static, SystemTime> {
        let mut rx = self.down.subscribe();
        Box::pin(async move {
            let since = rx.wait_for(Option::is_some).await.map(|since| *since);
            match since {
                Ok(since) => since.unwrap_or_else(wall_clock_now),
                Err(_) => std::future::pending().await,
            }
        })
    }

    pub(crate) fn set_down(&self, reason: &str) {
        let since = self.suspect_since.lock().ok().and_then(|s| *s).unwrap_or_else(wall_clock_now);
        let changed = self.down.send_if_modified(|down| {
            if down.is_some() {
                return false;
            }
            *down = Some(since);
            true
        });
        if changed {
            tracing::warn!(since = %rfc3339(since), error = reason, "database unreachable; failing requests at once until a probe succeeds");
            metrics::gauge!(DATABASE_REACHABLE).set(0.0);
        }
    }

    fn set_up(&self) {
        if let Ok(mut since) = self.suspect_since.lock() {
            *since = None;
        }
        let was = self.down.send_replace(None);
        if let Some(since) = was {
            tracing::info!(since = %rfc3339(since), "database reachable again");
            metrics::gauge!(DATABASE_REACHABLE).set(1.0);
        }
    }
}

/// The error every operation fails with while the database is down. It is an I/O error, so the
/// store classifies it as [`crate::Error::Unavailable`] (gRPC UNAVAILABLE).
fn unreachable(since: SystemTime) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("database unreachable since {}", rfc3339(since)),
    ))
}

/// Whether `err` is what an unreachable (or, with read-write targeting, read-only) database
/// would cause: the probe then decides.
fn is_suspicious(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Protocol(_)) || classify(err) == SqlClass::Connection
}

/// Probes when woken by a suspicious failure, and every `interval` while the database is down.
/// A probe tries the current server of the URL first, then the others ([`Targets::probe`]).
/// While up, one failed probe could be a busy host rather than a lost database: only a second
/// failure in a row, an interval later, marks the database unreachable. A failed probe during
/// which some operation got its answer from the database is not a failure: the database was
/// reachable, only a fresh connection to it was slow (a lossy link's retransmissions).
async fn probe_loop(health: Weak<Health>, targets: Arc<Targets>, options: ProbeOptions) {
    /// How often an idle probe task checks that its store still exists.
    const IDLE: Duration = Duration::from_secs(5);
    /// Failed probes in a row that mark a reachable database unreachable.
    const CONFIRMATIONS: u32 = 2;
    let mut failures = 0u32;
    loop {
        let Some(h) = health.upgrade() else { return };
        let down = h.down_since().is_some();
        if !down && failures == 0 {
            // Up: wait for a suspicious failure (checking now and then that the store exists).
            let woken = tokio::select! {
                _ = h.wake.notified() => true,
                _ = tokio::time::sleep(IDLE) => false,
            };
            if !woken {
                continue;
            }
        }
        let started = tokio::time::Instant::now();
        let answers_before = h.answers();
        match targets.probe(options.timeout).await {
            Ok(()) => {
                failures = 0;
                h.set_up();
            }
            Err(reason) if !down && h.answers() != answers_before => {
                failures = 0;
                tracing::debug!(
                    error = reason,
                    "database probe failed while operations were answered; still reachable"
                );
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                if down || failures >= CONFIRMATIONS {
                    h.set_down(&reason);
                } else {
                    tracing::debug!(error = reason, "database probe failed; probing again to confirm");
                }
            }
        }
        drop(h);
        // At most one probe per interval (per second while up), however many requests fail or
        // wait meanwhile.
        let gap = if down || failures > 0 { options.interval } else { options.interval.max(SUSPECT_AFTER) };
        tokio::time::sleep_until(started + gap).await;
    }
}

/// A connection pool whose every use first checks [`Health`]. It dereferences to the sqlx pool
/// and is an [`Executor`] like it, so `query.fetch_all(&self.pool)` is gated without change.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    inner: AnyPool,
    /// The native pool the hot listings' keyed reads use ([`crate::store::reads`]), gated the
    /// same way.
    native: Native,
    /// The native pool of the whole-table reads ([`Reach::Whole`]), gated the same way.
    bulk: Native,
    /// `None`: in-memory SQLite, which cannot become unreachable.
    health: Option<Arc<Health>>,
    /// Whether operations fail at once while the database is down. The leader's own lease
    /// connection is not gated: it keeps trying whatever the request pools see (its failures
    /// still wake the probe).
    gate: bool,
}

impl Deref for Pool {
    type Target = AnyPool;

    fn deref(&self) -> &AnyPool {
        &self.inner
    }
}

impl Pool {
    /// `inner`, gated by `health`.
    pub(crate) fn new(inner: AnyPool, health: Option<Arc<Health>>) -> Self {
        Self { inner, native: Native::None, bulk: Native::None, health, gate: true }
    }

    /// This pool with `native` for the hot listings' keyed reads and `bulk` for their
    /// whole-table reads.
    pub(crate) fn with_native(self, native: Native, bulk: Native) -> Self {
        Self { native, bulk, ..self }
    }

    /// The native read pool of reads of `reach`.
    pub(crate) fn native(&self, reach: Reach) -> &Native {
        match reach {
            Reach::Keyed => &self.native,
            Reach::Whole => &self.bulk,
        }
    }

    /// Closes the `Any` pool and the native ones.
    pub(crate) async fn close(&self) {
        self.native.close().await;
        self.bulk.close().await;
        self.inner.close().await;
    }

    /// The shared health, if gated.
    pub(crate) fn health(&self) -> Option<&Arc<Health>> {
        self.health.as_ref()
    }

    /// The same pool, never gated: its operations always try the database.
    pub(crate) fn ungated(&self) -> Self {
        Self { gate: false, ..self.clone() }
    }

    /// The health that gates this pool, if it is gated.
    fn gate(&self) -> Option<Arc<Health>> {
        if self.gate { self.health.clone() } else { None }
    }

    /// Begins a transaction with `statement`, failing at once while the database is down.
    pub(crate) async fn begin_with(
        &self,
        statement: impl SqlSafeStr,
    ) -> Result<Transaction<'static, Any>, sqlx::Error> {
        gated(self.gate(), self.inner.begin_with(statement)).await
    }

    /// `inner`, a result stream of this database, gated like this pool's own statements: it
    /// fails at once while the database is down and ends with the unreachable error as soon as
    /// it goes down; failures, or no first result within [`SUSPECT_AFTER`], wake the probe.
    pub(crate) fn gate_stream<'e, T: 'e>(
        &self,
        inner: BoxStream<'e, Result<T, sqlx::Error>>,
    ) -> BoxStream<'e, Result<T, sqlx::Error>> {
        let Some(health) = self.gate() else { return inner };
        if let Err(e) = health.check() {
            return Box::pin(futures::stream::once(async move { Err(e) }));
        }
        Box::pin(GatedStream {
            down: health.went_down(),
            slow: Some(Box::pin(tokio::time::sleep(SUSPECT_AFTER))),
            health,
            inner,
            done: false,
            settled: false,
        })
    }
}

/// Runs `work` unless the database is down, and fails it as soon as the database goes down.
async fn gated<T>(
    health: Option<Arc<Health>>,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let Some(health) = health else { return work.await };
    health.check()?;
    tokio::pin!(work);
    let went_down = health.went_down();
    tokio::pin!(went_down);
    let mut slow = true;
    let result = loop {
        tokio::select! {
            biased;
            result = &mut work => break result,
            since = &mut went_down => break Err(unreachable(since)),
            _ = tokio::time::sleep(SUSPECT_AFTER), if slow => {
                slow = false;
                health.suspect();
            }
        }
    };
    match &result {
        Ok(_) => health.answered(),
        Err(e) => health.observe(e),
    }
    result
}

impl<'p> Executor<'p> for &'_ Pool {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.gate_stream((&self.inner).fetch_many(query))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        gated(self.gate(), (&self.inner).fetch_optional(query)).boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        gated(self.gate(), (&self.inner).prepare_with(sql, parameters)).boxed()
    }
}

/// A result stream that ends with the unreachable error as soon as the database goes down.
struct GatedStream<'e, T> {
    inner: BoxStream<'e, Result<T, sqlx::Error>>,
    down: BoxFuture<'static, SystemTime>,
    /// Until the first item: fires after [`SUSPECT_AFTER`].
    slow: Option<Pin<Box<tokio::time::Sleep>>>,
    health: Arc<Health>,
    done: bool,
    /// Whether the stream's first result (a row, an error or its end) has been seen: only a
    /// first row, or an end with nothing before it, counts as an answer.
    settled: bool,
}

impl<T> Stream for GatedStream<'_, T> {
    type Item = Result<T, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(since) = self.down.poll_unpin(cx) {
            self.done = true;
            return Poll::Ready(Some(Err(unreachable(since))));
        }
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Err(e))) => {
                self.settled = true;
                self.health.observe(e);
            }
            // The first row, or the end of a result without rows or errors, is an answer.
            Poll::Ready(Some(Ok(_))) | Poll::Ready(None) => {
                if matches!(next, Poll::Ready(None)) {
                    self.done = true;
                }
                if !self.settled {
                    self.settled = true;
                    self.health.answered();
                }
            }
            Poll::Pending => {
                if self.slow.as_mut().is_some_and(|slow| slow.as_mut().poll(cx).is_ready()) {
                    self.slow = None;
                    self.health.suspect();
                }
                return Poll::Pending;
            }
        }
        self.slow = None;
        next
    }
}

/// The host's wall clock: only for naming, in errors and logs, when the database became
/// unreachable; nothing is decided on it.
#[allow(clippy::disallowed_methods)] // an operator-facing timestamp, not a decision
fn wall_clock_now() -> SystemTime {
    SystemTime::now()
}

/// `at` as RFC 3339 in UTC with milliseconds, e.g. `2026-12-03T08:21:30.123Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    proto::time::rfc3339_millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);
        assert_eq!(rfc3339(at), "2026-01-01T00:00:00.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(rfc3339(leap), "2000-02-29T23:59:59.000Z");
    }

    #[test]
    fn only_connection_failures_are_suspicious() {
        assert!(is_suspicious(&sqlx::Error::PoolTimedOut));
        assert!(is_suspicious(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(!is_suspicious(&sqlx::Error::RowNotFound));
    }

    /// A URL whose server refuses every connection at once: a port nothing listens on.
    fn refusing_targets() -> Arc<Targets> {
        sqlx::any::install_default_drivers();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.expect("a free port");
        Arc::new(Targets::parse(&format!("postgres://postgres@127.0.0.1:{port}/none")).expect("url"))
    }

    const FAST: ProbeOptions =
        ProbeOptions { interval: Duration::from_millis(50), timeout: Duration::from_millis(500) };

    #[tokio::test]
    async fn failed_probes_mark_the_database_down() {
        let health = Health::spawn(refusing_targets(), FAST);
        health.suspect();
        let down = tokio::time::timeout(Duration::from_secs(10), health.went_down()).await;
        assert!(down.is_ok(), "two failed probes mark it down");
        assert!(health.check().is_err());
    }

    #[tokio::test]
    async fn failed_probes_while_operations_are_answered_leave_it_up() {
        let health = Health::spawn(refusing_targets(), FAST);
        // Operations keep getting answers (as pooled connections do on a slow link on which a
        // fresh connection takes longer than a probe may) while every probe fails.
        let answering = {
            let health = health.clone();
            tokio::spawn(async move {
                loop {
                    health.answered();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        for _ in 0..20 {
            health.suspect();
            tokio::time::sleep(FAST.interval).await;
        }
        assert_eq!(health.down_since(), None, "answered operations outweigh failed probes");
        answering.abort();
        // Once nothing answers any more, the failed probes count again.
        health.suspect();
        let down = tokio::time::timeout(Duration::from_secs(10), health.went_down()).await;
        assert!(down.is_ok(), "without answers, failed probes mark it down");
    }

    #[tokio::test]
    async fn only_results_from_the_database_count_as_answers() {
        use futures::StreamExt;
        let health = Health::spawn(refusing_targets(), FAST);
        let drain = |items: Vec<Result<u32, sqlx::Error>>| {
            let health = health.clone();
            async move {
                let stream = GatedStream {
                    inner: Box::pin(futures::stream::iter(items)),
                    down: health.went_down(),
                    slow: None,
                    health,
                    done: false,
                    settled: false,
                };
                stream.collect::<Vec<_>>().await
            }
        };
        drain(vec![Err(sqlx::Error::Io(std::io::Error::other("reset")))]).await;
        assert_eq!(health.answers(), 0, "a failed stream, polled to its end, is no answer");
        drain(vec![Ok(1), Ok(2), Ok(3)]).await;
        assert_eq!(health.answers(), 1, "a stream of rows is one answer");
        drain(vec![]).await;
        assert_eq!(health.answers(), 2, "an empty result is an answer");
    }

    #[tokio::test]
    async fn the_unreachable_error_names_the_instant() {
        let err = unreachable(SystemTime::UNIX_EPOCH);
        assert!(err.to_string().contains("database unreachable since 1970-01-01T00:00:00.000Z"), "{err}");
        assert!(matches!(crate::Error::from_sqlx("op", "x", "k", err), crate::Error::Unavailable { .. }));
    }
}
