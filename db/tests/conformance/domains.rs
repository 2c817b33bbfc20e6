//! Conformance tests of the domains store operations (bbs.md 2.4).

use std::time::Duration;

use db::testing::TestDb;
use proto::models::DomainName;

use super::NOW_NS;

macro_rules! domains_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            domains,
            [
                upserted_domains_are_fresh_until_they_expire,
                a_zero_ttl_never_expires,
                upserting_again_moves_the_expiry,
                fresh_domains_are_sorted_by_name_in_byte_order,
                delete_expired_domains_removes_only_expired_ones,
                concurrent_upserts_of_a_new_domain_all_succeed,
                a_corrupt_domain_row_is_skipped,
            ]
        );
    };
}

const SECOND_NS: i64 = 1_000_000_000;

fn domain(name: &str) -> DomainName {
    DomainName::parse(name).unwrap()
}

fn names(domains: &[proto::models::Domain]) -> Vec<&str> {
    domains.iter().map(|d| d.name.as_str()).collect()
}

/// A domain is fresh while `expire_time = now + ttl` is in the future.
pub async fn upserted_domains_are_fresh_until_they_expire(db: &TestDb) {
    db.store.upsert_domain(&domain("cf-apps"), Duration::from_secs(10), NOW_NS).await.unwrap();
    let fresh = db.store.fresh_domains(NOW_NS).await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].name.as_str(), "cf-apps");
    assert_eq!(fresh[0].expire_time, NOW_NS + 10 * SECOND_NS);
    assert!(fresh[0].is_fresh(NOW_NS));
    let almost = db.store.fresh_domains(NOW_NS + 10 * SECOND_NS - 1).await.unwrap();
    assert_eq!(names(&almost), ["cf-apps"]);
    assert!(db.store.fresh_domains(NOW_NS + 10 * SECOND_NS).await.unwrap().is_empty());
}

/// A ttl of zero stores `i64::MAX`.
pub async fn a_zero_ttl_never_expires(db: &TestDb) {
    db.store.upsert_domain(&domain("forever"), Duration::ZERO, NOW_NS).await.unwrap();
    let fresh = db.store.fresh_domains(i64::MAX - 1).await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].expire_time, i64::MAX);
}

/// An upsert of an existing domain replaces its expiry, even with the same value.
pub async fn upserting_again_moves_the_expiry(db: &TestDb) {
    let d = domain("cf-apps");
    db.store.upsert_domain(&d, Duration::from_secs(10), NOW_NS).await.unwrap();
    db.store.upsert_domain(&d, Duration::from_secs(10), NOW_NS).await.unwrap();
    db.store.upsert_domain(&d, Duration::from_secs(60), NOW_NS).await.unwrap();
    let fresh = db.store.fresh_domains(NOW_NS).await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].expire_time, NOW_NS + 60 * SECOND_NS);
    // Shorter again: the expiry moves back.
    db.store.upsert_domain(&d, Duration::from_secs(1), NOW_NS).await.unwrap();
    assert!(db.store.fresh_domains(NOW_NS + 2 * SECOND_NS).await.unwrap().is_empty());
}

/// Listing order is byte order, independent of the database's collation.
pub async fn fresh_domains_are_sorted_by_name_in_byte_order(db: &TestDb) {
    for name in ["b", "a", "C", "a-2"] {
        db.store.upsert_domain(&domain(name), Duration::from_secs(10), NOW_NS).await.unwrap();
    }
    db.store.upsert_domain(&domain("stale"), Duration::from_secs(1), NOW_NS - 5 * SECOND_NS).await.unwrap();
    let fresh = db.store.fresh_domains(NOW_NS).await.unwrap();
    assert_eq!(names(&fresh), ["C", "a", "a-2", "b"]);
}

/// Only expired domains are deleted, and the count says how many.
pub async fn delete_expired_domains_removes_only_expired_ones(db: &TestDb) {
    db.store.upsert_domain(&domain("old-1"), Duration::from_secs(1), NOW_NS - 10 * SECOND_NS).await.unwrap();
    db.store.upsert_domain(&domain("old-2"), Duration::from_secs(1), NOW_NS - 10 * SECOND_NS).await.unwrap();
    db.store.upsert_domain(&domain("live"), Duration::from_secs(10), NOW_NS).await.unwrap();
    db.store.upsert_domain(&domain("forever"), Duration::ZERO, NOW_NS).await.unwrap();
    assert_eq!(db.store.delete_expired_domains(NOW_NS).await.unwrap(), 2);
    assert_eq!(db.store.delete_expired_domains(NOW_NS).await.unwrap(), 0);
    let all = db.store.fresh_domains(i64::MIN).await.unwrap();
    assert_eq!(names(&all), ["forever", "live"]);
}

/// Concurrent upserts of a domain that does not exist yet all succeed and leave one row.
pub async fn concurrent_upserts_of_a_new_domain_all_succeed(db: &TestDb) {
    let mut handles = Vec::new();
    for i in 0..8u64 {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            store.upsert_domain(&domain("contended"), Duration::from_secs(10 + i), NOW_NS).await
        }));
    }
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let fresh = db.store.fresh_domains(NOW_NS).await.unwrap();
    assert_eq!(names(&fresh), ["contended"]);
}

/// A row whose name no longer parses is skipped by the listing.
pub async fn a_corrupt_domain_row_is_skipped(db: &TestDb) {
    db.store
        .backend()
        .query("INSERT INTO domains (domain, expire_time) VALUES ('', ?)")
        .bind(i64::MAX)
        .execute(db.store.pool())
        .await
        .unwrap();
    db.store.upsert_domain(&domain("good"), Duration::ZERO, NOW_NS).await.unwrap();
    assert_eq!(names(&db.store.fresh_domains(NOW_NS).await.unwrap()), ["good"]);
}
