//! The soak's database, which the chaos driver stops for a while: a private PostgreSQL cluster
//! of its own (the default, [`PrivatePostgres`]), or, with `--database-url`, a fresh database on
//! that server reached through a TCP proxy the soak runs, which "stops" the database by resetting
//! every connection and refusing new ones (the server itself, maybe shared, is never touched).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::Connection as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::postgres::PrivatePostgres;

/// The database the components use.
pub enum Database {
    /// A private cluster.
    Private(PrivatePostgres),
    /// A fresh database behind the proxy.
    Proxied {
        /// The proxy.
        proxy: Proxy,
        /// The server's URL of the fresh database (to drop it at the end).
        direct: String,
        /// The server's URL as given (to drop the database from).
        admin: String,
        /// The fresh database's name.
        name: String,
    },
}

/// A TCP proxy that can be cut.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(upstream: String) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<std::sync::Mutex<Vec<AbortHandle>>> = Arc::default();
        let (d, c) = (down.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut all = c.lock().unwrap_or_else(|p| p.into_inner());
                all.retain(|h| !h.is_finished());
                all.push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(Proxy { port, down, connections, accept })
    }

    /// Cuts (`true`: every connection reset, new ones refused) or restores it.
    pub fn cut(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for h in self.connections.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
                h.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(true);
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn server_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") })
}

/// `url` with its authority's `host:port` replaced by `server` and its database by `db`.
fn url_with(url: &str, server: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let query = rest[end..].split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{user}{server}/{db}{query}")
}

impl Database {
    /// A private cluster under `dir`, or a fresh database on `url`'s server behind a proxy.
    pub async fn start(dir: &std::path::Path, url: Option<&str>, seed: u64) -> anyhow::Result<Database> {
        let Some(url) = url else {
            let port = super::components::free_port()?;
            return Ok(Database::Private(PrivatePostgres::start(&dir.join("pg"), port).await?));
        };
        anyhow::ensure!(url.starts_with("postgres"), "--database-url: the soak runs on PostgreSQL (postgres://...)");
        let server = server_of(url).context("--database-url names no server")?;
        let name = format!("diego_soak_{seed}_{}", uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap_or("0"));
        let mut admin = sqlx::PgConnection::connect(url).await.context("connecting to --database-url")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
        let proxy = Proxy::start(server.clone()).await?;
        Ok(Database::Proxied { direct: url_with(url, &server, &name), admin: url.to_owned(), name, proxy })
    }

    /// The URL the components use.
    pub fn url(&self) -> String {
        match self {
            Database::Private(pg) => pg.url(),
            Database::Proxied { proxy, direct, name, .. } => {
                url_with(direct, &format!("127.0.0.1:{}", proxy.port), name)
            }
        }
    }

    /// What "stopped" means here (for the report).
    pub fn how(&self) -> &'static str {
        match self {
            Database::Private(_) => "private PostgreSQL cluster: fast shutdown, then started again",
            Database::Proxied { .. } => "TCP proxy to --database-url: connections reset and refused, then restored",
        }
    }

    /// Stops the database.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Database::Private(pg) => pg.stop().await,
            Database::Proxied { proxy, .. } => {
                proxy.cut(true);
                Ok(())
            }
        }
    }

    /// Starts it again.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Database::Private(pg) => pg.restart().await,
            Database::Proxied { proxy, .. } => {
                proxy.cut(false);
                Ok(())
            }
        }
    }

    /// `DELETE FROM <table>` (retried for up to 30 s while the database does not answer).
    pub async fn wipe(&self, table: &str) -> anyhow::Result<u64> {
        let url = match self {
            Database::Private(pg) => pg.url(),
            Database::Proxied { direct, .. } => direct.clone(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let mut c = sqlx::PgConnection::connect(&url).await?;
                let done = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&mut c).await?;
                Ok::<_, sqlx::Error>(done.rows_affected())
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if tokio::time::Instant::now() > deadline => return Err(e.into()),
                _ if tokio::time::Instant::now() > deadline => anyhow::bail!("wiping {table}: timed out"),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Drops a database made on `--database-url` (best effort).
    pub async fn finish(self) {
        if let Database::Proxied { proxy, admin, name, .. } = self {
            drop(proxy);
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut c)
                    .await;
            }
        }
    }
}
