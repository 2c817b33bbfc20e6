//! The task controller (bbs.md 3.5) and the completion callback pool, against the real store on
//! every backend: each `async fn case(backend)`, in the module of its behaviour ([`lifecycle`],
//! [`callbacks`]), is stamped out as `<module>::sqlite::case`, `<module>::postgres::case` and
//! `<module>::mysql::case` (the last two return early when their `DIEGO_TEST_*_URL` is unset).
//!
//! Events are published synchronously before a controller call returns, so "no event" is
//! checked with `now_or_never`. Outbound auctioneer / rep calls run in the background; checks
//! that one was *not* made send a later sentinel call and wait for it instead of sleeping.
//! Callback tests run a real hyper server on 127.0.0.1:0.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bbs::callbacks::{
    CallbackTls, Callbacks, HttpClient, MAX_ATTEMPTS, Outcome, handle_completed_task, http_client, spawn_workers,
};
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

#[path = "task_controllers/callbacks.rs"]
mod callbacks;
#[path = "task_controllers/lifecycle.rs"]
mod lifecycle;

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
