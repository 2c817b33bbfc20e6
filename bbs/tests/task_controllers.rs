//! The task controller (bbs.md 3.5) and the completion callback pool, against the real store on
//! every backend: each `async fn case(backend)` below is stamped out as `case::case_sqlite`,
//! `case::case_postgres` and `case::case_mysql` (the last two return early when their
//! `DIEGO_TEST_*_URL` is unset).
//!
//! Events are published synchronously before a controller call returns, so "no event" is
//! checked with `now_or_never`. Outbound auctioneer / rep calls run in the background; checks
//! that one was *not* made send a later sentinel call and wait for it instead of sleeping.
//! Callback tests run a real hyper server on 127.0.0.1:0.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bbs::callbacks::{Callbacks, MAX_ATTEMPTS, Outcome, handle_completed_task, http_client, spawn_workers};
use bbs::clients::TaskStartRequest;
use bbs::controllers::Context;
use bbs::controllers::tasks::Tasks;
use common::{Harness, RepCall, START_NS};
use db::Backend;
use db::sql::leases::LeaseType;
use db::sql::tasks::TaskFilter;
use futures::{FutureExt, Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use proto::error::ErrorCode;
use proto::models::{CellCapacity, CellId, CellPresence, DomainName, Task, TaskDefinition, TaskGuid, TaskState};
use proto::pb::models::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Stamps out one `#[tokio::test]` per backend for each listed `async fn case(backend)`. The
/// runtime is multi-threaded: dropping a `TestDb` closes its pool from a helper thread, which
/// waits for connections whose return to the pool runs on this runtime.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn case_sqlite() {
                    super::$case(::db::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn case_postgres() {
                    super::$case(::db::Backend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn case_mysql() {
                    super::$case(::db::Backend::Mysql).await;
                }
            }
        )*
    };
}

on_every_backend!(
    desire_stores_a_pending_task_and_requests_one_auction,
    get_and_list_read_the_store,
    start_moves_a_pending_task_to_running_once,
    reject_returns_the_task_to_pending_until_the_retry_limit,
    complete_records_the_outcome_and_enqueues_the_callback,
    cancel_fails_the_task_and_enqueues_the_callback,
    cancel_tells_the_rep_the_task_ran_on,
    fail_completes_the_task_with_the_reason,
    resolving_and_delete_finish_a_completed_task,
    every_call_publishes_its_event_in_order,
    a_standby_refuses_writes_and_serves_reads,
    callback_200_deletes_the_task,
    callback_statuses_other_than_503_504_count_as_handled,
    callback_503_or_504_leaves_the_task_resolving,
    callback_to_a_refused_connection_is_tried_three_times,
    callback_connections_closed_early_are_retried,
    callback_timeouts_are_retried,
    callback_skips_a_task_another_resolver_has,
    callback_to_an_https_url_is_unsupported,
    callback_pool_runs_at_most_workers_callbacks_at_once,
);

const WAIT: Duration = Duration::from_secs(10);
const DOMAIN: &str = "cf-tasks";
const CELL: &str = "cell-1";
const REP_ADDRESS: &str = "10.0.0.1:1800";

// ---------------------------------------------------------------------------------------------
// Fixtures

fn guid(value: &str) -> TaskGuid {
    TaskGuid::parse(value).unwrap()
}

fn cell(value: &str) -> CellId {
    CellId::parse(value).unwrap()
}

fn domain(value: &str) -> DomainName {
    DomainName::parse(value).unwrap()
}

/// A valid definition with resources, placement, one volume mount and `callback_url`.
fn definition(callback_url: &str) -> TaskDefinition {
    db::testing::fixtures::task_definition(|d| {
        d.max_pids = 64;
        d.placement_tags = vec!["isolated".into()];
        d.volume_mounts = vec![pb::VolumeMount {
            driver: "nfsdriver".into(),
            container_dir: "/data".into(),
            mode: "rw".into(),
            shared: Some(pb::SharedDevice { volume_id: "vol-1".into(), mount_config: String::new() }),
        }];
        d.result_file = "/tmp/result".into();
        d.completion_callback_url = callback_url.into();
        d.annotation = "{\"app\":\"migrations\"}".into();
    })
}

/// A harness leading on `backend` whose callback queue the test reads.
async fn leader(backend: Backend) -> Option<(Harness, mpsc::UnboundedReceiver<Task>)> {
    let mut h = Harness::leader(backend).await?;
    let (callbacks, queued) = Callbacks::channel();
    h.ctx.callbacks = callbacks;
    Some((h, queued))
}

async fn desire(ctx: &Context, task_guid: &str, callback_url: &str) -> Task {
    Tasks(ctx).desire(&guid(task_guid), &domain(DOMAIN), &definition(callback_url)).await.unwrap()
}

/// Desires, starts on [`CELL`] and completes a task; returns it as the callback queue got it.
async fn completed(
    ctx: &Context,
    queued: &mut mpsc::UnboundedReceiver<Task>,
    task_guid: &str,
    callback_url: &str,
) -> Task {
    desire(ctx, task_guid, callback_url).await;
    assert!(Tasks(ctx).start(&guid(task_guid), &cell(CELL)).await.unwrap());
    Tasks(ctx).complete(&guid(task_guid), &cell(CELL), true, "exit status 3", "partial output").await.unwrap();
    let task = queued.try_recv().expect("completing a task with a callback url enqueues it");
    assert_eq!((task.task_guid.as_str(), task.state), (task_guid, TaskState::Completed));
    task
}

async fn state_of(ctx: &Context, task_guid: &str) -> TaskState {
    Tasks(ctx).get(&guid(task_guid)).await.unwrap().state
}

fn code<T: std::fmt::Debug>(result: bbs::Result<T>) -> ErrorCode {
    match result {
        Err(e) => e.code(),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

/// Registers a live presence for `cell_id` whose rep listens on `rep_address`.
async fn register_cell(h: &Harness, cell_id: &str, rep_address: &str) {
    let presence = CellPresence {
        cell_id: cell(cell_id),
        rep_address: rep_address.into(),
        rep_url: String::new(),
        zone: "z1".into(),
        capacity: CellCapacity { memory_mb: 4096, disk_mb: 8192, containers: 100 },
        rootfs_providers: Vec::new(),
        placement_tags: Vec::new(),
        optional_placement_tags: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let value = serde_json::to_string(&presence).unwrap();
    h.db.store
        .acquire_lease(cell_id, &format!("rep-{cell_id}"), &value, LeaseType::Presence, Duration::from_secs(60))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Events

type TaskEvents = Pin<Box<dyn Stream<Item = Result<pb::TaskEvent, tonic::Status>> + Send>>;

fn subscribe(ctx: &Context) -> TaskEvents {
    Box::pin(ctx.events.subscribe_tasks())
}

/// A task event, decoded for assertions.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // short-lived test values
enum Event {
    Created(pb::Task),
    Changed(pb::Task, pb::Task),
    Removed(pb::Task),
}

async fn next_event(events: &mut TaskEvents) -> (u64, Event) {
    let message = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event never arrived")
        .expect("event stream ended")
        .expect("event stream failed");
    let event = match message.event.expect("an event") {
        pb::task_event::Event::TaskCreated(e) => Event::Created(e.task.unwrap()),
        pb::task_event::Event::TaskChanged(e) => Event::Changed(e.before.unwrap(), e.after.unwrap()),
        pb::task_event::Event::TaskRemoved(e) => Event::Removed(e.task.unwrap()),
    };
    (message.sequence, event)
}

fn assert_no_event(events: &mut TaskEvents) {
    if let Some(event) = events.next().now_or_never() {
        panic!("expected no event, got {event:?}");
    }
}

/// The next event is TaskChanged from `from` to `to`; returns (before, after).
async fn expect_changed(events: &mut TaskEvents, from: TaskState, to: TaskState) -> (pb::Task, pb::Task) {
    match next_event(events).await {
        (_, Event::Changed(before, after)) => {
            assert_eq!((before.state, after.state), (from.as_i32(), to.as_i32()), "TaskChanged states");
            (before, after)
        }
        (_, other) => panic!("expected TaskChanged, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Controller cases

async fn desire_stores_a_pending_task_and_requests_one_auction(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let mut events = subscribe(&h.ctx);

    let task = desire(&h.ctx, "t-1", "").await;
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!((task.created_at, task.updated_at, task.first_completed_at), (START_NS, START_NS, 0));
    assert_eq!((task.cell_id.clone(), task.rejection_count), (None, 0));
    assert_eq!(Tasks(&h.ctx).get(&guid("t-1")).await.unwrap(), task);

    match next_event(&mut events).await {
        (1, Event::Created(created)) => assert_eq!(created, pb::Task::from(task.clone())),
        other => panic!("expected TaskCreated with sequence 1, got {other:?}"),
    }
    let calls = h.auctioneer.wait_task_calls(1).await;
    assert_eq!(
        calls,
        vec![vec![TaskStartRequest {
            task_guid: "t-1".into(),
            domain: DOMAIN.into(),
            memory_mb: 512,
            disk_mb: 1024,
            max_pids: 64,
            rootfs: "preloaded:cflinuxfs4".into(),
            placement_tags: vec!["isolated".into()],
            volume_drivers: vec!["nfsdriver".into()],
        }]]
    );

    // A taken guid: ResourceExists, nothing published, no second auction.
    let again = Tasks(&h.ctx).desire(&guid("t-1"), &domain("other"), &definition("")).await;
    assert_eq!(code(again), ErrorCode::ResourceExists);
    assert_no_event(&mut events);
    desire(&h.ctx, "sentinel", "").await;
    let calls = h.auctioneer.wait_task_calls(2).await;
    let guids: Vec<&str> = calls.iter().flatten().map(|r| r.task_guid.as_str()).collect();
    assert_eq!(guids, ["t-1", "sentinel"]);
    assert!(queued.try_recv().is_err(), "desire enqueues no callback");
}

async fn get_and_list_read_the_store(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    assert_eq!(code(tasks.get(&guid("missing")).await), ErrorCode::ResourceNotFound);
    assert!(tasks.list(&TaskFilter::default()).await.unwrap().is_empty());

    desire(&h.ctx, "t-b", "").await;
    desire(&h.ctx, "t-a", "").await;
    tasks.desire(&guid("t-other"), &domain("other-domain"), &definition("")).await.unwrap();
    assert!(tasks.start(&guid("t-b"), &cell(CELL)).await.unwrap());

    let names = |list: Vec<Task>| list.into_iter().map(|t| t.task_guid.into_string()).collect::<Vec<_>>();
    assert_eq!(names(tasks.list(&TaskFilter::default()).await.unwrap()), ["t-a", "t-b", "t-other"]);
    let by_domain = TaskFilter { domain: Some(domain(DOMAIN)), cell_id: None };
    assert_eq!(names(tasks.list(&by_domain).await.unwrap()), ["t-a", "t-b"]);
    let by_cell = TaskFilter { domain: None, cell_id: Some(cell(CELL)) };
    assert_eq!(names(tasks.list(&by_cell).await.unwrap()), ["t-b"]);
    let nowhere = TaskFilter { domain: Some(domain("other-domain")), cell_id: Some(cell(CELL)) };
    assert!(tasks.list(&nowhere).await.unwrap().is_empty());

    let running = tasks.get(&guid("t-b")).await.unwrap();
    assert_eq!((running.state, running.cell_id), (TaskState::Running, Some(cell(CELL))));
}

async fn start_moves_a_pending_task_to_running_once(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    desire(&h.ctx, "t-1", "").await;
    let mut events = subscribe(&h.ctx);
    h.clock.advance(Duration::from_secs(2));

    assert!(tasks.start(&guid("t-1"), &cell(CELL)).await.unwrap(), "a pending task should start");
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    assert_eq!((after.cell_id.as_str(), after.updated_at), (CELL, START_NS + 2_000_000_000));

    // Again from the same cell: success, should_start false, nothing written or published.
    h.clock.advance(Duration::from_secs(2));
    assert!(!tasks.start(&guid("t-1"), &cell(CELL)).await.unwrap());
    assert_no_event(&mut events);
    assert_eq!(tasks.get(&guid("t-1")).await.unwrap().updated_at, START_NS + 2_000_000_000);

    // Another cell, a completed task, a missing task.
    assert_eq!(code(tasks.start(&guid("t-1"), &cell("cell-2")).await), ErrorCode::InvalidStateTransition);
    tasks.cancel(&guid("t-1")).await.unwrap();
    expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;
    assert_eq!(code(tasks.start(&guid("t-1"), &cell(CELL)).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.start(&guid("missing"), &cell(CELL)).await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn reject_returns_the_task_to_pending_until_the_retry_limit(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "http://127.0.0.1:1/cb").await;
    h.auctioneer.wait_task_calls(1).await;
    let mut events = subscribe(&h.ctx);

    // max_task_retries = 3: rejections 1..=3 return it to PENDING (one of them while running).
    tasks.reject(&t, "no capacity").await.unwrap();
    tasks.reject(&t, "no capacity").await.unwrap();
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    tasks.reject(&t, "container creation failed").await.unwrap();
    expect_changed(&mut events, TaskState::Pending, TaskState::Pending).await;
    expect_changed(&mut events, TaskState::Pending, TaskState::Pending).await;
    expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    let (_, after) = expect_changed(&mut events, TaskState::Running, TaskState::Pending).await;
    assert_eq!(after.rejection_count, 3);
    let task = tasks.get(&t).await.unwrap();
    assert_eq!((task.state, task.cell_id, task.rejection_count), (TaskState::Pending, None, 3));
    assert_eq!(task.rejection_reason, "container creation failed");
    assert!(queued.try_recv().is_err(), "a rejected task that goes back to pending has no callback");

    // The fourth rejection fails it with the reason, and its callback is enqueued.
    h.clock.advance(Duration::from_secs(7));
    tasks.reject(&t, "still no capacity").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Completed).await;
    assert_eq!((after.failed, after.failure_reason.as_str(), after.rejection_count), (true, "still no capacity", 4));
    let task = tasks.get(&t).await.unwrap();
    assert_eq!(
        (task.state, task.failed, task.first_completed_at),
        (TaskState::Completed, true, START_NS + 7_000_000_000)
    );
    assert_eq!(queued.try_recv().unwrap(), task);

    // Rejecting a completed task is an invalid request; a missing one is not found.
    assert_eq!(code(tasks.reject(&t, "again").await), ErrorCode::InvalidRequest);
    assert_eq!(code(tasks.reject(&guid("missing"), "x").await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);

    // No rejection sent an auction: only the desire's, then the sentinel's.
    desire(&h.ctx, "sentinel", "").await;
    let calls = h.auctioneer.wait_task_calls(2).await;
    let guids: Vec<&str> = calls.iter().flatten().map(|r| r.task_guid.as_str()).collect();
    assert_eq!(guids, ["t-1", "sentinel"]);
}

async fn complete_records_the_outcome_and_enqueues_the_callback(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "http://127.0.0.1:1/cb").await;
    let mut events = subscribe(&h.ctx);

    assert_eq!(code(tasks.complete(&t, &cell(CELL), false, "", "").await), ErrorCode::InvalidStateTransition);
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    assert_eq!(code(tasks.complete(&t, &cell("cell-2"), false, "", "").await), ErrorCode::RunningOnDifferentCell);
    assert_no_event(&mut events);
    assert!(queued.try_recv().is_err());

    h.clock.advance(Duration::from_secs(9));
    tasks.complete(&t, &cell(CELL), false, "", "{\"migrated\":12}").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;
    assert_eq!(after.result, "{\"migrated\":12}");
    let task = tasks.get(&t).await.unwrap();
    let done = START_NS + 9_000_000_000;
    assert_eq!((task.state, task.cell_id.clone(), task.failed), (TaskState::Completed, None, false));
    assert_eq!((task.first_completed_at, task.updated_at), (done, done));
    assert_eq!(queued.try_recv().unwrap(), task);

    assert_eq!(code(tasks.complete(&t, &cell(CELL), false, "", "").await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.complete(&guid("missing"), &cell(CELL), false, "", "").await), ErrorCode::ResourceNotFound);

    // Without a callback url nothing is enqueued; a failure keeps its reason.
    desire(&h.ctx, "t-2", "").await;
    assert!(tasks.start(&guid("t-2"), &cell(CELL)).await.unwrap());
    tasks.complete(&guid("t-2"), &cell(CELL), true, "exit status 1", "").await.unwrap();
    let task = tasks.get(&guid("t-2")).await.unwrap();
    assert_eq!((task.failed, task.failure_reason.as_str()), (true, "exit status 1"));
    assert!(queued.try_recv().is_err(), "no callback url, no callback");
}

async fn cancel_fails_the_task_and_enqueues_the_callback(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "http://127.0.0.1:1/cb").await;
    let mut events = subscribe(&h.ctx);

    h.clock.advance(Duration::from_secs(1));
    tasks.cancel(&t).await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Completed).await;
    assert_eq!((after.failed, after.failure_reason.as_str()), (true, "task was cancelled"));
    let task = tasks.get(&t).await.unwrap();
    assert_eq!(
        (task.state, task.failed, task.failure_reason.as_str()),
        (TaskState::Completed, true, "task was cancelled")
    );
    assert_eq!(task.first_completed_at, START_NS + 1_000_000_000);
    assert_eq!(queued.try_recv().unwrap(), task);

    assert_eq!(code(tasks.cancel(&t).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.cancel(&guid("missing")).await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn cancel_tells_the_rep_the_task_ran_on(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    register_cell(&h, CELL, REP_ADDRESS).await;

    // Pending (no cell) and running on a cell with no presence: cancelled, no rep call.
    desire(&h.ctx, "t-pending", "").await;
    tasks.cancel(&guid("t-pending")).await.unwrap();
    desire(&h.ctx, "t-gone", "").await;
    assert!(tasks.start(&guid("t-gone"), &cell("cell-gone")).await.unwrap());
    tasks.cancel(&guid("t-gone")).await.unwrap();
    assert_eq!(state_of(&h.ctx, "t-gone").await, TaskState::Completed);

    // Running on a live cell: the rep at its presence's address is told.
    desire(&h.ctx, "t-running", "").await;
    assert!(tasks.start(&guid("t-running"), &cell(CELL)).await.unwrap());
    tasks.cancel(&guid("t-running")).await.unwrap();
    let calls = h.reps.wait_calls(1).await;
    assert_eq!(calls, vec![RepCall::Cancel { address: REP_ADDRESS.into(), task_guid: "t-running".into() }]);
    let task = tasks.get(&guid("t-running")).await.unwrap();
    assert_eq!(
        (task.state, task.cell_id, task.failure_reason.as_str()),
        (TaskState::Completed, None, "task was cancelled")
    );
}

async fn fail_completes_the_task_with_the_reason(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    desire(&h.ctx, "t-pending", "http://127.0.0.1:1/cb").await;
    desire(&h.ctx, "t-running", "").await;
    assert!(tasks.start(&guid("t-running"), &cell(CELL)).await.unwrap());
    let mut events = subscribe(&h.ctx);

    tasks.fail(&guid("t-pending"), "operator gave up").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Completed).await;
    assert_eq!((after.failed, after.failure_reason.as_str()), (true, "operator gave up"));
    let task = tasks.get(&guid("t-pending")).await.unwrap();
    assert_eq!(queued.try_recv().unwrap(), task);

    tasks.fail(&guid("t-running"), "cell lost").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;
    assert_eq!((after.cell_id.as_str(), after.failure_reason.as_str()), ("", "cell lost"));
    assert!(queued.try_recv().is_err(), "no callback url, no callback");

    assert_eq!(code(tasks.fail(&guid("t-pending"), "again").await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.fail(&guid("missing"), "x").await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn resolving_and_delete_finish_a_completed_task(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "").await;
    let mut events = subscribe(&h.ctx);

    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::InvalidStateTransition);
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::InvalidStateTransition);
    tasks.complete(&t, &cell(CELL), false, "", "ok").await.unwrap();
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::InvalidStateTransition);
    expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;

    tasks.resolving(&t).await.unwrap();
    expect_changed(&mut events, TaskState::Completed, TaskState::Resolving).await;
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::InvalidStateTransition);

    tasks.delete(&t).await.unwrap();
    match next_event(&mut events).await {
        (_, Event::Removed(task)) => {
            assert_eq!((task.task_guid.as_str(), task.state), ("t-1", TaskState::Resolving.as_i32()))
        }
        (_, other) => panic!("expected TaskRemoved, got {other:?}"),
    }
    assert_eq!(code(tasks.get(&t).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn every_call_publishes_its_event_in_order(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let mut events = subscribe(&h.ctx);
    let t = guid("t-1");

    desire(&h.ctx, "t-1", "").await;
    tasks.reject(&t, "no room").await.unwrap();
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    assert!(!tasks.start(&t, &cell(CELL)).await.unwrap()); // no event
    tasks.complete(&t, &cell(CELL), false, "", "").await.unwrap();
    tasks.resolving(&t).await.unwrap();
    tasks.delete(&t).await.unwrap();
    desire(&h.ctx, "t-2", "").await;
    tasks.cancel(&guid("t-2")).await.unwrap();
    desire(&h.ctx, "t-3", "").await;
    tasks.fail(&guid("t-3"), "x").await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..10 {
        let (sequence, event) = next_event(&mut events).await;
        let summary = match event {
            Event::Created(task) => format!("created {} {}", task.task_guid, task.state),
            Event::Changed(before, after) => format!("changed {} {}->{}", after.task_guid, before.state, after.state),
            Event::Removed(task) => format!("removed {}", task.task_guid),
        };
        seen.push((sequence, summary));
    }
    assert_no_event(&mut events);
    let sequences: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, (1..=10).collect::<Vec<u64>>());
    let summaries: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "created t-1 1",
            "changed t-1 1->1",
            "changed t-1 1->2",
            "changed t-1 2->3",
            "changed t-1 3->4",
            "removed t-1",
            "created t-2 1",
            "changed t-2 1->3",
            "created t-3 1",
            "changed t-3 1->3",
        ]
    );
}

async fn a_standby_refuses_writes_and_serves_reads(backend: Backend) {
    let Some(h) = Harness::standby(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let mut events = subscribe(&h.ctx);
    // The leader stored a task; the standby reads it.
    let stored = h.db.store.desire_task(&guid("t-1"), &domain(DOMAIN), &definition(""), START_NS).await.unwrap();
    assert_eq!(tasks.get(&guid("t-1")).await.unwrap(), stored);
    assert_eq!(tasks.list(&TaskFilter::default()).await.unwrap(), vec![stored]);

    let t = guid("t-1");
    let unavailable = ErrorCode::Unavailable;
    assert_eq!(code(tasks.desire(&guid("t-2"), &domain(DOMAIN), &definition("")).await), unavailable);
    assert_eq!(code(tasks.start(&t, &cell(CELL)).await), unavailable);
    assert_eq!(code(tasks.cancel(&t).await), unavailable);
    assert_eq!(code(tasks.fail(&t, "x").await), unavailable);
    assert_eq!(code(tasks.reject(&t, "x").await), unavailable);
    assert_eq!(code(tasks.complete(&t, &cell(CELL), false, "", "").await), unavailable);
    assert_eq!(code(tasks.resolving(&t).await), unavailable);
    assert_eq!(code(tasks.delete(&t).await), unavailable);
    let err = tasks.cancel(&t).await.unwrap_err();
    assert!(err.to_string().contains("10.0.0.9:8889"), "names the leader: {err}");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Pending);
    assert_no_event(&mut events);
}

// ---------------------------------------------------------------------------------------------
// Callback server

/// One request the callback server received.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: serde_json::Value,
}

/// A local HTTP server answering every request with one status; requests are reported on
/// `received`. With a `gate`, each request waits for a permit before it is answered.
struct CallbackServer {
    url: String,
    received: mpsc::UnboundedReceiver<Received>,
    in_flight_max: Arc<AtomicUsize>,
}

async fn callback_server(status: u16, gate: Option<Arc<Semaphore>>) -> CallbackServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/internal/v4/tasks/done", listener.local_addr().unwrap());
    let (tx, received) = mpsc::unbounded_channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_max = Arc::new(AtomicUsize::new(0));
    let max = in_flight_max.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, gate, in_flight, max) = (tx.clone(), gate.clone(), in_flight.clone(), max.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (tx, gate, in_flight, max) = (tx.clone(), gate.clone(), in_flight.clone(), max.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let content_type = parts
                            .headers
                            .get(hyper::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let _ = tx.send(Received {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            content_type,
                            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                        });
                        if let Some(gate) = gate {
                            gate.acquire().await.unwrap().forget();
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    CallbackServer { url, received, in_flight_max }
}

impl CallbackServer {
    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.received.recv()).await.expect("callback never arrived").expect("server stopped")
    }
}

/// A listener that accepts connections and reports each; `hold` keeps them open without an
/// answer (the client times out), otherwise they are closed at once.
async fn broken_server(hold: bool) -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let _ = tx.send(());
            if hold {
                held.push(stream);
            } else {
                drop(stream);
            }
        }
    });
    (url, accepted)
}

/// Runs the pool over `tasks` until it has handled them all (the queue is closed first).
async fn run_pool(ctx: &Context, tasks: Vec<Task>, workers: usize, timeout: Duration) {
    let (tx, rx) = mpsc::unbounded_channel();
    for task in tasks {
        tx.send(task).unwrap();
    }
    drop(tx);
    let pool = spawn_workers(ctx.clone(), rx, workers, timeout, CancellationToken::new());
    tokio::time::timeout(WAIT, pool).await.expect("callback never arrived").expect("the pool panicked");
}

// ---------------------------------------------------------------------------------------------
// Callback cases

async fn callback_200_deletes_the_task(backend: Backend) {
    let Some((h, queued)) = leader(backend).await else { return };
    let mut server = callback_server(200, None).await;
    let shutdown = CancellationToken::new();
    let pool = spawn_workers(h.ctx.clone(), queued, 4, Duration::from_secs(5), shutdown.clone());
    let mut events = subscribe(&h.ctx);

    desire(&h.ctx, "t-1", &server.url).await;
    assert!(Tasks(&h.ctx).start(&guid("t-1"), &cell(CELL)).await.unwrap());
    Tasks(&h.ctx).complete(&guid("t-1"), &cell(CELL), true, "exit status 3", "partial output").await.unwrap();

    let request = server.next().await;
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/internal/v4/tasks/done"));
    assert_eq!(request.content_type, "application/json");
    assert_eq!(
        request.body,
        serde_json::json!({
            "task_guid": "t-1",
            "failed": true,
            "failure_reason": "exit status 3",
            "result": "partial output",
            "annotation": "{\"app\":\"migrations\"}",
            "created_at": START_NS,
        })
    );

    // Created, started, completed, resolving, removed.
    let mut kinds = Vec::new();
    loop {
        let (_, event) = next_event(&mut events).await;
        match event {
            Event::Created(_) => kinds.push("created".to_owned()),
            Event::Changed(before, after) => kinds.push(format!("changed {}->{}", before.state, after.state)),
            Event::Removed(task) => {
                assert_eq!(task.task_guid, "t-1");
                kinds.push("removed".to_owned());
                break;
            }
        }
    }
    assert_eq!(kinds, ["created", "changed 1->2", "changed 2->3", "changed 3->4", "removed"]);
    assert_eq!(code(Tasks(&h.ctx).get(&guid("t-1")).await), ErrorCode::ResourceNotFound);

    shutdown.cancel();
    tokio::time::timeout(WAIT, pool).await.expect("the pool stops on shutdown").unwrap();
}

async fn callback_statuses_other_than_503_504_count_as_handled(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    for (i, status) in [201_u16, 404, 500].into_iter().enumerate() {
        let mut server = callback_server(status, None).await;
        let name = format!("t-{i}");
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        run_pool(&h.ctx, vec![task], 4, Duration::from_secs(5)).await;
        assert_eq!(server.next().await.body["task_guid"], name.as_str());
        assert_eq!(code(Tasks(&h.ctx).get(&guid(&name)).await), ErrorCode::ResourceNotFound, "status {status}");
    }
}

async fn callback_503_or_504_leaves_the_task_resolving(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    for status in [503_u16, 504] {
        let mut server = callback_server(status, None).await;
        let name = format!("t-{status}");
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        run_pool(&h.ctx, vec![task.clone()], 4, Duration::from_secs(5)).await;
        assert_eq!(server.next().await.body["task_guid"], name.as_str());
        assert!(server.received.try_recv().is_err(), "a {status} is not retried");
        assert_eq!(state_of(&h.ctx, &name).await, TaskState::Resolving, "status {status}");

        // The same, called directly, reports the outcome.
        Tasks(&h.ctx).delete(&guid(&name)).await.unwrap();
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::Unavailable { status, attempts: 1 });
        server.next().await;
    }
}

async fn callback_to_a_refused_connection_is_tried_three_times(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", closed.local_addr().unwrap());
    drop(closed);

    let task = completed(&h.ctx, &mut queued, "t-1", &url).await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: MAX_ATTEMPTS });
    assert_eq!(MAX_ATTEMPTS, 3);
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);

    // Through the pool as well.
    let task = completed(&h.ctx, &mut queued, "t-2", &url).await;
    run_pool(&h.ctx, vec![task], 4, Duration::from_secs(5)).await;
    assert_eq!(state_of(&h.ctx, "t-2").await, TaskState::Resolving);
}

async fn callback_connections_closed_early_are_retried(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let (url, mut accepted) = broken_server(false).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &url).await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: 3 });
    for _ in 0..3 {
        tokio::time::timeout(WAIT, accepted.recv()).await.expect("callback never arrived").unwrap();
    }
    assert!(accepted.try_recv().is_err(), "no fourth attempt");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
}

async fn callback_timeouts_are_retried(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let (url, mut accepted) = broken_server(true).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &url).await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_millis(200)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: 3 });
    for _ in 0..3 {
        tokio::time::timeout(WAIT, accepted.recv()).await.expect("callback never arrived").unwrap();
    }
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
}

async fn callback_skips_a_task_another_resolver_has(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let mut server = callback_server(200, None).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &server.url).await;
    Tasks(&h.ctx).resolving(&guid("t-1")).await.unwrap(); // e.g. the CC polling

    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Skipped);
    assert!(server.received.try_recv().is_err(), "nothing is posted");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);

    // A task deleted meanwhile is skipped too.
    Tasks(&h.ctx).delete(&guid("t-1")).await.unwrap();
    assert_eq!(handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await, Outcome::Skipped);
}

async fn callback_to_an_https_url_is_unsupported(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let task = completed(&h.ctx, &mut queued, "t-1", "https://127.0.0.1:1/cb").await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Unsupported);
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
}

async fn callback_pool_runs_at_most_workers_callbacks_at_once(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let gate = Arc::new(Semaphore::new(0));
    let mut server = callback_server(200, Some(gate.clone())).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(completed(&h.ctx, &mut queued, &format!("t-{i}"), &server.url).await);
    }

    let (tx, rx) = mpsc::unbounded_channel();
    for task in tasks {
        tx.send(task).unwrap();
    }
    drop(tx);
    let pool = spawn_workers(h.ctx.clone(), rx, 2, Duration::from_secs(30), CancellationToken::new());

    // Two callbacks arrive and are held; the other two wait for a worker.
    server.next().await;
    server.next().await;
    assert!(server.received.try_recv().is_err(), "a third callback ran while two were held");
    gate.add_permits(4);
    server.next().await;
    server.next().await;
    tokio::time::timeout(WAIT, pool).await.expect("callback never arrived").unwrap();

    assert!(server.in_flight_max.load(Ordering::SeqCst) <= 2, "more than two callbacks at once");
    for i in 0..4 {
        assert_eq!(code(Tasks(&h.ctx).get(&guid(&format!("t-{i}"))).await), ErrorCode::ResourceNotFound);
    }
}
