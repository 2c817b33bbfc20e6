//! The PostgreSQL server the guide's `runuser -u postgres -- psql|createdb` reach, and the
//! role and database they make under a name of this test's own.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// A PostgreSQL server as a URL names it.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// The URL (the administrator's).
    pub url: String,
    /// Where it listens, as this process reaches it.
    pub address: SocketAddr,
    /// The URL's user.
    pub user: String,
    /// The URL's password, if any.
    pub password: Option<String>,
}

impl PgServer {
    /// Parses `postgres://user[:password]@host[:port][/db][?...]`.
    pub fn parse(url: &str) -> Result<PgServer, String> {
        let rest = url.split_once("://").map(|(_, r)| r).ok_or_else(|| format!("{url} is not a URL"))?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let (credentials, host_port) = authority.rsplit_once('@').unwrap_or(("postgres", authority));
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
            None => (credentials.to_owned(), None),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("bad port in {url}"))?),
            None => (host_port, 5432),
        };
        let address = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(SocketAddr::is_ipv4))
            .ok_or_else(|| format!("cannot resolve {host}:{port} of {url}"))?;
        Ok(PgServer { url: url.to_owned(), address, user, password })
    }
}

/// The role and database the guide creates, under a name of this test's own; both dropped when
/// this is dropped, also after a failure.
#[derive(Debug)]
pub struct GuideDatabase {
    pub(super) server: PgServer,
    /// The role's and the database's name.
    pub name: String,
}

/// Databases made by this process.
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The prefix of every role and database the walkthrough makes.
const DB_PREFIX: &str = "diego_wt_";

impl GuideDatabase {
    /// A fresh name, `diego_wt_<pid>_<n>`, after dropping those of walkthroughs whose process is
    /// gone.
    ///
    /// # Panics
    /// When the server cannot be asked (psql missing, server down).
    pub fn new(server: PgServer) -> GuideDatabase {
        let pid = std::process::id();
        let listed = psql(
            &server.url,
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{DB_PREFIX}%' \
                 UNION SELECT rolname FROM pg_roles WHERE rolname LIKE '{DB_PREFIX}%'"
            ),
        )
        .unwrap_or_else(|e| panic!("cannot list the walkthrough's databases on {}: {e}", server.url));
        for name in listed.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let owner =
                name.strip_prefix(DB_PREFIX).and_then(|r| r.split('_').next()).and_then(|p| p.parse::<u32>().ok());
            if let Some(owner) = owner
                && owner != pid
                && !Path::new(&format!("/proc/{owner}")).exists()
            {
                eprintln!("multihost: dropping {name}, left by a walkthrough that is gone");
                drop_all(&server.url, name);
            }
        }
        let name = format!("{DB_PREFIX}{pid}_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        GuideDatabase { server, name }
    }
}

impl Drop for GuideDatabase {
    fn drop(&mut self) {
        drop_all(&self.server.url, &self.name);
    }
}

/// Drops database and role `name`.
fn drop_all(url: &str, name: &str) {
    for sql in [format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"), format!("DROP ROLE IF EXISTS \"{name}\"")] {
        if let Err(e) = psql(url, &sql) {
            eprintln!("multihost: {sql}: {e}");
        }
    }
}

/// Runs `sql` with psql on `url`; its unaligned output.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args([url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
