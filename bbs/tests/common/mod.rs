//! Shared harness of the bbs integration tests: a controller [`Context`] over a fresh test
//! database on one backend, with a leadership that holds the `bbs` lease (or a standby whose
//! lease another owner holds), a manual clock, and recording fakes for the auctioneer and reps.
//!
//! Outbound calls are made in the background by the controllers, so the recorders offer
//! `wait_*` helpers that poll until the expected calls arrived (or a deadline passed), and
//! [`settle`] to give background tasks a chance to run before asserting that nothing was sent.

#![allow(dead_code, unused_macros)]

pub mod wire;

/// Declares each listed `async fn case(backend)` as a test on SQLite, PostgreSQL and MySQL.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(db::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(db::Backend::Postgres).await } )* }
        mod mysql { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(db::Backend::Mysql).await } )* }
    };
}

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bbs::callbacks::Callbacks;
use bbs::clients::{AuctioneerClient, ClientError, LrpStartRequest, RepClient, TaskStartRequest};
use bbs::clock::ManualClock;
use bbs::controllers::Context;
use bbs::events::{EventHub, KeyLocks};
use bbs::leader::{BBS_LOCK_KEY, LeaderState, Leadership};
use db::Backend;
use db::sql::leases::LeaseType;
use db::testing::TestDb;
use futures::future::BoxFuture;
use proto::lifecycle::crash::CrashPolicy;

/// The test clock's starting point: 2023-11-14T22:13:20Z, in nanoseconds.
pub const START_NS: i64 = 1_700_000_000_000_000_000;

/// How long the `wait_*` helpers poll before giving up.
const WAIT: Duration = Duration::from_secs(5);

/// Gives spawned background tasks time to run (before asserting that nothing was sent).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `probe` until it returns `Some` or the deadline passes.
async fn poll<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records every auctioneer call; every call succeeds.
#[derive(Default)]
pub struct RecordingAuctioneer {
    /// One entry per `request_lrp_auctions` call.
    pub lrp_calls: Mutex<Vec<Vec<LrpStartRequest>>>,
    /// One entry per `request_task_auctions` call.
    pub task_calls: Mutex<Vec<Vec<TaskStartRequest>>>,
}

impl RecordingAuctioneer {
    /// The LRP calls so far.
    pub fn lrp_calls(&self) -> Vec<Vec<LrpStartRequest>> {
        lock(&self.lrp_calls).clone()
    }

    /// The task calls so far.
    pub fn task_calls(&self) -> Vec<Vec<TaskStartRequest>> {
        lock(&self.task_calls).clone()
    }

    /// Waits until at least `n` LRP calls arrived and returns them all; panics after the
    /// deadline.
    pub async fn wait_lrp_calls(&self, n: usize) -> Vec<Vec<LrpStartRequest>> {
        let calls = poll(|| {
            let calls = self.lrp_calls();
            (calls.len() >= n).then_some(calls)
        })
        .await;
        calls.unwrap_or_else(|| panic!("expected {n} lrp auction calls, got {:?}", self.lrp_calls()))
    }

    /// Waits until at least `n` task calls arrived and returns them all; panics after the
    /// deadline.
    pub async fn wait_task_calls(&self, n: usize) -> Vec<Vec<TaskStartRequest>> {
        let calls = poll(|| {
            let calls = self.task_calls();
            (calls.len() >= n).then_some(calls)
        })
        .await;
        calls.unwrap_or_else(|| panic!("expected {n} task auction calls, got {:?}", self.task_calls()))
    }
}

impl AuctioneerClient for RecordingAuctioneer {
    fn request_lrp_auctions(&self, requests: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        lock(&self.lrp_calls).push(requests);
        Box::pin(async { Ok(()) })
    }

    fn request_task_auctions(&self, requests: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), ClientError>> {
        lock(&self.task_calls).push(requests);
        Box::pin(async { Ok(()) })
    }
}

/// One recorded rep call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepCall {
    /// `stop_lrp_instance`.
    Stop {
        /// The rep address called.
        address: String,
        /// The desired LRP.
        process_guid: String,
        /// The instance.
        instance_guid: String,
        /// The index.
        index: i32,
    },
    /// `cancel_task`.
    Cancel {
        /// The rep address called.
        address: String,
        /// The task.
        task_guid: String,
    },
    /// `update_lrp_instance`.
    Update {
        /// The rep address called.
        address: String,
        /// The desired LRP.
        process_guid: String,
        /// The instance.
        instance_guid: String,
        /// The internal routes sent.
        internal_routes: Vec<String>,
        /// The metric tags sent.
        metric_tags: BTreeMap<String, String>,
    },
}

/// Records every rep call; every call succeeds.
#[derive(Default)]
pub struct RecordingRep {
    /// Every call, in arrival order.
    pub calls: Mutex<Vec<RepCall>>,
}

impl RecordingRep {
    /// The calls so far.
    pub fn calls(&self) -> Vec<RepCall> {
        lock(&self.calls).clone()
    }

    /// Waits until at least `n` calls arrived and returns them all; panics after the deadline.
    pub async fn wait_calls(&self, n: usize) -> Vec<RepCall> {
        let calls = poll(|| {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
        .await;
        calls.unwrap_or_else(|| panic!("expected {n} rep calls, got {:?}", self.calls()))
    }
}

impl RepClient for RecordingRep {
    fn stop_lrp_instance<'a>(
        &'a self,
        _cell_id: &'a str,
        rep_address: &'a str,
        process_guid: &'a str,
        instance_guid: &'a str,
        index: i32,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        lock(&self.calls).push(RepCall::Stop {
            address: rep_address.to_owned(),
            process_guid: process_guid.to_owned(),
            instance_guid: instance_guid.to_owned(),
            index,
        });
        Box::pin(async { Ok(()) })
    }

    fn cancel_task<'a>(
        &'a self,
        _cell_id: &'a str,
        rep_address: &'a str,
        task_guid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        lock(&self.calls).push(RepCall::Cancel { address: rep_address.to_owned(), task_guid: task_guid.to_owned() });
        Box::pin(async { Ok(()) })
    }

    fn update_lrp_instance<'a>(
        &'a self,
        _cell_id: &'a str,
        rep_address: &'a str,
        process_guid: &'a str,
        instance_guid: &'a str,
        internal_routes: Vec<String>,
        metric_tags: BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), ClientError>> {
        lock(&self.calls).push(RepCall::Update {
            address: rep_address.to_owned(),
            process_guid: process_guid.to_owned(),
            instance_guid: instance_guid.to_owned(),
            internal_routes,
            metric_tags,
        });
        Box::pin(async { Ok(()) })
    }
}

/// A controller context over a fresh test database, plus handles on its fakes.
pub struct Harness {
    /// The test database (dropped, and the database with it, when the harness is).
    pub db: TestDb,
    /// The controllers' context.
    pub ctx: Context,
    /// The recording auctioneer the context calls.
    pub auctioneer: Arc<RecordingAuctioneer>,
    /// The recording rep client the context calls.
    pub reps: Arc<RecordingRep>,
    /// The context's clock.
    pub clock: ManualClock,
}

impl Harness {
    /// A leader's context on `backend`, or `None` when the backend is not configured.
    pub async fn leader(backend: Backend) -> Option<Harness> {
        let harness = Self::build(backend, "bbs-under-test").await?;
        let state = harness.ctx.leadership.tick().await;
        assert!(matches!(state, Some(LeaderState::Leading { .. })), "the test bbs must win the lease: {state:?}");
        Some(harness)
    }

    /// A standby's context on `backend`: another owner holds the `bbs` lease first.
    pub async fn standby(backend: Backend) -> Option<Harness> {
        let harness = Self::build(backend, "bbs-standby").await?;
        harness
            .db
            .store
            .acquire_lease(BBS_LOCK_KEY, "bbs-other", "10.0.0.9:8889", LeaseType::Lock, Duration::from_secs(60))
            .await
            .expect("the other bbs takes the lease");
        let state = harness.ctx.leadership.tick().await;
        assert!(matches!(state, Some(LeaderState::Standby { .. })), "the test bbs must stand by: {state:?}");
        Some(harness)
    }

    async fn build(backend: Backend, owner: &str) -> Option<Harness> {
        let db = TestDb::create(backend).await?;
        let leadership = Leadership::new(
            db.store.clone(),
            owner.to_owned(),
            "127.0.0.1:8889".to_owned(),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let auctioneer = Arc::new(RecordingAuctioneer::default());
        let reps = Arc::new(RecordingRep::default());
        let clock = ManualClock::new(START_NS);
        let ctx = Context {
            leadership,
            events: Arc::new(EventHub::new(1024)),
            locks: Arc::new(KeyLocks::new(64)),
            recreate_locks: Arc::new(KeyLocks::new(64)),
            auctioneer: auctioneer.clone(),
            reps: reps.clone(),
            clock: Arc::new(clock.clone()),
            crash_policy: CrashPolicy::default(),
            max_task_retries: 3,
            max_lrp_instances: 100_000,
            callbacks: Callbacks::channel().0,
            lost_cells: tokio::sync::broadcast::channel(16).0,
            removed_lately: Arc::default(),
        };
        Some(Harness { db, ctx, auctioneer, reps, clock })
    }
}

/// A desired LRP in the wire form: `instances` of a shell on busybox, 128 MB and 256 MB, domain
/// `apps`, nothing else set (tests add what they need with `..shell_lrp(..)`).
pub fn shell_lrp(guid: &str, instances: i32) -> proto::pb::models::v1::DesiredLrp {
    use proto::pb::models::v1 as pb;
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances,
        memory_mb: 128,
        disk_mb: 256,
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/sh".into(),
                user: "root".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}
