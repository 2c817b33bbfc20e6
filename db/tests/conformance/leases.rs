//! Conformance tests of the leases store operations (Locket semantics in database time, bbs.md
//! 7) and of fencing writes by a lease. These run with real time: expiry tests use a 1 s ttl and
//! sleep just past it.

use std::sync::Arc;
use std::time::Duration;

use db::sql::leases::{Lease, LeaseType};
use db::testing::{TestDb, test_keys};
use db::{Backend, Error, Fence, Store, StoreOptions};
use proto::models::DomainName;

use super::NOW_NS;

macro_rules! leases_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            leases,
            [
                acquiring_an_absent_key_grants_term_one_in_database_time,
                the_same_owner_renews_with_a_new_value_and_the_same_term,
                another_owner_is_refused_while_the_lease_is_unexpired,
                an_expired_lease_is_not_fetched_and_is_stolen_with_the_next_term,
                release_deletes_only_the_owners_lease,
                fetch_leases_lists_unexpired_leases_of_one_type_by_key,
                take_expired_leases_deletes_and_returns_expired_ones_of_one_type,
                concurrent_acquirers_of_an_absent_key_have_exactly_one_winner,
                a_corrupt_lease_row_is_reported_and_can_be_taken_over,
                a_holder_renews_past_its_expiry_with_the_same_term_in_database_time,
                a_holder_of_a_corrupt_row_takes_it_over_at_the_next_term,
                fenced_writes_succeed_while_held_and_fail_once_stolen,
                fenced_writes_fail_once_the_lease_expires,
                a_fenced_store_still_renews_its_own_lease,
                terms_only_increase_across_release_and_expiry,
                a_released_lease_never_fences_for_its_old_term_again,
                an_empty_owner_or_a_ttl_out_of_bounds_is_invalid_and_writes_nothing,
                a_standby_takes_over_from_a_leader_cut_off_in_the_middle_of_a_transaction,
                a_long_fenced_write_does_not_hold_up_the_leaders_renewal,
                a_fence_in_flight_blocks_a_steal_but_not_the_holders_renewal,
                pooled_connections_idle_past_the_idle_transaction_timeout_still_serve,
            ]
        );
    };
}

const TTL: Duration = Duration::from_secs(15);
const SHORT_TTL: Duration = Duration::from_secs(1);

/// Sleeps just past [`SHORT_TTL`].
async fn past_short_ttl() {
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(300)).await;
}

async fn lock(store: &Store, key: &str, owner: &str, ttl: Duration) -> Result<Lease, Error> {
    store.acquire_lease(key, owner, &format!("value-of-{owner}"), LeaseType::Lock, ttl).await
}

async fn presence(store: &Store, key: &str, owner: &str, ttl: Duration) -> Lease {
    store.acquire_lease(key, owner, "{}", LeaseType::Presence, ttl).await.unwrap()
}

/// The first acquire gets term 1, and its expiry is the database clock plus the ttl.
pub async fn acquiring_an_absent_key_grants_term_one_in_database_time(db: &TestDb) {
    let before = db.store.now_ms().await.unwrap();
    let lease = lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    let after = db.store.now_ms().await.unwrap();
    assert_eq!(lease.key, "bbs");
    assert_eq!(lease.owner, "bbs-a");
    assert_eq!(lease.value, "value-of-bbs-a");
    assert_eq!(lease.lease_type, LeaseType::Lock);
    assert_eq!(lease.term, 1);
    assert_eq!(lease.ttl_ms, 15_000);
    assert!(
        lease.expires_at_ms >= before + 15_000 && lease.expires_at_ms <= after + 15_000,
        "expiry {} not within [{before}, {after}] + ttl",
        lease.expires_at_ms
    );
    assert_eq!(db.store.fetch_lease("bbs").await.unwrap(), lease);
}

/// A renewal by the holder keeps the term and replaces the value and the expiry.
pub async fn the_same_owner_renews_with_a_new_value_and_the_same_term(db: &TestDb) {
    let first = lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let renewed = db.store.acquire_lease("bbs", "bbs-a", "new-address", LeaseType::Lock, TTL).await.unwrap();
    assert_eq!(renewed.term, 1);
    assert_eq!(renewed.value, "new-address");
    assert_eq!(renewed.ttl_ms, 15_000);
    assert!(renewed.expires_at_ms > first.expires_at_ms);
    // Renewed with the long ttl: still held after the short one would have run out.
    past_short_ttl().await;
    assert_eq!(db.store.fetch_lease("bbs").await.unwrap(), renewed);
}

/// An unexpired lease held by someone else is a collision naming the holder.
pub async fn another_owner_is_refused_while_the_lease_is_unexpired(db: &TestDb) {
    let held = lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    let err = lock(&db.store, "bbs", "bbs-b", TTL).await.unwrap_err();
    assert!(matches!(&err, Error::LeaseHeld { key, owner } if key == "bbs" && owner == "bbs-a"), "{err}");
    assert_eq!(err.to_string(), "lease bbs is held by bbs-a");
    assert_eq!(err.code(), proto::error::ErrorCode::LockCollision);
    assert_eq!(db.store.fetch_lease("bbs").await.unwrap(), held);
}

/// Past its ttl a lease is gone for readers, and another owner takes it over at term + 1.
pub async fn an_expired_lease_is_not_fetched_and_is_stolen_with_the_next_term(db: &TestDb) {
    lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    past_short_ttl().await;
    let err = db.store.fetch_lease("bbs").await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { what: "lease", key } if key == "bbs"), "{err}");
    let stolen = lock(&db.store, "bbs", "bbs-b", SHORT_TTL).await.unwrap();
    assert_eq!((stolen.owner.as_str(), stolen.term), ("bbs-b", 2));
    past_short_ttl().await;
    let back = lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    assert_eq!((back.owner.as_str(), back.term), ("bbs-a", 3));
    // The old holder, now deposed, cannot take it while it is held.
    let err = lock(&db.store, "bbs", "bbs-b", TTL).await.unwrap_err();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err}");
}

/// Release by the holder frees the lease; absent is NotFound; another owner's is LeaseHeld.
pub async fn release_deletes_only_the_owners_lease(db: &TestDb) {
    lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    let err = db.store.release_lease("bbs", "bbs-b").await.unwrap_err();
    assert!(matches!(&err, Error::LeaseHeld { owner, .. } if owner == "bbs-a"), "{err}");
    db.store.release_lease("bbs", "bbs-a").await.unwrap();
    assert!(matches!(db.store.fetch_lease("bbs").await, Err(Error::NotFound { .. })));
    let err = db.store.release_lease("bbs", "bbs-a").await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { what: "lease", key } if key == "bbs"), "{err}");
    // After a release anyone acquires it, at the next term.
    let lease = lock(&db.store, "bbs", "bbs-b", TTL).await.unwrap();
    assert_eq!(lease.term, 2);
    // An expired lease can still be released by its owner.
    lock(&db.store, "auctioneer", "auct-a", SHORT_TTL).await.unwrap();
    past_short_ttl().await;
    db.store.release_lease("auctioneer", "auct-a").await.unwrap();
    assert!(db.store.take_expired_leases(LeaseType::Lock).await.unwrap().is_empty());
}

/// `fetch_leases` returns only unexpired leases of the asked type, sorted by key.
pub async fn fetch_leases_lists_unexpired_leases_of_one_type_by_key(db: &TestDb) {
    presence(&db.store, "cell-b", "rep-b", TTL).await;
    presence(&db.store, "cell-a", "rep-a", TTL).await;
    presence(&db.store, "cell-C", "rep-c", TTL).await;
    presence(&db.store, "cell-gone", "rep-x", SHORT_TTL).await;
    lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    past_short_ttl().await;
    let cells = db.store.fetch_leases(LeaseType::Presence).await.unwrap();
    let keys: Vec<&str> = cells.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, ["cell-C", "cell-a", "cell-b"]);
    assert!(cells.iter().all(|l| l.lease_type == LeaseType::Presence && l.value == "{}"));
    let locks = db.store.fetch_leases(LeaseType::Lock).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].key, "bbs");
}

/// Expired leases of one type are deleted and returned in one go; others stay.
pub async fn take_expired_leases_deletes_and_returns_expired_ones_of_one_type(db: &TestDb) {
    presence(&db.store, "cell-2", "rep-2", SHORT_TTL).await;
    presence(&db.store, "cell-1", "rep-1", SHORT_TTL).await;
    presence(&db.store, "cell-live", "rep-live", TTL).await;
    lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    assert!(db.store.take_expired_leases(LeaseType::Presence).await.unwrap().is_empty());
    past_short_ttl().await;
    let lost = db.store.take_expired_leases(LeaseType::Presence).await.unwrap();
    let lost: Vec<(&str, &str)> = lost.iter().map(|l| (l.key.as_str(), l.owner.as_str())).collect();
    assert_eq!(lost, [("cell-1", "rep-1"), ("cell-2", "rep-2")]);
    assert!(db.store.take_expired_leases(LeaseType::Presence).await.unwrap().is_empty());
    // The expired lock was not touched: its holder can still renew at the same term.
    assert_eq!(lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap().term, 1);
    // The taken presences are gone: a new rep gets them, at the next term.
    assert_eq!(presence(&db.store, "cell-1", "rep-1-new", TTL).await.term, 2);
    assert_eq!(db.store.fetch_leases(LeaseType::Presence).await.unwrap().len(), 2);
}

/// Of many concurrent acquirers of an absent key, exactly one wins; the rest see it held by the
/// winner.
pub async fn concurrent_acquirers_of_an_absent_key_have_exactly_one_winner(db: &TestDb) {
    let second = Store::connect(&db.url, StoreOptions::default()).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { db.store.clone() } else { second.clone() };
        handles.push(tokio::spawn(async move {
            let owner = format!("owner-{i}");
            (owner.clone(), lock(&store, "contended", &owner, TTL).await)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            (owner, Ok(lease)) => {
                assert_eq!(lease.term, 1);
                winners.push(owner);
            }
            (_, Err(Error::LeaseHeld { owner, .. })) => losers.push(owner),
            (owner, Err(e)) => panic!("{owner}: unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(losers.len(), 7);
    assert!(losers.iter().all(|holder| *holder == winners[0]), "{losers:?} vs {winners:?}");
    assert_eq!(db.store.fetch_lease("contended").await.unwrap().owner, winners[0]);
}

/// Stores an unexpired lease `bad` of `owner` at term 4 with an unknown type code.
async fn insert_corrupt_lease(db: &TestDb, owner: &str) {
    let now = db.store.now_ms().await.unwrap();
    db.store
        .backend()
        .query(
            "INSERT INTO leases (lease_key, owner, value, type_code, term, ttl_ms, expires_at_ms) \
             VALUES ('bad', ?, '', 9, 4, 15000, ?)",
        )
        .bind(owner.to_owned())
        .bind(now + 60_000)
        .execute(db.store.pool())
        .await
        .unwrap();
}

/// A row with an unknown type code is Corrupt when fetched, and an acquirer replaces it.
pub async fn a_corrupt_lease_row_is_reported_and_can_be_taken_over(db: &TestDb) {
    insert_corrupt_lease(db, "someone").await;
    let err = db.store.fetch_lease("bad").await.unwrap_err();
    assert!(matches!(&err, Error::Corrupt { what: "lease", key, .. } if key == "bad"), "{err}");
    let lease = lock(&db.store, "bad", "fixer", TTL).await.unwrap();
    assert_eq!((lease.owner.as_str(), lease.term, lease.lease_type), ("fixer", 5, LeaseType::Lock));
    assert_eq!(db.store.fetch_lease("bad").await.unwrap(), lease);
}

/// A holder renewing after its lease ran out (nobody took it meanwhile) keeps its term, and the
/// new expiry is the database clock plus the new ttl; the row holds exactly what was returned.
pub async fn a_holder_renews_past_its_expiry_with_the_same_term_in_database_time(db: &TestDb) {
    for (key, lease_type) in [("bbs", LeaseType::Lock), ("cell-1", LeaseType::Presence)] {
        let first = db.store.acquire_lease(key, "holder", "v1", lease_type, SHORT_TTL).await.unwrap();
        past_short_ttl().await;
        assert!(matches!(db.store.fetch_lease(key).await, Err(Error::NotFound { .. })), "{key} expired");
        let before = db.store.now_ms().await.unwrap();
        let renewed = db.store.acquire_lease(key, "holder", "v2", lease_type, TTL).await.unwrap();
        let after = db.store.now_ms().await.unwrap();
        assert_eq!(renewed.term, first.term, "{key}");
        assert_eq!((renewed.value.as_str(), renewed.ttl_ms, renewed.lease_type), ("v2", 15_000, lease_type));
        assert!(
            renewed.expires_at_ms >= before + 15_000 && renewed.expires_at_ms <= after + 15_000,
            "{key}: expiry {} not within [{before}, {after}] + ttl",
            renewed.expires_at_ms
        );
        assert_eq!(db.store.fetch_lease(key).await.unwrap(), renewed, "{key}");
        // A renewal changing the type (a lock renewed as a presence) is stored as asked.
        let other = if lease_type == LeaseType::Lock { LeaseType::Presence } else { LeaseType::Lock };
        let changed = db.store.acquire_lease(key, "holder", "v3", other, TTL).await.unwrap();
        assert_eq!((changed.term, changed.lease_type), (first.term, other), "{key}");
        assert_eq!(db.store.fetch_lease(key).await.unwrap(), changed, "{key}");
    }
}

/// A row with an unknown type code is taken over at the next term even by the owner it names:
/// its holder's own renewal does not keep a term it cannot read the lease of.
pub async fn a_holder_of_a_corrupt_row_takes_it_over_at_the_next_term(db: &TestDb) {
    insert_corrupt_lease(db, "fixer").await;
    let lease = lock(&db.store, "bad", "fixer", TTL).await.unwrap();
    assert_eq!((lease.owner.as_str(), lease.term, lease.lease_type), ("fixer", 5, LeaseType::Lock));
    assert_eq!(db.store.fetch_lease("bad").await.unwrap(), lease);
}

/// A fenced write that has checked its fence and not yet committed keeps another owner from
/// taking the lease over (a steal waits for its commit), but on PostgreSQL not the holder's own
/// renewal: under load, fenced commits of seconds held the leader's renewal past its timeout.
/// (MySQL has no key-share lock: there the renewal waits too; SQLite's writers take turns.)
pub async fn a_fence_in_flight_blocks_a_steal_but_not_the_holders_renewal(db: &TestDb) {
    if db.store.backend() != Backend::Postgres {
        return;
    }
    let lease = lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    let fenced = db.store.fenced(fence_of(&lease));
    let in_flight = fenced.begin_fenced_for_test().await.unwrap();
    let renewed = tokio::time::timeout(Duration::from_secs(3), lock(&db.store, "bbs", "bbs-a", SHORT_TTL))
        .await
        .expect("the holder's renewal waited for the fenced transaction")
        .unwrap();
    assert_eq!(renewed.term, lease.term);
    past_short_ttl().await;
    let steal = tokio::time::timeout(Duration::from_secs(1), lock(&db.store, "bbs", "bbs-b", TTL)).await;
    assert!(steal.is_err(), "a steal went ahead of a fenced transaction in flight: {steal:?}");
    drop(in_flight);
    let stolen = lock(&db.store, "bbs", "bbs-b", TTL).await.unwrap();
    assert_eq!((stolen.owner.as_str(), stolen.term), ("bbs-b", lease.term + 1));
}

fn fence_of(lease: &Lease) -> Fence {
    Fence { key: lease.key.clone(), owner: lease.owner.clone(), term: lease.term }
}

async fn fenced_write(store: &Store) -> Result<(), Error> {
    store.upsert_domain(&DomainName::parse("cf-apps").unwrap(), Duration::from_secs(60), NOW_NS).await
}

/// A fenced store commits while its lease is held and is refused once another owner steals it.
pub async fn fenced_writes_succeed_while_held_and_fail_once_stolen(db: &TestDb) {
    let lease = lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    let leader = db.store.fenced(fence_of(&lease));
    assert_eq!(leader.fence(), Some(&fence_of(&lease)));
    fenced_write(&leader).await.unwrap();
    past_short_ttl().await;
    let stolen = lock(&db.store, "bbs", "bbs-b", TTL).await.unwrap();
    assert_eq!(stolen.term, 2);
    let err = fenced_write(&leader).await.unwrap_err();
    assert!(matches!(&err, Error::Fenced { key, owner, term: 1 } if key == "bbs" && owner == "bbs-a"), "{err}");
    assert_eq!(err.code(), proto::error::ErrorCode::Unavailable);
    // The new leader writes under its own fence.
    fenced_write(&db.store.fenced(fence_of(&stolen))).await.unwrap();
    // Reads are not fenced.
    assert_eq!(leader.fresh_domains(NOW_NS).await.unwrap().len(), 1);
}

/// A lease that simply runs out (nobody steals it) fences its holder too, until it renews.
pub async fn fenced_writes_fail_once_the_lease_expires(db: &TestDb) {
    let lease = lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    let leader = db.store.fenced(fence_of(&lease));
    fenced_write(&leader).await.unwrap();
    past_short_ttl().await;
    assert!(matches!(fenced_write(&leader).await, Err(Error::Fenced { .. })));
    // Renewing at the same term restores the right to write.
    assert_eq!(lock(&leader, "bbs", "bbs-a", TTL).await.unwrap().term, 1);
    fenced_write(&leader).await.unwrap();
    // A fence with the wrong term never writes.
    let stale = db.store.fenced(Fence { term: 7, ..fence_of(&lease) });
    assert!(matches!(fenced_write(&stale).await, Err(Error::Fenced { term: 7, .. })));
}

/// Lease operations bypass the fence: a deposed store still gets an honest LeaseHeld.
pub async fn a_fenced_store_still_renews_its_own_lease(db: &TestDb) {
    let lease = lock(&db.store, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    let leader = db.store.fenced(fence_of(&lease));
    let renewed = lock(&leader, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    assert_eq!(renewed.term, 1);
    past_short_ttl().await;
    lock(&db.store, "bbs", "bbs-b", TTL).await.unwrap();
    let err = lock(&leader, "bbs", "bbs-a", TTL).await.unwrap_err();
    assert!(matches!(&err, Error::LeaseHeld { owner, .. } if owner == "bbs-b"), "{err}");
    // Presence writes through a fenced store are not blocked by the lost lock either.
    presence(&leader, "cell-1", "rep-1", TTL).await;
}

/// A term never goes back for a key: a release or an expiry frees the lease but keeps its term,
/// so whoever takes it next, its old holder included, gets a higher one.
pub async fn terms_only_increase_across_release_and_expiry(db: &TestDb) {
    let mut terms = Vec::new();
    terms.push(lock(&db.store, "auctioneer", "auct-a", TTL).await.unwrap().term);
    db.store.release_lease("auctioneer", "auct-a").await.unwrap();
    // The same owner again, after its own release.
    terms.push(lock(&db.store, "auctioneer", "auct-a", TTL).await.unwrap().term);
    db.store.release_lease("auctioneer", "auct-a").await.unwrap();
    terms.push(lock(&db.store, "auctioneer", "auct-b", SHORT_TTL).await.unwrap().term);
    past_short_ttl().await;
    // Taken over after it expired.
    terms.push(lock(&db.store, "auctioneer", "auct-a", TTL).await.unwrap().term);
    assert_eq!(terms, [1, 2, 3, 4]);
    // A released lease is not fetched, listed, or released again.
    db.store.release_lease("auctioneer", "auct-a").await.unwrap();
    assert!(matches!(db.store.fetch_lease("auctioneer").await, Err(Error::NotFound { .. })));
    assert!(db.store.fetch_leases(LeaseType::Lock).await.unwrap().is_empty());
    assert!(matches!(db.store.release_lease("auctioneer", "auct-a").await, Err(Error::NotFound { .. })));
    assert!(matches!(db.store.release_lease("auctioneer", "").await, Err(Error::NotFound { .. })));

    // Presences: an expired one taken by the BBS comes back at the next term, even for the same
    // rep, and is taken only once.
    assert_eq!(presence(&db.store, "cell-1", "rep-1", SHORT_TTL).await.term, 1);
    past_short_ttl().await;
    assert_eq!(db.store.take_expired_leases(LeaseType::Presence).await.unwrap().len(), 1);
    assert!(db.store.take_expired_leases(LeaseType::Presence).await.unwrap().is_empty());
    assert!(db.store.fetch_leases(LeaseType::Presence).await.unwrap().is_empty());
    assert_eq!(presence(&db.store, "cell-1", "rep-1", TTL).await.term, 2);
}

/// The fence of a released lease stays dead even when its old owner takes the lease again: the
/// re-acquired lease has a new term (before, it restarted at 1 and revived the old fence).
pub async fn a_released_lease_never_fences_for_its_old_term_again(db: &TestDb) {
    let first = lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    let old = db.store.fenced(fence_of(&first));
    fenced_write(&old).await.unwrap();
    db.store.release_lease("bbs", "bbs-a").await.unwrap();
    assert!(matches!(fenced_write(&old).await, Err(Error::Fenced { .. })));
    // Someone else holds it for a while, releases it, and the old owner comes back.
    lock(&db.store, "bbs", "intruder", TTL).await.unwrap();
    db.store.release_lease("bbs", "intruder").await.unwrap();
    let again = lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    assert_eq!(again.term, 3);
    let err = fenced_write(&old).await.unwrap_err();
    assert!(matches!(err, Error::Fenced { term: 1, .. }), "{err}");
    fenced_write(&db.store.fenced(fence_of(&again))).await.unwrap();
}

/// An acquire with an empty key or owner, or a ttl of zero or over a day, is InvalidRequest
/// naming the field, and writes nothing.
pub async fn an_empty_owner_or_a_ttl_out_of_bounds_is_invalid_and_writes_nothing(db: &TestDb) {
    let cases = [
        ("", "bbs-a", TTL, "key"),
        ("bbs", "", TTL, "owner"),
        ("bbs", "bbs-a", Duration::ZERO, "ttl"),
        ("bbs", "bbs-a", db::sql::leases::MAX_LEASE_TTL + Duration::from_secs(1), "ttl"),
        ("bbs", "bbs-a", Duration::MAX, "ttl"),
    ];
    for (key, owner, ttl, field) in cases {
        let err = lock(&db.store, key, owner, ttl).await.unwrap_err();
        assert_eq!(err.code(), proto::error::ErrorCode::InvalidRequest, "{err}");
        assert!(matches!(&err, Error::Invalid(e) if e.field == field), "{key:?} {owner:?} {ttl:?}: {err}");
    }
    assert!(matches!(db.store.fetch_lease("bbs").await, Err(Error::NotFound { .. })));
    assert!(db.store.fetch_leases(LeaseType::Lock).await.unwrap().is_empty());
    // A day is allowed.
    assert_eq!(lock(&db.store, "bbs", "bbs-a", db::sql::leases::MAX_LEASE_TTL).await.unwrap().term, 1);
}

/// The idle-transaction timeout of the stores the two tests below open.
const IDLE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A store on `db`'s database whose server ends its transactions idle for
/// [`IDLE_TRANSACTION_TIMEOUT`].
async fn store_ending_idle_transactions(db: &TestDb) -> Store {
    let options = StoreOptions {
        keys: test_keys(),
        idle_transaction_timeout: IDLE_TRANSACTION_TIMEOUT,
        ..StoreOptions::default()
    };
    Store::connect(&db.url, options).await.unwrap()
}

/// A leader cut off from the database in the middle of a fenced write (its transaction is
/// open, and then the database hears nothing more from it) does not keep a standby from taking
/// the lease over: the fence is checked just before the commit, so the orphan holds no lock on
/// the lease row (and the server ends the orphaned transaction after the store's
/// idle-transaction timeout in any case); the takeover goes through once the lease has expired.
/// The orphan, heard from again, finds its transaction gone or the lease taken (UNAVAILABLE
/// either way) and commits nothing. SQLite has no server to be cut off from.
pub async fn a_standby_takes_over_from_a_leader_cut_off_in_the_middle_of_a_transaction(db: &TestDb) {
    if db.backend() == Backend::Sqlite {
        return;
    }
    let leader = store_ending_idle_transactions(db).await;
    let lease = lock(&leader, "bbs", "bbs-a", SHORT_TTL).await.unwrap();
    let fenced = leader.fenced(fence_of(&lease));
    // The orphan: a fenced write that stops talking to the database after its fence check, as a
    // leader whose link to the database is cut does, until the test lets it go.
    let checked = Arc::new(tokio::sync::Notify::new());
    let resume = Arc::new(tokio::sync::Notify::new());
    let orphan = {
        let (checked, resume) = (checked.clone(), resume.clone());
        tokio::spawn(async move {
            fenced
                .write("orphaned write", move |_tx| {
                    let (checked, resume) = (checked.clone(), resume.clone());
                    Box::pin(async move {
                        checked.notify_one();
                        resume.notified().await;
                        Ok(())
                    })
                })
                .await
        })
    };
    checked.notified().await;
    let cut_at = tokio::time::Instant::now();
    past_short_ttl().await;
    // On the server's defaults the takeover waits for the orphan's share lock for hours.
    let bound = SHORT_TTL + IDLE_TRANSACTION_TIMEOUT + Duration::from_secs(5);
    let takeover = tokio::time::timeout(bound, lock(&db.store, "bbs", "bbs-b", TTL)).await;
    let took_over = cut_at.elapsed();
    // Heard from again, the orphan commits if its transaction is still there (and so lets a
    // failing test end), or finds it ended.
    resume.notify_one();
    let standby = takeover
        .unwrap_or_else(|_| panic!("the standby's takeover still waits {bound:?} after the leader was cut off"))
        .unwrap();
    assert_eq!((standby.owner.as_str(), standby.term), ("bbs-b", 2));
    eprintln!("took over {took_over:?} after the leader went quiet mid-transaction");
    let err = orphan.await.unwrap().unwrap_err();
    assert_eq!(err.code(), proto::error::ErrorCode::Unavailable, "{err}");
    leader.close().await;
}

/// A fenced write whose body takes long (a batch of a thousand desires) does not keep the leader
/// from renewing its lease meanwhile: the fence is checked just before the commit, so the lease
/// row is not share-locked while the body runs. (Checked first, the renewal's lock for update
/// waited for the whole body, past the leader's renewal timeout.) The write still commits.
pub async fn a_long_fenced_write_does_not_hold_up_the_leaders_renewal(db: &TestDb) {
    if db.backend() == Backend::Sqlite {
        // One writer at a time: the renewal waits for any write, fenced or not.
        return;
    }
    let lease = lock(&db.store, "bbs", "bbs-a", TTL).await.unwrap();
    let fenced = db.store.fenced(fence_of(&lease));
    let started = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let long = {
        let (started, finish) = (started.clone(), finish.clone());
        tokio::spawn(async move {
            fenced
                .write("long write", move |_tx| {
                    let (started, finish) = (started.clone(), finish.clone());
                    Box::pin(async move {
                        started.notify_one();
                        finish.notified().await;
                        Ok(())
                    })
                })
                .await
        })
    };
    started.notified().await;
    let renewal = tokio::time::timeout(Duration::from_secs(5), lock(&db.store, "bbs", "bbs-a", TTL)).await;
    finish.notify_one();
    let renewed = renewal.expect("the renewal waited for the long write's body").unwrap();
    assert_eq!((renewed.owner.as_str(), renewed.term), ("bbs-a", lease.term));
    long.await.unwrap().expect("the long write commits under the renewed lease");
}

/// A server that ends idle transactions may also close idle connections (MySQL's `wait_timeout`
/// does): connections idle in the pool for longer than the timeout are replaced, never handed
/// out dead.
pub async fn pooled_connections_idle_past_the_idle_transaction_timeout_still_serve(db: &TestDb) {
    if db.backend() == Backend::Sqlite {
        return;
    }
    let store = store_ending_idle_transactions(db).await;
    let busy = |round: i64| {
        let store = store.clone();
        async move {
            // Several at once, so the pool holds several connections.
            let domains: Vec<DomainName> =
                (0..4).map(|i| DomainName::parse(format!("round-{round}-{i}")).unwrap()).collect();
            let writes = domains.iter().map(|d| store.upsert_domain(d, Duration::from_secs(60), NOW_NS));
            for result in futures::future::join_all(writes).await {
                result.unwrap();
            }
            assert_eq!(store.fresh_domains(NOW_NS).await.unwrap().len() as i64, 4 * (round + 1));
        }
    };
    busy(0).await;
    tokio::time::sleep(IDLE_TRANSACTION_TIMEOUT + Duration::from_secs(1)).await;
    busy(1).await;
    store.close().await;
}
