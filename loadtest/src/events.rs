//! Event verification: subscribers to the BBS's instance events (one global, plus one per cell
//! when the local route emitters run), counting what they receive, compared after the trials
//! with the number of instance changes the trials' writes caused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::generator::cell_id;
use crate::target::Clients;

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Counter {
    /// Instance events received.
    pub received: AtomicU64,
    /// Why the stream ended early, if it did.
    pub closed: std::sync::Mutex<Option<String>>,
}

/// The running subscribers.
pub struct Subscribers {
    /// The global subscriber.
    pub global: Arc<Counter>,
    /// One per cell (local route emitters), by cell index.
    pub cells: Vec<Arc<Counter>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Subscribers {
    /// Subscribes globally, and per cell when `per_cell`; returns once every stream is open.
    pub async fn start(clients: &Clients, cells: usize, per_cell: bool) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let global = Arc::new(Counter::default());
        tasks.push(subscribe(clients, String::new(), global.clone(), stop.clone()).await?);
        let mut counters = Vec::new();
        if per_cell {
            for c in 0..cells {
                let counter = Arc::new(Counter::default());
                tasks.push(subscribe(clients, cell_id(c), counter.clone(), stop.clone()).await?);
                counters.push(counter);
            }
        }
        Ok(Self { global, cells: counters, stop, tasks })
    }

    /// Waits until every subscriber has received at least its expected count, or `timeout`.
    /// Returns how long it waited.
    pub async fn wait_for(&self, expected_global: u64, expected_cells: &[u64], timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let global_done = self.global.received.load(Ordering::Relaxed) >= expected_global;
            let cells_done = self
                .cells
                .iter()
                .zip(expected_cells)
                .all(|(counter, expected)| counter.received.load(Ordering::Relaxed) >= *expected);
            let closed = self.global.closed.lock().map(|c| c.is_some()).unwrap_or(false);
            if (global_done && cells_done) || closed || started.elapsed() >= timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Anything beyond the expected count (unexpected writes) arrives right behind it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        started.elapsed()
    }

    /// Closes every stream.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn subscribe(
    clients: &Clients,
    cell_id: String,
    counter: Arc<Counter>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let request = api::SubscribeToInstanceEventsRequest { cell_id: cell_id.clone() };
    let mut stream = clients.bbs().subscribe_to_instance_events(request).await?.into_inner();
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(_event)) => {
                        counter.received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(status)) => {
                        tracing::warn!(cell_id = %cell_id, %status, "event stream closed by the bbs");
                        if let Ok(mut closed) = counter.closed.lock() {
                            *closed = Some(status.to_string());
                        }
                        return;
                    }
                    None => {
                        if let Ok(mut closed) = counter.closed.lock() {
                            *closed = Some("the stream ended".into());
                        }
                        return;
                    }
                }
            }
        }
    }))
}

/// The event count check, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct EventCheck {
    /// Instance changes the trials caused (claims + starts of CLAIMED instances).
    pub expected: u64,
    /// Events the global subscriber received.
    pub received: u64,
    /// `received / expected - 1`.
    pub relative_difference: f64,
    /// The accepted relative difference.
    pub tolerance: f64,
    /// Whether the global count is within the tolerance.
    pub within_tolerance: bool,
    /// Per-cell subscribers (local route emitters): expected and received summed over cells.
    pub per_cell: Option<PerCellEvents>,
    /// How long the check waited after the trials.
    pub waited_s: f64,
    /// Streams the BBS closed early (lagging subscribers), with the status.
    pub closed_streams: Vec<String>,
}

/// The per-cell subscribers' totals.
#[derive(Debug, Clone, Serialize)]
pub struct PerCellEvents {
    /// Sum of the per-cell expected counts.
    pub expected: u64,
    /// Sum of the per-cell received counts.
    pub received: u64,
    /// Cells whose count is within the tolerance.
    pub cells_within_tolerance: usize,
    /// Cells.
    pub cells: usize,
}

/// Whether `received` is within `tolerance` of `expected` (relative; exact when 0 expected).
pub fn within(expected: u64, received: u64, tolerance: f64) -> bool {
    let diff = expected.abs_diff(received) as f64;
    diff <= tolerance * expected as f64
}

impl EventCheck {
    /// Compares what the subscribers received with what was expected.
    pub fn of(
        subscribers: &Subscribers,
        expected: u64,
        expected_cells: &[u64],
        tolerance: f64,
        waited: Duration,
    ) -> Self {
        let received = subscribers.global.received.load(Ordering::Relaxed);
        let mut closed_streams = Vec::new();
        if let Some(reason) = subscribers.global.closed.lock().ok().and_then(|c| c.clone()) {
            closed_streams.push(format!("global: {reason}"));
        }
        let per_cell = (!subscribers.cells.is_empty()).then(|| {
            let mut within_count = 0;
            let mut received_sum = 0;
            for (c, (counter, expected)) in subscribers.cells.iter().zip(expected_cells).enumerate() {
                let got = counter.received.load(Ordering::Relaxed);
                received_sum += got;
                if within(*expected, got, tolerance) {
                    within_count += 1;
                }
                if let Some(reason) = counter.closed.lock().ok().and_then(|c| c.clone()) {
                    closed_streams.push(format!("{}: {reason}", cell_id(c)));
                }
            }
            PerCellEvents {
                expected: expected_cells.iter().sum(),
                received: received_sum,
                cells_within_tolerance: within_count,
                cells: subscribers.cells.len(),
            }
        });
        let relative_difference = if expected == 0 { 0.0 } else { received as f64 / expected as f64 - 1.0 };
        Self {
            expected,
            received,
            relative_difference,
            tolerance,
            within_tolerance: within(expected, received, tolerance),
            per_cell,
            waited_s: waited.as_secs_f64(),
            closed_streams,
        }
    }

    /// Whether every count is within the tolerance.
    pub fn ok(&self) -> bool {
        self.within_tolerance && self.per_cell.as_ref().is_none_or(|p| p.cells_within_tolerance == p.cells)
    }
}
