//! Database URLs that name several servers, and which of them a store's pools connect to.
//!
//! A PostgreSQL or MySQL URL may list several `host:port` pairs, comma separated, as libpq's
//! multi-host URLs do: `postgres://diego@10.0.0.21:5432,10.0.0.22:5432/diego` (a primary and
//! its streaming standby) or `mysql://diego@10.0.0.31,10.0.0.32,10.0.0.33/diego` (Galera
//! nodes). The store then connects to the first server, in order, that it can use, and moves
//! every pool to another one when that server goes away:
//!
//! - `target_session_attrs=read-write` (the default with several hosts, as libpq's
//!   `target_session_attrs=read-write`): a server is usable when it accepts writes: not a hot
//!   standby (PostgreSQL `SHOW transaction_read_only` is `off`), not `read_only` (MySQL), and,
//!   on a Galera node, `wsrep_ready` is `ON` (the node is in the primary component).
//!   `primary` is accepted as a synonym.
//! - `target_session_attrs=any` (the default with one host): any server that answers.
//!
//! The choice is made at connect time and again by the reachability probe ([`crate::health`])
//! whenever an operation fails the way a lost server fails: the probe tries the current server
//! first, then the others, and, when another one is usable, points every pool of the store at
//! it. Connections made before the switch are not handed out again. With read-write targeting,
//! a new connection to a server that does not accept writes (a standby, a demoted primary) is
//! refused, so a pool never holds one.

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use crate::{Backend, Error, Result};

/// The URL parameter that chooses which servers are usable.
pub const SESSION_ATTRS_PARAM: &str = "target_session_attrs";

/// Which servers of a URL a store may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// Any server that answers.
    Any,
    /// Only a server that accepts writes.
    ReadWrite,
}

/// The servers one URL names, the one the store's pools use, and those pools.
#[derive(Debug)]
pub(crate) struct Targets {
    backend: Backend,
    /// Each server's `host:port` as the URL writes it, for messages.
    hosts: Vec<String>,
    /// Each server's single-host URL.
    urls: Vec<String>,
    attrs: SessionAttrs,
    /// The index of the server the pools connect to.
    current: AtomicUsize,
    /// Every pool of the store (closed ones are dropped at the next switch).
    pools: Mutex<Vec<AnyPool>>,
    /// When the pools were last pointed at another server.
    switched_at: Mutex<Option<Instant>>,
}

impl Targets {
    /// The servers of `url`: one for a single-host URL (kept as it is), one per `host:port` of
    /// a multi-host one. Errors name what is wrong with the URL.
    pub(crate) fn parse(url: &str) -> Result<Targets> {
        let backend = Backend::from_url(url)?;
        let invalid = |reason: String| Error::InvalidUrl { reason };
        let (url, attrs) = take_session_attrs(url).map_err(invalid)?;
        let (hosts, urls) = match split_hosts(&url) {
            Some(split) if backend != Backend::Sqlite => split,
            _ => (vec![String::new()], vec![url.clone()]),
        };
        for (host, url) in hosts.iter().zip(&urls) {
            AnyConnectOptions::from_str(url).map_err(|e| invalid(format!("database host {host:?}: {e}")))?;
        }
        let attrs = attrs.unwrap_or(if urls.len() > 1 { SessionAttrs::ReadWrite } else { SessionAttrs::Any });
        if backend == Backend::Sqlite && attrs == SessionAttrs::ReadWrite {
            return Err(invalid(format!("{SESSION_ATTRS_PARAM} applies to PostgreSQL and MySQL URLs only")));
        }
        Ok(Targets {
            backend,
            hosts,
            urls,
            attrs,
            current: AtomicUsize::new(0),
            pools: Mutex::new(Vec::new()),
            switched_at: Mutex::new(None),
        })
    }

    /// How many servers the URL names.
    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// Which servers are usable.
    pub(crate) fn attrs(&self) -> SessionAttrs {
        self.attrs
    }

    /// The connect options of the server the pools use now.
    pub(crate) fn current(&self) -> Result<AnyConnectOptions> {
        let url = &self.urls[self.current.load(Ordering::Acquire).min(self.urls.len() - 1)];
        AnyConnectOptions::from_str(url).map_err(|e| Error::InvalidUrl { reason: e.to_string() })
    }

    /// The `host:port` of the server the pools use now (empty for a single-host URL).
    pub(crate) fn current_host(&self) -> &str {
        &self.hosts[self.current.load(Ordering::Acquire).min(self.hosts.len() - 1)]
    }

    /// Adds `pool` to those moved at a switch.
    pub(crate) fn register(&self, pool: &AnyPool) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| !p.is_closed());
        pools.push(pool.clone());
    }

    /// Whether a pooled connection made `age` ago predates the last switch (and so may lead
    /// to the server the pools left).
    pub(crate) fn predates_switch(&self, age: Duration) -> bool {
        let switched_at = *self.switched_at.lock().unwrap_or_else(|p| p.into_inner());
        switched_at.is_some_and(|at| age > at.elapsed())
    }

    /// Finds a usable server, the current one first, within `timeout` per server, and points
    /// every registered pool at it if it is another one. A server that answers with an
    /// ordinary database error (too many connections, a bad password) counts as reachable: it
    /// is there, and nothing else would be better. Errors say why each server was passed over.
    pub(crate) async fn probe(&self, timeout: Duration) -> std::result::Result<(), String> {
        let start = self.current.load(Ordering::Acquire);
        let mut reasons = Vec::new();
        for step in 0..self.urls.len() {
            let i = (start + step) % self.urls.len();
            match self.try_server(i, timeout).await {
                Ok(()) => {
                    if i != start {
                        self.switch_to(i);
                    }
                    return Ok(());
                }
                Err(reason) if self.urls.len() == 1 => return Err(reason),
                Err(reason) => reasons.push(format!("{}: {reason}", self.hosts[i])),
            }
        }
        let wanted = match self.attrs {
            SessionAttrs::ReadWrite => "no database host accepts writes",
            SessionAttrs::Any => "no database host answers",
        };
        Err(format!("{wanted} ({})", reasons.join("; ")))
    }

    /// One attempt at server `i`: connect, check it is usable, disconnect.
    async fn try_server(&self, i: usize, timeout: Duration) -> std::result::Result<(), String> {
        let attempt = async {
            let options = AnyConnectOptions::from_str(&self.urls[i])?;
            let mut conn = AnyConnection::connect_with(&options).await?;
            let usable = usable(&mut conn, self.backend, self.attrs).await;
            let _ = conn.close().await;
            usable
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(sqlx::Error::Database(db))) if !is_connection_error(db.as_ref()) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    fn switch_to(&self, i: usize) {
        let from = self.current.swap(i, Ordering::AcqRel);
        *self.switched_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let Ok(options) = AnyConnectOptions::from_str(&self.urls[i]) else { return };
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| !p.is_closed());
        for pool in pools.iter() {
            pool.set_connect_options(options.clone());
        }
        tracing::warn!(
            from = %self.hosts[from.min(self.hosts.len() - 1)],
            to = %self.hosts[i],
            pools = pools.len(),
            "database server changed: connecting to another host of the database URL"
        );
    }
}

/// Checks a database URL without connecting: its scheme, each host of a multi-host URL, and
/// `target_session_attrs`. The error says what is wrong (for configuration checks).
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    sqlx::any::install_default_drivers();
    Targets::parse(url).map(drop).map_err(|e| match e {
        Error::InvalidUrl { reason } => reason,
        other => other.to_string(),
    })
}

/// Fails unless the server `conn` leads to is usable under `attrs`: with
/// [`SessionAttrs::ReadWrite`], a server that does not accept writes fails with an I/O error
/// (so the store treats it as a lost server and the probe looks for another one).
pub(crate) async fn usable(conn: &mut AnyConnection, backend: Backend, attrs: SessionAttrs) -> sqlx::Result<()> {
    if attrs == SessionAttrs::Any {
        return sqlx::query("SELECT 1").execute(&mut *conn).await.map(drop);
    }
    let refusal = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let read_only: String = sqlx::query_scalar("SHOW transaction_read_only").fetch_one(&mut *conn).await?;
            (read_only != "off").then(|| "the server is read-only (a hot standby?)".to_owned())
        }
        Backend::Mysql => {
            let read_only: i64 =
                sqlx::query_scalar("SELECT CAST(@@global.read_only AS SIGNED)").fetch_one(&mut *conn).await?;
            // A Galera node (`wsrep_on`; MariaDB reports the wsrep variables without Galera too)
            // takes writes only in the primary component (`wsrep_ready`).
            let wsrep_ready = match setting(conn, "SHOW GLOBAL VARIABLES LIKE 'wsrep_on'").await? {
                Some(on) if on.eq_ignore_ascii_case("ON") => {
                    setting(conn, "SHOW GLOBAL STATUS LIKE 'wsrep_ready'").await?
                }
                _ => None,
            };
            let not_ready = wsrep_ready.filter(|r| !r.eq_ignore_ascii_case("ON"));
            if read_only != 0 {
                Some("the server is read-only".to_owned())
            } else {
                not_ready
                    .map(|r| format!("the Galera node is not ready (wsrep_ready {r}): not in the primary component"))
            }
        }
    };
    match refusal {
        None => Ok(()),
        Some(reason) => Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, reason))),
    }
}

/// The value of the one row a MySQL `SHOW ... LIKE 'name'` answers, if any.
async fn setting(conn: &mut AnyConnection, sql: &'static str) -> sqlx::Result<Option<String>> {
    match sqlx::query(sql).fetch_optional(&mut *conn).await? {
        Some(row) => row.try_get::<String, _>(1).map(Some),
        None => Ok(None),
    }
}

/// Whether a database error means the server is not there for us (so the probe passes it
/// over), rather than an ordinary refusal.
fn is_connection_error(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code();
    let code = code.as_deref().unwrap_or_default();
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}

/// `url` without its `target_session_attrs` parameter, and that parameter's value.
fn take_session_attrs(url: &str) -> std::result::Result<(String, Option<SessionAttrs>), String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), None)) };
    let mut attrs = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != SESSION_ATTRS_PARAM {
            kept.push(pair);
            continue;
        }
        attrs = Some(match value {
            "any" => SessionAttrs::Any,
            "read-write" | "primary" => SessionAttrs::ReadWrite,
            other => {
                return Err(format!(
                    "{SESSION_ATTRS_PARAM}={other:?} is not supported: use \"read-write\" (or \"primary\") or \"any\""
                ));
            }
        });
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, attrs))
}

/// For a URL whose authority lists several `host[:port]`, comma separated: each one, and the
/// URL with only that one. `None` for a URL with one host.
fn split_hosts(url: &str) -> Option<(Vec<String>, Vec<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    if !hosts.contains(',') {
        return None;
    }
    let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
    let urls = hosts.iter().map(|host| format!("{scheme}://{user}{host}{tail}")).collect();
    Some((hosts, urls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_becomes_one_url_per_host_with_read_write_targeting() {
        let t = Targets::parse("postgres://diego:pw@10.0.0.1:5432,10.0.0.2:6543/diego?sslmode=disable").unwrap();
        assert_eq!(t.hosts, ["10.0.0.1:5432", "10.0.0.2:6543"]);
        assert_eq!(
            t.urls,
            [
                "postgres://diego:pw@10.0.0.1:5432/diego?sslmode=disable",
                "postgres://diego:pw@10.0.0.2:6543/diego?sslmode=disable"
            ]
        );
        assert_eq!(t.attrs(), SessionAttrs::ReadWrite);
        assert_eq!(t.current_host(), "10.0.0.1:5432");
        let m = Targets::parse("mysql://root@a,b:3307,c/db?target_session_attrs=any").unwrap();
        assert_eq!(m.urls, ["mysql://root@a/db", "mysql://root@b:3307/db", "mysql://root@c/db"]);
        assert_eq!(m.attrs(), SessionAttrs::Any);
    }

    #[test]
    fn a_single_host_url_is_kept_as_it_is_unless_it_asks_for_a_writable_server() {
        let t = Targets::parse("postgres://postgres@127.0.0.1:5432/postgres").unwrap();
        assert_eq!(t.urls, ["postgres://postgres@127.0.0.1:5432/postgres"]);
        assert_eq!(t.attrs(), SessionAttrs::Any);
        let rw = Targets::parse("postgres://p@h/db?target_session_attrs=primary&application_name=x").unwrap();
        assert_eq!(rw.urls, ["postgres://p@h/db?application_name=x"]);
        assert_eq!(rw.attrs(), SessionAttrs::ReadWrite);
        let sqlite = Targets::parse("sqlite:///tmp/x,y.db?mode=rwc").unwrap();
        assert_eq!(sqlite.len(), 1, "a comma in a SQLite path is a file name");
    }

    #[test]
    fn bad_targeting_is_refused_with_the_reason() {
        let err = Targets::parse("postgres://p@a,b/db?target_session_attrs=standby").unwrap_err().to_string();
        assert!(err.contains("target_session_attrs=\"standby\" is not supported"), "{err}");
        let err = Targets::parse("sqlite::memory:?target_session_attrs=read-write").unwrap_err().to_string();
        assert!(err.contains("PostgreSQL and MySQL URLs only"), "{err}");
        let err = Targets::parse("postgres://p@a,:notaport/db").unwrap_err().to_string();
        assert!(err.contains("database host \":notaport\""), "{err}");
    }

    #[test]
    fn only_connections_older_than_the_last_switch_are_stale() {
        let t = Targets::parse("postgres://p@a,b/db").unwrap();
        assert!(!t.predates_switch(Duration::from_secs(3600)), "no switch yet");
        t.switch_to(1);
        assert_eq!(t.current_host(), "b");
        assert!(t.predates_switch(Duration::from_secs(3600)));
        assert!(!t.predates_switch(Duration::ZERO));
    }
}
