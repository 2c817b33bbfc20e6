//! The store conformance suite on postgres (runs when `DIEGO_TEST_POSTGRES_URL` is set).

#[macro_use]
mod conformance;

conformance_suite!(::db::Backend::Postgres);
