//! `db::Error`: what a store operation can fail with, and its classification. Driver errors are
//! mapped once, in [`Error::from_sqlx`], by SQLSTATE / vendor code per backend.

use proto::error::ErrorCode;
use proto::models::ValidationError;

/// A store error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL cannot be used.
    #[error("invalid database url: {reason}")]
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// No row with that key.
    #[error("{what} not found: {key}")]
    NotFound {
        /// The kind of record (`desired lrp`, `actual lrp`, `task`, `lease`, ...).
        what: &'static str,
        /// The key that was looked up.
        key: String,
    },
    /// A row with that key already exists.
    #[error("{what} already exists: {key}")]
    Exists {
        /// The kind of record.
        what: &'static str,
        /// The duplicate key.
        key: String,
    },
    /// A lifecycle rule refused the operation (fencing, task transitions, ...).
    #[error("{message}")]
    Refused {
        /// The Diego error type.
        code: ErrorCode,
        /// What was refused, naming the record.
        message: String,
    },
    /// The input breaks a rule.
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    /// A lease is held by another owner.
    #[error("lease {key} is held by {owner}")]
    LeaseHeld {
        /// The lease key.
        key: String,
        /// The current owner.
        owner: String,
    },
    /// This store is fenced by a lease it no longer holds: it must not write.
    #[error("lease {key} (owner {owner}, term {term}) is no longer held; refusing to write")]
    Fenced {
        /// The lease key.
        key: String,
        /// The owner this store writes as.
        owner: String,
        /// The term this store writes under.
        term: i64,
    },
    /// The database kept reporting deadlocks or serialization failures.
    #[error("{op}: gave up after {attempts} attempts on deadlock or serialization failure: {source}")]
    Deadlock {
        /// The store operation.
        op: &'static str,
        /// How many attempts were made.
        attempts: u32,
        /// The last driver error.
        source: sqlx::Error,
    },
    /// The schema is missing pieces (a table was dropped): the server cannot go on.
    #[error("{op}: unrecoverable database error: {source}")]
    Unrecoverable {
        /// The store operation.
        op: &'static str,
        /// The driver error.
        source: sqlx::Error,
    },
    /// The database schema is newer than this build knows.
    #[error("database schema version {found} is newer than this build knows ({known}); refusing to start")]
    SchemaTooNew {
        /// The version stored in the database.
        found: i64,
        /// The newest version this build has.
        known: i64,
    },
    /// The database cannot be reached.
    #[error("{op}: database unavailable: {source}")]
    Unavailable {
        /// The store operation.
        op: &'static str,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A stored row cannot be decoded.
    #[error("corrupt {what} record {key}: {reason}")]
    Corrupt {
        /// The kind of record.
        what: &'static str,
        /// Its key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other driver error.
    #[error("{op}: {source}")]
    Sql {
        /// The store operation.
        op: &'static str,
        /// The driver error.
        source: sqlx::Error,
    },
}

/// Result alias for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the database described a failure, independent of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlClass {
    Duplicate,
    Retryable,
    MissingTable,
    TooLong,
    Connection,
    Other,
}

impl Error {
    /// The Diego error type this error travels as.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } => ErrorCode::ResourceNotFound,
            Self::Exists { .. } => ErrorCode::ResourceExists,
            Self::Refused { code, .. } => *code,
            Self::Invalid(_) | Self::InvalidUrl { .. } => ErrorCode::InvalidRequest,
            Self::LeaseHeld { .. } => ErrorCode::LockCollision,
            Self::Fenced { .. } | Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Deadlock { .. } => ErrorCode::Deadlock,
            Self::Unrecoverable { .. } | Self::SchemaTooNew { .. } => ErrorCode::Unrecoverable,
            Self::Corrupt { .. } => ErrorCode::InvalidRecord,
            Self::Sql { .. } => ErrorCode::Unrecoverable,
        }
    }

    /// Whether retrying the whole operation may succeed (deadlock, serialization failure,
    /// connection trouble).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Deadlock { .. } | Self::Unavailable { .. })
    }

    /// Whether the transaction certainly did not commit, so the caller may retry without
    /// checking what happened.
    pub fn is_certainly_aborted(&self) -> bool {
        !matches!(self, Self::Unavailable { .. } | Self::Sql { .. })
    }

    /// Classifies a driver error and wraps it with the operation's name.
    pub(crate) fn from_sqlx(op: &'static str, what: &'static str, key: &str, err: sqlx::Error) -> Self {
        match classify(&err) {
            SqlClass::Duplicate => Self::Exists { what, key: key.to_owned() },
            SqlClass::MissingTable => Self::Unrecoverable { op, source: err },
            SqlClass::TooLong => {
                Self::Invalid(ValidationError::new(what, format!("has a value too long for its column ({err})")))
            }
            SqlClass::Connection => Self::Unavailable { op, source: err },
            SqlClass::Retryable => Self::Deadlock { op, attempts: 1, source: err },
            SqlClass::Other => Self::Sql { op, source: err },
        }
    }

    /// Convenience for the errors lifecycle rules return.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused { code, message: message.into() }
    }
}

/// Classifies a driver error by SQLSTATE (PostgreSQL), vendor number (MySQL / MariaDB) or
/// extended result code (SQLite).
pub(crate) fn classify(err: &sqlx::Error) -> SqlClass {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SqlClass::Connection,
        sqlx::Error::Database(db) => {
            if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
                return SqlClass::Duplicate;
            }
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return match my.number() {
                    1062 => SqlClass::Duplicate,
                    1213 | 1205 => SqlClass::Retryable,
                    1146 => SqlClass::MissingTable,
                    1406 => SqlClass::TooLong,
                    _ => SqlClass::Other,
                };
            }
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                return match code.as_ref() {
                    "23505" => SqlClass::Duplicate,
                    "40001" | "40P01" | "55P03" => SqlClass::Retryable,
                    "42P01" => SqlClass::MissingTable,
                    "22001" => SqlClass::TooLong,
                    c if c.starts_with("08") || c == "57P01" => SqlClass::Connection,
                    _ => SqlClass::Other,
                };
            }
            // SQLite: BUSY (5), LOCKED (6) and their extended codes; "no such table" is a
            // plain SQLITE_ERROR (1) that only the message distinguishes.
            let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
            match primary {
                5 | 6 => SqlClass::Retryable,
                19 if code == "2067" || code == "1555" => SqlClass::Duplicate,
                1 if db.message().contains("no such table") => SqlClass::MissingTable,
                _ => SqlClass::Other,
            }
        }
        _ => SqlClass::Other,
    }
}
