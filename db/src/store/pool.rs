//! The pool options of a store: connection checks, the session setup that bounds idle
//! transactions, and the pings of connections that sat idle.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;

use super::StoreOptions;
use crate::Backend;
use crate::targets::{SessionAttrs, Targets};

/// Whether `url` names a private in-memory SQLite database.
pub(super) fn is_in_memory(backend: Backend, url: &str) -> bool {
    backend == Backend::Sqlite && url.contains(":memory:")
}

/// The pool options every pool of a store uses; `targets`, the servers of its URL, when it has
/// any (not for in-memory SQLite).
pub(super) fn pool_options(
    backend: Backend,
    in_memory: bool,
    options: &StoreOptions,
    targets: Option<Arc<Targets>>,
) -> AnyPoolOptions {
    let mut pool_options = AnyPoolOptions::new()
        .max_connections(if in_memory { 1 } else { options.max_connections.max(1) })
        .acquire_timeout(options.acquire_timeout)
        // sqlx's own test pings every connection it hands out: a round trip per statement or
        // transaction, 13% of the BBS's samples under load (docs/performance.md). The hook
        // below pings only connections that sat idle long enough for the server to have closed
        // them.
        .test_before_acquire(false);
    if in_memory {
        // Every pooled connection to :memory: would be its own database: keep exactly one.
        pool_options = pool_options.idle_timeout(None).max_lifetime(None).min_connections(1);
    }
    let ping_after = ping_after_idle(backend, options.idle_transaction_timeout);
    // After a switch to another server, connections to the one the pools left are not handed
    // out again.
    let switches = targets.clone().filter(|t| t.len() > 1);
    pool_options = pool_options.before_acquire(move |conn, meta| {
        let stale = switches.as_ref().is_some_and(|t| t.predates_switch(meta.age));
        let ping = !stale && ping_after.is_some_and(|after| meta.idle_for >= after);
        Box::pin(async move {
            if ping {
                // A connection the server closed while it sat in the pool (MySQL's
                // `wait_timeout`, see `session_setup`) fails this and is replaced, not handed out.
                sqlx::Connection::ping(conn).await?;
            }
            Ok(!stale)
        })
    });
    let idle_transaction_timeout = options.idle_transaction_timeout;
    let attrs = targets.map_or(SessionAttrs::Any, |t| t.attrs());
    match backend {
        Backend::Sqlite => {
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            });
        }
        Backend::Postgres | Backend::Mysql
            if !idle_transaction_timeout.is_zero() || attrs == SessionAttrs::ReadWrite =>
        {
            pool_options = pool_options.after_connect(move |conn, _| {
                Box::pin(async move {
                    if attrs == SessionAttrs::ReadWrite {
                        // Never pool a connection to a server that does not take writes.
                        crate::targets::usable(&mut *conn, backend, attrs).await?;
                    }
                    let server_version = match backend {
                        Backend::Mysql => {
                            sqlx::query_scalar::<_, String>("SELECT VERSION()").fetch_one(&mut *conn).await?
                        }
                        _ => String::new(),
                    };
                    let Some(sql) = session_setup(backend, &server_version, idle_transaction_timeout) else {
                        return Ok(());
                    };
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(conn).await.map(|_| ())
                })
            });
        }
        Backend::Postgres | Backend::Mysql => {}
    }
    pool_options
}

/// How long a pooled connection may sit idle before it is pinged on its way out of the pool
/// (`None`: never, for SQLite). The server may close an idle connection: MySQL after
/// `wait_timeout`, which `session_setup` sets to the idle-transaction timeout, so half of that;
/// any server on a restart or a failover, which the one-second bound catches for connections
/// that are not in constant use. A connection in constant use is handed out without a ping:
/// if the server went away, the statement fails as `Unavailable` and the health probe looks.
pub(super) fn ping_after_idle(backend: Backend, idle_transaction_timeout: Duration) -> Option<Duration> {
    const AT_MOST: Duration = Duration::from_secs(1);
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres | Backend::Mysql if idle_transaction_timeout.is_zero() => Some(AT_MOST),
        Backend::Postgres | Backend::Mysql => Some((idle_transaction_timeout / 2).min(AT_MOST)),
    }
}

/// The statement a new connection runs so that the server ends a transaction of it left idle
/// for `idle_transaction_timeout` (see [`StoreOptions::idle_transaction_timeout`]); `None` for
/// SQLite and for a zero timeout. `server_version` is MySQL's `VERSION()`: MariaDB has a setting
/// of its own for idle transactions, MySQL only `wait_timeout`.
pub(super) fn session_setup(
    backend: Backend,
    server_version: &str,
    idle_transaction_timeout: Duration,
) -> Option<String> {
    if idle_transaction_timeout.is_zero() {
        return None;
    }
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            // Milliseconds, at most PostgreSQL's largest (an int).
            let ms = idle_transaction_timeout.as_millis().clamp(1, i32::MAX as u128);
            Some(format!("SET idle_in_transaction_session_timeout = {ms}"))
        }
        Backend::Mysql => {
            // Whole seconds, rounded up, at most both settings' largest (a year).
            let secs = idle_transaction_timeout.as_millis().div_ceil(1000).clamp(1, 31_536_000);
            let variable = if server_version.contains("MariaDB") { "idle_transaction_timeout" } else { "wait_timeout" };
            Some(format!("SET SESSION {variable} = {secs}"))
        }
    }
}
