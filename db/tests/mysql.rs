//! The store conformance suite on mysql (runs when `DIEGO_TEST_MYSQL_URL` is set).

#[macro_use]
mod conformance;

conformance_suite!(::db::Backend::Mysql);
