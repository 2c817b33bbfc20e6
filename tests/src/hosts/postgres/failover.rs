//! Failover: the primary crashed, the standby promoted.

use std::time::Duration;

use tokio::time::Instant;

use super::super::Network;
use super::server::{append, path_str, run_as_postgres};
use super::{PATIENCE, PgCluster, tail};

impl PgCluster {
    /// Crashes the primary: its postmaster stopped, then its every process SIGKILLed, as when
    /// its machine loses power. Its connections are reset; a commit it had not acknowledged is
    /// never acknowledged.
    pub fn kill_primary(&mut self) {
        let primary = self.primary;
        self.nodes[primary].crash();
    }

    /// Promotes the standby, as an operator would once the primary is gone: `pg_ctl promote -w`
    /// in its host, then `ALTER SYSTEM SET synchronous_standby_names = ''` and a reload (it has
    /// no standby to wait for). Returns how long it took until a new connection found it out of
    /// recovery and a writing transaction committed on it; from then on [`PgCluster::primary`]
    /// names it.
    ///
    /// # Panics
    /// When there is no standby left, or promotion fails or takes over [`PATIENCE`].
    pub async fn promote_standby(&mut self, net: &Network) -> Duration {
        let standby = 1 - self.primary;
        assert!(self.nodes[standby].server.is_some(), "postgres: no standby to promote (it was killed)");
        let started = Instant::now();
        let deadline = started + PATIENCE;
        let node = &self.nodes[standby];
        let host = node.host.clone();
        let log = net.scratch().join(format!("{host}-promote.log"));
        let args = ["promote", "-D", path_str(&node.data), "-w", "-t", "60"];
        run_as_postgres(net, &host, &node.dir, &log, &self.bin.join("pg_ctl"), &args).await;
        let promoted = started.elapsed();
        self.until(standby, deadline, "it to leave recovery (and to reset synchronous_standby_names)", async || {
            let mut conn = self.connect(net, &host, &host, "postgres").await?;
            let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut conn).await?;
            if recovering {
                return Ok(false);
            }
            sqlx::raw_sql("ALTER SYSTEM SET synchronous_standby_names = ''").execute(&mut conn).await?;
            sqlx::raw_sql("SELECT pg_reload_conf()").execute(&mut conn).await?;
            Ok(true)
        })
        .await;
        self.until(standby, deadline, "new connections to see synchronous_standby_names = ''", async || {
            // A new connection's backend starts from the postmaster's settings.
            let mut conn = self.connect(net, &host, &host, "postgres").await?;
            let names: String =
                sqlx::query_scalar("SELECT current_setting('synchronous_standby_names')").fetch_one(&mut conn).await?;
            Ok(names.is_empty())
        })
        .await;
        let reset = started.elapsed();
        self.until(standby, deadline, "a write to commit", async || {
            // A transaction with an id commits only once no synchronous standby is waited
            // for; the checkpointer tells the backends, when it gets to the reload.
            let mut conn = self.connect(net, &host, &host, "postgres").await?;
            let write = sqlx::query_scalar::<_, i64>("SELECT txid_current()").fetch_one(&mut conn);
            match tokio::time::timeout(Duration::from_secs(1), write).await {
                Ok(result) => result.map(|_| true),
                Err(_) => Ok(false),
            }
        })
        .await;
        let writable = started.elapsed();
        let summary = format!(
            "promoted {host}: pg_ctl promote -w returned after {} ms, synchronous_standby_names reset after {} ms, \
             first write committed after {} ms",
            promoted.as_millis(),
            reset.as_millis(),
            writable.as_millis()
        );
        append(&log, &format!("{summary}\n"));
        eprintln!("multihost: postgres: {summary}");
        self.primary = standby;
        writable
    }

    /// Retries `attempt` every 100 ms until it returns `Ok(true)`; panics after `deadline`, with
    /// the tail of node `node`'s log.
    async fn until(
        &self,
        node: usize,
        deadline: Instant,
        what: &str,
        mut attempt: impl AsyncFnMut() -> Result<bool, sqlx::Error>,
    ) {
        loop {
            let last = match attempt().await {
                Ok(true) => return,
                Ok(false) => "not yet".to_owned(),
                Err(e) => e.to_string(),
            };
            let node = &self.nodes[node];
            assert!(
                Instant::now() < deadline,
                "postgres: promoting {}: gave up waiting for {what} (last: {last})\n{}",
                node.host,
                tail(&node.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
