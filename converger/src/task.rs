//! Task convergence (bbs.md 6.3): [`TaskConvergence::tick`] reads the cells and every task,
//! asks the pure [`plan::plan`] what to do, and applies it.
//!
//! - [`plan`]: the rules, with case-by-case tests.
//!
//! Execution: failures (expired pending, lost cells) one task at a time under its key lock,
//! `workers` at once, each re-read under the lock and skipped if the task moved on; demotion and
//! deletion as set-based statements; one auction call with every pending task; callbacks handed
//! to the BBS's callback pool.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use db::Store;
use db::sql::tasks::TaskFilter;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use proto::models::{Task, TaskGuid, TaskState};
use tokio::time::Instant;

use self::plan::{EXPIRED_PENDING_REASON, LOST_CELL_REASON, TaskAction, TaskPlan};
use crate::cells::{CellBaseline, LostCells, read_cells};
use crate::config::nanos;
use crate::effects::{Effects, LockKey, TaskStartRequest};
use crate::error::{Error, Result};
use crate::report::TaskTickReport;
use crate::{Clock, ConvergenceConfig, StoreProvider, metrics};

/// The task half of convergence. [`TaskConvergence::tick`] takes `&mut self`, so passes of one
/// value never overlap.
pub struct TaskConvergence {
    store: StoreProvider,
    effects: Arc<dyn Effects>,
    clock: Arc<dyn Clock>,
    config: ConvergenceConfig,
    lost: LostCells,
    baseline: CellBaseline,
}

impl TaskConvergence {
    /// Task convergence writing through the store `store` provides, acting through `effects`.
    pub fn new(
        store: StoreProvider,
        effects: Arc<dyn Effects>,
        clock: Arc<dyn Clock>,
        config: ConvergenceConfig,
        lost: LostCells,
    ) -> Self {
        Self { store, effects, clock, config, lost, baseline: CellBaseline::default() }
    }

    /// One pass: read the cells and every task, plan, execute, record metrics. Errors as for
    /// [`crate::LrpConvergence::tick`].
    pub async fn tick(&mut self) -> Result<TaskTickReport> {
        let started = Instant::now();
        let Some(store) = (self.store)() else {
            self.baseline = CellBaseline::default();
            return Err(Error::NotLeading);
        };
        let now_ns = self.clock.now_ns();
        let cells = read_cells(&store, &self.lost, &self.baseline, &self.config).await;
        let tasks = match store.tasks(&TaskFilter::default()).await {
            Ok(tasks) => tasks,
            Err(source) => {
                metrics::task_pass_failed();
                return Err(Error::Store { step: "task read", source });
            }
        };
        let plan = plan::plan(&tasks, &cells, now_ns, &self.config);
        if let Some(reason) = &plan.guard
            && !plan.withheld.is_empty()
        {
            tracing::warn!(
                reason = %reason,
                guard = reason.label(),
                withheld = plan.withheld.len(),
                "task convergence withheld failing tasks on lost cells"
            );
        }
        self.baseline.advance(&cells, plan.guard.as_ref(), &self.config);
        let mut report = TaskTickReport {
            guard: plan.guard.clone(),
            withheld: plan.withheld.len(),
            counts: plan.counts,
            ..TaskTickReport::default()
        };
        let executor = Executor {
            store: &store,
            effects: &*self.effects,
            config: &self.config,
            tasks: tasks.iter().map(|t| (&t.task_guid, t)).collect(),
            now_ns,
        };
        let outcome = executor.run(&plan, &mut report).await;
        report.duration = started.elapsed();
        match outcome {
            Ok(()) => {
                metrics::record_task(&report);
                Ok(report)
            }
            Err(e) => {
                metrics::task_pass_failed();
                Err(e)
            }
        }
    }
}

struct Executor<'a> {
    store: &'a Store,
    effects: &'a dyn Effects,
    config: &'a ConvergenceConfig,
    tasks: HashMap<&'a TaskGuid, &'a Task>,
    now_ns: i64,
}

/// Fenced writes end the pass; other failures are logged and counted.
fn check(step: &'static str, e: db::Error, errors: &mut usize) -> Result<()> {
    if matches!(e, db::Error::Fenced { .. }) {
        return Err(Error::Store { step, source: e });
    }
    tracing::warn!(step, error = %e, "task convergence write failed; the next pass retries");
    *errors += 1;
    Ok(())
}

impl Executor<'_> {
    async fn run(&self, plan: &TaskPlan, report: &mut TaskTickReport) -> Result<()> {
        self.fail_tasks(plan, report).await?;

        let guids = |want: fn(&TaskAction) -> Option<&TaskGuid>| -> Vec<TaskGuid> {
            plan.actions.iter().filter_map(want).cloned().collect()
        };
        let demote = guids(|a| match a {
            TaskAction::DemoteResolving { task_guid } => Some(task_guid),
            _ => None,
        });
        let kick_cutoff = self.now_ns.saturating_sub(nanos(self.config.kick_task));
        let mut demoted = HashSet::new();
        if !demote.is_empty() {
            match self.store.demote_resolving_tasks(&demote, kick_cutoff).await {
                Ok(changed) => {
                    for guid in changed {
                        if let Some(before) = self.tasks.get(&guid) {
                            let after = Task { state: TaskState::Completed, ..(*before).clone() };
                            self.effects.publish_task_change(before, Some(&after));
                        }
                        demoted.insert(guid);
                    }
                    report.demoted = demoted.len();
                }
                Err(e) => check("demote resolving tasks", e, &mut report.write_errors)?,
            }
        }

        let delete = guids(|a| match a {
            TaskAction::DeleteCompleted { task_guid } => Some(task_guid),
            _ => None,
        });
        if !delete.is_empty() {
            let cutoff = self.now_ns.saturating_sub(nanos(self.config.expire_completed_task));
            match self.store.delete_completed_tasks(&delete, cutoff).await {
                Ok(deleted) => {
                    for guid in &deleted {
                        if let Some(before) = self.tasks.get(guid) {
                            let before = Task { state: TaskState::Completed, ..(*before).clone() };
                            self.effects.publish_task_change(&before, None);
                        }
                    }
                    report.pruned = deleted.len();
                    report.skipped += delete.len().saturating_sub(deleted.len());
                }
                Err(e) => check("delete completed tasks", e, &mut report.write_errors)?,
            }
        }

        let starts: Vec<TaskStartRequest> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                TaskAction::Kick { task_guid } => {
                    self.tasks.get(task_guid).map(|t| TaskStartRequest::of(&t.task_guid, &t.domain, &t.definition))
                }
                _ => None,
            })
            .collect();
        if !starts.is_empty() {
            let count = starts.len();
            report.kicked = count;
            if let Err(e) = self.effects.request_task_auctions(starts).await {
                tracing::warn!(tasks = count, error = %e, "task auction request failed; the next pass retries");
                report.auction_error = Some(e.to_string());
            }
        }

        for action in &plan.actions {
            let TaskAction::RetryCallback { task_guid } = action else { continue };
            let Some(task) = self.tasks.get(task_guid) else { continue };
            if task.state == TaskState::Resolving && !demoted.contains(task_guid) {
                // Its resolver came back (or it is gone) since the snapshot.
                report.skipped += 1;
                continue;
            }
            self.effects.retry_callback(Task { state: TaskState::Completed, ..(*task).clone() });
            report.callbacks += 1;
        }
        Ok(())
    }

    /// Fails expired PENDING tasks and RUNNING tasks on lost cells, one task at a time under
    /// its key lock; each is re-read under the lock and left alone if it moved on.
    async fn fail_tasks(&self, plan: &TaskPlan, report: &mut TaskTickReport) -> Result<()> {
        type Failed = (&'static str, db::Result<bool>);
        // Boxed first, so the pass future is provably Send.
        let failures: Vec<BoxFuture<'_, Failed>> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                TaskAction::FailExpiredPending { task_guid } => Some((task_guid, EXPIRED_PENDING_REASON)),
                TaskAction::FailOnLostCell { task_guid, .. } => Some((task_guid, LOST_CELL_REASON)),
                _ => None,
            })
            .map(|(guid, reason)| -> BoxFuture<'_, Failed> {
                Box::pin(async move { (reason, self.fail_task(guid, reason).await) })
            })
            .collect();
        let mut results = stream::iter(failures).buffer_unordered(self.config.workers.max(1));
        let mut fenced = None;
        while let Some((reason, outcome)) = results.next().await {
            match outcome {
                Ok(true) if reason == EXPIRED_PENDING_REASON => report.expired_pending += 1,
                Ok(true) => report.failed_on_lost_cells += 1,
                Ok(false) => report.skipped += 1,
                Err(e) => {
                    if let Err(stop) = check("fail task", e, &mut report.write_errors) {
                        fenced.get_or_insert(stop);
                    }
                }
            }
        }
        fenced.map_or(Ok(()), Err)
    }

    /// Fails one task if it is still as the snapshot saw it; whether it did.
    async fn fail_task(&self, guid: &TaskGuid, reason: &str) -> db::Result<bool> {
        let Some(seen) = self.tasks.get(guid) else { return Ok(false) };
        let _guard = self.effects.lock_key(LockKey::Task(guid)).await;
        let current = match self.store.task(guid).await {
            Ok(task) => task,
            Err(db::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if current.state != seen.state || current.cell_id != seen.cell_id {
            return Ok(false);
        }
        let change = match self.store.fail_task(guid, reason, self.now_ns).await {
            Ok(change) => change,
            Err(db::Error::NotFound { .. } | db::Error::Refused { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.effects.publish_task_change(&change.before, change.after.as_ref());
        if let Some(after) = &change.after
            && !after.definition.completion_callback_url().is_empty()
        {
            self.effects.retry_callback(after.clone());
        }
        Ok(true)
    }
}
