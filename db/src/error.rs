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
    /// A unique key is taken.
    Duplicate,
    /// Deadlock, serialization failure, lock timeout: retry the whole transaction.
    Retryable,
    /// The schema is broken (a table or column is gone, the file is corrupt): the server cannot
    /// go on.
    BrokenSchema,
    /// The database refused a value (too long, out of range, not valid text, too big for a row
    /// or a packet): the request is invalid, nothing was written.
    InvalidValue,
    /// The database cannot be reached.
    Connection,
    /// Anything else: the call failed, the server goes on.
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
            // Unclassified: this call failed, but nothing says the database is broken, so the
            // server must not step down over it (a request could otherwise kill every BBS).
            Self::Sql { .. } => ErrorCode::Unknown,
        }
    }

    /// Whether the server must step down: the database is broken (a table or column is gone, a
    /// newer schema). Never true for an error a request's values caused.
    pub fn is_unrecoverable(&self) -> bool {
        self.code() == ErrorCode::Unrecoverable
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

    /// This error as `to`'s when a transaction run under the name `from` (a coalesced batch's,
    /// begun before its members were known) failed it: the op of a failed `BEGIN`, fence check,
    /// `COMMIT` or of the retries given up on becomes the write's own.
    pub(crate) fn for_op(self, from: &'static str, to: &'static str) -> Self {
        let rename = |op: &'static str| if op == from { to } else { op };
        match self {
            Self::Deadlock { op, attempts, source } => Self::Deadlock { op: rename(op), attempts, source },
            Self::Unrecoverable { op, source } => Self::Unrecoverable { op: rename(op), source },
            Self::Unavailable { op, source } => Self::Unavailable { op: rename(op), source },
            Self::Sql { op, source } => Self::Sql { op: rename(op), source },
            other => other,
        }
    }

    /// Classifies a driver error and wraps it with the operation's name; `what` and `key` name
    /// the record, for the messages of duplicates and refused values.
    pub(crate) fn from_sqlx(op: &'static str, what: &'static str, key: &str, err: sqlx::Error) -> Self {
        match classify(&err) {
            SqlClass::Duplicate => Self::Exists { what, key: key.to_owned() },
            SqlClass::BrokenSchema => Self::Unrecoverable { op, source: err },
            SqlClass::InvalidValue => Self::Invalid(refused_value(what, key, &err)),
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

/// The validation error for a value the database refused: names the record and repeats the
/// database's reason (which names the column or the limit).
fn refused_value(what: &'static str, key: &str, err: &sqlx::Error) -> ValidationError {
    let reason = match err {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Encode(source) => source.to_string(),
        other => other.to_string(),
    };
    let record = if key.is_empty() || key == "*" { what.to_owned() } else { format!("{what} {key}") };
    ValidationError::new(record, format!("has a value the database refuses: {reason}"))
}

/// Classifies a driver error by SQLSTATE (PostgreSQL), vendor number (MySQL / MariaDB) or
/// extended result code (SQLite).
///
/// The rule: an error a *value* can cause is [`SqlClass::InvalidValue`], whatever the value;
/// only a database that lost part of its schema is [`SqlClass::BrokenSchema`]; what nobody
/// recognises is [`SqlClass::Other`], which fails the call and nothing more.
pub(crate) fn classify(err: &sqlx::Error) -> SqlClass {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => SqlClass::Connection,
        // A value the driver could not even encode (e.g. larger than the protocol allows).
        sqlx::Error::Encode(_) => SqlClass::InvalidValue,
        sqlx::Error::Database(db) => {
            if matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
                return SqlClass::Duplicate;
            }
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql_class(my.number());
            }
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                return postgres_class(&code);
            }
            sqlite_class(&code, db.message())
        }
        _ => SqlClass::Other,
    }
}

/// PostgreSQL, by SQLSTATE (appendix A of its manual).
fn postgres_class(code: &str) -> SqlClass {
    match code {
        "23505" => SqlClass::Duplicate,
        "40001" | "40P01" | "55P03" => SqlClass::Retryable,
        // undefined_table, undefined_column.
        "42P01" | "42703" => SqlClass::BrokenSchema,
        // Class 22, data exception: string too long (22001), numeric out of range (22003),
        // bad datetime (22007, 22008), NUL or bad bytes in text (22021, 22P05), invalid text
        // representation (22P02), invalid parameter value (22023), ...; class 54, program
        // limit exceeded (an index row too large, 54000; too many arguments, 54023).
        c if c.starts_with("22") || c.starts_with("54") => SqlClass::InvalidValue,
        // Connection exceptions, admin / crash shutdown, cannot connect now, too many
        // connections; the server ended the session after an idle-in-transaction (25P03) or
        // idle-session (57P05) timeout; a write on a server that became read-only (25006: a
        // standby, where a multi-host URL must move on to the new primary).
        c if c.starts_with("08")
            || matches!(c, "57P01" | "57P02" | "57P03" | "53300" | "25P03" | "57P05" | "25006") =>
        {
            SqlClass::Connection
        }
        _ => SqlClass::Other,
    }
}

/// MySQL / MariaDB, by server error number.
fn mysql_class(number: u16) -> SqlClass {
    match number {
        1062 => SqlClass::Duplicate,
        1213 | 1205 => SqlClass::Retryable,
        // No such table, unknown column.
        1146 | 1054 => SqlClass::BrokenSchema,
        // Data too long (1406), out of range (1264, 1690), incorrect string value (1366),
        // invalid character string (1300), illegal value (1367), truncated (1265, 1292), row
        // size too large (1118), packet larger than max_allowed_packet (1153).
        1406 | 1264 | 1690 | 1366 | 1300 | 1367 | 1265 | 1292 | 1118 | 1153 => SqlClass::InvalidValue,
        // Too many connections, shutdown in progress, connection killed, the server closed a
        // connection idle past its `wait_timeout` (MySQL 8.0.24 and later say so); a Galera
        // node outside the primary component ("WSREP has not yet prepared node for application
        // use", 1047); a write on a read-only server (1290).
        1040 | 1053 | 1927 | 4031 | 1047 | 1290 => SqlClass::Connection,
        _ => SqlClass::Other,
    }
}

/// SQLite, by (extended) result code; "no such table" is a plain SQLITE_ERROR (1) that only the
/// message distinguishes.
fn sqlite_class(code: &str, message: &str) -> SqlClass {
    let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
    match primary {
        // BUSY, LOCKED and their extended codes.
        5 | 6 => SqlClass::Retryable,
        // CONSTRAINT_UNIQUE, CONSTRAINT_PRIMARYKEY.
        19 if code == "2067" || code == "1555" => SqlClass::Duplicate,
        1 if message.contains("no such table") || message.contains("no such column") => SqlClass::BrokenSchema,
        // CORRUPT, NOTADB: the file is not a usable database any more.
        11 | 26 => SqlClass::BrokenSchema,
        // TOOBIG (string or blob too big), MISMATCH (datatype mismatch).
        18 | 20 => SqlClass::InvalidValue,
        _ => SqlClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_data_exceptions_are_invalid_values() {
        for code in ["22001", "22003", "22007", "22008", "22021", "22023", "22P02", "22P05", "54000", "54023"] {
            assert_eq!(postgres_class(code), SqlClass::InvalidValue, "{code}");
        }
    }

    #[test]
    fn only_a_lost_schema_is_broken() {
        assert_eq!(postgres_class("42P01"), SqlClass::BrokenSchema);
        assert_eq!(postgres_class("42703"), SqlClass::BrokenSchema);
        assert_eq!(mysql_class(1146), SqlClass::BrokenSchema);
        assert_eq!(mysql_class(1054), SqlClass::BrokenSchema);
        assert_eq!(sqlite_class("1", "no such table: tasks"), SqlClass::BrokenSchema);
        assert_eq!(sqlite_class("1", "no such column: domain"), SqlClass::BrokenSchema);
        // Anything unrecognised is Other, which does not step down.
        assert_eq!(postgres_class("XX000"), SqlClass::Other);
        assert_eq!(mysql_class(1064), SqlClass::Other);
        assert_eq!(sqlite_class("1", "near \"x\": syntax error"), SqlClass::Other);
    }

    #[test]
    fn sessions_the_server_ended_for_idling_are_connection_failures() {
        assert_eq!(postgres_class("25P03"), SqlClass::Connection);
        assert_eq!(postgres_class("57P05"), SqlClass::Connection);
        assert_eq!(mysql_class(4031), SqlClass::Connection);
    }

    #[test]
    fn a_server_that_cannot_take_writes_is_a_connection_failure() {
        // A PostgreSQL standby, a MySQL server with read_only, a Galera node outside the
        // primary component: a multi-host URL moves on to another server.
        assert_eq!(postgres_class("25006"), SqlClass::Connection);
        assert_eq!(mysql_class(1290), SqlClass::Connection);
        assert_eq!(mysql_class(1047), SqlClass::Connection);
        // A Galera certification failure is reported as a deadlock, and retried like one.
        assert_eq!(mysql_class(1213), SqlClass::Retryable);
    }

    #[test]
    fn mysql_and_sqlite_value_errors_are_invalid_values() {
        for number in [1406, 1264, 1366, 1265, 1292, 1118, 1153] {
            assert_eq!(mysql_class(number), SqlClass::InvalidValue, "{number}");
        }
        assert_eq!(sqlite_class("18", "string or blob too big"), SqlClass::InvalidValue);
    }

    #[test]
    fn unclassified_errors_do_not_step_down() {
        let err = Error::Sql { op: "list tasks", source: sqlx::Error::Protocol("surprise".into()) };
        assert_eq!(err.code(), ErrorCode::Unknown);
        assert!(!err.is_unrecoverable());
        let err = Error::Unrecoverable { op: "list tasks", source: sqlx::Error::Protocol("gone".into()) };
        assert!(err.is_unrecoverable());
    }

    #[test]
    fn a_refused_value_names_the_record_and_the_reason() {
        let err = Error::from_sqlx("desire task", "task", "t-1", sqlx::Error::Encode("too big for the wire".into()));
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(err.to_string(), "invalid request: task t-1 has a value the database refuses: too big for the wire");
    }
}
