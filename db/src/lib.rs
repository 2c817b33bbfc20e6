//! The relational store of diego-rs: desired LRPs, actual LRPs, tasks, domains and leases on
//! SQLite (the embedded default), PostgreSQL or MySQL / MariaDB, chosen by the URL's scheme.
//!
//! - [`Store`] ([`store`]): the pool, migrations, and the write-transaction helper (bounded
//!   retry on deadlock, lease fencing inside the transaction).
//! - [`health`]: the database's reachability; every pool is gated by it, so requests fail fast
//!   while the database is down.
//! - [`targets`]: multi-host URLs (a primary and its standbys, Galera nodes): which server the
//!   pools use, moved when it goes away.
//! - [`backend`]: the dialect differences (placeholders, row locks, the database clock).
//! - [`codec`]: the one codec every blob goes through; [`crypto`]: the keys it encrypts with.
//! - [`sql`]: hand-written SQL, one module per table, each adding methods to [`Store`].
//! - [`Error`]: every failure, classified once ([`Error::code`], [`Error::is_retryable`]).
//!
//! The same conformance suite (`db/tests/`) runs on every backend.

pub mod backend;
mod coalesce;
pub mod codec;
pub mod crypto;
mod error;
pub mod group_commit;
pub mod health;
pub mod migrate;
pub mod sql;
mod store;
pub mod targets;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::Backend;
pub use crypto::Keyring;
pub use error::{Error, Result};
pub use store::{DEFAULT_IDLE_TRANSACTION_TIMEOUT, Fence, STATEMENT_HEADROOM, Store, StoreOptions, Tx};
