//! The auction loop (reference §1.4, §1.10, §1.11): [`AuctionRunner::tick`] runs one auction,
//! and [`run`] drives it whenever the batch is woken, one auction at a time.
//!
//! One auction: drain the batch; list the cells and fetch their states (`cells.rs`); solve the
//! placement with the seeded RNG (`placement::solve`); send each winning cell one `Perform`, in
//! parallel and with a timeout; report to the BBS whatever could not be placed: work that fits
//! nowhere, work a cell refused, and work whose cell could not be reached (`FailActualLRP` for
//! LRP instances, `RejectTask` for tasks). The auctioneer never retries: the BBS's convergence
//! auctions the work again (§1.12).
//!
//! Unlike Diego, which treats every item of a failed `Perform` as placed, the work of a cell
//! whose `Perform` fails is reported as failed, so its placement error says why. The BBS only
//! fails UNCLAIMED instances and PENDING tasks, so work the cell did start is not disturbed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{AuctionBatch, Work};
use crate::bbs_client::{BbsClient, LrpKey};
use crate::cells::{LeftOut, fetch_cell_states};
use crate::config::AuctioneerConfig;
use crate::metrics;
use crate::placement::{self, LrpWork, PlacementConfig, Problem, TaskWork};
use crate::rep_client::RepClient;

/// The runner's tunables; [`RunnerConfig::from_config`] takes them from the file.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// Per-cell bound on `State`.
    pub cell_state_timeout: Duration,
    /// Bound on each `Perform` and each BBS failure report.
    pub perform_timeout: Duration,
    /// Pause before retrying when the BBS could not list the cells.
    pub cells_retry_interval: Duration,
    /// Pause before each auction once there is work, so a burst joins one auction.
    pub batch_window: Duration,
    /// BBS failure reports in flight at once.
    pub report_concurrency: usize,
    /// Scoring weights and limits.
    pub placement: PlacementConfig,
    /// Seed of the tie-breaking RNG.
    pub seed: u64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self::from_config(&AuctioneerConfig::default())
    }
}

impl RunnerConfig {
    /// The runner's part of the configuration.
    pub fn from_config(config: &AuctioneerConfig) -> Self {
        Self {
            cell_state_timeout: config.cell_state_timeout,
            perform_timeout: config.communication_timeout,
            cells_retry_interval: config.cells_retry_interval,
            batch_window: config.batch_window,
            report_concurrency: config.report_concurrency.max(1),
            placement: config.placement(),
            seed: config.seed,
        }
    }
}

/// What one auction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuctionReport {
    /// LRP instances accepted by their cell.
    pub lrps_placed: usize,
    /// Tasks accepted by their cell.
    pub tasks_placed: usize,
    /// LRP instances reported to the BBS as not placed.
    pub lrps_failed: usize,
    /// Tasks reported to the BBS as not placed.
    pub tasks_failed: usize,
    /// Cells the BBS listed (and whose state was asked for).
    pub cells_queried: usize,
    /// Cells that answered and took part.
    pub cells_used: usize,
    /// Cells left out, by reason.
    pub cells_left_out: LeftOut,
    /// `Perform` calls made (one per winning cell).
    pub performs: usize,
    /// BBS failure reports that themselves failed (logged; convergence covers them).
    pub report_errors: usize,
    /// Items put back into the batch because the BBS could not list the cells; the auction
    /// did not run.
    pub requeued: usize,
    /// Time spent listing cells and fetching their states.
    pub fetch_duration: Duration,
    /// Time of the whole auction.
    pub duration: Duration,
}

impl AuctionReport {
    /// True when the batch was empty and nothing happened.
    pub fn is_idle(&self) -> bool {
        *self == Self::default()
    }
}

/// Work that goes back to the BBS, with its placement error.
enum Failure {
    Lrp(LrpWork, String),
    Task(TaskWork, String),
}

/// Runs auctions over a shared batch. Owns the seeded RNG, so one runner's sequence of
/// auctions is reproducible from its seed and inputs.
pub struct AuctionRunner {
    batch: Arc<AuctionBatch>,
    bbs: Arc<dyn BbsClient>,
    reps: Arc<dyn RepClient>,
    config: RunnerConfig,
    rng: ChaCha8Rng,
}

impl std::fmt::Debug for AuctionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuctionRunner")
            .field("batch", &self.batch)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuctionRunner {
    /// A runner over `batch`, with its RNG seeded from `config.seed`.
    pub fn new(
        batch: Arc<AuctionBatch>,
        bbs: Arc<dyn BbsClient>,
        reps: Arc<dyn RepClient>,
        config: RunnerConfig,
    ) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self { batch, bbs, reps, config, rng }
    }

    /// The batch this runner drains.
    pub fn batch(&self) -> &Arc<AuctionBatch> {
        &self.batch
    }

    /// Runs one auction over everything pending; returns at once when nothing is.
    ///
    /// If the BBS cannot list the cells, the work goes back into the batch (`requeued`) and
    /// the caller retries after `cells_retry_interval`, as Diego does.
    pub async fn tick(&mut self) -> AuctionReport {
        let started = Instant::now();
        let work = self.batch.drain();
        if work.is_empty() {
            return AuctionReport::default();
        }
        let states =
            match fetch_cell_states(self.bbs.as_ref(), self.reps.as_ref(), self.config.cell_state_timeout).await {
                Ok(states) => states,
                Err(e) => {
                    let requeued = work.len();
                    tracing::warn!(error = %e, requeued, "cannot list cells; keeping the batch for the next attempt");
                    self.batch.requeue(work);
                    return AuctionReport { requeued, duration: started.elapsed(), ..AuctionReport::default() };
                }
            };
        metrics::record_started(work.lrps.len(), work.tasks.len());
        let mut report = AuctionReport {
            cells_queried: states.listed,
            cells_used: states.cells.len(),
            cells_left_out: states.left_out,
            fetch_duration: states.duration,
            ..AuctionReport::default()
        };

        let problem =
            Problem { cells: states.cells, lrps: work.lrps, tasks: work.tasks, config: self.config.placement };
        let solution = placement::solve(&problem, &mut self.rng);
        drop(problem);

        let mut failures = Vec::with_capacity(solution.failed_lrps.len() + solution.failed_tasks.len());
        for (lrp, error) in solution.failed_lrps {
            failures.push(Failure::Lrp(lrp, error.to_string()));
        }
        for (task, error) in solution.failed_tasks {
            failures.push(Failure::Task(task, error.to_string()));
        }
        // BTreeMap: cells in id order, so the calls are made in a reproducible order.
        let mut per_cell: BTreeMap<String, Work> = BTreeMap::new();
        for (lrp, cell_id) in solution.lrp_placements {
            per_cell.entry(cell_id).or_default().lrps.push(lrp);
        }
        for (task, cell_id) in solution.task_placements {
            per_cell.entry(cell_id).or_default().tasks.push(task);
        }

        report.performs = per_cell.len();
        let addresses = &states.addresses;
        let reps = self.reps.as_ref();
        let timeout = self.config.perform_timeout;
        let outcomes = futures::future::join_all(per_cell.into_iter().map(|(cell_id, work)| async move {
            let outcome = match addresses.get(&cell_id) {
                Some(address) => {
                    match tokio::time::timeout(timeout, reps.perform(&cell_id, address, work.clone())).await {
                        Ok(Ok(refused)) => Ok(refused),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("timed out after {timeout:?}")),
                    }
                }
                None => Err("the cell has no known address".to_owned()),
            };
            (cell_id, work, outcome)
        }))
        .await;
        for (cell_id, work, outcome) in outcomes {
            match outcome {
                Ok(refused) => settle(&cell_id, work, refused, &mut report, &mut failures),
                Err(error) => {
                    tracing::warn!(cell_id = %cell_id, error = %error, lrps = work.lrps.len(), tasks = work.tasks.len(), "perform failed; reporting the cell's work as not placed");
                    let message =
                        format!("unable to communicate to compatible cells: perform on cell {cell_id} failed: {error}");
                    failures.extend(work.lrps.into_iter().map(|l| Failure::Lrp(l, message.clone())));
                    failures.extend(work.tasks.into_iter().map(|t| Failure::Task(t, message.clone())));
                }
            }
        }

        self.report_failures(failures, &mut report).await;
        report.duration = started.elapsed();
        metrics::record_outcome(
            (report.lrps_placed, report.tasks_placed),
            (report.lrps_failed, report.tasks_failed),
            report.duration,
        );
        tracing::info!(
            lrps_placed = report.lrps_placed,
            tasks_placed = report.tasks_placed,
            lrps_failed = report.lrps_failed,
            tasks_failed = report.tasks_failed,
            cells_queried = report.cells_queried,
            cells_used = report.cells_used,
            cells_left_out = report.cells_left_out.total(),
            duration_ms = report.duration.as_millis() as u64,
            "auction finished"
        );
        report
    }

    /// Sends every failure to the BBS, a bounded number at a time.
    async fn report_failures(&self, failures: Vec<Failure>, report: &mut AuctionReport) {
        let bbs = self.bbs.as_ref();
        let timeout = self.config.perform_timeout;
        let results: Vec<(bool, bool)> = futures::stream::iter(failures)
            .map(|failure| async move {
                match failure {
                    Failure::Lrp(lrp, error) => {
                        tracing::info!(process_guid = %lrp.process_guid, index = lrp.index, error = %error, "lrp instance not placed");
                        let key = LrpKey {
                            process_guid: lrp.process_guid.clone(),
                            index: lrp.index,
                            domain: lrp.domain.clone(),
                        };
                        let ok = reported(timeout, bbs.fail_actual_lrp(&key, &error)).await.map_err(|e| {
                            tracing::warn!(process_guid = %lrp.process_guid, index = lrp.index, error = %e, "cannot report the placement failure to the bbs");
                        });
                        (true, ok.is_ok())
                    }
                    Failure::Task(task, error) => {
                        tracing::info!(task_guid = %task.task_guid, error = %error, "task not placed");
                        let ok = reported(timeout, bbs.reject_task(&task.task_guid, &error)).await.map_err(|e| {
                            tracing::warn!(task_guid = %task.task_guid, error = %e, "cannot report the rejected task to the bbs");
                        });
                        (false, ok.is_ok())
                    }
                }
            })
            .buffer_unordered(self.config.report_concurrency.max(1))
            .collect()
            .await;
        for (is_lrp, ok) in results {
            if is_lrp {
                report.lrps_failed += 1;
            } else {
                report.tasks_failed += 1;
            }
            if !ok {
                report.report_errors += 1;
            }
        }
    }
}

async fn reported(
    timeout: Duration,
    call: impl Future<Output = Result<(), crate::error::ClientError>>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// Splits what a cell was sent into placed and refused, by the items' keys.
fn settle(cell_id: &str, sent: Work, refused: Work, report: &mut AuctionReport, failures: &mut Vec<Failure>) {
    let message = format!("cell {cell_id} refused the work: it could not reserve a container");
    let mut refused_lrps: HashSet<(String, i32)> =
        refused.lrps.into_iter().map(|l| (l.process_guid, l.index)).collect();
    let mut refused_tasks: HashSet<String> = refused.tasks.into_iter().map(|t| t.task_guid).collect();
    for lrp in sent.lrps {
        if refused_lrps.remove(&(lrp.process_guid.clone(), lrp.index)) {
            tracing::info!(process_guid = %lrp.process_guid, index = lrp.index, cell_id, "cell refused lrp instance");
            failures.push(Failure::Lrp(lrp, message.clone()));
        } else {
            tracing::debug!(process_guid = %lrp.process_guid, index = lrp.index, cell_id, "placed lrp instance");
            report.lrps_placed += 1;
        }
    }
    for task in sent.tasks {
        if refused_tasks.remove(&task.task_guid) {
            tracing::info!(task_guid = %task.task_guid, cell_id, "cell refused task");
            failures.push(Failure::Task(task, message.clone()));
        } else {
            tracing::debug!(task_guid = %task.task_guid, cell_id, "placed task");
            report.tasks_placed += 1;
        }
    }
    if !refused_lrps.is_empty() || !refused_tasks.is_empty() {
        tracing::warn!(
            cell_id,
            unknown_lrps = refused_lrps.len(),
            unknown_tasks = refused_tasks.len(),
            "cell refused work it was not sent; ignoring it"
        );
    }
}

/// Drives `runner` until `shutdown`: runs an auction whenever the batch is woken (and at once
/// if work is already pending), never two at a time. Cancelling `shutdown` drops an auction in
/// flight at its next await (used when the lock is lost: stop at once; the BBS's convergence
/// re-auctions whatever was cut short). Returns the runner, so its RNG carries on.
pub async fn run(mut runner: AuctionRunner, shutdown: CancellationToken) -> AuctionRunner {
    let batch = runner.batch.clone();
    loop {
        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return runner,
                _ = batch.wait() => {}
            }
        }
        if !runner.config.batch_window.is_zero() {
            // Let more requests join this auction.
            tokio::select! {
                _ = shutdown.cancelled() => return runner,
                _ = tokio::time::sleep(runner.config.batch_window) => {}
            }
        }
        let report = tokio::select! {
            _ = shutdown.cancelled() => None,
            report = runner.tick() => Some(report),
        };
        let Some(report) = report else {
            return runner;
        };
        if report.requeued > 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return runner,
                _ = tokio::time::sleep(runner.config.cells_retry_interval) => {}
            }
        }
    }
}
