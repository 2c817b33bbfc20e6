//! Bulk sync (reference 2.6): one `tick()` against a fake BBS whose records were changed behind
//! the rep's back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cell_rep::bulk_sync::TASK_CONTAINER_MISSING;
use cell_rep::executor::ContainerState;
use cell_rep::runtime::sim::SimConfig;
use cell_rep::testing::{
    BbsCall, FakeBbs, TestCell, TestCellOptions, eventually, lrp_key, running_cell, task, task_work,
};
use proto::error::ErrorCode;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpState, CellId, InstanceGuid, NetInfo, Presence, TaskState,
};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

fn running_record(process_guid: &str, index: i32, instance_guid: &str, cell_id: &str, presence: Presence) -> ActualLrp {
    let mut lrp = ActualLrp::new_unclaimed(lrp_key(process_guid, index), "epoch", 0);
    lrp.state = ActualLrpState::Running;
    lrp.presence = presence;
    lrp.instance_key = Some(ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance_guid).expect("guid"),
        cell_id: CellId::parse(cell_id).expect("cell"),
    });
    lrp.net_info = Some(NetInfo { address: "10.0.0.9".into(), ..NetInfo::default() });
    lrp
}

#[tokio::test]
async fn after_bbs_data_loss_the_next_tick_puts_the_running_records_back() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 3).await;
    let before: BTreeMap<i32, String> = bbs
        .actual_lrps()
        .into_iter()
        .map(|l| (l.key.index, l.instance_key.expect("instance").instance_guid.to_string()))
        .collect();

    bbs.delete_all_actual_lrps();
    let report = cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(report.containers, 3);

    let after = bbs.actual_lrps();
    assert_eq!(after.len(), 3);
    for lrp in after {
        assert_eq!(lrp.state, ActualLrpState::Running);
        assert_eq!(lrp.presence, Presence::Ordinary);
        let instance = lrp.instance_key.expect("instance");
        assert_eq!(instance.cell_id.as_str(), "cell-1");
        assert_eq!(before.get(&lrp.key.index), Some(&instance.instance_guid.to_string()), "same containers");
        assert!(lrp.net_info.is_some_and(|n| !n.address.is_empty() && n.ports.len() == 1));
    }
}

#[tokio::test]
async fn a_record_with_no_container_is_removed() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 1).await;
    bbs.put_actual_lrp(running_record("ghost", 0, "ghost-instance", "cell-1", Presence::Ordinary));
    bbs.put_actual_lrp(running_record("ghost", 1, "evacuated-ghost", "cell-1", Presence::Evacuating));
    // Records of other cells are not this cell's business.
    bbs.put_actual_lrp(running_record("elsewhere", 0, "other-instance", "cell-2", Presence::Ordinary));

    let report = cell.bulk_sync.tick().await.expect("tick");
    assert_eq!((report.lrps_removed, report.evacuating_removed), (1, 1));
    assert!(bbs.actual_lrp("ghost", 0, Presence::Ordinary).is_none());
    assert!(bbs.actual_lrp("ghost", 1, Presence::Evacuating).is_none());
    assert!(bbs.actual_lrp("elsewhere", 0, Presence::Ordinary).is_some());
    assert!(bbs.actual_lrp("web", 0, Presence::Ordinary).is_some_and(|l| l.state == ActualLrpState::Running));
    assert!(
        bbs.calls()
            .iter()
            .any(|c| matches!(c, BbsCall::RemoveEvacuating(lrp) if lrp.instance_guid == "evacuated-ghost"))
    );
}

#[tokio::test]
async fn a_running_task_with_no_container_is_failed() {
    let bbs = Arc::new(FakeBbs::new());
    let mut orphan = task("orphan", 64);
    orphan.state = TaskState::Running;
    orphan.cell_id = Some(CellId::parse("cell-1").expect("cell"));
    bbs.desire_task(orphan);
    let cell = TestCell::start("cell-1", bbs.clone());

    let report = cell.bulk_sync.tick().await.expect("tick");
    assert_eq!(report.tasks_failed, 1);
    let task = bbs.task("orphan").expect("task");
    assert_eq!(task.state, TaskState::Completed);
    assert!(task.failed);
    assert_eq!(task.failure_reason, TASK_CONTAINER_MISSING);
}

#[tokio::test]
async fn a_task_cancelled_behind_the_reps_back_loses_its_container() {
    let bbs = Arc::new(FakeBbs::new());
    let t = task("job", 64);
    bbs.desire_task(t.clone());
    let options = TestCellOptions {
        sim: SimConfig {
            healthy_after: Duration::from_millis(10),
            task_duration: Duration::from_secs(3600),
            ..SimConfig::default()
        },
        ..TestCellOptions::default()
    };
    let cell = TestCell::start_with("cell-1", bbs.clone(), options);
    cell.perform(Vec::new(), vec![task_work(&t)]);
    timeout(PATIENCE, eventually(|| cell.containers().iter().any(|c| c.state == ContainerState::Running)))
        .await
        .expect("task never ran");
    // The cancel call to the rep was lost; the BBS already completed the task.
    let mut cancelled = bbs.task("job").expect("task");
    cancelled.state = TaskState::Completed;
    cancelled.cell_id = None;
    bbs.desire_task(cancelled);

    cell.bulk_sync.tick().await.expect("tick");
    timeout(PATIENCE, eventually(|| cell.containers().is_empty())).await.expect("container of a cancelled task kept");
}

#[tokio::test]
async fn a_container_whose_index_belongs_to_another_instance_is_stopped() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 1).await;
    let ours = cell.containers()[0].guid.clone();
    // Meanwhile the BBS gave the index to an instance on another cell.
    bbs.put_actual_lrp(running_record("web", 0, "their-instance", "cell-2", Presence::Ordinary));

    cell.bulk_sync.tick().await.expect("tick");
    timeout(PATIENCE, eventually(|| cell.executor.get(&ours).is_none())).await.expect("usurped container kept");
    let record = bbs.actual_lrp("web", 0, Presence::Ordinary).expect("record");
    assert_eq!(record.instance_key.expect("instance").instance_guid.as_str(), "their-instance", "left alone");
}

#[tokio::test]
async fn a_failing_list_skips_the_pass() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = running_cell(&bbs, 1).await;
    bbs.fail("Tasks", ErrorCode::Unavailable);
    bbs.put_actual_lrp(running_record("ghost", 0, "ghost-instance", "cell-1", Presence::Ordinary));
    let error = cell.bulk_sync.tick().await.expect_err("tasks cannot be listed");
    assert_eq!(error.call, "Tasks");
    assert!(bbs.actual_lrp("ghost", 0, Presence::Ordinary).is_some(), "nothing is removed on a skipped pass");
    assert_eq!(cell.containers().len(), 1);
}
