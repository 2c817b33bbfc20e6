//! Renewal cadence of the cell presence (issue 12: leadership survives load), in paused time:
//! renewals come at least every third of the TTL, and a failed renewal is retried long before
//! the presence could expire.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::bbs_client::BbsClient;
use cell_rep::presence::{CellAdvert, Presence};
use cell_rep::testing::{BbsCall, FakeBbs};
use proto::models::{CellCapacity, CellId};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(300);

fn presence(bbs: &Arc<FakeBbs>, ttl: Duration, retry: Duration) -> Presence {
    let advert = CellAdvert {
        cell_id: CellId::parse("cell-1").expect("cell id"),
        rep_address: "10.0.0.7:1801".into(),
        zone: "z1".into(),
        capacity: CellCapacity { memory_mb: 1024, disk_mb: 1024, containers: 4 },
        rootfs_names: vec!["busybox".into()],
        placement_tags: Vec::new(),
        optional_placement_tags: Vec::new(),
    };
    let client: Arc<dyn BbsClient> = bbs.clone();
    Presence::new(client, &advert, "owner-1", ttl, retry)
}

fn locks(bbs: &FakeBbs) -> usize {
    bbs.calls().iter().filter(|c| matches!(c, BbsCall::Lock(_))).count()
}

#[tokio::test(start_paused = true)]
async fn presence_renewals_come_at_least_every_third_of_the_ttl() {
    let bbs = Arc::new(FakeBbs::new());
    // A retry interval longer than a third of the TTL is capped.
    let presence = presence(&bbs, Duration::from_secs(6), Duration::from_secs(5));
    let status = presence.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(presence.run(shutdown.clone()));
    timeout(PATIENCE, status.wait_until(true)).await.expect("presence never held");
    let (start, calls) = (Instant::now(), locks(&bbs));
    timeout(PATIENCE, bbs.wait_until(|b| locks(b) >= calls + 3)).await.expect("renewals");
    assert!(start.elapsed() <= Duration::from_secs(6), "three renewals took {:?}", start.elapsed());
    shutdown.cancel();
    timeout(PATIENCE, task).await.expect("presence loop did not stop").expect("join");
}

#[tokio::test(start_paused = true)]
async fn a_failed_presence_renewal_is_retried_long_before_the_presence_expires() {
    let bbs = Arc::new(FakeBbs::new());
    let presence = presence(&bbs, Duration::from_secs(15), Duration::from_secs(5));
    let status = presence.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(presence.run(shutdown.clone()));
    timeout(PATIENCE, status.wait_until(true)).await.expect("presence never held");

    // One renewal fails (a blip at the BBS)...
    bbs.set_unreachable(true);
    timeout(PATIENCE, status.wait_until(false)).await.expect("the failure went unnoticed");
    let lost = Instant::now();
    bbs.set_unreachable(false);
    // ...and is retried after a tenth of the TTL, not a whole retry interval.
    timeout(PATIENCE, status.wait_until(true)).await.expect("presence not re-acquired");
    assert!(lost.elapsed() <= Duration::from_millis(1_500), "the retry came after {:?}", lost.elapsed());
    shutdown.cancel();
    timeout(PATIENCE, task).await.expect("presence loop did not stop").expect("join");
}
