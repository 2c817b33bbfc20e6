//! [`Store`]: the connection pool, migrations at start, and the one transaction helper every
//! write goes through. That helper retries deadlocks and serialization failures (bounded), and,
//! when the store is fenced, checks inside the same transaction that the lease it writes under
//! is still held, so a deposed leader can never commit.
//!
//! Every pool is gated by the database's reachability ([`crate::health`]): while the database is
//! known to be down, operations fail at once with UNAVAILABLE instead of waiting for a
//! connection. [`Store::dedicated`] opens a separate small pool on the same database, so lease
//! renewals never queue behind request work.
//!
//! Every connection of a PostgreSQL or MySQL store asks the server to end a transaction left
//! idle for [`StoreOptions::idle_transaction_timeout`]: a process cut off from the database in
//! the middle of a transaction must not keep its row locks (the fence's share lock on a lease row
//! among them) until TCP gives up on it, hours later.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::Any;
use sqlx::{AnyPool, Transaction};

use crate::error::{SqlClass, classify};
use crate::health::{Health, Pool, ProbeOptions};
use crate::targets::Targets;
use crate::{Backend, Error, Keyring, Result, migrate};
use pool::{is_in_memory, pool_options};
use reads::Native;

pub use statement_limit::STATEMENT_HEADROOM;

/// How the store connects.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest number of pooled connections (SQLite file databases use this too; in-memory
    /// SQLite always uses one). A PostgreSQL or MySQL store on a single-server URL keeps a
    /// second pool of at most this many for the hot listings' keyed reads ([`reads`]) and a
    /// third pool of at most [`StoreOptions::bulk_read_connections`] for their whole-table
    /// reads, both opened as they are needed: it may hold twice this many connections to the
    /// server, plus those.
    pub max_connections: u32,
    /// The connections of a PostgreSQL or MySQL store's pool for whole-table reads (the bulk
    /// listings: every scheduling info, every actual LRP), apart from the keyed reads' pool so
    /// that each of their many batches does not queue behind every cell's fetch. Single-server
    /// URLs only, like the keyed reads' pool; elsewhere they share the store's pool. Default
    /// [`DEFAULT_BULK_READ_CONNECTIONS`].
    pub bulk_read_connections: u32,
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
    /// How long the database server lets a transaction of this store's connections wait idle
    /// for the next statement before it ends the transaction, and the connection with it.
    ///
    /// A process cut off from the database in the middle of a transaction never sends the rest,
    /// and the server otherwise keeps the transaction and its row locks until TCP gives up on
    /// the connection, hours later: a fence check's share lock on the leader's lease row (a
    /// group-commit batch takes it when it opens) then keeps every standby from taking the lease over. The store's transactions send their
    /// statements back to back (no client-side waits inside a transaction), so only a process
    /// cut off or stalled that long reaches it; its transaction is rolled back and the caller
    /// gets UNAVAILABLE.
    ///
    /// PostgreSQL: the session's `idle_in_transaction_session_timeout`. MariaDB: the session's
    /// `idle_transaction_timeout`. MySQL has no such setting: the session's `wait_timeout`,
    /// which also makes the server close pooled connections idle that long (the pool pings a
    /// connection before handing it out and replaces one the server closed). MySQL and MariaDB
    /// count whole seconds (rounded up, at least 1). Zero leaves the server's settings alone;
    /// SQLite has no server and ignores it. Default [`DEFAULT_IDLE_TRANSACTION_TIMEOUT`];
    /// [`StoreOptions::for_lease_ttl`] fits it to the lease a store's writes are fenced by.
    pub idle_transaction_timeout: Duration,
    /// How many batches [`Store::write_grouped`] keeps open at once ([`crate::group_commit`]):
    /// concurrent writes are spread over these lanes and each lane commits its writes together.
    /// Zero: no group commit, each write runs in a transaction of its own. Above zero, the
    /// actual LRP index writes and the task writes are also coalesced, one lane of each
    /// ([`crate::coalesce`]; not on MySQL). Default [`DEFAULT_GROUP_COMMIT_LANES`]. SQLite takes
    /// one writer at a time, so a SQLite store uses at most one lane.
    pub group_commit_lanes: usize,
}

/// The default [`StoreOptions::group_commit_lanes`]: two, so that a server database works on
/// two batches at once while each still shares its commit among several writes. On the shared
/// 2-core machine of docs/performance.md (`cargo bench -p db --bench writes`) one lane did the
/// fewest round trips per write and more lanes shared each commit among fewer writes (four
/// lanes: 3.5 writes per commit, sixteen: 1); the run-to-run noise there was larger than the
/// difference between one and two.
pub const DEFAULT_GROUP_COMMIT_LANES: usize = 2;

/// The default [`StoreOptions::bulk_read_connections`]: the nsync bulker's listing and a global
/// route emitter's two reading at the same time, with one to spare.
pub const DEFAULT_BULK_READ_CONNECTIONS: u32 = 4;

/// The default [`StoreOptions::idle_transaction_timeout`]: a third of Diego's 15 s lock TTL.
pub const DEFAULT_IDLE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest idle-transaction timeout [`StoreOptions::for_lease_ttl`] chooses. A process
/// starved of CPU can stall between two statements of a transaction: in a multi-host test on a
/// 2-core machine at a load average of 20, 1 s ended transactions of the healthy BBS.
const MIN_FITTED_IDLE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(2);

impl StoreOptions {
    /// These options with [`StoreOptions::idle_transaction_timeout`] fitted to a fencing lease
    /// of `ttl`: a third of it, at least 2 s and at most [`DEFAULT_IDLE_TRANSACTION_TIMEOUT`].
    /// For a ttl of 3 s or more, a transaction of a leader cut off from the database then ends,
    /// and its share lock on the lease row goes, before the lease it holds can expire (no
    /// earlier than two thirds of the ttl after the cut, for a holder that renews at least every
    /// third of it), so the standby takes over as soon as it may.
    pub fn for_lease_ttl(self, ttl: Duration) -> Self {
        let timeout = (ttl / 3).clamp(MIN_FITTED_IDLE_TRANSACTION_TIMEOUT, DEFAULT_IDLE_TRANSACTION_TIMEOUT);
        Self { idle_transaction_timeout: timeout, ..self }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 32,
            bulk_read_connections: DEFAULT_BULK_READ_CONNECTIONS,
            acquire_timeout: Duration::from_secs(10),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(20),
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(3),
            keys: Keyring::default(),
            idle_transaction_timeout: DEFAULT_IDLE_TRANSACTION_TIMEOUT,
            group_commit_lanes: DEFAULT_GROUP_COMMIT_LANES,
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
    pub(crate) fence: Option<Fence>,
    pub(crate) options: StoreOptions,
    /// The batches of [`Store::write_grouped`], shared by this store's clones.
    pub(crate) group: Arc<crate::group_commit::GroupCommit>,
    /// The URL the pool connects with (for dedicated pools).
    url: Arc<str>,
    /// The servers of the URL and the one the pools use (`None` for in-memory SQLite).
    targets: Option<Arc<Targets>>,
    /// SQLite's writers, first come first served ([`gate`]); shared by clones and dedicated pools.
    pub(crate) writers: gate::WriteGate,
    /// The most bytes one statement may carry ([`Store::statement_limit`]).
    statement_limit: Option<u64>,
}

/// An open write transaction.
pub struct Tx {
    pub(crate) inner: Transaction<'static, Any>,
    pub(crate) backend: Backend,
    /// The store's keys, for the blobs the transaction reads and writes.
    pub(crate) keys: Keyring,
    /// This writer's turn on SQLite, held until the transaction ends (after `inner`).
    _turn: gate::Turn,
}

impl Tx {
    /// Runs `sql` (no parameters) in this transaction: for tests of the transaction helpers.
    #[cfg(feature = "testing")]
    pub async fn execute_for_test(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(self.conn())
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sqlx("test statement", "test", "test", e))
    }

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
    /// get the same mode from SQLite. A PostgreSQL or MySQL URL may name several servers
    /// (`postgres://u@primary:5432,standby:5432/db`): the store connects to one that takes
    /// writes and moves to another when it goes away ([`crate::targets`]).
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
        if in_memory {
            let pool = pool_options(backend, true, &options, None)
                .connect(&url)
                .await
                .map_err(|source| Error::Unavailable { op: "connect", source })?;
            migrate::migrate(&pool, backend).await?;
            let pool = Pool::new(pool, None);
            return Ok(Self {
                pool,
                backend,
                fence: None,
                group: Arc::new(crate::group_commit::GroupCommit::new(backend, lanes(backend, &options))),
                options,
                url: url.into(),
                targets: None,
                writers: gate::WriteGate::for_backend(backend),
                statement_limit: None,
            });
        }
        let targets = Arc::new(Targets::parse(&url)?);
        if targets.len() > 1 {
            // Start on a usable server of the list.
            targets.probe(options.probe_timeout).await.map_err(|reason| Error::Unavailable {
                op: "connect",
                source: sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, reason)),
            })?;
            tracing::info!(host = targets.current_host(), "connected to a host of the multi-host database URL");
        }
        let pool = pool_options(backend, false, &options, Some(targets.clone()))
            .connect_with(targets.current()?)
            .await
            .map_err(|source| Error::Unavailable { op: "connect", source })?;
        targets.register(&pool);
        migrate::migrate(&pool, backend).await?;
        let statement_limit = statement_limit::read(&pool, backend).await?;
        let health = Health::spawn(
            targets.clone(),
            ProbeOptions { interval: options.probe_interval, timeout: options.probe_timeout },
        );
        // The hot listings' native read pools: single-server URLs only (see `reads`).
        let (native, bulk) = match targets.len() == 1 && targets.attrs() == crate::targets::SessionAttrs::Any {
            true => {
                let lazy = |max| {
                    Native::lazy(backend, &targets.current()?, &options, max)
                        .map_err(|source| Error::Unavailable { op: "connect", source })
                };
                (lazy(options.max_connections)?, lazy(options.bulk_read_connections)?)
            }
            false => (Native::None, Native::None),
        };
        Ok(Self {
            pool: Pool::new(pool, Some(health)).with_native(native, bulk),
            backend,
            fence: None,
            group: Arc::new(crate::group_commit::GroupCommit::new(backend, lanes(backend, &options))),
            options,
            url: url.into(),
            targets: Some(targets),
            writers: gate::WriteGate::for_backend(backend),
            statement_limit,
        })
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
        let options = StoreOptions { max_connections, acquire_timeout, ..self.options.clone() };
        let pool_options = pool_options(self.backend, false, &options, self.targets.clone()).min_connections(1);
        let connected = match &self.targets {
            Some(targets) => pool_options.connect_with(targets.current()?).await,
            None => pool_options.connect(&self.url).await,
        };
        let pool = connected.map_err(|source| Error::Unavailable { op: "connect", source })?;
        if let Some(targets) = &self.targets {
            targets.register(&pool);
        }
        // Its own batches: a dedicated pool keeps its writers apart from the others'.
        Ok(Self {
            pool: Pool::new(pool, self.pool.health().cloned()),
            group: Arc::new(crate::group_commit::GroupCommit::new(self.backend, lanes(self.backend, &options))),
            options,
            ..self.clone()
        })
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

    /// Closes the pools (the native read pool too).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `body` in a write transaction: begins it, checks the fence, runs the body, commits.
    /// Deadlocks and serialization failures (anywhere, commit included) roll back and re-run
    /// the whole body, at most `max_attempts` times, so `body` must be repeatable. Errors the
    /// body returns roll the transaction back and are returned as they are. Between its
    /// statements `body` must not wait for anything else: the server ends a transaction left
    /// idle for [`StoreOptions::idle_transaction_timeout`].
    pub async fn write<T, F>(&self, op: &'static str, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        self.write_retrying(op, self.fence.as_ref(), false, body).await
    }

    /// Like [`Store::write`] but without the fence check: only for the lease operations
    /// themselves (a leader must be able to renew the lease that fences it, and reps and the
    /// auctioneer write their leases through a standby too).
    pub(crate) async fn write_unfenced<T, F>(&self, op: &'static str, body: F) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        self.write_retrying(op, None, false, body).await
    }

    /// The retry loop of [`Store::write`] and [`Store::write_grouped`] (`grouped`).
    pub(crate) async fn write_retrying<T, F>(
        &self,
        op: &'static str,
        fence: Option<&Fence>,
        grouped: bool,
        mut body: F,
    ) -> Result<T>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = if grouped {
                self.try_grouped(op, &mut body).await
            } else {
                self.try_write(op, fence, &mut body).await
            };
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
        // On a server database the fence is checked last, just before the commit: its shared
        // lock on the lease row is then held for the commit only, not for the whole body. A long
        // body (a batch of a thousand desires) holding it for seconds kept the leader's renewal,
        // which must lock the row for update, waiting past its timeout, and the leader stepped
        // down. Checked last or first, nothing this transaction wrote commits unless the lease
        // was ours at the commit. SQLite's write transaction excludes every other writer from
        // its `BEGIN IMMEDIATE` on, so nobody can take the lease meanwhile: there it is checked
        // first, and a long body does not fail on a lease whose renewal only waited for it.
        let (first, last) = match self.backend {
            Backend::Sqlite => (fence, None),
            Backend::Postgres | Backend::Mysql => (None, fence),
        };
        let mut tx = self.begin(op, first).await?;
        // On error the transaction is dropped, which rolls it back.
        let value = body(&mut tx).await?;
        if let Some(fence) = last {
            check_fence(&mut tx, fence).await.map_err(|e| match e {
                Error::Sql { source, .. } => transaction_error(op, source),
                other => other,
            })?;
        }
        tx.inner.commit().await.map_err(|e| transaction_error(op, e))?;
        Ok(value)
    }

    /// Opens a write transaction of this (fenced) store and checks its fence in it, as a fenced
    /// write does just before it commits, and leaves it open: for tests of what a fence's lock
    /// blocks. The transaction rolls back when dropped.
    #[cfg(feature = "testing")]
    pub async fn begin_fenced_for_test(&self) -> Result<Tx> {
        let fence = self
            .fence
            .as_ref()
            .ok_or_else(|| Error::Invalid(proto::models::ValidationError::new("fence", "this store is not fenced")))?;
        self.begin("fenced test transaction", Some(fence)).await
    }

    /// Begins a write transaction and checks `fence` in it.
    pub(crate) async fn begin(&self, op: &'static str, fence: Option<&Fence>) -> Result<Tx> {
        let sql_err = |e: sqlx::Error| transaction_error(op, e);
        let turn = self.writers.turn().await;
        let inner = self.pool.begin_with(self.backend.begin_write()).await.map_err(sql_err)?;
        let mut tx = Tx { inner, backend: self.backend, keys: self.options.keys.clone(), _turn: turn };
        if let Some(fence) = fence {
            check_fence(&mut tx, fence).await.map_err(|e| match e {
                Error::Sql { source, .. } => sql_err(source),
                other => other,
            })?;
        }
        Ok(tx)
    }
}

/// The group-commit lanes of a store on `backend` ([`StoreOptions::group_commit_lanes`]): at most
/// one on SQLite, whose writers take turns anyway.
fn lanes(backend: Backend, options: &StoreOptions) -> usize {
    match backend {
        Backend::Sqlite => options.group_commit_lanes.min(1),
        Backend::Postgres | Backend::Mysql => options.group_commit_lanes,
    }
}

/// A failed `BEGIN`, fence check or `COMMIT`: deadlocks and serialization failures are retried.
fn transaction_error(op: &'static str, e: sqlx::Error) -> Error {
    match classify(&e) {
        SqlClass::Retryable => Error::Deadlock { op, attempts: 1, source: e },
        _ => Error::from_sqlx(op, "transaction", op, e),
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

/// Fails with [`Error::Fenced`] unless `fence` is held, unexpired, at its term. The row is
/// share-locked, so a steal of the lease waits until this transaction ends.
async fn check_fence(tx: &mut Tx, fence: &Fence) -> Result<()> {
    let sql = format!(
        "SELECT term FROM leases WHERE lease_key = ? AND owner = ? AND term = ? AND expires_at_ms > {}{}",
        tx.backend.now_ms_sql(),
        tx.backend.for_fence()
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

mod gate;
mod pool;
pub(crate) mod reads;
mod statement_limit;
#[cfg(test)]
mod tests;
