//! Hand-written recording fakes of the outbound seams ([`FakeBbs`], [`FakeReps`],
//! [`FakeLocker`]) and small builders for cells and work. Behind the `testing` feature; this
//! crate's own tests enable it through a dev-dependency on itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::batch::Work;
use crate::bbs_client::{BbsClient, CellPresence, LrpKey};
use crate::error::ClientError;
use crate::lock::{LockSpec, Locker};
use crate::placement::{CellState, LrpWork, PlacementConstraint, Resources, RootfsProvider, TaskWork, WorkResource};
use crate::rep_client::RepClient;

/// The rootfs every [`cell`] offers and every [`lrp`] / [`task`] asks for.
pub const ROOTFS: &str = "preloaded:busybox";

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A cell in `zone` with the given capacity, all of it free, offering [`ROOTFS`].
pub fn cell(id: &str, zone: &str, memory_mb: i64, disk_mb: i64, containers: i64) -> CellState {
    let total = Resources::new(memory_mb, disk_mb, containers);
    CellState {
        cell_id: id.into(),
        zone: zone.into(),
        total,
        available: total,
        rootfs_providers: vec![RootfsProvider::fixed("preloaded", ["busybox"])],
        ..CellState::default()
    }
}

/// An LRP instance needing `memory_mb` and 1 MB disk on [`ROOTFS`], in domain `d`.
pub fn lrp(process_guid: &str, index: i32, memory_mb: i64) -> LrpWork {
    LrpWork {
        process_guid: process_guid.into(),
        index,
        domain: "d".into(),
        resource: WorkResource { memory_mb, disk_mb: 1, max_pids: 0 },
        constraint: PlacementConstraint { rootfs: ROOTFS.into(), ..PlacementConstraint::default() },
    }
}

/// A task needing `memory_mb` and 1 MB disk on [`ROOTFS`], in domain `d`.
pub fn task(task_guid: &str, memory_mb: i64) -> TaskWork {
    TaskWork {
        task_guid: task_guid.into(),
        domain: "d".into(),
        resource: WorkResource { memory_mb, disk_mb: 1, max_pids: 0 },
        constraint: PlacementConstraint { rootfs: ROOTFS.into(), ..PlacementConstraint::default() },
    }
}

/// A BBS that lists configured cells and records the failures reported to it.
#[derive(Debug, Default)]
pub struct FakeBbs {
    cells: Mutex<Vec<CellPresence>>,
    cells_error: Mutex<Option<String>>,
    cells_calls: Mutex<usize>,
    failed_lrps: Mutex<Vec<(LrpKey, String)>>,
    rejected_tasks: Mutex<Vec<(String, String)>>,
}

impl FakeBbs {
    /// A BBS listing no cells.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a live cell with its rep address (and no zone: the state's zone is used).
    pub fn add_cell(&self, cell_id: &str, rep_address: &str) {
        locked(&self.cells).push(CellPresence {
            cell_id: cell_id.into(),
            rep_address: rep_address.into(),
            zone: String::new(),
        });
    }

    /// Makes `Cells` fail with `message` (or succeed again with `None`).
    pub fn fail_cells(&self, message: Option<&str>) {
        *locked(&self.cells_error) = message.map(str::to_owned);
    }

    /// How many times `Cells` was called.
    pub fn cells_calls(&self) -> usize {
        *locked(&self.cells_calls)
    }

    /// Every `FailActualLRP` so far: key and error, in call order.
    pub fn failed_lrps(&self) -> Vec<(LrpKey, String)> {
        locked(&self.failed_lrps).clone()
    }

    /// Every `RejectTask` so far: task guid and reason, in call order.
    pub fn rejected_tasks(&self) -> Vec<(String, String)> {
        locked(&self.rejected_tasks).clone()
    }
}

impl BbsClient for FakeBbs {
    fn cells(&self) -> BoxFuture<'_, Result<Vec<CellPresence>, ClientError>> {
        *locked(&self.cells_calls) += 1;
        let result = match locked(&self.cells_error).clone() {
            Some(message) => Err(ClientError::Other(message)),
            None => Ok(locked(&self.cells).clone()),
        };
        Box::pin(async move { result })
    }

    fn fail_actual_lrp<'a>(&'a self, key: &'a LrpKey, error: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        locked(&self.failed_lrps).push((key.clone(), error.to_owned()));
        Box::pin(async { Ok(()) })
    }

    fn reject_task<'a>(&'a self, task_guid: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), ClientError>> {
        locked(&self.rejected_tasks).push((task_guid.to_owned(), reason.to_owned()));
        Box::pin(async { Ok(()) })
    }
}

/// How a fake rep answers `Perform`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PerformBehaviour {
    /// Accepts everything.
    #[default]
    Accept,
    /// Answers, refusing everything it was sent.
    RefuseAll,
    /// Fails the call.
    Fail,
}

#[derive(Debug, Clone, Default)]
struct FakeCell {
    state: CellState,
    state_delay: Option<Duration>,
    state_error: Option<String>,
    perform: PerformBehaviour,
}

/// Reps by address: each answers `State` with a configured state (optionally late or with an
/// error) and `Perform` per its [`PerformBehaviour`]; every `Perform` is recorded. `Perform`s
/// can be held at a gate to observe what happens while an auction is in flight.
#[derive(Debug)]
pub struct FakeReps {
    cells: Mutex<HashMap<String, FakeCell>>,
    performs: Mutex<Vec<(String, Work)>>,
    state_calls: Mutex<Vec<String>>,
    gate: watch::Sender<bool>,
    started: watch::Sender<usize>,
    in_flight: Mutex<(usize, usize)>,
}

impl Default for FakeReps {
    fn default() -> Self {
        Self {
            cells: Mutex::default(),
            performs: Mutex::default(),
            state_calls: Mutex::default(),
            gate: watch::Sender::new(true),
            started: watch::Sender::new(0),
            in_flight: Mutex::default(),
        }
    }
}

impl FakeReps {
    /// No reps.
    pub fn new() -> Self {
        Self::default()
    }

    /// A rep at `address` answering with `state`.
    pub fn add_cell(&self, address: &str, state: CellState) {
        locked(&self.cells).insert(address.into(), FakeCell { state, ..FakeCell::default() });
    }

    fn with_cell(&self, address: &str, f: impl FnOnce(&mut FakeCell)) {
        if let Some(cell) = locked(&self.cells).get_mut(address) {
            f(cell);
        }
    }

    /// Makes the rep at `address` sleep `delay` before answering `State`.
    pub fn delay_state(&self, address: &str, delay: Duration) {
        self.with_cell(address, |c| c.state_delay = Some(delay));
    }

    /// Makes the rep at `address` fail `State` (like a rep whose garden is unhealthy).
    pub fn fail_state(&self, address: &str, message: &str) {
        self.with_cell(address, |c| c.state_error = Some(message.into()));
    }

    /// Sets how the rep at `address` answers `Perform`.
    pub fn set_perform(&self, address: &str, behaviour: PerformBehaviour) {
        self.with_cell(address, |c| c.perform = behaviour);
    }

    /// Holds every `Perform` (after recording it) until [`FakeReps::open_gate`].
    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    /// Lets held and future `Perform`s answer.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until at least `n` `Perform`s have started.
    pub async fn wait_for_performs(&self, n: usize) {
        let mut rx = self.started.subscribe();
        let _ = rx.wait_for(|started| *started >= n).await;
    }

    /// Every `Perform` so far: address and work, in call order.
    pub fn performs(&self) -> Vec<(String, Work)> {
        locked(&self.performs).clone()
    }

    /// Addresses `State` was asked of, in call order.
    pub fn state_calls(&self) -> Vec<String> {
        locked(&self.state_calls).clone()
    }

    /// The most `Perform`s ever in flight at once.
    pub fn max_performs_in_flight(&self) -> usize {
        locked(&self.in_flight).1
    }
}

impl RepClient for FakeReps {
    fn state<'a>(&'a self, _cell_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<CellState, ClientError>> {
        locked(&self.state_calls).push(address.to_owned());
        let cell = locked(&self.cells).get(address).cloned();
        Box::pin(async move {
            let Some(cell) = cell else {
                return Err(ClientError::Other(format!("no rep at {address}")));
            };
            if let Some(delay) = cell.state_delay {
                tokio::time::sleep(delay).await;
            }
            match cell.state_error {
                Some(message) => Err(ClientError::Other(message)),
                None => Ok(cell.state),
            }
        })
    }

    fn perform<'a>(
        &'a self,
        _cell_id: &'a str,
        address: &'a str,
        work: Work,
    ) -> BoxFuture<'a, Result<Work, ClientError>> {
        locked(&self.performs).push((address.to_owned(), work.clone()));
        let behaviour = locked(&self.cells).get(address).map(|c| c.perform).unwrap_or(PerformBehaviour::Fail);
        {
            let mut in_flight = locked(&self.in_flight);
            in_flight.0 += 1;
            in_flight.1 = in_flight.1.max(in_flight.0);
        }
        self.started.send_modify(|n| *n += 1);
        Box::pin(async move {
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            locked(&self.in_flight).0 -= 1;
            match behaviour {
                PerformBehaviour::Accept => Ok(Work::default()),
                PerformBehaviour::RefuseAll => Ok(work),
                PerformBehaviour::Fail => Err(ClientError::Other(format!("rep {address} is unreachable"))),
            }
        })
    }
}

/// A Locket whose lock is available or taken, recording every call.
#[derive(Debug)]
pub struct FakeLocker {
    available: Mutex<bool>,
    locks: watch::Sender<usize>,
    releases: Mutex<Vec<LockSpec>>,
    last: Mutex<Option<LockSpec>>,
}

impl FakeLocker {
    /// A Locket where the lock is free (`true`) or held by someone else (`false`).
    pub fn new(available: bool) -> Self {
        Self {
            available: Mutex::new(available),
            locks: watch::Sender::new(0),
            releases: Mutex::default(),
            last: Mutex::default(),
        }
    }

    /// Frees the lock or gives it to someone else; renewals then succeed or fail.
    pub fn set_available(&self, available: bool) {
        *locked(&self.available) = available;
    }

    /// How many `Lock` calls were made.
    pub fn lock_calls(&self) -> usize {
        *self.locks.borrow()
    }

    /// Waits until at least `n` `Lock` calls were made.
    pub async fn wait_for_lock_calls(&self, n: usize) {
        let mut rx = self.locks.subscribe();
        let _ = rx.wait_for(|calls| *calls >= n).await;
    }

    /// The last lock asked for.
    pub fn last_lock(&self) -> Option<LockSpec> {
        locked(&self.last).clone()
    }

    /// Every `Release` so far.
    pub fn releases(&self) -> Vec<LockSpec> {
        locked(&self.releases).clone()
    }
}

impl Locker for FakeLocker {
    fn lock<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>> {
        *locked(&self.last) = Some(spec.clone());
        let available = *locked(&self.available);
        self.locks.send_modify(|n| *n += 1);
        Box::pin(async move {
            if available {
                Ok(())
            } else {
                Err(ClientError::call(
                    "locket fake",
                    "Lock",
                    proto::error::ErrorCode::LockCollision.to_status("lock collision"),
                ))
            }
        })
    }

    fn release<'a>(&'a self, spec: &'a LockSpec) -> BoxFuture<'a, Result<(), ClientError>> {
        locked(&self.releases).push(spec.clone());
        Box::pin(async { Ok(()) })
    }
}
