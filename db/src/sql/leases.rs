//! The `leases` table: Locket's locks and presences (bbs.md 7) with terms for fencing.
//!
//! Expiry is **database time**: every comparison and every new expiry is computed by the SQL
//! clock expression of [`crate::Backend::now_ms_sql`] inside the statement's transaction, never
//! from the host clock, so hosts whose clocks disagree still agree on who holds a lease.
//!
//! Rules (Locket's, plus terms):
//! - absent key: the acquirer gets it at term 1;
//! - same owner: a renewal (new value, new expiry, same term);
//! - other owner, expired: a steal (owner replaced, term + 1), which deposes a fenced writer;
//! - released or taken as expired: whoever acquires it next gets term + 1, the previous owner
//!   included;
//! - other owner, unexpired: [`Error::LeaseHeld`].
//!
//! Terms only ever increase for a key, so a fence (key, owner, term) is never valid twice: a
//! release or an expiry does not delete the row but empties its owner (a *free* row, expired
//! since the epoch), which keeps the term for the next holder. Free rows stay, one per key ever
//! used; every read skips them (they are expired), and an owner is never empty otherwise.
//!
//! Time to live: at least [`MIN_LEASE_TTL`] and at most [`MAX_LEASE_TTL`] for any lease; the
//! Locket service applies its configured, tighter limits per type and per key before calling.
//!
//! Lease operations write through [`Store::write_unfenced`]: a leader must be able to renew the
//! very lease that fences it. Not here: the lock / presence runners that call these on a timer.

use std::time::Duration;

use sqlx::Row;
use sqlx::any::AnyRow;

use proto::models::ValidationError;

use crate::backend::placeholders;
use crate::{Error, Result, Store, Tx};

/// What a lease is for (Locket's `type_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseType {
    /// A lock: one leader (`bbs`, `auctioneer`).
    Lock,
    /// A presence: a live cell announcing itself.
    Presence,
}

impl LeaseType {
    /// The integer stored in the `type_code` column (Locket's values).
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Lock => 1,
            Self::Presence => 2,
        }
    }

    /// Parses [`LeaseType::as_i64`].
    pub fn from_i64(value: i64) -> Option<Self> {
        match value {
            1 => Some(Self::Lock),
            2 => Some(Self::Presence),
            _ => None,
        }
    }
}

/// One row of the `leases` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The key (`bbs`, a cell id, ...).
    pub key: String,
    /// Who holds it (a process-unique id).
    pub owner: String,
    /// The holder's payload (a cell presence's JSON, a leader's address).
    pub value: String,
    /// Lock or presence.
    pub lease_type: LeaseType,
    /// Starts at 1 and grows by one each time the lease changes hands: another owner takes it
    /// over, or anyone takes it after a release or an expiry. Never decreases for a key.
    pub term: i64,
    /// The time to live the holder asked for, in milliseconds.
    pub ttl_ms: i64,
    /// When it expires, in database milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// The columns every lease query selects, in [`decode_lease`]'s order.
const LEASE_COLUMNS: &str = "lease_key, owner, value, type_code, term, ttl_ms, expires_at_ms";

/// The shortest time to live a lease may have.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(1);

/// The longest time to live a lease may have, whoever asks: a day (the Locket service applies
/// tighter, configured limits).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(proto::limits::MAX_LEASE_TTL_S.unsigned_abs());

/// Frees lease rows (the caller adds the `WHERE`): no owner, no value, expired since the epoch;
/// the key, type and term stay.
const FREE_LEASE: &str = "UPDATE leases SET owner = '', value = '', expires_at_ms = 0";

/// How many times an acquire is attempted when a concurrent acquirer inserts the key first.
const ACQUIRE_ATTEMPTS: u32 = 3;

/// Decodes a lease row, or says why it cannot be.
fn decode_lease(row: &AnyRow) -> std::result::Result<Lease, String> {
    let text = |name: &str| row.try_get::<String, _>(name).map_err(|e| format!("column {name}: {e}"));
    let int = |name: &str| row.try_get::<i64, _>(name).map_err(|e| format!("column {name}: {e}"));
    let type_code = int("type_code")?;
    Ok(Lease {
        key: text("lease_key")?,
        owner: text("owner")?,
        value: text("value")?,
        lease_type: LeaseType::from_i64(type_code).ok_or_else(|| format!("unknown type_code {type_code}"))?,
        term: int("term")?,
        ttl_ms: int("ttl_ms")?,
        expires_at_ms: int("expires_at_ms")?,
    })
}

/// Decodes listed rows, skipping (with a warning) those that cannot be decoded.
fn decode_listing(rows: &[AnyRow]) -> Vec<Lease> {
    let mut leases: Vec<Lease> = rows
        .iter()
        .filter_map(|row| match decode_lease(row) {
            Ok(lease) => Some(lease),
            Err(reason) => {
                let key = row.try_get::<String, _>("lease_key").unwrap_or_default();
                tracing::warn!(lease_key = %key, reason, "skipping corrupt lease row");
                None
            }
        })
        .collect();
    // Byte order, whatever the database's collation.
    leases.sort_by(|a, b| a.key.cmp(&b.key));
    leases
}

/// A duration in whole milliseconds, saturating.
fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Refuses what no lease may be: an empty key or owner (an empty owner marks a free row), a
/// time to live outside [`MIN_LEASE_TTL`]..=[`MAX_LEASE_TTL`].
fn check_acquire(key: &str, owner: &str, ttl: Duration) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Invalid(ValidationError::new("key", "must not be empty")));
    }
    if owner.is_empty() {
        return Err(Error::Invalid(ValidationError::new("owner", "must not be empty")));
    }
    if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(Error::Invalid(ValidationError::new(
            "ttl",
            format!("must be between 1 ms and {} s (got {} ms)", MAX_LEASE_TTL.as_secs(), ttl.as_millis()),
        )));
    }
    Ok(())
}

/// The database clock, read inside `tx`.
async fn db_now_ms(tx: &mut Tx, op: &'static str, key: &str) -> Result<i64> {
    let sql = format!("SELECT {}", tx.backend.now_ms_sql());
    tx.backend.query_scalar::<i64>(&sql).fetch_one(tx.conn()).await.map_err(|e| Error::from_sqlx(op, "lease", key, e))
}

/// How one acquire attempt ended.
enum Attempt {
    /// It finished (granted or refused).
    Done(Result<Lease>),
    /// A concurrent acquirer inserted the key first: look again.
    Raced,
}

impl Store {
    /// Acquires or renews the lease `key` for `owner` for `ttl` (database time); see the module
    /// docs for the rules. Fails with [`Error::LeaseHeld`] naming the current owner while another
    /// owner holds it unexpired, and with [`Error::Invalid`] (nothing written) for an empty key or
    /// owner or a ttl out of bounds. Of concurrent acquirers of an absent key exactly one wins.
    pub async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        lease_type: LeaseType,
        ttl: Duration,
    ) -> Result<Lease> {
        check_acquire(key, owner, ttl)?;
        self.check_statement_bytes("lease", key, key.len() + owner.len() + value.len())?;
        if let Some(lease) = self.renew_lease(key, owner, value, lease_type, ttl).await? {
            return Ok(lease);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.acquire_once(key, owner, value, lease_type, ttl).await {
                Attempt::Done(result) => return result,
                Attempt::Raced if attempt < ACQUIRE_ATTEMPTS => continue,
                // Still racing after several attempts: the key is being fought over, and
                // somebody else keeps winning.
                Attempt::Raced => {
                    let holder = self.fetch_lease(key).await.map(|l| l.owner).unwrap_or_default();
                    return Err(Error::LeaseHeld { key: key.to_owned(), owner: holder });
                }
            }
        }
    }

    /// The common case of [`Store::acquire_lease`], a holder renewing its own lease, in one
    /// autocommit `UPDATE ... WHERE lease_key = ? AND owner = ?` (plus, on MySQL, which has no
    /// `UPDATE ... RETURNING`, one read of the term) instead of a five-statement transaction:
    /// thousands of cells renew their presences every few seconds, and each renewal held a
    /// pooled connection for five round trips (at 1,000,000 LRPs / 4,000 cells the Locket pool
    /// fell behind and cells expired). The rule is the transaction's: the same owner keeps its
    /// term, even past the expiry. `None` when the key is absent or another owner's (or free):
    /// the transaction decides those, and a row whose type code is unknown (corrupt: the
    /// transaction takes it over with the next term, whoever asks).
    async fn renew_lease(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        lease_type: LeaseType,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let op = "renew lease";
        let err = |e| Error::from_sqlx(op, "lease", key, e);
        let ttl_ms = ttl_millis(ttl);
        let now = self.backend.now_ms_sql();
        let set = format!(
            "UPDATE leases SET value = ?, type_code = ?, ttl_ms = ?, expires_at_ms = {now} + ? \
             WHERE lease_key = ? AND owner = ? AND type_code IN ({}, {})",
            LeaseType::Lock.as_i64(),
            LeaseType::Presence.as_i64()
        );
        // The renewal's parameters, in the statement's order.
        let renewal = |sql: &str| {
            self.backend
                .query(sql)
                .bind(value.to_owned())
                .bind(lease_type.as_i64())
                .bind(ttl_ms)
                .bind(ttl_ms)
                .bind(key.to_owned())
                .bind(owner.to_owned())
        };
        // SQLite: this write waits its turn like a transaction (`store::gate`).
        let _turn = self.writers.turn().await;
        let row = match self.backend {
            crate::Backend::Postgres | crate::Backend::Sqlite => {
                renewal(&format!("{set} RETURNING term, expires_at_ms"))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?
            }
            crate::Backend::Mysql => {
                let updated = renewal(&set).execute(&self.pool).await.map_err(err)?;
                if updated.rows_affected() == 0 {
                    return Ok(None);
                }
                // Rows matched, not rows changed: the store's MySQL connections report found
                // rows. Between the two statements only an expiry and a steal could change the
                // term, and then the owner differs and this finds nothing.
                self.backend
                    .query("SELECT term, expires_at_ms FROM leases WHERE lease_key = ? AND owner = ?")
                    .bind(key)
                    .bind(owner)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?
            }
        };
        let Some(row) = row else { return Ok(None) };
        // A term that does not decode leaves the case to the transaction, which replaces the row.
        let (Ok(term), Ok(expires_at_ms)) = (row.try_get::<i64, _>("term"), row.try_get::<i64, _>("expires_at_ms"))
        else {
            return Ok(None);
        };
        Ok(Some(Lease {
            key: key.to_owned(),
            owner: owner.to_owned(),
            value: value.to_owned(),
            lease_type,
            term,
            ttl_ms,
            expires_at_ms,
        }))
    }

    /// One acquire transaction; [`Attempt::Raced`] when its insert lost to a concurrent one.
    async fn acquire_once(&self, key: &str, owner: &str, value: &str, lease_type: LeaseType, ttl: Duration) -> Attempt {
        let op = "acquire lease";
        let ttl_ms = ttl_millis(ttl);
        // The body must own what it uses: the transaction helper re-runs it on deadlock.
        let (key, owner, value) = (key.to_owned(), owner.to_owned(), value.to_owned());
        let result = self
            .write_unfenced(op, move |tx| {
                let (key, owner, value) = (key.clone(), owner.clone(), value.clone());
                Box::pin(async move {
                    let (key, owner, value) = (key.as_str(), owner.as_str(), value.as_str());
                    let err = |e| Error::from_sqlx(op, "lease", key, e);
                    let lock =
                        format!("SELECT {LEASE_COLUMNS} FROM leases WHERE lease_key = ?{}", tx.backend.for_update());
                    let row = tx.backend.query(&lock).bind(key).fetch_optional(tx.conn()).await.map_err(err)?;
                    // Read the clock after the row lock: waiting for the lock takes time.
                    let now = db_now_ms(tx, op, key).await?;
                    let expires_at_ms = now.saturating_add(ttl_ms);
                    let mut lease = Lease {
                        key: key.to_owned(),
                        owner: owner.to_owned(),
                        value: value.to_owned(),
                        lease_type,
                        term: 1,
                        ttl_ms,
                        expires_at_ms,
                    };
                    let Some(row) = row else {
                        tx.backend
                            .query(
                                "INSERT INTO leases (lease_key, owner, value, type_code, term, ttl_ms, expires_at_ms) \
                                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                            )
                            .bind(key)
                            .bind(owner)
                            .bind(value)
                            .bind(lease_type.as_i64())
                            .bind(lease.term)
                            .bind(ttl_ms)
                            .bind(expires_at_ms)
                            .execute(tx.conn())
                            .await
                            .map_err(err)?;
                        return Ok(lease);
                    };
                    // A row that cannot be decoded is taken over like an expired one: a lease
                    // must never become impossible to acquire. A free row (released, or taken
                    // as expired) has an empty owner and has expired since the epoch.
                    let (current_owner, current_term, current_expiry) = match decode_lease(&row) {
                        Ok(current) => (current.owner, current.term, current.expires_at_ms),
                        Err(reason) => {
                            tracing::warn!(lease_key = key, reason, "replacing corrupt lease row");
                            let term = row.try_get::<i64, _>("term").unwrap_or(0);
                            (String::new(), term, i64::MIN)
                        }
                    };
                    if current_owner == owner {
                        // A renewal, even past the expiry: nobody held it in between, or the
                        // owner would differ.
                        lease.term = current_term;
                    } else if current_expiry <= now {
                        lease.term = current_term.saturating_add(1);
                    } else {
                        return Err(Error::LeaseHeld { key: key.to_owned(), owner: current_owner });
                    }
                    tx.backend
                        .query(
                            "UPDATE leases SET owner = ?, value = ?, type_code = ?, term = ?, ttl_ms = ?, \
                             expires_at_ms = ? WHERE lease_key = ?",
                        )
                        .bind(owner)
                        .bind(value)
                        .bind(lease_type.as_i64())
                        .bind(lease.term)
                        .bind(ttl_ms)
                        .bind(expires_at_ms)
                        .bind(key)
                        .execute(tx.conn())
                        .await
                        .map_err(err)?;
                    Ok(lease)
                })
            })
            .await;
        match result {
            // The insert of an absent key lost to a concurrent insert.
            Err(Error::Exists { .. }) => Attempt::Raced,
            other => Attempt::Done(other),
        }
    }

    /// Releases the lease `key` held by `owner` (expired or not): its row is kept, free, with its
    /// term, so the next holder gets a higher one. [`Error::NotFound`] when there is no such
    /// lease (or it is already free); [`Error::LeaseHeld`] when another owner has it.
    pub async fn release_lease(&self, key: &str, owner: &str) -> Result<()> {
        let op = "release lease";
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.write_unfenced(op, move |tx| {
            let (key, owner) = (key.clone(), owner.clone());
            Box::pin(async move {
                let (key, owner) = (key.as_str(), owner.as_str());
                let err = |e| Error::from_sqlx(op, "lease", key, e);
                let lock = format!("SELECT owner FROM leases WHERE lease_key = ?{}", tx.backend.for_update());
                let current =
                    tx.backend.query_scalar::<String>(&lock).bind(key).fetch_optional(tx.conn()).await.map_err(err)?;
                match current {
                    None => Err(Error::NotFound { what: "lease", key: key.to_owned() }),
                    Some(current) if current.is_empty() => Err(Error::NotFound { what: "lease", key: key.to_owned() }),
                    Some(current) if current != owner => Err(Error::LeaseHeld { key: key.to_owned(), owner: current }),
                    Some(_) => {
                        tx.backend
                            .query(&format!("{FREE_LEASE} WHERE lease_key = ? AND owner = ?"))
                            .bind(key)
                            .bind(owner)
                            .execute(tx.conn())
                            .await
                            .map_err(err)?;
                        Ok(())
                    }
                }
            })
        })
        .await
    }

    /// The unexpired lease `key`. [`Error::NotFound`] when it is absent or expired,
    /// [`Error::Corrupt`] when its row cannot be decoded.
    pub async fn fetch_lease(&self, key: &str) -> Result<Lease> {
        let op = "fetch lease";
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE lease_key = ? AND expires_at_ms > {}",
            self.backend.now_ms_sql()
        );
        let row = self
            .backend
            .query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "lease", key, e))?
            .ok_or_else(|| Error::NotFound { what: "lease", key: key.to_owned() })?;
        decode_lease(&row).map_err(|reason| Error::Corrupt { what: "lease", key: key.to_owned(), reason })
    }

    /// Every unexpired lease of `lease_type`, sorted by key. Undecodable rows are skipped with a
    /// warning.
    pub async fn fetch_leases(&self, lease_type: LeaseType) -> Result<Vec<Lease>> {
        let op = "fetch leases";
        let sql = format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE type_code = ? AND expires_at_ms > {}",
            self.backend.now_ms_sql()
        );
        let rows = self
            .backend
            .query(&sql)
            .bind(lease_type.as_i64())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| Error::from_sqlx(op, "lease", "*", e))?;
        Ok(decode_listing(&rows))
    }

    /// Frees the expired leases of `lease_type` and returns them as they were, sorted by key, in
    /// one transaction: the BBS uses it to notice lost cells at once. Each is returned once (a
    /// freed row is no longer held by anyone); its term is kept for the next holder.
    /// Undecodable expired rows are freed too but not returned.
    pub async fn take_expired_leases(&self, lease_type: LeaseType) -> Result<Vec<Lease>> {
        let op = "take expired leases";
        self.write_unfenced(op, |tx| {
            Box::pin(async move {
                let err = |e| Error::from_sqlx(op, "lease", "*", e);
                let select = format!(
                    "SELECT {LEASE_COLUMNS} FROM leases WHERE type_code = ? AND owner <> '' AND expires_at_ms <= {}{}",
                    tx.backend.now_ms_sql(),
                    tx.backend.for_update()
                );
                let rows =
                    tx.backend.query(&select).bind(lease_type.as_i64()).fetch_all(tx.conn()).await.map_err(err)?;
                let keys: Vec<String> =
                    rows.iter().filter_map(|row| row.try_get::<String, _>("lease_key").ok()).collect();
                // The selected rows are locked, so they are still expired; free them by key in
                // batches that stay far below every backend's bind limit.
                for chunk in keys.chunks(500) {
                    let free = format!("{FREE_LEASE} WHERE lease_key IN ({})", placeholders(chunk.len()));
                    let mut query = tx.backend.list_query(&free);
                    for key in chunk {
                        query = query.bind(key.clone());
                    }
                    query.execute(tx.conn()).await.map_err(err)?;
                }
                Ok(decode_listing(&rows))
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_types_round_trip_through_their_codes() {
        for lease_type in [LeaseType::Lock, LeaseType::Presence] {
            assert_eq!(LeaseType::from_i64(lease_type.as_i64()), Some(lease_type));
        }
        assert_eq!(LeaseType::from_i64(0), None);
    }

    #[test]
    fn acquires_without_an_owner_or_with_a_ttl_out_of_bounds_are_invalid() {
        assert!(check_acquire("bbs", "bbs-a", Duration::from_secs(15)).is_ok());
        assert!(check_acquire("bbs", "bbs-a", MAX_LEASE_TTL).is_ok());
        for (key, owner, ttl, field) in [
            ("", "bbs-a", Duration::from_secs(15), "key"),
            ("bbs", "", Duration::from_secs(15), "owner"),
            ("bbs", "bbs-a", Duration::ZERO, "ttl"),
            ("bbs", "bbs-a", MAX_LEASE_TTL + Duration::from_millis(1), "ttl"),
        ] {
            match check_acquire(key, owner, ttl) {
                Err(Error::Invalid(e)) => assert_eq!(e.field, field),
                other => panic!("{key:?} {owner:?} {ttl:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ttls_are_whole_milliseconds_saturating() {
        assert_eq!(ttl_millis(Duration::from_micros(1_500)), 1);
        assert_eq!(ttl_millis(Duration::from_secs(u64::MAX)), i64::MAX);
    }
}
