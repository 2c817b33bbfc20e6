//! Unit tests of the store's pure helpers.

use super::pool::{ping_after_idle, session_setup};
use super::*;

#[test]
fn sqlite_stores_commit_in_one_lane_at_most() {
    let options = |lanes| StoreOptions { group_commit_lanes: lanes, ..StoreOptions::default() };
    assert_eq!(lanes(Backend::Sqlite, &options(4)), 1);
    assert_eq!(lanes(Backend::Sqlite, &options(0)), 0);
    assert_eq!(lanes(Backend::Postgres, &options(4)), 4);
    assert_eq!(lanes(Backend::Mysql, &StoreOptions::default()), DEFAULT_GROUP_COMMIT_LANES);
}

#[test]
fn idle_connections_are_pinged_before_the_server_can_have_closed_them() {
    let secs = Duration::from_secs;
    assert_eq!(ping_after_idle(Backend::Sqlite, secs(5)), None);
    // MySQL's wait_timeout is the idle-transaction timeout: ping well before it.
    assert_eq!(ping_after_idle(Backend::Mysql, secs(2)), Some(secs(1)));
    assert_eq!(ping_after_idle(Backend::Mysql, Duration::from_millis(600)), Some(Duration::from_millis(300)));
    // Otherwise after a second idle (a restarted or replaced server).
    assert_eq!(ping_after_idle(Backend::Postgres, secs(5)), Some(secs(1)));
    assert_eq!(ping_after_idle(Backend::Mysql, Duration::ZERO), Some(secs(1)));
}

#[test]
fn each_server_is_told_to_end_idle_transactions_in_its_own_terms() {
    let timeout = Duration::from_millis(1500);
    assert_eq!(
        session_setup(Backend::Postgres, "", timeout).as_deref(),
        Some("SET idle_in_transaction_session_timeout = 1500")
    );
    assert_eq!(
        session_setup(Backend::Mysql, "10.11.19-MariaDB-0+deb12u1", timeout).as_deref(),
        Some("SET SESSION idle_transaction_timeout = 2")
    );
    assert_eq!(session_setup(Backend::Mysql, "8.0.36", timeout).as_deref(), Some("SET SESSION wait_timeout = 2"));
    assert_eq!(session_setup(Backend::Sqlite, "", timeout), None);
    // Zero leaves the server alone; tiny and huge values stay in the settings' ranges.
    assert_eq!(session_setup(Backend::Postgres, "", Duration::ZERO), None);
    assert_eq!(session_setup(Backend::Mysql, "8.0.36", Duration::ZERO), None);
    assert_eq!(
        session_setup(Backend::Postgres, "", Duration::from_micros(10)).as_deref(),
        Some("SET idle_in_transaction_session_timeout = 1")
    );
    assert_eq!(
        session_setup(Backend::Mysql, "8.0.36", Duration::from_millis(1)).as_deref(),
        Some("SET SESSION wait_timeout = 1")
    );
    assert_eq!(
        session_setup(Backend::Postgres, "", Duration::from_secs(u64::MAX)).as_deref(),
        Some("SET idle_in_transaction_session_timeout = 2147483647")
    );
    assert_eq!(
        session_setup(Backend::Mysql, "8.0.36", Duration::from_secs(u64::MAX)).as_deref(),
        Some("SET SESSION wait_timeout = 31536000")
    );
}

#[test]
fn the_idle_transaction_timeout_is_a_third_of_the_lease_ttl_within_bounds() {
    let fitted = |ttl| StoreOptions::default().for_lease_ttl(ttl).idle_transaction_timeout;
    assert_eq!(StoreOptions::default().idle_transaction_timeout, DEFAULT_IDLE_TRANSACTION_TIMEOUT);
    assert_eq!(fitted(Duration::from_secs(15)), Duration::from_secs(5));
    assert_eq!(fitted(Duration::from_secs(12)), Duration::from_secs(4));
    assert_eq!(fitted(Duration::from_secs(3)), Duration::from_secs(2));
    assert_eq!(fitted(Duration::from_millis(500)), Duration::from_secs(2));
    assert_eq!(fitted(Duration::from_secs(60)), DEFAULT_IDLE_TRANSACTION_TIMEOUT);
}
