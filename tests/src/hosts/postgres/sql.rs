//! Connections to the nodes, from inside a host, and the questions the cluster asks them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use sqlx::{Connection as _, PgConnection};
use tokio::time::Instant;

use super::super::Network;
use super::{CONNECT_TIMEOUT, PATIENCE, PG_ENV, PgCluster, USER, tail};

/// A connection to the server at `target`, database `db`, made from inside `from` (through
/// [`Network::reach`]), within 5 s.
pub(super) async fn connect_to(
    net: &Network,
    from: &str,
    target: SocketAddr,
    db: &str,
) -> Result<PgConnection, sqlx::Error> {
    let local = net.reach(from, target).await.map_err(sqlx::Error::Io)?;
    let url = format!("postgres://{USER}@{local}/{db}?sslmode=disable");
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&url)).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {target} from {from} took over {CONNECT_TIMEOUT:?}"),
        ))),
    }
}

impl PgCluster {
    /// The primary's `pg_stat_replication`: `(application_name, state, sync_state)` of each
    /// standby connected, asked from the primary's own host.
    pub async fn replication(&self, net: &Network) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        let mut conn = self.connect(net, self.primary(), self.primary(), "postgres").await?;
        sqlx::query_as(
            "SELECT application_name::text, coalesce(state, '')::text, coalesce(sync_state, '')::text \
             FROM pg_stat_replication ORDER BY application_name",
        )
        .fetch_all(&mut conn)
        .await
    }

    /// A connection to database `db` of the node on `node`, made from inside host `from` (so it
    /// goes over `from`'s link, and a cut stops it), within 5 s.
    pub async fn connect(&self, net: &Network, from: &str, node: &str, db: &str) -> Result<PgConnection, sqlx::Error> {
        connect_to(net, from, self.node(node).addr(), db).await
    }

    /// Creates database `db` (letters, digits and `_`) on the primary, from the primary's host.
    ///
    /// # Panics
    /// When it cannot.
    pub async fn create_database(&self, net: &Network, db: &str) {
        assert!(
            !db.is_empty() && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "postgres: database name {db:?} must be letters, digits and _"
        );
        let primary = self.primary();
        let mut conn = self
            .connect(net, primary, primary, "postgres")
            .await
            .unwrap_or_else(|e| panic!("postgres: cannot connect to the primary on {primary}: {e}"));
        let sql = format!("CREATE DATABASE {db}");
        let done = tokio::time::timeout(PATIENCE, sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn)).await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("postgres: CREATE DATABASE {db} on {primary}: {e}"),
            Err(_) => panic!(
                "postgres: CREATE DATABASE {db} on {primary} took over {PATIENCE:?} (is the standby streaming?)\n{}",
                tail(&self.nodes[self.primary].log, 30)
            ),
        }
    }

    /// Whether the node on `host` is in recovery (a standby), asked from its own host.
    ///
    /// # Panics
    /// When it does not answer within 10 s.
    pub async fn is_in_recovery(&self, net: &Network, host: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = async {
                let mut conn = self.connect(net, host, host, "postgres").await?;
                sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await
            };
            let error = match tokio::time::timeout(CONNECT_TIMEOUT, answer).await {
                Ok(Ok(recovering)) => return recovering,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
            };
            assert!(
                Instant::now() < deadline,
                "postgres: the node on {host} does not say whether it is in recovery: {error}\n{}",
                tail(&self.node(host).log, 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `psql -X -A -t -c <sql>` in host `from` against `url` (e.g. [`PgCluster::url`]),
    /// giving up on each host after 5 s; returns its output, trimmed, or why it failed.
    pub async fn psql(&self, net: &Network, from: &str, url: &str, sql: &str) -> Result<String, String> {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", net.host(from).netns()])
            .arg(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for var in PG_ENV {
            command.env_remove(var);
        }
        command.env("PGCONNECT_TIMEOUT", "5");
        let out = tokio::time::timeout(PATIENCE, command.output())
            .await
            .map_err(|_| format!("psql in {from} did not finish within {PATIENCE:?}"))?
            .map_err(|e| format!("cannot run psql in {from}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!("psql in {from} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }
}
