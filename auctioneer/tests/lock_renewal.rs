//! Renewal cadence of the `auctioneer` lock (issue 12: leadership survives load), against a fake
//! Locket, in paused time: renewals come at least every third of the TTL, and a failed renewal
//! is retried long before the lease could expire.

use std::sync::Arc;
use std::time::Duration;

use auctioneer::lock::{self, LockSpec, LockStatus};
use auctioneer::testing::FakeLocker;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(300);

async fn wait_until(status: &LockStatus, held: bool) {
    tokio::time::timeout(PATIENCE, status.wait_until(held, &CancellationToken::new()))
        .await
        .expect("the lock status should change");
}

#[tokio::test(start_paused = true)]
async fn renewals_come_at_least_every_third_of_the_ttl() {
    let locker = Arc::new(FakeLocker::new(true));
    // A retry interval longer than a third of the TTL is capped.
    let spec = LockSpec::auctioneer("owner-1", "10.0.0.5:9016", Duration::from_secs(6), Duration::from_secs(5));
    let status = LockStatus::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(lock::hold(locker.clone(), spec, status.clone(), shutdown.clone()));
    wait_until(&status, true).await;
    let (start, calls) = (Instant::now(), locker.lock_calls());
    tokio::time::timeout(PATIENCE, locker.wait_for_lock_calls(calls + 3)).await.expect("renewals");
    assert!(start.elapsed() <= Duration::from_secs(6), "three renewals took {:?}", start.elapsed());
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_retried_long_before_the_lease_expires() {
    let locker = Arc::new(FakeLocker::new(true));
    let spec = LockSpec::auctioneer("owner-1", "10.0.0.5:9016", Duration::from_secs(15), Duration::from_secs(5));
    let status = LockStatus::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(lock::hold(locker.clone(), spec, status.clone(), shutdown.clone()));
    wait_until(&status, true).await;

    // One renewal fails (a blip at the BBS): auctioning stops at once...
    locker.set_available(false);
    wait_until(&status, false).await;
    let lost = Instant::now();
    locker.set_available(true);
    // ...and the lock is retried after a tenth of the TTL, not a whole retry interval.
    wait_until(&status, true).await;
    assert!(lost.elapsed() <= Duration::from_millis(1_500), "the retry came after {:?}", lost.elapsed());
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
}
