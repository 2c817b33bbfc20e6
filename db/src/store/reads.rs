//! The hot listings' reads on the native driver's rows (docs/performance.md, cause 5).
//!
//! sqlx's `Any` driver converts every row it reads into an `AnyRow`: an owned copy of every
//! column and a column list per row, all through the allocator. The hot listings (the per-cell
//! page, the two streamed listings and the unary pages sharing their decoders) read instead from
//! a pool of the native driver, `PgPool` or `MySqlPool`, built from the store's URL and options,
//! and decode each row where it lies: columns by position, text and blobs borrowed.
//!
//! - [`Columns`] is the one row interface the decoders are written against, implemented for
//!   every sqlx row type (native and `Any`), so each row layout has one decoder whatever the
//!   backend;
//! - [`Store::read_rows`] runs a statement on the native pool when the store has one and on the
//!   `Any` pool otherwise, gated by the store's health like every other operation;
//! - the native pool only reads (no transactions, so no row locks), connects lazily, and is
//!   closed with the store.
//!
//! The stores without one read through `Any` as before: SQLite (a private in-memory database
//! cannot be shared between two pools; a file stays on `Any` too, so every SQLite store reads
//! the same way), a multi-host URL or one that asks for a writable server (the pools follow
//! the server the store moves to, and the native pool would need the same bookkeeping), and the
//! dedicated pools of [`Store::dedicated`] (lease work, no listings).

use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, MySqlPool, PgPool, Row};

use super::StoreOptions;
use super::pool::{ping_after_idle, session_setup};
use crate::{Backend, Store};

/// A row's columns by position: text and blobs borrowed from the row, integers as `i64`.
///
/// The values are decoded without sqlx's check of the column's declared type against the Rust
/// type (`try_get_unchecked`): the statements are ours and the migrations fix every column's
/// type, which the conformance suite reads on every backend, and the check is a comparison of
/// type descriptors per value (fifteen per scheduling info, a listing of 250,000 of them). A
/// value that does not decode is still an error: text that is not UTF-8, an integer of more than
/// eight bytes, a NULL.
pub(crate) trait Columns {
    /// Text column `i`.
    fn text(&self, i: usize) -> Result<&str, sqlx::Error>;
    /// Blob column `i`.
    fn blob(&self, i: usize) -> Result<&[u8], sqlx::Error>;
    /// Integer column `i`.
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
}

impl<R> Columns for R
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
{
    fn text(&self, i: usize) -> Result<&str, sqlx::Error> {
        self.try_get_unchecked::<&str, usize>(i)
    }

    fn blob(&self, i: usize) -> Result<&[u8], sqlx::Error> {
        self.try_get_unchecked::<&[u8], usize>(i)
    }

    fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
        self.try_get_unchecked::<i64, usize>(i)
    }
}

/// A row of any driver, as [`Store::read_rows`] hands it out (every driver's row type is
/// `'static`; naming it keeps one decoder type per row layout).
pub(crate) type AnyColumns = dyn Columns + 'static;

/// One bound value of a read.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
}

/// Which of a store's native pools a read goes to ([`Store::read_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Rows found by key: one cell's instances, one process guid's, a list of guids or of
    /// instance keys. Many of these run at once (every cell's rep fetches its own), each short.
    Keyed,
    /// A whole table, or a whole domain, read batch after batch: the bulk listings (the nsync
    /// bulker's scheduling infos, a route emitter's whole view). Few of these run at once, each
    /// many statements long; on their own pool ([`StoreOptions::bulk_read_connections`]) each
    /// batch waits only for the other bulk reads' statements, not behind every cell's fetch.
    Whole,
}

impl Reach {
    /// The reach of a listing: [`Reach::Keyed`] when narrowed by key (a cell, a process guid,
    /// a list of guids), else [`Reach::Whole`] (narrowed by a domain or nothing).
    pub(crate) fn of_listing(narrowed_by_key: bool) -> Self {
        if narrowed_by_key { Reach::Keyed } else { Reach::Whole }
    }
}

/// A native pool a store reads its hot listings from, if it has one.
#[derive(Debug, Clone)]
pub(crate) enum Native {
    /// None: reads go through the `Any` pool.
    None,
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL or MariaDB.
    Mysql(MySqlPool),
}

impl Native {
    /// A native read pool of a store on `backend` connecting with `connect` (the options of
    /// its single server), set up as the store's `Any` pool (the same acquire timeout, the same
    /// idle pings and session setup), of at most `max_connections`. Lazy: it connects on its
    /// first read.
    pub(crate) fn lazy(
        backend: Backend,
        connect: &sqlx::any::AnyConnectOptions,
        options: &StoreOptions,
        max_connections: u32,
    ) -> Result<Native, sqlx::Error> {
        let ping_after = ping_after_idle(backend, options.idle_transaction_timeout);
        let idle_transaction_timeout = options.idle_transaction_timeout;
        // The statements of `pool::pool_options`, for a native connection.
        macro_rules! pool_options {
            ($db:ty) => {
                sqlx::pool::PoolOptions::<$db>::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(options.acquire_timeout)
                    .test_before_acquire(false)
                    .before_acquire(move |conn, meta| {
                        let ping = ping_after.is_some_and(|after| meta.idle_for >= after);
                        Box::pin(async move {
                            if ping {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            let server_version = match backend {
                                Backend::Mysql => {
                                    sqlx::query_scalar::<_, String>("SELECT VERSION()").fetch_one(&mut *conn).await?
                                }
                                _ => String::new(),
                            };
                            match session_setup(backend, &server_version, idle_transaction_timeout) {
                                Some(sql) => sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await.map(drop),
                                None => Ok(()),
                            }
                        })
                    })
            };
        }
        Ok(match backend {
            Backend::Sqlite => Native::None,
            Backend::Postgres => {
                let connect = sqlx::postgres::PgConnectOptions::try_from(connect)?;
                Native::Postgres(pool_options!(sqlx::Postgres).connect_lazy_with(connect))
            }
            Backend::Mysql => {
                let connect = sqlx::mysql::MySqlConnectOptions::try_from(connect)?;
                Native::Mysql(pool_options!(sqlx::MySql).connect_lazy_with(connect))
            }
        })
    }

    /// Closes the pool, if any.
    pub(crate) async fn close(&self) {
        match self {
            Native::None => {}
            Native::Postgres(pool) => pool.close().await,
            Native::Mysql(pool) => pool.close().await,
        }
    }
}

impl Store {
    /// Runs `sql` (written with `?` placeholders) with `binds` and hands each row to `each` as
    /// the statement yields it, on the native pool of its `reach` when the store has one, else
    /// on the `Any` pool. Gated by the store's health: fails at once while the database is
    /// known to be down, and a failure that looks like a lost database wakes the probe. Stops
    /// at the first error, `each`'s included. `list`: `sql` has an `IN (...)` list of
    /// placeholders ([`Backend::keeps_prepared`](crate::Backend::keeps_prepared)).
    pub(crate) async fn read_rows(
        &self,
        sql: &str,
        list: bool,
        reach: Reach,
        binds: Vec<Bind>,
        mut each: impl FnMut(&AnyColumns) -> Result<(), sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        let sql = self.backend.sql(sql);
        let persistent = self.backend.keeps_prepared(list);
        // One body per driver: the query, its binds and the row type differ, nothing else.
        macro_rules! read {
            ($query:expr, $executor:expr, $gate:expr) => {{
                let mut query = $query.persistent(persistent);
                for bind in binds {
                    query = match bind {
                        Bind::Text(text) => query.bind(text),
                        Bind::Int(int) => query.bind(int),
                    };
                }
                let mut rows = $gate(query.fetch($executor));
                while let Some(row) = rows.try_next().await? {
                    each(&row)?;
                }
                Ok(())
            }};
        }
        match self.pool.native(reach) {
            Native::Postgres(pool) => {
                read!(sqlx::query::<sqlx::Postgres>(AssertSqlSafe(sql)), pool, |s| self.pool.gate_stream(s))
            }
            Native::Mysql(pool) => {
                read!(sqlx::query::<sqlx::MySql>(AssertSqlSafe(sql)), pool, |s| self.pool.gate_stream(s))
            }
            // `&Pool` gates its own statements.
            Native::None => read!(sqlx::query::<sqlx::Any>(AssertSqlSafe(sql)), &self.pool, std::convert::identity),
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use proto::models::{DomainName, ProcessGuid};

    use super::*;
    use crate::sql::actual_lrps::ActualLrpFilter;
    use crate::testing::TestDb;

    /// A store with one unclaimed actual LRP, listed once by key (its process guid) and once
    /// whole.
    async fn listed_store(backend: Backend) -> Option<TestDb> {
        let db = TestDb::create(backend).await?;
        db.store.create_unclaimed_actual_lrps(&guid(), &DomainName::parse("d").unwrap(), &[0], 1).await.unwrap();
        for filter in [keyed(), ActualLrpFilter::default()] {
            let page = db.store.actual_lrps_wire_page(&filter, None, 10).await.unwrap();
            assert_eq!(page.items.len(), 1, "{backend:?}");
        }
        Some(db)
    }

    fn guid() -> ProcessGuid {
        ProcessGuid::parse("guid-1").unwrap()
    }

    /// The filter of a keyed read: one process guid.
    fn keyed() -> ActualLrpFilter {
        ActualLrpFilter { process_guid: Some(guid()), ..ActualLrpFilter::default() }
    }

    /// The connections `native` holds, and a future that resolves when it is closed.
    fn opened(native: &Native) -> Option<(u32, futures::future::BoxFuture<'static, ()>)> {
        match native {
            Native::Postgres(pool) => Some((pool.size(), Box::pin(pool.clone().close_event()))),
            Native::Mysql(pool) => Some((pool.size(), Box::pin(pool.clone().close_event()))),
            Native::None => None,
        }
    }

    // Multi-threaded: dropping a TestDb closes its store from another thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_stores_list_on_native_pools_and_close_them_with_the_store() {
        for backend in [Backend::Postgres, Backend::Mysql] {
            let Some(db) = listed_store(backend).await else { continue };
            let mut closing = Vec::new();
            for reach in [Reach::Keyed, Reach::Whole] {
                let (size, closed) =
                    opened(db.store.pool.native(reach)).unwrap_or_else(|| panic!("{backend:?}: no {reach:?} pool"));
                assert!(size >= 1, "{backend:?}: no listing read on the {reach:?} pool");
                closing.push(closed);
            }
            db.store.close().await;
            for closed in closing {
                tokio::time::timeout(std::time::Duration::from_secs(10), closed)
                    .await
                    .unwrap_or_else(|_| panic!("{backend:?}: closing the store left a native pool open"));
            }
        }
    }

    /// A whole listing reads on its own pool: while every connection of the keyed reads' pool
    /// is taken, it is answered, and a keyed read waits until one is given back.
    // Multi-threaded: dropping a TestDb closes its store from another thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_listings_do_not_wait_behind_the_keyed_reads() {
        use std::time::Duration;
        for backend in [Backend::Postgres, Backend::Mysql] {
            let options = StoreOptions {
                max_connections: 1,
                acquire_timeout: Duration::from_secs(60),
                ..StoreOptions::default()
            };
            let Some(db) = TestDb::create_with(backend, options).await else { continue };
            db.store.create_unclaimed_actual_lrps(&guid(), &DomainName::parse("d").unwrap(), &[0], 1).await.unwrap();
            let held: Box<dyn std::any::Any + Send> = match db.store.pool.native(Reach::Keyed) {
                Native::Postgres(pool) => Box::new(pool.acquire().await.unwrap()),
                Native::Mysql(pool) => Box::new(pool.acquire().await.unwrap()),
                Native::None => panic!("{backend:?}: no keyed pool"),
            };
            let all = ActualLrpFilter::default();
            let whole = db.store.actual_lrps_wire_page(&all, None, 10);
            let page = tokio::time::timeout(Duration::from_secs(20), whole)
                .await
                .unwrap_or_else(|_| panic!("{backend:?}: the whole listing waited for the keyed reads' pool"))
                .unwrap();
            assert_eq!(page.items.len(), 1, "{backend:?}");

            let filter = keyed();
            let mut by_key = Box::pin(db.store.actual_lrps_wire_page(&filter, None, 10));
            assert!(
                tokio::time::timeout(Duration::from_millis(300), by_key.as_mut()).await.is_err(),
                "{backend:?}: a keyed read went around its pool"
            );
            drop(held);
            let page = tokio::time::timeout(Duration::from_secs(20), by_key).await.unwrap().unwrap();
            assert_eq!(page.items.len(), 1, "{backend:?}");
        }
    }

    // Multi-threaded: dropping a TestDb closes its store from another thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native_reads_fail_at_once_while_the_database_is_known_unreachable() {
        for backend in [Backend::Postgres, Backend::Mysql] {
            let Some(db) = listed_store(backend).await else { continue };
            db.store.pool.health().expect("a server store has a health").set_down("test");
            let err = db.store.actual_lrps_wire_page(&ActualLrpFilter::default(), None, 10).await.unwrap_err();
            assert!(err.to_string().contains("database unreachable since"), "{backend:?}: {err}");
            assert!(matches!(err, crate::Error::Unavailable { .. }), "{backend:?}: {err:?}");
        }
    }

    // Multi-threaded: dropping a TestDb closes its store from another thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_stores_list_through_any() {
        let Some(db) = listed_store(Backend::Sqlite).await else { return };
        for reach in [Reach::Keyed, Reach::Whole] {
            assert!(matches!(db.store.pool.native(reach), Native::None));
        }
    }
}
