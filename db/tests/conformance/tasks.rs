//! Conformance tests of the tasks store operations (bbs.md 2.3, 3.5).

use db::Error;
use db::sql::tasks::{TaskFilter, TaskSummary};
use db::testing::TestDb;
use proto::error::ErrorCode;
use proto::models::{CellId, DomainName, Task, TaskDefinition, TaskGuid, TaskState};

use super::NOW_NS;

macro_rules! tasks_tests {
    ($backend:expr) => {
        suite_module!(
            $backend,
            tasks,
            [
                desiring_stores_a_pending_task,
                desiring_a_taken_guid_is_exists_and_changes_nothing,
                listings_filter_by_domain_and_cell,
                start_moves_pending_to_running_once_per_cell,
                complete_requires_running_on_the_same_cell,
                reject_returns_the_task_to_pending_until_retries_run_out,
                reject_is_only_for_pending_or_running_tasks,
                reasons_are_truncated_to_1024_characters,
                cancel_and_fail_complete_a_task_as_failed,
                resolving_then_delete_removes_a_completed_task,
                delete_and_resolving_are_refused_in_other_states,
                lifecycle_calls_on_a_missing_task_are_not_found,
                a_corrupt_definition_is_skipped_by_listings_and_reported_by_get,
                summaries_list_every_task_without_its_definition,
                concurrent_rejections_lose_nothing,
                convergence_sweeps_change_only_listed_tasks_past_the_cutoff,
            ]
        );
    };
}

fn guid(s: &str) -> TaskGuid {
    TaskGuid::parse(s).unwrap()
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

fn cell(s: &str) -> CellId {
    CellId::parse(s).unwrap()
}

pub fn definition() -> TaskDefinition {
    db::testing::fixtures::task_definition(|d| {
        d.result_file = "/tmp/result".into();
        d.completion_callback_url = "https://cc.example.com/tasks/done".into();
        d.annotation = "from the suite".into();
    })
}

async fn desire(db: &TestDb, task_guid: &str, domain_name: &str) -> Task {
    db.store.desire_task(&guid(task_guid), &domain(domain_name), &definition(), NOW_NS).await.unwrap()
}

fn refused(result: Result<impl std::fmt::Debug, Error>, code: ErrorCode) -> String {
    match result {
        Err(Error::Refused { code: got, message }) if got == code => message,
        other => panic!("expected a refusal with {code:?}, got {other:?}"),
    }
}

fn guids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.task_guid.as_str()).collect()
}

/// A desired task is PENDING with created_at = updated_at = now and nothing else set.
pub async fn desiring_stores_a_pending_task(db: &TestDb) {
    let task = desire(db, "task-1", "cf-tasks").await;
    assert_eq!(task.task_guid.as_str(), "task-1");
    assert_eq!(task.domain.as_str(), "cf-tasks");
    assert_eq!(task.definition, definition());
    assert_eq!((task.created_at, task.updated_at, task.first_completed_at), (NOW_NS, NOW_NS, 0));
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!(task.cell_id, None);
    assert!(!task.failed && task.result.is_empty() && task.failure_reason.is_empty());
    assert_eq!((task.rejection_count, task.rejection_reason.as_str()), (0, ""));
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap(), task);
}

/// A duplicate guid is `Exists` and the stored task is untouched.
pub async fn desiring_a_taken_guid_is_exists_and_changes_nothing(db: &TestDb) {
    let task = desire(db, "task-1", "cf-tasks").await;
    let err = db.store.desire_task(&guid("task-1"), &domain("elsewhere"), &definition(), NOW_NS + 5).await.unwrap_err();
    assert!(matches!(&err, Error::Exists { what: "task", key } if key == "task-1"), "{err}");
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap(), task);
}

/// Filters by domain and by cell, ANDed; results sorted by guid.
pub async fn listings_filter_by_domain_and_cell(db: &TestDb) {
    for (g, d) in [("t-3", "cf-tasks"), ("t-1", "cf-tasks"), ("t-2", "other"), ("t-4", "cf-tasks")] {
        desire(db, g, d).await;
    }
    db.store.start_task(&guid("t-1"), &cell("cell-a"), NOW_NS).await.unwrap();
    db.store.start_task(&guid("t-2"), &cell("cell-a"), NOW_NS).await.unwrap();
    db.store.start_task(&guid("t-3"), &cell("cell-b"), NOW_NS).await.unwrap();
    let cases: [(TaskFilter, &[&str]); 5] = [
        (TaskFilter::default(), &["t-1", "t-2", "t-3", "t-4"]),
        (TaskFilter { domain: Some(domain("cf-tasks")), cell_id: None }, &["t-1", "t-3", "t-4"]),
        (TaskFilter { domain: None, cell_id: Some(cell("cell-a")) }, &["t-1", "t-2"]),
        (TaskFilter { domain: Some(domain("cf-tasks")), cell_id: Some(cell("cell-a")) }, &["t-1"]),
        (TaskFilter { domain: Some(domain("other")), cell_id: Some(cell("cell-b")) }, &[]),
    ];
    for (filter, expected) in cases {
        assert_eq!(guids(&db.store.tasks(&filter).await.unwrap()), expected, "{filter:?}");
    }
}

/// PENDING to RUNNING sets the cell and asks the rep to start; a repeat from the same cell is a
/// no-op; another cell is refused.
pub async fn start_moves_pending_to_running_once_per_cell(db: &TestDb) {
    let pending = desire(db, "task-1", "cf-tasks").await;
    let change = db.store.start_task(&guid("task-1"), &cell("cell-a"), NOW_NS + 10).await.unwrap();
    assert!(change.should_start);
    assert_eq!(change.before, pending);
    let running = change.after.unwrap();
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.cell_id, Some(cell("cell-a")));
    assert_eq!(running.updated_at, NOW_NS + 10);
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap(), running);

    let again = db.store.start_task(&guid("task-1"), &cell("cell-a"), NOW_NS + 20).await.unwrap();
    assert!(!again.should_start);
    assert_eq!(again.after.as_ref(), Some(&running));
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap().updated_at, NOW_NS + 10);

    let elsewhere = db.store.start_task(&guid("task-1"), &cell("cell-b"), NOW_NS).await;
    let message = refused(elsewhere, ErrorCode::InvalidStateTransition);
    assert!(message.contains("task-1") && message.contains("cell-a") && message.contains("cell-b"), "{message}");
}

/// Complete from the running cell stores the outcome; another cell or a task not running is
/// refused with the matching code.
pub async fn complete_requires_running_on_the_same_cell(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    let message = refused(
        db.store.complete_task(&guid("task-1"), &cell("cell-a"), false, "", "", NOW_NS).await,
        ErrorCode::InvalidStateTransition,
    );
    assert!(message.contains("task-1") && message.contains("pending"), "{message}");
    db.store.start_task(&guid("task-1"), &cell("cell-a"), NOW_NS).await.unwrap();
    let message = refused(
        db.store.complete_task(&guid("task-1"), &cell("cell-b"), false, "", "", NOW_NS).await,
        ErrorCode::RunningOnDifferentCell,
    );
    assert!(message.contains("cell-a") && message.contains("cell-b"), "{message}");

    let (task_1, cell_a) = (guid("task-1"), cell("cell-a"));
    let change = db.store.complete_task(&task_1, &cell_a, true, "exit status 2", "partial", NOW_NS + 30).await.unwrap();
    assert!(!change.should_start);
    assert_eq!(change.before.cell_id, Some(cell("cell-a")));
    let done = change.after.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.cell_id, None);
    assert!(done.failed);
    assert_eq!((done.failure_reason.as_str(), done.result.as_str()), ("exit status 2", "partial"));
    assert_eq!((done.first_completed_at, done.updated_at), (NOW_NS + 30, NOW_NS + 30));
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap(), done);
    refused(
        db.store.complete_task(&guid("task-1"), &cell("cell-a"), false, "", "", NOW_NS).await,
        ErrorCode::InvalidStateTransition,
    );
}

/// Each rejection counts and returns the task to PENDING without a cell; once the count before a
/// rejection reaches the maximum, the task completes failed with the reason.
pub async fn reject_returns_the_task_to_pending_until_retries_run_out(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    db.store.start_task(&guid("task-1"), &cell("cell-a"), NOW_NS).await.unwrap();
    let change = db.store.reject_task(&guid("task-1"), "container creation failed", 2, NOW_NS + 1).await.unwrap();
    let after = change.after.unwrap();
    assert_eq!(after.state, TaskState::Pending);
    assert_eq!(after.cell_id, None);
    assert_eq!((after.rejection_count, after.rejection_reason.as_str()), (1, "container creation failed"));
    assert_eq!(after.updated_at, NOW_NS + 1);
    assert!(!after.failed);

    let after = db.store.reject_task(&guid("task-1"), "no cell fits", 2, NOW_NS + 2).await.unwrap().after.unwrap();
    assert_eq!((after.state, after.rejection_count), (TaskState::Pending, 2));

    let after = db.store.reject_task(&guid("task-1"), "still no cell", 2, NOW_NS + 3).await.unwrap().after.unwrap();
    assert_eq!(after.state, TaskState::Completed);
    assert!(after.failed);
    assert_eq!(after.failure_reason, "still no cell");
    assert_eq!((after.rejection_count, after.rejection_reason.as_str()), (3, "still no cell"));
    assert_eq!((after.first_completed_at, after.updated_at), (NOW_NS + 3, NOW_NS + 3));
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap(), after);
}

/// Rejecting a task that is neither PENDING nor RUNNING is an invalid request.
pub async fn reject_is_only_for_pending_or_running_tasks(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    db.store.cancel_task(&guid("task-1"), NOW_NS).await.unwrap();
    let message = refused(db.store.reject_task(&guid("task-1"), "late", 3, NOW_NS).await, ErrorCode::InvalidRequest);
    assert!(message.contains("task-1") && message.contains("completed"), "{message}");
    let task = db.store.task(&guid("task-1")).await.unwrap();
    assert_eq!(task.rejection_count, 0);
}

/// Failure and rejection reasons longer than 1024 characters are cut with a suffix.
pub async fn reasons_are_truncated_to_1024_characters(db: &TestDb) {
    let long = "é".repeat(3000);
    desire(db, "task-1", "cf-tasks").await;
    let after = db.store.reject_task(&guid("task-1"), &long, 5, NOW_NS).await.unwrap().after.unwrap();
    assert_eq!(after.rejection_reason.chars().count(), 1024);
    assert!(after.rejection_reason.ends_with(" (truncated)"));
    db.store.start_task(&guid("task-1"), &cell("cell-a"), NOW_NS).await.unwrap();
    let done = db.store.complete_task(&guid("task-1"), &cell("cell-a"), true, &long, "", NOW_NS).await.unwrap();
    let done = done.after.unwrap();
    assert_eq!(done.failure_reason.chars().count(), 1024);
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap(), done);
    desire(db, "task-2", "cf-tasks").await;
    let failed = db.store.fail_task(&guid("task-2"), &long, NOW_NS).await.unwrap().after.unwrap();
    assert_eq!(failed.failure_reason.chars().count(), 1024);
}

/// Cancel and fail complete a PENDING or RUNNING task as failed; the cell it ran on is in
/// `before`.
pub async fn cancel_and_fail_complete_a_task_as_failed(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    db.store.start_task(&guid("task-1"), &cell("cell-a"), NOW_NS).await.unwrap();
    let change = db.store.cancel_task(&guid("task-1"), NOW_NS + 5).await.unwrap();
    assert_eq!(change.before.cell_id, Some(cell("cell-a")));
    let after = change.after.unwrap();
    assert_eq!((after.state, after.failed), (TaskState::Completed, true));
    assert_eq!(after.failure_reason, "task was cancelled");
    assert_eq!(after.cell_id, None);
    assert_eq!(after.first_completed_at, NOW_NS + 5);
    refused(db.store.cancel_task(&guid("task-1"), NOW_NS).await, ErrorCode::InvalidStateTransition);
    refused(db.store.fail_task(&guid("task-1"), "x", NOW_NS).await, ErrorCode::InvalidStateTransition);

    desire(db, "task-2", "cf-tasks").await;
    let after = db.store.fail_task(&guid("task-2"), "cell disappeared", NOW_NS + 6).await.unwrap().after.unwrap();
    assert_eq!((after.state, after.failed), (TaskState::Completed, true));
    assert_eq!(after.failure_reason, "cell disappeared");
    assert_eq!(db.store.task(&guid("task-2")).await.unwrap(), after);
}

/// COMPLETED to RESOLVING, then the delete removes the row.
pub async fn resolving_then_delete_removes_a_completed_task(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    db.store.cancel_task(&guid("task-1"), NOW_NS).await.unwrap();
    let change = db.store.resolving_task(&guid("task-1"), NOW_NS + 9).await.unwrap();
    let resolving = change.after.unwrap();
    assert_eq!(resolving.state, TaskState::Resolving);
    assert_eq!(resolving.updated_at, NOW_NS + 9);
    assert_eq!(resolving.failure_reason, "task was cancelled");
    refused(db.store.resolving_task(&guid("task-1"), NOW_NS).await, ErrorCode::InvalidStateTransition);
    let deleted = db.store.delete_task(&guid("task-1")).await.unwrap();
    assert_eq!(deleted.before, resolving);
    assert_eq!(deleted.after, None);
    let err = db.store.task(&guid("task-1")).await.unwrap_err();
    assert!(matches!(&err, Error::NotFound { what: "task", key } if key == "task-1"), "{err}");
}

/// Delete only from RESOLVING, resolving only from COMPLETED.
pub async fn delete_and_resolving_are_refused_in_other_states(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    let message = refused(db.store.delete_task(&guid("task-1")).await, ErrorCode::InvalidStateTransition);
    assert!(message.contains("task-1") && message.contains("pending") && message.contains("resolving"), "{message}");
    refused(db.store.resolving_task(&guid("task-1"), NOW_NS).await, ErrorCode::InvalidStateTransition);
    db.store.cancel_task(&guid("task-1"), NOW_NS).await.unwrap();
    refused(db.store.delete_task(&guid("task-1")).await, ErrorCode::InvalidStateTransition);
    assert_eq!(db.store.task(&guid("task-1")).await.unwrap().state, TaskState::Completed);
}

/// Every call on an absent task is `NotFound` naming it.
pub async fn lifecycle_calls_on_a_missing_task_are_not_found(db: &TestDb) {
    let g = guid("ghost");
    let c = cell("cell-a");
    let results = [
        db.store.task(&g).await.map(drop),
        db.store.start_task(&g, &c, NOW_NS).await.map(drop),
        db.store.reject_task(&g, "r", 3, NOW_NS).await.map(drop),
        db.store.complete_task(&g, &c, false, "", "", NOW_NS).await.map(drop),
        db.store.cancel_task(&g, NOW_NS).await.map(drop),
        db.store.fail_task(&g, "r", NOW_NS).await.map(drop),
        db.store.resolving_task(&g, NOW_NS).await.map(drop),
        db.store.delete_task(&g).await.map(drop),
    ];
    for result in results {
        assert!(matches!(&result, Err(Error::NotFound { what: "task", key }) if key == "ghost"), "{result:?}");
    }
}

/// A task whose definition cannot be decoded is skipped by listings and Corrupt when read or
/// moved, but still counted by the summaries.
pub async fn a_corrupt_definition_is_skipped_by_listings_and_reported_by_get(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    let good = desire(db, "task-2", "cf-tasks").await;
    db.store
        .backend()
        .query("UPDATE tasks SET task_definition = ? WHERE guid = ?")
        .bind(vec![0x02u8, 0x00, 0xff, 0xff, 0xff])
        .bind("task-1".to_owned())
        .execute(db.store.pool())
        .await
        .unwrap();
    assert_eq!(db.store.tasks(&TaskFilter::default()).await.unwrap(), [good]);
    let err = db.store.task(&guid("task-1")).await.unwrap_err();
    assert!(matches!(&err, Error::Corrupt { what: "task", key, .. } if key == "task-1"), "{err}");
    assert!(matches!(db.store.cancel_task(&guid("task-1"), NOW_NS).await, Err(Error::Corrupt { .. })));
    assert_eq!(db.store.task_summaries().await.unwrap().len(), 2);
}

/// Summaries carry the plain columns of every task, sorted by guid.
pub async fn summaries_list_every_task_without_its_definition(db: &TestDb) {
    desire(db, "t-b", "cf-tasks").await;
    desire(db, "t-a", "other").await;
    db.store.start_task(&guid("t-b"), &cell("cell-a"), NOW_NS + 1).await.unwrap();
    db.store.reject_task(&guid("t-a"), "full", 3, NOW_NS + 2).await.unwrap();
    let summaries = db.store.task_summaries().await.unwrap();
    assert_eq!(
        summaries,
        [
            TaskSummary {
                task_guid: guid("t-a"),
                domain: domain("other"),
                state: TaskState::Pending,
                cell_id: None,
                created_at: NOW_NS,
                updated_at: NOW_NS + 2,
                first_completed_at: 0,
                rejection_count: 1,
            },
            TaskSummary {
                task_guid: guid("t-b"),
                domain: domain("cf-tasks"),
                state: TaskState::Running,
                cell_id: Some(cell("cell-a")),
                created_at: NOW_NS,
                updated_at: NOW_NS + 1,
                first_completed_at: 0,
                rejection_count: 0,
            },
        ]
    );
}

/// Concurrent rejections of one task serialize on its row lock: every one counts.
pub async fn concurrent_rejections_lose_nothing(db: &TestDb) {
    desire(db, "task-1", "cf-tasks").await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            store.reject_task(&guid("task-1"), &format!("rejection {i}"), 100, NOW_NS + i).await
        }));
    }
    let mut counts = Vec::new();
    for handle in handles {
        let change = handle.await.unwrap().unwrap();
        let after = change.after.unwrap();
        assert_eq!(after.rejection_count, change.before.rejection_count + 1);
        counts.push(after.rejection_count);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=8).collect::<Vec<i32>>());
    let task = db.store.task(&guid("task-1")).await.unwrap();
    assert_eq!((task.state, task.rejection_count), (TaskState::Pending, 8));
}

/// Task convergence's two sweeps: RESOLVING tasks not updated since the cutoff go back to
/// COMPLETED (keeping `updated_at`); COMPLETED tasks first completed before the cutoff are
/// deleted. Only listed guids in the right state and past the cutoff change.
pub async fn convergence_sweeps_change_only_listed_tasks_past_the_cutoff(db: &TestDb) {
    for name in ["stale-resolving", "fresh-resolving", "old-completed", "new-completed", "pending"] {
        desire(db, name, "cf-tasks").await;
    }
    for (name, completed_at) in [
        ("stale-resolving", NOW_NS),
        ("fresh-resolving", NOW_NS),
        ("old-completed", NOW_NS + 5),
        ("new-completed", NOW_NS + 200),
    ] {
        db.store.cancel_task(&guid(name), completed_at).await.unwrap();
    }
    db.store.resolving_task(&guid("stale-resolving"), NOW_NS + 10).await.unwrap();
    db.store.resolving_task(&guid("fresh-resolving"), NOW_NS + 100).await.unwrap();
    let all: Vec<TaskGuid> =
        ["stale-resolving", "fresh-resolving", "old-completed", "new-completed", "pending", "ghost"]
            .into_iter()
            .map(guid)
            .collect();
    let cutoff = NOW_NS + 50;

    assert_eq!(db.store.demote_resolving_tasks(&[], cutoff).await.unwrap(), []);
    assert_eq!(db.store.demote_resolving_tasks(&all, cutoff).await.unwrap(), [guid("stale-resolving")]);
    let demoted = db.store.task(&guid("stale-resolving")).await.unwrap();
    assert_eq!((demoted.state, demoted.updated_at), (TaskState::Completed, NOW_NS + 10));
    assert_eq!(db.store.task(&guid("fresh-resolving")).await.unwrap().state, TaskState::Resolving);

    // The demoted task was first completed at NOW_NS, so it expires with the old one.
    let deleted = db.store.delete_completed_tasks(&all, cutoff).await.unwrap();
    assert_eq!(deleted, [guid("old-completed"), guid("stale-resolving")]);
    let left = db.store.tasks(&TaskFilter::default()).await.unwrap();
    let mut left = guids(&left);
    left.sort_unstable();
    assert_eq!(left, ["fresh-resolving", "new-completed", "pending"]);

    // Unlisted tasks are never touched, listed ones in another state neither.
    let late = NOW_NS + 10_000;
    assert_eq!(db.store.delete_completed_tasks(&[guid("pending")], late).await.unwrap(), []);
    assert_eq!(db.store.demote_resolving_tasks(&[guid("new-completed")], late).await.unwrap(), []);
    assert_eq!(db.store.delete_completed_tasks(&[guid("new-completed")], late).await.unwrap(), [guid("new-completed")]);
    let left = db.store.tasks(&TaskFilter::default()).await.unwrap();
    let mut left = guids(&left);
    left.sort_unstable();
    assert_eq!(left, ["fresh-resolving", "pending"]);

    // Many guids at once span several statements.
    let many: Vec<TaskGuid> =
        (0..1_200).map(|i| guid(&format!("absent-{i}"))).chain([guid("fresh-resolving")]).collect();
    assert_eq!(db.store.demote_resolving_tasks(&many, late).await.unwrap(), [guid("fresh-resolving")]);
}
