//! Task `plan` case by case (bbs.md 6.3).

use proto::models::{CellId, DomainName, Task, TaskDefinition, TaskGuid, TaskState};

use super::*;
use crate::cells::{CellSet, GuardReason};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600_000_000_000;

fn definition(callback: &str) -> TaskDefinition {
    db::testing::fixtures::task_definition(|d| d.completion_callback_url = callback.into())
}

fn task(guid: &str, state: TaskState) -> Task {
    Task {
        task_guid: TaskGuid::parse(guid).unwrap(),
        domain: DomainName::parse("d").unwrap(),
        definition: definition("http://cc/done"),
        created_at: NOW,
        updated_at: NOW,
        first_completed_at: if matches!(state, TaskState::Completed | TaskState::Resolving) { NOW } else { 0 },
        state,
        cell_id: (state == TaskState::Running).then(|| CellId::parse("cell-1").unwrap()),
        result: String::new(),
        failed: false,
        failure_reason: String::new(),
        rejection_count: 0,
        rejection_reason: String::new(),
    }
}

fn with(mut t: Task, f: impl FnOnce(&mut Task)) -> Task {
    f(&mut t);
    t
}

fn g(s: &str) -> TaskGuid {
    TaskGuid::parse(s).unwrap()
}

fn live() -> CellSet {
    CellSet::of([CellId::parse("cell-1").unwrap()])
}

fn decide(tasks: &[Task]) -> Vec<TaskAction> {
    plan(tasks, &live(), NOW, &ConvergenceConfig::default()).actions
}

#[test]
fn pending_tasks_are_kicked_every_pass_until_they_expire_after_30_minutes() {
    let at = |age: i64| decide(&[with(task("t", TaskState::Pending), |t| t.created_at = NOW - age)]);
    assert_eq!(at(0), vec![TaskAction::Kick { task_guid: g("t") }]);
    assert_eq!(at(30 * MIN), vec![TaskAction::Kick { task_guid: g("t") }], "exactly 30 min is not expired");
    assert_eq!(at(30 * MIN + 1), vec![TaskAction::FailExpiredPending { task_guid: g("t") }]);
}

#[test]
fn running_tasks_on_lost_cells_fail() {
    let on = |cell: Option<&str>| {
        decide(&[with(task("t", TaskState::Running), |t| t.cell_id = cell.map(|c| CellId::parse(c).unwrap()))])
    };
    assert_eq!(on(Some("cell-1")), vec![]);
    assert_eq!(
        on(Some("gone")),
        vec![TaskAction::FailOnLostCell { task_guid: g("t"), cell_id: Some(CellId::parse("gone").unwrap()) }]
    );
    assert_eq!(on(None), vec![TaskAction::FailOnLostCell { task_guid: g("t"), cell_id: None }]);
}

#[test]
fn failing_tasks_on_lost_cells_is_withheld_by_the_guard_and_nothing_else_is() {
    let tasks = [
        with(task("a", TaskState::Running), |t| t.cell_id = Some(CellId::parse("gone").unwrap())),
        task("b", TaskState::Pending),
        with(task("c", TaskState::Completed), |t| t.first_completed_at = NOW - 3 * MIN),
    ];
    let p = plan(&tasks, &CellSet::default(), NOW, &ConvergenceConfig::default());
    assert_eq!(p.guard, Some(GuardReason::NoCells));
    assert_eq!(
        p.actions,
        vec![TaskAction::Kick { task_guid: g("b") }, TaskAction::DeleteCompleted { task_guid: g("c") }]
    );
    assert_eq!(p.withheld.len(), 1);
    assert!(p.withheld[0].is_destructive());
}

#[test]
fn stuck_resolving_tasks_are_demoted_and_handled_as_completed_in_the_same_pass() {
    let stuck = |updated: i64, first: i64| {
        decide(&[with(task("t", TaskState::Resolving), |t| {
            t.updated_at = NOW - updated;
            t.first_completed_at = NOW - first;
        })])
    };
    assert_eq!(stuck(30 * SEC, 30 * SEC), vec![], "exactly 30 s is not stuck");
    assert_eq!(
        stuck(31 * SEC, 31 * SEC),
        vec![TaskAction::DemoteResolving { task_guid: g("t") }, TaskAction::RetryCallback { task_guid: g("t") }]
    );
    assert_eq!(
        stuck(5 * MIN, 5 * MIN),
        vec![TaskAction::DemoteResolving { task_guid: g("t") }, TaskAction::DeleteCompleted { task_guid: g("t") }]
    );
}

#[test]
fn completed_tasks_are_deleted_after_120_seconds() {
    let at = |first: i64| {
        decide(&[with(task("t", TaskState::Completed), |t| {
            t.first_completed_at = NOW - first;
            t.updated_at = NOW;
        })])
    };
    assert_eq!(at(120 * SEC), vec![]);
    assert_eq!(at(120 * SEC + 1), vec![TaskAction::DeleteCompleted { task_guid: g("t") }]);
}

#[test]
fn callbacks_are_retried_for_quiet_completed_tasks_with_a_url() {
    let quiet = |url: &str, updated: i64| {
        decide(&[with(task("t", TaskState::Completed), |t| {
            t.definition = definition(url);
            t.updated_at = NOW - updated;
        })])
    };
    assert_eq!(quiet("http://cc/done", 30 * SEC), vec![]);
    assert_eq!(quiet("http://cc/done", 30 * SEC + 1), vec![TaskAction::RetryCallback { task_guid: g("t") }]);
    assert_eq!(quiet("", 10 * MIN), vec![], "no url, nothing to retry");
}

#[test]
fn thresholds_come_from_the_config() {
    let fast = ConvergenceConfig {
        expire_pending_task: std::time::Duration::from_secs(1),
        expire_completed_task: std::time::Duration::from_secs(1),
        kick_task: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let tasks = [
        with(task("p", TaskState::Pending), |t| t.created_at = NOW - 2 * SEC),
        with(task("c", TaskState::Completed), |t| t.first_completed_at = NOW - 2 * SEC),
        with(task("r", TaskState::Resolving), |t| {
            t.updated_at = NOW - 2 * SEC;
            t.first_completed_at = NOW;
        }),
    ];
    assert_eq!(
        plan(&tasks, &live(), NOW, &fast).actions,
        vec![
            TaskAction::DeleteCompleted { task_guid: g("c") },
            TaskAction::FailExpiredPending { task_guid: g("p") },
            TaskAction::DemoteResolving { task_guid: g("r") },
            TaskAction::RetryCallback { task_guid: g("r") },
        ]
    );
}

#[test]
fn counts_are_tasks_by_state() {
    let tasks = [
        task("a", TaskState::Pending),
        task("b", TaskState::Pending),
        task("c", TaskState::Running),
        task("d", TaskState::Completed),
        task("e", TaskState::Resolving),
    ];
    let p = plan(&tasks, &live(), NOW, &ConvergenceConfig::default());
    assert_eq!(p.counts, TaskCounts { pending: 2, running: 1, completed: 1, resolving: 1 });
}
