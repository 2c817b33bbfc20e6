//! The LRP processors: ordinary (reference 2.5, `ordinary_lrp_processor.go`) and evacuating
//! (reference 2.9, `evacuation_lrp_processor.go`).

use proto::error::ErrorCode;

use super::{Generator, is_definitive, lrp_run_request};
use crate::bbs_client::{BbsError, RunningLrp};
use crate::context::{InstanceInfo, LrpIdentity};
use crate::executor::{Container, ContainerState};
use crate::workload::Workload;

impl Generator {
    /// The ordinary LRP processor.
    pub(super) async fn process_lrp(&self, container: Container, lrp: LrpIdentity) {
        match container.state {
            ContainerState::Reserved => self.claim_and_run(&container, &lrp).await,
            ContainerState::Initializing | ContainerState::Created => {
                // Re-claim (idempotent); a refusal means another instance owns the index now.
                if self.claim(&container, &lrp).await == Claim::Refused {
                    self.delete(&container.guid, "claim refused").await;
                }
            }
            ContainerState::Running => self.start(&container, &lrp).await,
            ContainerState::Completed => self.finish_lrp(&container, &lrp).await,
        }
    }

    async fn claim(&self, container: &Container, lrp: &LrpIdentity) -> Claim {
        match self.ctx.bbs.claim_actual_lrp(&lrp.key, &lrp.instance_key).await {
            Ok(()) => Claim::Claimed,
            Err(e) if is_definitive(&e) => {
                tracing::info!(container_guid = %container.guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "claim refused");
                Claim::Refused
            }
            Err(e) => {
                tracing::warn!(container_guid = %container.guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "claim failed; retrying on the next pass");
                Claim::Failed
            }
        }
    }

    /// Reserved: claim, fetch the desired LRP, run. A refused claim releases the reservation.
    async fn claim_and_run(&self, container: &Container, lrp: &LrpIdentity) {
        let guid = container.guid.as_str();
        match self.claim(container, lrp).await {
            Claim::Claimed => {}
            Claim::Refused => return self.delete(guid, "claim refused").await,
            Claim::Failed => return,
        }
        let desired = match self.ctx.bbs.desired_lrp(lrp.key.process_guid.as_str()).await {
            Ok(desired) => desired,
            Err(e) if is_definitive(&e) => {
                tracing::warn!(container_guid = %guid, process_guid = %lrp.key.process_guid, error = %e, "desired lrp gone; giving the instance up");
                let _ = self.remove(lrp).await;
                return self.delete(guid, "desired lrp gone").await;
            }
            Err(e) => {
                tracing::warn!(container_guid = %guid, process_guid = %lrp.key.process_guid, error = %e, "cannot fetch the desired lrp; retrying on the next pass");
                return;
            }
        };
        // Kept whole, so the BBS can rebuild it from this cell if its database loses it.
        self.ctx.keep_desired(guid, std::sync::Arc::new(desired.clone()));
        // Routing info is kept for every later StartActualLRP; UpdateLRPInstance may already
        // have set newer values.
        let current = self.ctx.instance_info(guid);
        if current == InstanceInfo::default() {
            self.ctx.set_instance_info(
                guid,
                InstanceInfo {
                    internal_routes: super::internal_routes(&desired),
                    metric_tags: super::resolve_metric_tags(&desired, lrp.key.index, guid),
                },
            );
        }
        let result = lrp_run_request(&desired, self.ctx.executor.config().route_drain)
            .map_err(|reason| reason.to_owned())
            .and_then(|request| self.ctx.executor.run(guid, request).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                tracing::info!(container_guid = %guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, "running lrp container")
            }
            Err(reason) => {
                tracing::warn!(container_guid = %guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %reason, "cannot run lrp container; giving the instance up");
                self.delete(guid, "run failed").await;
                let _ = self.remove(lrp).await;
            }
        }
    }

    /// What StartActualLRP and EvacuateRunningActualLRP report for a running container.
    pub(super) fn running_lrp(&self, container: &Container, lrp: &LrpIdentity) -> RunningLrp {
        let info = self.ctx.instance_info(&container.guid);
        RunningLrp {
            key: lrp.key.clone(),
            instance_key: lrp.instance_key.clone(),
            net_info: self.ctx.net_info(container),
            internal_routes: info.internal_routes,
            metric_tags: info.metric_tags,
            routable: container.routable,
            availability_zone: self.ctx.cell.zone.clone(),
        }
    }

    /// Running: report it started (again on every readiness change), coalesced with the cell's
    /// other reports made meanwhile ([`crate::bbs_client::StartReports`]; bulk sync re-asserts
    /// every running instance together, [`Generator::start_many`]).
    async fn start(&self, container: &Container, lrp: &LrpIdentity) {
        let running = self.running_lrp(container, lrp);
        let result = self.ctx.starts.report(running.clone()).await;
        self.started(&running, result);
    }

    /// What the answer to a start report of `running` means for its container, whether it was
    /// reported alone or in a batch: a refusal stops the container, another error waits for the
    /// next pass.
    fn started(&self, running: &RunningLrp, result: Result<(), BbsError>) {
        let (guid, key) = (running.instance_key.instance_guid.as_str(), &running.key);
        match result {
            Ok(()) => {
                tracing::debug!(container_guid = %guid, process_guid = %key.process_guid, index = key.index, routable = running.routable, "reported lrp running")
            }
            Err(e) if e.is(ErrorCode::ActualLrpCannotBeStarted) => {
                tracing::warn!(container_guid = %guid, process_guid = %key.process_guid, index = key.index, error = %e, "the bbs refuses this instance; stopping it");
                self.stop_in_background(guid, "start refused");
            }
            Err(e) => {
                tracing::warn!(container_guid = %guid, process_guid = %key.process_guid, index = key.index, error = %e, "cannot report lrp running; retrying on the next pass")
            }
        }
    }

    /// The instance of `container` when a bulk sync re-asserts it with the others
    /// ([`Generator::start_many`]): a RUNNING LRP container of a cell that does not evacuate.
    pub(super) fn running_lrp_identity(&self, container: &Container) -> Option<LrpIdentity> {
        match &container.workload {
            Workload::Lrp(lrp) if container.state == ContainerState::Running && !self.ctx.evacuation.is_set() => {
                Some(self.ctx.lrp_identity(lrp))
            }
            _ => None,
        }
    }

    /// The operation of the containers `guids` taken together (the caller holds their slots):
    /// each is re-read; those still RUNNING LRP containers of a cell that does not evacuate are
    /// reported together (`StartActualLRPs`) and each answer handled as [`Generator::start`]
    /// handles its own; the others get their ordinary operation.
    pub(super) async fn start_many(&self, guids: &[String]) {
        let mut running = Vec::new();
        let mut others = Vec::new();
        for guid in guids {
            let container = self.ctx.executor.get(guid);
            match container.as_ref().and_then(|c| self.running_lrp_identity(c).map(|lrp| (c, lrp))) {
                Some((container, lrp)) => running.push(self.running_lrp(container, &lrp)),
                None => others.push(guid.as_str()),
            }
        }
        let report = async {
            if running.is_empty() {
                return;
            }
            match self.ctx.bbs.start_actual_lrps(&running).await {
                Ok(results) => {
                    for (lrp, result) in running.iter().zip(results) {
                        self.started(lrp, result);
                    }
                }
                Err(e) => {
                    tracing::warn!(cell_id = %self.ctx.cell.cell_id, instances = running.len(), error = %e, "cannot report the running lrps; retrying on the next pass")
                }
            }
        };
        let ordinary = futures::future::join_all(others.into_iter().map(|guid| self.process(guid)));
        tokio::join!(report, ordinary);
    }

    /// Completed: removed when stopped, crashed otherwise; then the container goes.
    async fn finish_lrp(&self, container: &Container, lrp: &LrpIdentity) {
        let result = container.result.clone().unwrap_or_default();
        if result.stopped {
            tracing::info!(container_guid = %container.guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, "lrp container stopped; removing the instance");
            if !self.remove(lrp).await {
                return;
            }
        } else {
            let reason = self.with_last_lines(crash_reason(&result.failure_reason), &container.guid);
            tracing::info!(container_guid = %container.guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, reason = %reason, "lrp container crashed");
            match self.ctx.bbs.crash_actual_lrp(&lrp.key, &lrp.instance_key, &reason).await {
                Ok(()) => {}
                Err(e) if !is_definitive(&e) => {
                    // Keep the container: the next pass reports the crash again.
                    return tracing::warn!(container_guid = %container.guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot report the crash; retrying on the next pass");
                }
                Err(e) => {
                    tracing::info!(container_guid = %container.guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "the bbs refused the crash report")
                }
            }
        }
        self.delete(&container.guid, "lrp completed").await;
    }

    /// RemoveActualLRP; false when the BBS could not be reached (worth retrying).
    async fn remove(&self, lrp: &LrpIdentity) -> bool {
        match self.ctx.bbs.remove_actual_lrp(&lrp.key, &lrp.instance_key).await {
            Ok(()) => true,
            Err(e) if e.is(ErrorCode::ResourceNotFound) => true,
            Err(e) => {
                tracing::warn!(process_guid = %lrp.key.process_guid, index = lrp.key.index, instance_guid = %lrp.instance_key.instance_guid, error = %e, "cannot remove the actual lrp");
                is_definitive(&e)
            }
        }
    }

    /// The evacuation processor: hand every instance over, keep running ones until their
    /// replacement runs.
    pub(super) async fn evacuate_lrp(&self, container: Container, lrp: LrpIdentity) {
        let guid = container.guid.as_str();
        let log_error = |call: &str, e: &crate::bbs_client::BbsError| {
            tracing::warn!(container_guid = %guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, call, error = %e, "evacuation call failed");
        };
        match container.state {
            ContainerState::Reserved | ContainerState::Initializing | ContainerState::Created => {
                match self.ctx.bbs.evacuate_claimed_actual_lrp(&lrp.key, &lrp.instance_key).await {
                    Err(e) if !is_definitive(&e) => log_error("EvacuateClaimedActualLRP", &e),
                    outcome => {
                        if let Err(e) = outcome
                            && !e.is(ErrorCode::ResourceNotFound)
                        {
                            log_error("EvacuateClaimedActualLRP", &e);
                        }
                        self.delete(guid, "evacuated before running").await;
                    }
                }
            }
            ContainerState::Running => {
                if self.replacement_requested().insert(guid.to_owned()) {
                    tracing::info!(container_guid = %guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, cell_id = %self.ctx.cell.cell_id, "cell {} requesting replacement for instance {}", self.ctx.cell.cell_id, guid);
                }
                let running = self.running_lrp(&container, &lrp);
                match self.ctx.bbs.evacuate_running_actual_lrp(&running).await {
                    Ok(true) => {
                        tracing::debug!(container_guid = %guid, "keeping the container until its replacement runs")
                    }
                    Ok(false) => {
                        tracing::info!(container_guid = %guid, process_guid = %lrp.key.process_guid, index = lrp.key.index, "replacement running; stopping the evacuated instance");
                        self.stop_in_background(guid, "evacuated");
                    }
                    Err(e) if is_definitive(&e) => {
                        log_error("EvacuateRunningActualLRP", &e);
                        self.stop_in_background(guid, "evacuation refused");
                    }
                    Err(e) => log_error("EvacuateRunningActualLRP", &e),
                }
            }
            ContainerState::Completed => {
                let result = container.result.clone().unwrap_or_default();
                let outcome = if result.stopped {
                    self.ctx.bbs.evacuate_stopped_actual_lrp(&lrp.key, &lrp.instance_key).await
                } else {
                    let reason = self.with_last_lines(crash_reason(&result.failure_reason), guid);
                    self.ctx.bbs.evacuate_crashed_actual_lrp(&lrp.key, &lrp.instance_key, &reason).await
                };
                if let Err(e) = outcome
                    && !e.is(ErrorCode::ResourceNotFound)
                {
                    log_error("EvacuateStopped/CrashedActualLRP", &e);
                    if !is_definitive(&e) {
                        // Keep the container: the next pass reports it again.
                        return;
                    }
                }
                self.delete(guid, "evacuated").await;
            }
        }
    }
}

impl Generator {
    /// `reason` followed by the last lines container `guid` wrote (see [`last_lines`]), so
    /// `diego lrp` shows why it crashed.
    fn with_last_lines(&self, reason: String, guid: &str) -> String {
        match self.ctx.executor.runtime().logs() {
            Some(logs) => last_lines(reason, &logs.tail(guid, CRASH_LINES, CRASH_LINE_BYTES)),
            None => reason,
        }
    }
}

/// How many of the last logged lines a crash reason carries.
const CRASH_LINES: usize = 3;
/// How many bytes of them at most (the BBS keeps 1024 characters of a crash reason).
const CRASH_LINE_BYTES: usize = 512;

/// `reason; last output: "a" "b"`: the lines quoted (escaping what would break the one-line
/// reason), or `reason` alone when there are none.
fn last_lines(reason: String, lines: &[String]) -> String {
    if lines.is_empty() {
        return reason;
    }
    let quoted: Vec<String> = lines.iter().map(|l| format!("{l:?}")).collect();
    format!("{reason}; last output: {}", quoted.join(" "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Claimed,
    Refused,
    Failed,
}

/// The crash reason reported for a result; a clean exit still counts as a crash (reference 3.4).
fn crash_reason(failure_reason: &str) -> String {
    if failure_reason.trim().is_empty() { "app instance exited".to_owned() } else { failure_reason.to_owned() }
}
