//! Bulk sync's re-assertion of running instances: one `StartActualLRPs` for the RUNNING LRP
//! containers whose guids are idle, each answer handled as the single call's, and single calls
//! on a BBS that does not serve the batch call.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::executor::ContainerState;
use cell_rep::testing::{BbsCall, FakeBbs, LrpRef, eventually, lrp_key, running_cell};
use proto::error::ErrorCode;
use proto::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpState, CellId, InstanceGuid, Presence};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

/// The instance guid of index `index` of `web`.
fn instance_of(bbs: &FakeBbs, index: i32) -> String {
    let record = bbs.actual_lrp("web", index, Presence::Ordinary).expect("record");
    record.instance_key.expect("instance").instance_guid.to_string()
}

fn batches(bbs: &FakeBbs) -> Vec<Vec<LrpRef>> {
    bbs.calls()
        .into_iter()
        .filter_map(|c| match c {
            BbsCall::StartBatch(lrps) => Some(lrps),
            _ => None,
        })
        .collect()
}

fn single_starts(bbs: &FakeBbs) -> Vec<String> {
    bbs.calls()
        .into_iter()
        .filter_map(|c| match c {
            BbsCall::Start { lrp, .. } => Some(lrp.instance_guid),
            _ => None,
        })
        .collect()
}

fn sorted(mut guids: Vec<String>) -> Vec<String> {
    guids.sort();
    guids
}

#[tokio::test]
async fn a_pass_re_asserts_every_running_instance_in_one_batch_call() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 5).await;
    bbs.clear_calls();

    let report = cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(report.containers, 5);
    let batches = batches(&bbs);
    assert_eq!(batches.len(), 1, "{:?}", bbs.calls());
    let started = sorted(batches[0].iter().map(|l| l.instance_guid.clone()).collect());
    assert_eq!(started, sorted(cell.containers().into_iter().map(|c| c.guid).collect()));
    assert!(single_starts(&bbs).is_empty(), "no StartActualLRP: {:?}", bbs.calls());
}

#[tokio::test]
async fn a_refused_start_in_the_batch_stops_only_its_container() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 3).await;
    bbs.clear_calls();
    let usurped = instance_of(&bbs, 1);
    // Meanwhile the BBS gave index 1 to an instance on another cell.
    let mut theirs = ActualLrp::new_unclaimed(lrp_key("web", 1), "epoch", 0);
    theirs.state = ActualLrpState::Running;
    theirs.instance_key = Some(ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse("their-instance").expect("guid"),
        cell_id: CellId::parse("cell-2").expect("cell"),
    });
    bbs.put_actual_lrp(theirs);

    cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(batches(&bbs).len(), 1, "{:?}", bbs.calls());
    assert!(single_starts(&bbs).is_empty(), "{:?}", bbs.calls());
    timeout(PATIENCE, eventually(|| cell.executor.get(&usurped).is_none())).await.expect("refused container kept");
    let left: Vec<_> = cell.containers();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|c| c.state == ContainerState::Running), "the others keep running");
    for index in [0, 2] {
        let record = bbs.actual_lrp("web", index, Presence::Ordinary).expect("record");
        assert_eq!(record.state, ActualLrpState::Running);
    }
    let record = bbs.actual_lrp("web", 1, Presence::Ordinary).expect("record");
    assert_eq!(record.instance_key.expect("instance").instance_guid.as_str(), "their-instance", "left alone");
}

#[tokio::test]
async fn a_container_whose_operation_is_in_flight_is_left_out_of_the_batch() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 3).await;
    bbs.clear_calls();
    let busy = instance_of(&bbs, 0);
    // An operation of `busy` is in flight: its StartActualLRP waits for an answer.
    bbs.hold_starts(true);
    drop(cell.generator.enqueue(&busy));
    timeout(PATIENCE, bbs.wait_until(|b| single_starts(b) == [busy.clone()])).await.expect("operation never started");

    let pass = tokio::spawn({
        let sync = cell.bulk_sync.clone();
        async move { sync.tick().await }
    });
    timeout(PATIENCE, bbs.wait_until(|b| !batches(b).is_empty())).await.expect("no batch");
    let batched: Vec<String> = batches(&bbs)[0].iter().map(|l| l.instance_guid.clone()).collect();
    assert_eq!(batched.len(), 2, "{batched:?}");
    assert!(!batched.contains(&busy), "started behind the back of its operation: {batched:?}");

    // The pass waits for the operation it queued behind the one in flight.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pass.is_finished(), "the pass did not wait for the busy container's operation");
    bbs.hold_starts(false);
    timeout(PATIENCE, pass).await.expect("pass never ended").expect("join").expect("tick");
    assert_eq!(single_starts(&bbs), [busy.clone(), busy], "the queued operation ran after the one in flight");
    assert_eq!(batches(&bbs).len(), 1);
}

#[tokio::test]
async fn a_bbs_without_the_batch_call_gets_single_calls_and_later_passes_skip_the_batch() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 3).await;
    bbs.clear_calls();
    bbs.set_batch_unimplemented(true);
    let guids = sorted(cell.containers().into_iter().map(|c| c.guid).collect());

    cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(batches(&bbs).len(), 1, "tried once: {:?}", bbs.calls());
    assert_eq!(sorted(single_starts(&bbs)), guids, "then one StartActualLRP each");

    bbs.clear_calls();
    bbs.delete_all_actual_lrps();
    cell.bulk_sync.tick().await.expect("tick");
    assert!(batches(&bbs).is_empty(), "not tried again: {:?}", bbs.calls());
    assert_eq!(sorted(single_starts(&bbs)), guids);
    assert_eq!(bbs.actual_lrps().iter().filter(|l| l.state == ActualLrpState::Running).count(), 3, "put back");
}

#[tokio::test]
async fn a_batch_that_fails_as_a_whole_keeps_the_containers_for_the_next_pass() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 2).await;
    bbs.clear_calls();
    bbs.fail("StartActualLRPs", ErrorCode::Unavailable);
    bbs.delete_all_actual_lrps();

    cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(batches(&bbs).len(), 1);
    assert!(single_starts(&bbs).is_empty(), "a failure is not a reason to fall back");
    assert!(bbs.actual_lrps().is_empty());
    assert_eq!(cell.containers().len(), 2, "nothing stopped");

    bbs.stop_failing("StartActualLRPs");
    cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(bbs.actual_lrps().iter().filter(|l| l.state == ActualLrpState::Running).count(), 2, "put back");
}
