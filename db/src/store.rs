//! [`Store`]: the connection pool, migrations at start, and the one transaction helper every
//! write goes through. That helper retries deadlocks and serialization failures (bounded), and,
//! when the store is fenced, checks inside the same transaction that the lease it writes under
//! is still held, so a deposed leader can never commit.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::{Any, AnyPoolOptions};
use sqlx::{AnyPool, Transaction};

use crate::error::{SqlClass, classify};
use crate::{Backend, Error, Result, migrate};

/// How the store connects.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest number of pooled connections (SQLite file databases use this too; in-memory
    /// SQLite always uses one).
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// How many times a transaction is attempted on deadlock or serialization failure.
    pub max_attempts: u32,
    /// Pause before the first retry; doubles per attempt.
    pub retry_backoff: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
            acquire_timeout: Duration::from_secs(10),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(20),
        }
    }
}

/// The lease a fenced store writes under: every write transaction checks that `owner` still
/// holds `key` at `term` and that it has not expired (database time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease key (e.g. `bbs`).
    pub key: String,
    /// The owner that must hold it.
    pub owner: String,
    /// The term it must hold it at.
    pub term: i64,
}

/// The relational store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    fence: Option<Fence>,
    options: StoreOptions,
}

/// An open write transaction.
pub struct Tx {
    pub(crate) inner: Transaction<'static, Any>,
    pub(crate) backend: Backend,
}

impl Tx {
    /// The connection to run statements on.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }
}

impl Store {
    /// Connects to `url`, applies the migrations and returns the store. `sqlite::memory:` gives a
    /// private in-memory database on one connection.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let in_memory = backend == Backend::Sqlite && url.contains(":memory:");
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(if in_memory { 1 } else { options.max_connections.max(1) })
            .acquire_timeout(options.acquire_timeout);
        if in_memory {
            // Every pooled connection to :memory: would be its own database: keep exactly one.
            pool_options = pool_options.idle_timeout(None).max_lifetime(None).min_connections(1);
        }
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            });
        }
        let url = if backend == Backend::Sqlite && !in_memory && !url.contains("mode=") {
            // Create the file on first start.
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let pool = pool_options.connect(&url).await.map_err(|source| Error::Unavailable { op: "connect", source })?;
        migrate::migrate(&pool, backend).await?;
        Ok(Self { pool, backend, fence: None, options })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for benchmarks that compare against raw SQL on the same connections.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A copy of this store whose every write checks `fence` in the same transaction.
    pub fn fenced(&self, fence: Fence) -> Self {
        Self { fence: Some(fence), ..self.clone() }
    }

    /// The fence this store writes under, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// The database's clock, in milliseconds since the Unix epoch.
    pub async fn now_ms(&self) -> Result<i64> {
        let sql = format!("SELECT {}", self.backend.now_ms_sql());
        self.backend
            .query_scalar::<i64>(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx("read database clock", "clock", "now", e))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `body` in a write transaction: begins it, checks the fence, runs the body, commits.
    /// Deadlocks and serialization failures (anywhere, commit included) roll back and re-run
    /// the whole body, at most `max_attempts` times, so `body` must be repeatable. Errors the
    /// body returns roll the transaction back and are returned as they are.
    pub async fn write<T, F>(&self, op: &'static str, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        self.write_with(op, self.fence.as_ref(), body).await
    }

    /// Like [`Store::write`] but without the fence check: only for the lease operations
    /// themselves (a leader must be able to renew the lease that fences it, and reps and the
    /// auctioneer write their leases through a standby too).
    pub(crate) async fn write_unfenced<T, F>(&self, op: &'static str, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        self.write_with(op, None, body).await
    }

    async fn write_with<T, F>(&self, op: &'static str, fence: Option<&Fence>, mut body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.try_write(op, fence, &mut body).await {
                Err(Error::Deadlock { source, .. }) if attempt < self.options.max_attempts.max(1) => {
                    tracing::debug!(op, attempt, error = %source, "retrying transaction");
                    let pause = self.options.retry_backoff.saturating_mul(1 << (attempt - 1).min(6));
                    tokio::time::sleep(pause).await;
                }
                Err(Error::Deadlock { source, .. }) => {
                    return Err(Error::Deadlock { op, attempts: attempt, source });
                }
                other => return other,
            }
        }
    }

    async fn try_write<T, F>(&self, op: &'static str, fence: Option<&Fence>, body: &mut F) -> Result<T>
    where
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>>,
    {
        let sql_err = |e: sqlx::Error| match classify(&e) {
            SqlClass::Retryable => Error::Deadlock { op, attempts: 1, source: e },
            _ => Error::from_sqlx(op, "transaction", op, e),
        };
        let inner = self.pool.begin_with(self.backend.begin_write()).await.map_err(sql_err)?;
        let mut tx = Tx { inner, backend: self.backend };
        if let Some(fence) = fence {
            check_fence(&mut tx, fence).await.map_err(|e| match e {
                Error::Sql { source, .. } => sql_err(source),
                other => other,
            })?;
        }
        // On error the transaction is dropped, which rolls it back.
        let value = body(&mut tx).await?;
        tx.inner.commit().await.map_err(sql_err)?;
        Ok(value)
    }
}

/// Fails with [`Error::Fenced`] unless `fence` is held, unexpired, at its term. The row is
/// share-locked, so a steal of the lease waits until this transaction ends.
async fn check_fence(tx: &mut Tx, fence: &Fence) -> Result<()> {
    let sql = format!(
        "SELECT term FROM leases WHERE lease_key = ? AND owner = ? AND term = ? AND expires_at_ms > {}{}",
        tx.backend.now_ms_sql(),
        tx.backend.for_share()
    );
    let held = tx
        .backend
        .query_scalar::<i64>(&sql)
        .bind(&fence.key)
        .bind(&fence.owner)
        .bind(fence.term)
        .fetch_optional(tx.conn())
        .await
        .map_err(|source| Error::Sql { op: "check fence", source })?;
    match held {
        Some(_) => Ok(()),
        None => Err(Error::Fenced { key: fence.key.clone(), owner: fence.owner.clone(), term: fence.term }),
    }
}
