//! Leadership through the `auctioneer` lock, against a fake Locket, in paused time.

use std::sync::Arc;
use std::time::Duration;

use auctioneer::lock::{self, LockSpec, LockStatus};
use auctioneer::testing::FakeLocker;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(300);

fn spec() -> LockSpec {
    LockSpec::auctioneer("owner-1", "10.0.0.5:9016", Duration::from_secs(15), Duration::from_secs(5))
}

fn start(locker: &Arc<FakeLocker>) -> (LockStatus, CancellationToken, tokio::task::JoinHandle<()>) {
    let status = LockStatus::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(lock::hold(locker.clone(), spec(), status.clone(), shutdown.clone()));
    (status, shutdown, task)
}

async fn wait_until(status: &LockStatus, held: bool) {
    tokio::time::timeout(PATIENCE, status.wait_until(held, &CancellationToken::new()))
        .await
        .expect("the lock status should change");
}

#[tokio::test(start_paused = true)]
async fn a_free_lock_is_acquired_with_the_advertised_address_as_its_value() {
    let locker = Arc::new(FakeLocker::new(true));
    let (status, shutdown, task) = start(&locker);
    wait_until(&status, true).await;
    let asked = locker.last_lock().expect("a lock call");
    assert_eq!(asked.key, "auctioneer");
    assert_eq!(asked.owner, "owner-1");
    assert_eq!(asked.value, "10.0.0.5:9016");
    assert_eq!(asked.ttl, Duration::from_secs(15));

    // It keeps renewing.
    tokio::time::timeout(PATIENCE, locker.wait_for_lock_calls(3)).await.expect("the lock should be renewed");
    assert!(status.is_held());
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
}

#[tokio::test(start_paused = true)]
async fn a_standby_keeps_trying_and_takes_over_when_the_lock_frees() {
    let locker = Arc::new(FakeLocker::new(false));
    let (status, shutdown, task) = start(&locker);
    tokio::time::timeout(PATIENCE, locker.wait_for_lock_calls(3)).await.expect("a standby should retry");
    assert!(!status.is_held());

    locker.set_available(true);
    wait_until(&status, true).await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_loses_the_lock_at_once() {
    let locker = Arc::new(FakeLocker::new(true));
    let (status, shutdown, task) = start(&locker);
    wait_until(&status, true).await;
    locker.set_available(false);
    wait_until(&status, false).await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
}

#[tokio::test(start_paused = true)]
async fn the_lock_is_released_on_shutdown() {
    let locker = Arc::new(FakeLocker::new(true));
    let (status, shutdown, task) = start(&locker);
    wait_until(&status, true).await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
    assert!(!status.is_held());
    let released = locker.releases();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].owner, "owner-1");
}

#[tokio::test(start_paused = true)]
async fn a_standby_that_never_held_the_lock_does_not_release_it() {
    let locker = Arc::new(FakeLocker::new(false));
    let (_status, shutdown, task) = start(&locker);
    tokio::time::timeout(PATIENCE, locker.wait_for_lock_calls(2)).await.expect("a standby should retry");
    // Cancel between attempts, while it sleeps.
    tokio::task::yield_now().await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("hold should stop").expect("hold should not panic");
    assert!(locker.releases().is_empty());
}
