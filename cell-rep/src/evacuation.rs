//! Evacuation (drain, reference 2.9): once the one-way evacuation flag is set (by `Evacuate` or
//! SIGUSR1), `State` reports `evacuating`, `Perform` refuses all work, bulk sync runs at once and
//! then every evacuation interval, and every LRP container goes through the generator's
//! evacuation processor:
//!
//! - claimed (reserved, initializing, created): `EvacuateClaimedActualLRP`, then deleted;
//! - running: `EvacuateRunningActualLRP`, asked again on every pass while the BBS answers
//!   `keep_container = true` (the replacement is not running yet); once it answers false the
//!   container is stopped, and its stop is reported with `EvacuateStoppedActualLRP`;
//! - completed: `EvacuateStopped/CrashedActualLRP`, then deleted.
//!
//! Tasks run to completion under the normal task processor. The [`Evacuator`] waits until the
//! cell has no containers, or until the evacuation timeout, when it stops what is left
//! (reporting LRPs stopped and failing tasks) and gives up; either way the rep then exits.

use std::sync::Arc;
use std::time::Duration;

use proto::error::ErrorCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bbs_client::TaskCompletion;
use crate::executor::{Container, Workload};
use crate::generator::Generator;

/// The failure reason of tasks still running when the evacuation timeout expires.
pub const TASK_EVACUATION_TIMEOUT: &str = "cell evacuation timed out before the task completed";

/// How an evacuation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvacuationOutcome {
    /// Every container was handed over or finished.
    Drained,
    /// The timeout expired; this many containers were stopped and given up.
    TimedOut {
        /// Containers left at the timeout.
        stranded: usize,
    },
    /// The rep was stopped (hard) before evacuation finished, or it never started.
    Aborted,
}

/// Waits for the evacuation flag, then for the cell to empty.
#[derive(Debug, Clone)]
pub struct Evacuator {
    generator: Arc<Generator>,
    polling_interval: Duration,
    timeout: Duration,
}

impl Evacuator {
    /// An evacuator that checks every `polling_interval` (and on every deleted container) and
    /// gives up after `timeout`.
    pub fn new(generator: Arc<Generator>, polling_interval: Duration, timeout: Duration) -> Self {
        Self { generator, polling_interval, timeout }
    }

    /// Waits for the flag, then drains; returns early with `Aborted` when `abort` fires.
    pub async fn run(self, abort: CancellationToken) -> EvacuationOutcome {
        let flag = self.generator.context().evacuation.clone();
        tokio::select! {
            _ = abort.cancelled() => return EvacuationOutcome::Aborted,
            () = flag.wait() => {}
        }
        self.drain(abort).await
    }

    /// Waits until the cell has no containers or the timeout expires (then cleans up).
    pub async fn drain(&self, abort: CancellationToken) -> EvacuationOutcome {
        let ctx = Arc::clone(self.generator.context());
        let cell_id = ctx.cell.cell_id.to_string();
        let deadline = Instant::now() + self.timeout;
        let mut events = ctx.executor.subscribe();
        tracing::info!(cell_id = %cell_id, containers = ctx.executor.list().len(), timeout = ?self.timeout, "evacuating");
        loop {
            let left = ctx.executor.list().len();
            if left == 0 {
                tracing::info!(cell_id = %cell_id, "evacuation complete");
                return EvacuationOutcome::Drained;
            }
            let now = Instant::now();
            if now >= deadline {
                let stranded = self.give_up().await;
                tracing::warn!(cell_id = %cell_id, stranded, "evacuation timed out; stopped what was left");
                return EvacuationOutcome::TimedOut { stranded };
            }
            let wake = (now + self.polling_interval).min(deadline);
            tokio::select! {
                _ = abort.cancelled() => return EvacuationOutcome::Aborted,
                _ = tokio::time::sleep_until(wake) => {}
                // Any event may have been the last deletion; re-check (a lag just re-checks too).
                _ = events.recv() => {}
            }
        }
    }

    /// Stops and reports every container still on the cell; returns how many there were.
    async fn give_up(&self) -> usize {
        let ctx = self.generator.context();
        let containers = ctx.executor.list();
        let count = containers.len();
        futures::future::join_all(containers.iter().map(|c| self.give_up_container(c))).await;
        count
    }

    async fn give_up_container(&self, container: &Container) {
        let ctx = self.generator.context();
        let guid = container.guid.as_str();
        tracing::info!(cell_id = %ctx.cell.cell_id, container_guid = %guid, "cell {} reached evacuation timeout for instance {}", ctx.cell.cell_id, guid);
        let delete = || async {
            if let Err(e) = ctx.executor.delete(guid).await {
                tracing::debug!(container_guid = %guid, error = %e, "delete at evacuation timeout");
            }
        };
        match &container.workload {
            Workload::Lrp(lrp) => {
                // Stop first: the instance serves until the last moment.
                delete().await;
                let lrp = ctx.lrp_identity(lrp);
                match ctx.bbs.evacuate_stopped_actual_lrp(&lrp.key, &lrp.instance_key).await {
                    Ok(_) => {}
                    Err(e) if e.is(ErrorCode::ResourceNotFound) => {}
                    Err(e) => {
                        tracing::warn!(container_guid = %guid, error = %e, "cannot report the evacuated instance stopped")
                    }
                }
            }
            Workload::Task(_) => {
                let completion = TaskCompletion {
                    task_guid: guid.to_owned(),
                    cell_id: ctx.cell.cell_id.to_string(),
                    failed: true,
                    failure_reason: TASK_EVACUATION_TIMEOUT.to_owned(),
                    result: String::new(),
                };
                // Fail it first, so the reason is this one and not the interrupted run's.
                match ctx.bbs.complete_task(&completion).await {
                    Ok(()) => {}
                    Err(e) if e.is(ErrorCode::InvalidStateTransition) || e.is(ErrorCode::ResourceNotFound) => {}
                    Err(e) => tracing::warn!(task_guid = %guid, error = %e, "cannot fail the task"),
                }
                delete().await;
            }
        }
    }
}
