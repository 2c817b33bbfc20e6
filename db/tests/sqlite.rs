//! The store conformance suite on sqlite (always runs).

#[macro_use]
mod conformance;

conformance_suite!(::db::Backend::Sqlite);
