//! `TaskConvergence::tick` against the store on every backend, plus the combined pass and the
//! spawned loop.

#[path = "support/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use converger::GuardReason;
use db::sql::leases::LeaseType;
use db::{Backend, Fence};
use proto::models::{CellId, Task, TaskDefinition, TaskGuid, TaskState};

use harness::{NOW, SEC, World, domain};

on_every_backend!(
    every_task_rule_applies_in_one_pass,
    failing_tasks_on_lost_cells_waits_for_a_trustworthy_cell_set,
    task_writes_check_the_fence,
    both_halves_run_in_one_pass,
    the_spawned_loop_converges_and_reacts_to_kicks,
);

const MIN: i64 = 60 * SEC;

fn definition(callback: &str) -> TaskDefinition {
    db::testing::fixtures::task_definition(|d| d.completion_callback_url = callback.into())
}

fn g(s: &str) -> TaskGuid {
    TaskGuid::parse(s).unwrap()
}

fn cell(s: &str) -> CellId {
    CellId::parse(s).unwrap()
}

impl World {
    async fn desire_task(&self, guid: &str, at: i64) {
        self.store()
            .desire_task(&g(guid), &domain("fresh"), &definition("http://cc.example.com/done"), at)
            .await
            .unwrap();
    }

    async fn start_task(&self, guid: &str, on: &str, at: i64) {
        self.store().start_task(&g(guid), &cell(on), at).await.unwrap();
    }

    async fn complete_task(&self, guid: &str, at: i64) {
        self.desire_task(guid, at).await;
        self.start_task(guid, "cell-1", at).await;
        self.store().complete_task(&g(guid), &cell("cell-1"), false, "", "done", at).await.unwrap();
    }

    async fn task_row(&self, guid: &str) -> Option<Task> {
        match self.store().task(&g(guid)).await {
            Ok(task) => Some(task),
            Err(db::Error::NotFound { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    }
}

fn guids<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Vec<String> {
    let mut out: Vec<String> = tasks.into_iter().map(|t| t.task_guid.to_string()).collect();
    out.sort();
    out
}

async fn every_task_rule_applies_in_one_pass(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire_task("old", NOW - 31 * MIN).await;
    w.desire_task("new", NOW - MIN).await;
    w.desire_task("lost", NOW - MIN).await;
    w.start_task("lost", "gone", NOW - MIN).await;
    w.desire_task("live", NOW - MIN).await;
    w.start_task("live", "cell-1", NOW - MIN).await;
    w.complete_task("stuck", NOW - MIN).await;
    w.store().resolving_task(&g("stuck"), NOW - MIN).await.unwrap();
    w.complete_task("resolving", NOW - 10 * SEC).await;
    w.store().resolving_task(&g("resolving"), NOW - 10 * SEC).await.unwrap();
    w.complete_task("expired", NOW - 3 * MIN).await;
    w.complete_task("quiet", NOW - MIN).await;
    w.complete_task("recent", NOW - 10 * SEC).await;

    let report = w.task().tick().await.unwrap();

    assert_eq!(
        (report.counts.pending, report.counts.running, report.counts.completed, report.counts.resolving),
        (2, 2, 3, 2)
    );
    let old = w.task_row("old").await.unwrap();
    assert_eq!(
        (old.state, old.failed, old.failure_reason.as_str()),
        (TaskState::Completed, true, "not started within time limit")
    );
    assert_eq!(w.task_row("new").await.unwrap().state, TaskState::Pending);
    let lost = w.task_row("lost").await.unwrap();
    assert_eq!(
        (lost.state, lost.failed, lost.failure_reason.as_str()),
        (TaskState::Completed, true, "cell disappeared before completion")
    );
    assert_eq!(w.task_row("live").await.unwrap().state, TaskState::Running);
    let stuck = w.task_row("stuck").await.unwrap();
    assert_eq!((stuck.state, stuck.updated_at), (TaskState::Completed, NOW - MIN), "demoted, updated_at kept");
    assert_eq!(w.task_row("resolving").await.unwrap().state, TaskState::Resolving);
    assert!(w.task_row("expired").await.is_none());
    assert_eq!(w.task_row("quiet").await.unwrap().state, TaskState::Completed);

    assert_eq!(
        (
            report.expired_pending,
            report.failed_on_lost_cells,
            report.demoted,
            report.pruned,
            report.kicked,
            report.callbacks
        ),
        (1, 1, 1, 1, 1, 2)
    );
    let rec = w.effects.recorded();
    assert_eq!(rec.task_auctions.len(), 1);
    let kicked: Vec<String> = rec.task_auctions[0].iter().map(|s| s.task_guid.to_string()).collect();
    assert_eq!(kicked, vec!["new".to_string()]);
    assert_eq!((rec.task_auctions[0][0].memory_mb, rec.task_auctions[0][0].disk_mb), (512, 1024));
    // Failed tasks get their callback at once; quiet and demoted ones again.
    assert_eq!(guids(&rec.callbacks), vec!["lost", "old", "quiet", "stuck"]);
    assert!(rec.callbacks.iter().all(|t| t.state == TaskState::Completed));
    let changes: Vec<(String, TaskState, Option<TaskState>)> = {
        let mut c: Vec<_> = rec
            .task_changes
            .iter()
            .map(|(b, a)| (b.task_guid.to_string(), b.state, a.as_ref().map(|a| a.state)))
            .collect();
        c.sort_by(|a, b| a.0.cmp(&b.0));
        c
    };
    assert_eq!(
        changes,
        vec![
            ("expired".into(), TaskState::Completed, None),
            ("lost".into(), TaskState::Running, Some(TaskState::Completed)),
            ("old".into(), TaskState::Pending, Some(TaskState::Completed)),
            ("stuck".into(), TaskState::Resolving, Some(TaskState::Completed)),
        ]
    );
}

async fn failing_tasks_on_lost_cells_waits_for_a_trustworthy_cell_set(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.desire_task("t", NOW).await;
    w.start_task("t", "cell-1", NOW).await;

    // No presence at all: the guard holds.
    let report = w.task().tick().await.unwrap();
    assert_eq!(report.guard, Some(GuardReason::NoCells));
    assert_eq!(report.withheld, 1);
    assert_eq!(w.task_row("t").await.unwrap().state, TaskState::Running);

    w.cell_up("cell-2").await;
    let report = w.task().tick().await.unwrap();
    assert_eq!(report.failed_on_lost_cells, 1);
    assert_eq!(w.task_row("t").await.unwrap().state, TaskState::Completed);
}

async fn task_writes_check_the_fence(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.complete_task("stuck", NOW - MIN).await;
    w.store().resolving_task(&g("stuck"), NOW - MIN).await.unwrap();
    w.complete_task("expired", NOW - 3 * MIN).await;

    // A deposed leader cannot demote or delete.
    let deposed = w.store().fenced(Fence { key: "bbs".into(), owner: "old-leader".into(), term: 3 });
    let err = w.task_with(converger::fixed_store(deposed)).tick().await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    assert_eq!(w.task_row("stuck").await.unwrap().state, TaskState::Resolving);
    assert!(w.task_row("expired").await.is_some());

    // The leader can.
    let lease = w.store().acquire_lease("bbs", "leader", "", LeaseType::Lock, Duration::from_secs(60)).await.unwrap();
    let leader = w.store().fenced(Fence { key: "bbs".into(), owner: "leader".into(), term: lease.term });
    let report = w.task_with(converger::fixed_store(leader)).tick().await.unwrap();
    assert_eq!((report.demoted, report.pruned), (1, 1));
    assert_eq!(w.task_row("stuck").await.unwrap().state, TaskState::Completed);
    assert!(w.task_row("expired").await.is_none());
}

async fn both_halves_run_in_one_pass(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.desire("web", "fresh", 1).await;
    w.store().delete_actual_lrps(&[(harness::guid("web"), 0, proto::models::Presence::Ordinary)]).await.unwrap();
    w.desire_task("t", NOW).await;
    let mut converger = converger::Converger::new(
        converger::fixed_store(w.store().clone()),
        Arc::new(w.effects.clone()),
        Arc::new(w.clock.clone()),
        w.config.clone(),
        w.lost.clone(),
    );

    let pass = converger.tick().await;
    pass.log();

    assert_eq!(pass.lrp.unwrap().created, 1);
    assert_eq!(pass.task.unwrap().kicked, 1);
    let rec = w.effects.recorded();
    assert_eq!((rec.lrp_auctions.len(), rec.task_auctions.len()), (1, 1));
}

async fn the_spawned_loop_converges_and_reacts_to_kicks(backend: Backend) {
    let Some(w) = World::new(backend).await else { return };
    w.cell_up("cell-1").await;
    w.cell_up("cell-2").await;
    w.desire("web", "fresh", 2).await;
    w.run("web", 0, "cell-1").await;
    w.run("web", 1, "cell-2").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = converger::ConvergenceConfig { interval: Duration::from_secs(3600), ..w.config.clone() };
    let handle = converger::spawn(
        converger::fixed_store(w.store().clone()),
        Arc::new(w.effects.clone()),
        Arc::new(w.clock.clone()),
        config,
        async move {
            let _ = stopped.await;
        },
    );
    // The first pass runs at once and finds nothing to do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.effects.recorded().lrp_auctions.is_empty());

    // A cell's presence expires: the BBS reports it, which kicks a pass long before the hour.
    w.cell_down("cell-2", false).await;
    handle.report_lost_cell(cell("cell-2"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while w.row("web", 1, proto::models::Presence::Suspect).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no pass followed the kick");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), handle.join()).await.expect("the loop did not stop after shutdown");
    assert_eq!(w.effects.recorded().started(), vec![("web".into(), 1)]);
}
