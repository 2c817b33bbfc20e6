//! The auction driver (`runner::run`): wakes on new work, never overlaps auctions, retries when
//! the BBS cannot list cells, and stops on shutdown.

use std::sync::Arc;
use std::time::Duration;

use auctioneer::testing::{FakeBbs, FakeReps, cell, lrp};
use auctioneer::{AuctionBatch, AuctionRunner, RunnerConfig, runner};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);

fn setup() -> (Arc<FakeBbs>, Arc<FakeReps>, Arc<AuctionBatch>, AuctionRunner) {
    let bbs = Arc::new(FakeBbs::new());
    let reps = Arc::new(FakeReps::new());
    bbs.add_cell("cell-a", "rep-a:1801");
    reps.add_cell("rep-a:1801", cell("cell-a", "z1", 4096, 4096, 100));
    let batch = Arc::new(AuctionBatch::new());
    let runner = AuctionRunner::new(batch.clone(), bbs.clone(), reps.clone(), RunnerConfig::default());
    (bbs, reps, batch, runner)
}

#[tokio::test]
async fn auctions_never_overlap_and_work_arriving_meanwhile_waits_for_the_next_one() {
    let (_bbs, reps, batch, runner) = setup();
    reps.close_gate();
    let shutdown = CancellationToken::new();
    let driver = tokio::spawn(runner::run(runner, shutdown.clone()));

    batch.add_lrps([lrp("first", 0, 64)]);
    tokio::time::timeout(PATIENCE, reps.wait_for_performs(1))
        .await
        .expect("the first auction should reach its perform");
    // The first auction is held in Perform; new work must wait for it.
    batch.add_lrps([lrp("second", 0, 64), lrp("second", 1, 64)]);
    batch.add_lrps([lrp("second", 0, 64)]);
    tokio::task::yield_now().await;
    assert_eq!(batch.counts(), (2, 0), "pending work is not drained mid-auction");
    assert_eq!(reps.performs().len(), 1);

    reps.open_gate();
    tokio::time::timeout(PATIENCE, reps.wait_for_performs(2))
        .await
        .expect("the second auction should run once the first finished");
    assert_eq!(reps.max_performs_in_flight(), 1, "auctions overlapped");
    let performs = reps.performs();
    assert_eq!(performs.len(), 2);
    assert_eq!(performs[0].1.lrps.len(), 1);
    assert_eq!(performs[1].1.lrps.len(), 2, "one batch, de-duplicated");

    shutdown.cancel();
    tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the driver should stop on shutdown")
        .expect("the driver should not panic");
}

#[tokio::test(start_paused = true)]
async fn the_driver_retries_when_the_bbs_cannot_list_cells() {
    let (bbs, reps, batch, runner) = setup();
    bbs.fail_cells(Some("bbs unavailable"));
    let shutdown = CancellationToken::new();
    let driver = tokio::spawn(runner::run(runner, shutdown.clone()));
    batch.add_lrps([lrp("app", 0, 64)]);

    tokio::time::timeout(PATIENCE, async {
        while bbs.cells_calls() < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the driver should retry listing the cells");
    assert!(reps.performs().is_empty());
    assert_eq!(batch.counts(), (1, 0), "the work waits in the batch");

    bbs.fail_cells(None);
    tokio::time::timeout(PATIENCE, reps.wait_for_performs(1))
        .await
        .expect("the work should be placed once the bbs answers");
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("the driver should stop on shutdown")
        .expect("the driver should not panic");
}

#[tokio::test]
async fn shutdown_cuts_an_auction_short_and_returns_the_runner() {
    let (_bbs, reps, batch, runner) = setup();
    reps.close_gate();
    let shutdown = CancellationToken::new();
    let driver = tokio::spawn(runner::run(runner, shutdown.clone()));
    batch.add_lrps([lrp("app", 0, 64)]);
    tokio::time::timeout(PATIENCE, reps.wait_for_performs(1)).await.expect("the auction should reach its perform");
    shutdown.cancel();
    let runner = tokio::time::timeout(PATIENCE, driver)
        .await
        .expect("shutdown should not wait for the held perform")
        .expect("the driver should not panic");
    assert!(Arc::ptr_eq(runner.batch(), &batch));
}
