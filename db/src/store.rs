//! [`Store`]: the connection pool, migrations at start, and the one transaction helper every
//! write goes through. That helper retries deadlocks and serialization failures (bounded), and,
//! when the store is fenced, checks inside the same transaction that the lease it writes under
//! is still held, so a deposed leader can never commit.
//!
//! Every pool is gated by the database's reachability ([`crate::health`]): while the database is
//! known to be down, operations fail at once with UNAVAILABLE instead of waiting for a
//! connection. [`Store::dedicated`] opens a separate small pool on the same database, so lease
//! renewals never queue behind request work.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::{Any, AnyPoolOptions};
use sqlx::{AnyPool, Transaction};

use crate::error::{SqlClass, classify};
use crate::health::{Health, Pool, ProbeOptions};
use crate::{Backend, Error, Keyring, Result, migrate};

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
    /// While the database is unreachable, how often a probe checks whether it is back.
    pub probe_interval: Duration,
    /// How long one reachability probe (connect and `SELECT 1`) may take.
    pub probe_timeout: Duration,
    /// The keys run info and task definitions are encrypted with (`crate::crypto`). The
    /// default, empty keyring writes them unencrypted; the BBS always configures one.
    pub keys: Keyring,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
            acquire_timeout: Duration::from_secs(10),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(20),
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(3),
            keys: Keyring::default(),
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
    pub(crate) pool: Pool,
    pub(crate) backend: Backend,
    fence: Option<Fence>,
    options: StoreOptions,
    /// The URL the pool connects with (for dedicated pools).
    url: Arc<str>,
}

/// An open write transaction.
pub struct Tx {
    pub(crate) inner: Transaction<'static, Any>,
    pub(crate) backend: Backend,
    /// The store's keys, for the blobs the transaction reads and writes.
    pub(crate) keys: Keyring,
}

impl Tx {
    /// The connection to run statements on.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }

    /// Locks the one row of `what` keyed `key` and decodes it: `SELECT {columns} FROM {table}
    /// WHERE {key_column} = ?`, `FOR UPDATE` where the backend has it. No row: `NotFound`; a row
    /// that does not decode: `Corrupt`.
    pub(crate) async fn lock_row<T>(
        &mut self,
        op: &'static str,
        what: &'static str,
        select: &str,
        key: &str,
        decode: impl FnOnce(&sqlx::any::AnyRow) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let sql = format!("{select} = ?{}", self.backend.for_update());
        let row = self
            .backend
            .query(&sql)
            .bind(key)
            .fetch_optional(self.conn())
            .await
            .map_err(|e| Error::from_sqlx(op, what, key, e))?
            .ok_or_else(|| Error::NotFound { what, key: key.to_owned() })?;
        decode(&row).map_err(|reason| Error::Corrupt { what, key: key.to_owned(), reason })
    }
}

impl Store {
    /// Connects to `url`, applies the migrations and returns the store. `sqlite::memory:` gives a
    /// private in-memory database on one connection. A SQLite file is created (and an existing
    /// one restricted) readable and writable by its owner only; its WAL and shared-memory files
    /// get the same mode from SQLite.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let in_memory = is_in_memory(backend, url);
        if backend == Backend::Sqlite
            && !in_memory
            && let Some(path) = crate::backend::sqlite_path(url)
        {
            secure_sqlite_file(&path)?;
        }
        let url = if backend == Backend::Sqlite && !in_memory && !url.contains("mode=") {
            // Create the file on first start.
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let pool = pool_options(backend, in_memory, options.max_connections, options.acquire_timeout)
            .connect(&url)
            .await
            .map_err(|source| Error::Unavailable { op: "connect", source })?;
        migrate::migrate(&pool, backend).await?;
        // An in-memory database cannot become unreachable (and a probe would open another one).
        let health = (!in_memory).then(|| {
            Health::spawn(&url, ProbeOptions { interval: options.probe_interval, timeout: options.probe_timeout })
        });
        Ok(Self { pool: Pool::new(pool, health), backend, fence: None, options, url: url.into() })
    }

    /// A store on the same database with its own pool of at most `max_connections`, waiting at
    /// most `acquire_timeout` for one of them: lease renewals use one so that they never queue
    /// behind request work. It shares this store's reachability state (fails fast while the
    /// database is down) unless made [`Store::ungated`]. In-memory SQLite has one connection
    /// only, so there the pool is shared. Close it with [`Store::close`] when done.
    pub async fn dedicated(&self, max_connections: u32, acquire_timeout: Duration) -> Result<Self> {
        if is_in_memory(self.backend, &self.url) {
            return Ok(self.clone());
        }
        let pool = pool_options(self.backend, false, max_connections, acquire_timeout)
            .min_connections(1)
            .connect(&self.url)
            .await
            .map_err(|source| Error::Unavailable { op: "connect", source })?;
        let options = StoreOptions { max_connections, acquire_timeout, ..self.options.clone() };
        Ok(Self { pool: Pool::new(pool, self.pool.health().cloned()), options, ..self.clone() })
    }

    /// A copy of this store that never fails fast: it always tries the database, and its
    /// failures do not mark the database unreachable. For the leader's own lease renewal, which
    /// must keep trying on its own connection whatever the request pools see.
    pub fn ungated(&self) -> Self {
        Self { pool: self.pool.ungated(), ..self.clone() }
    }

    /// `Some(since)` while this store knows its database is unreachable (and fails every
    /// operation at once with UNAVAILABLE "database unreachable since ...").
    pub fn unreachable_since(&self) -> Option<std::time::SystemTime> {
        self.pool.health().and_then(|h| h.down_since())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The keys this store encrypts and decrypts run info and task definitions with.
    pub fn keys(&self) -> &Keyring {
        &self.options.keys
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
            let outcome = self.try_write(op, fence, &mut body).await;
            if let (Err(Error::Unavailable { source, .. }), Some(health)) = (&outcome, self.pool.health()) {
                // A statement inside the transaction lost its connection: let the probe look.
                health.observe(source);
            }
            match outcome {
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
        let mut tx = Tx { inner, backend: self.backend, keys: self.options.keys.clone() };
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

/// Creates the SQLite file `path` with mode 0600 if it does not exist, and restricts it and its
/// `-wal` / `-shm` files to their owner if they do. SQLite creates the WAL and shared-memory
/// files with the database file's mode.
fn secure_sqlite_file(path: &std::path::Path) -> Result<()> {
    let invalid = |e: std::io::Error| Error::InvalidUrl { reason: format!("sqlite file {}: {e}", path.display()) };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // A missing directory: let SQLite report it as it always has.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(invalid(e)),
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::metadata(&file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(invalid)?;
                }
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, invalid);
    Ok(())
}

/// Whether `url` names a private in-memory SQLite database.
fn is_in_memory(backend: Backend, url: &str) -> bool {
    backend == Backend::Sqlite && url.contains(":memory:")
}

/// The pool options every pool of a store uses.
fn pool_options(backend: Backend, in_memory: bool, max_connections: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    let mut pool_options = AnyPoolOptions::new()
        .max_connections(if in_memory { 1 } else { max_connections.max(1) })
        .acquire_timeout(acquire_timeout);
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
    pool_options
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
