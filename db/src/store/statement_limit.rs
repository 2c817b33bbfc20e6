//! The most bytes one statement may carry, where the server sets it below what any request
//! holds: MySQL's `max_allowed_packet`. MySQL answers a statement over it by closing the
//! connection in the middle of the request, which the client sees as a reset connection (an
//! outage), not as a refused value; so writes of large values check it first and the BBS bounds
//! its requests by it.

use sqlx::AnyPool;

use crate::{Backend, Error, Result, Store};

/// What a statement carries besides the values [`Store::check_statement_bytes`] counts: its
/// text and its other parameters.
pub const STATEMENT_HEADROOM: u64 = 64 * 1024;

/// The statement limit of the database `pool` connects to (read once, at connect).
pub(super) async fn read(pool: &AnyPool, backend: Backend) -> Result<Option<u64>> {
    match backend {
        // A BIGINT UNSIGNED, which the `Any` driver does not decode.
        Backend::Mysql => sqlx::query_scalar::<_, i64>("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(pool)
            .await
            .map(|limit| u64::try_from(limit).ok())
            .map_err(|source| Error::Unavailable { op: "connect", source }),
        Backend::Postgres | Backend::Sqlite => Ok(None),
    }
}

impl Store {
    /// The most bytes the database takes in one statement (see the module docs): MySQL's
    /// `max_allowed_packet`, read at connect; `None` on PostgreSQL and SQLite.
    pub fn statement_limit(&self) -> Option<u64> {
        self.statement_limit
    }

    /// Refuses, as a value of `what` `key` the database would refuse, a write whose values add
    /// up to `bytes`, when that leaves less than [`STATEMENT_HEADROOM`] of the
    /// [`Store::statement_limit`] for the rest of the statement.
    pub(crate) fn check_statement_bytes(&self, what: &'static str, key: &str, bytes: usize) -> Result<()> {
        match self.statement_limit {
            Some(limit) if (bytes as u64).saturating_add(STATEMENT_HEADROOM) > limit => {
                Err(Error::Invalid(proto::models::ValidationError::new(
                    format!("{what} {key}"),
                    format!(
                        "has values of {bytes} bytes, more than the database takes in one statement \
                         (max_allowed_packet {limit} bytes, less {STATEMENT_HEADROOM} for the rest of it)"
                    ),
                )))
            }
            _ => Ok(()),
        }
    }
}
