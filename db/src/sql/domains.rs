//! The `domains` table: freshness of domains (bbs.md 2.4). A domain is fresh while its
//! `expire_time` (nanoseconds since the Unix epoch) is in the future; a ttl of zero never
//! expires (`i64::MAX`). Freshness gates the destructive convergence actions, which live in the
//! converger, not here.
//!
//! Time is passed in (`now_ns`) by the caller's injected clock, as Diego does: domain freshness
//! is BBS time, unlike lease expiry, which is database time (see [`super::leases`]).

use std::time::Duration;

use proto::models::{Domain, DomainName};
use sqlx::Row;

use crate::{Error, Result, Store};

/// How many times an upsert is attempted when a concurrent upsert inserts the same domain first.
const UPSERT_ATTEMPTS: u32 = 3;

/// The expiry of a domain upserted at `now_ns` with `ttl`: `i64::MAX` for a zero ttl, else
/// `now_ns + ttl`, saturating.
fn expire_time(ttl: Duration, now_ns: i64) -> i64 {
    if ttl.is_zero() {
        return i64::MAX;
    }
    let ttl_ns = i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
    now_ns.saturating_add(ttl_ns)
}

impl Store {
    /// Sets `domain` to expire `ttl` after `now_ns` (never, for a zero ttl), creating it when
    /// absent. Mirrors Diego's `UpsertDomain`: an UPDATE, then an INSERT when no row matched.
    pub async fn upsert_domain(&self, domain: &DomainName, ttl: Duration, now_ns: i64) -> Result<()> {
        let op = "upsert domain";
        let expires = expire_time(ttl, now_ns);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The body must own what it uses: the transaction helper re-runs it on deadlock.
            let domain = domain.clone();
            let result = self
                .write(op, move |tx| {
                    let domain = domain.clone();
                    Box::pin(async move {
                        let err = |e| Error::from_sqlx(op, "domain", domain.as_str(), e);
                        let lock = format!("SELECT domain FROM domains WHERE domain = ?{}", tx.backend.for_update());
                        let existing = tx
                            .backend
                            .query(&lock)
                            .bind(domain.as_str())
                            .fetch_optional(tx.conn())
                            .await
                            .map_err(err)?;
                        let sql = if existing.is_some() {
                            "UPDATE domains SET expire_time = ? WHERE domain = ?"
                        } else {
                            "INSERT INTO domains (expire_time, domain) VALUES (?, ?)"
                        };
                        tx.backend
                            .query(sql)
                            .bind(expires)
                            .bind(domain.as_str())
                            .execute(tx.conn())
                            .await
                            .map_err(err)?;
                        Ok(())
                    })
                })
                .await;
            match result {
                // A concurrent upsert inserted the row between our lookup and our insert: the
                // next attempt finds it and updates it.
                Err(Error::Exists { .. }) if attempt < UPSERT_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    /// The domains fresh at `now_ns`, sorted by name. Rows whose name is no longer valid are
    /// skipped with a warning.
    pub async fn fresh_domains(&self, now_ns: i64) -> Result<Vec<Domain>> {
        let op = "list domains";
        let rows = self
            .backend
            .query("SELECT domain, expire_time FROM domains WHERE expire_time > ?")
            .bind(now_ns)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "domain", "*", e))?;
        let mut domains = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = match row.try_get("domain") {
                Ok(name) => name,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping undecodable domain row");
                    continue;
                }
            };
            let parsed = DomainName::parse(name.clone())
                .map_err(|e| e.to_string())
                .and_then(|name| row.try_get::<i64, _>("expire_time").map(|t| (name, t)).map_err(|e| e.to_string()));
            match parsed {
                Ok((name, expire_time)) => domains.push(Domain { name, expire_time }),
                Err(reason) => tracing::warn!(domain = %name, reason, "skipping corrupt domain row"),
            }
        }
        // Sort here rather than in SQL: PostgreSQL orders by the database's collation, which need
        // not be byte order.
        domains.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(domains)
    }

    /// Deletes the domains expired at `now_ns` and returns how many there were. Convergence calls
    /// it at the start of each LRP pass.
    pub async fn delete_expired_domains(&self, now_ns: i64) -> Result<u64> {
        let op = "delete expired domains";
        self.write(op, |tx| {
            Box::pin(async move {
                let done = tx
                    .backend
                    .query("DELETE FROM domains WHERE expire_time <= ?")
                    .bind(now_ns)
                    .execute(tx.conn())
                    .await
                    .map_err(|e| Error::from_sqlx(op, "domain", "*", e))?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_ttl_never_expires() {
        assert_eq!(expire_time(Duration::ZERO, 5), i64::MAX);
    }

    #[test]
    fn expiry_is_now_plus_ttl_and_saturates() {
        assert_eq!(expire_time(Duration::from_secs(2), 1_000), 2_000_001_000);
        assert_eq!(expire_time(Duration::from_secs(u64::MAX), 1), i64::MAX);
        assert_eq!(expire_time(Duration::from_nanos(10), i64::MAX - 1), i64::MAX);
    }
}
