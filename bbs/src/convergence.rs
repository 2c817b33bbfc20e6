//! The BBS side of convergence: the converger's [`Effects`] over the controllers' context
//! (auction requests, rep stops, the reps' recovery reports, callbacks, events, key locks), and
//! the configuration it runs with. `run()` spawns the converger; it acts only while this BBS
//! leads.

use std::time::Duration;

use converger::effects::{
    CellReport, EffectError, Effects, KeyGuard, LockKey, LrpStartRequest, ReportedInstance, StopInstance,
    TaskStartRequest,
};
use db::sql::actual_lrps::{IndexChange, IndexRows};
use futures::future::BoxFuture;
use proto::models::{ActualLrp, ActualLrpKey, CellId, DesiredLrp, InstanceGuid, Presence, ProcessGuid, Task};
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep_pb;
use svc::connect::{ChannelOptions, Connector};
use svc::identity::Role;
use svc::tls::Security;

use crate::controllers::Context;

/// Most process guids asked of one rep per `Report` call (the rep's limit).
const DESIRED_PER_REPORT: usize = 1024;

/// The converger's effects, applied through the controllers' context.
pub struct ContextEffects {
    ctx: Context,
    /// Channels to the reps' `Recovery` service (issue 19). Its own connector rather than a
    /// method of `clients::RepClient`, whose fakes would all need it; each call times out.
    recovery: Connector,
}

impl ContextEffects {
    /// Effects over `ctx`, calling reps with `timeout` and `security`.
    pub fn new(ctx: Context, timeout: Duration, security: Security) -> Self {
        Self { ctx, recovery: Connector::with_options(ChannelOptions::new(timeout, security).expect(Role::Cell)) }
    }

    /// One `Report` call to the rep of `cell`; `None` when the rep does not serve it or refuses
    /// this BBS (a rep from before issue 19, a simulated cell, a role table without the rule):
    /// such a cell cannot tell, so convergence treats it as it did before, not as one that did
    /// not answer (which would hold every creation for the grace period).
    async fn report(
        &self,
        cell: &CellId,
        desired_for: &[ProcessGuid],
        sync: bool,
    ) -> Result<Option<CellReport>, EffectError> {
        let address = crate::cells::rep_address(self.ctx.reader(), cell.as_str())
            .await
            .map_err(EffectError::new)?
            .ok_or_else(|| EffectError::new(format!("cell {cell} is gone")))?;
        let channel = self.recovery.cell_channel(&address, cell.as_str()).map_err(EffectError::new)?;
        let request =
            rep_pb::ReportRequest { desired_for: desired_for.iter().map(ToString::to_string).collect(), sync };
        let response = match rep_pb::recovery_client::RecoveryClient::new(channel).report(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if matches!(status.code(), tonic::Code::Unimplemented | tonic::Code::PermissionDenied) => {
                tracing::debug!(cell_id = %cell, error = %status.message(), "the rep cannot report what it runs");
                return Ok(None);
            }
            Err(status) => return Err(EffectError::new(format!("rep {address} Report: {}", status.message()))),
        };
        report_from_pb(response).map(Some).map_err(|e| EffectError::new(format!("rep {address} Report: {e}")))
    }
}

/// The domain form of a rep's `Report` answer; a malformed instance or desired LRP fails it.
fn report_from_pb(response: rep_pb::ReportResponse) -> Result<CellReport, String> {
    let mut report = CellReport::default();
    for instance in response.instances {
        let key = instance.actual_lrp_key.ok_or("an instance without actual_lrp_key")?;
        let key = ActualLrpKey::try_from(key).map_err(|e| e.to_string())?;
        report.instances.push(ReportedInstance {
            process_guid: key.process_guid,
            index: key.index,
            instance_guid: InstanceGuid::parse(instance.instance_guid).map_err(|e| e.to_string())?,
        });
    }
    for desired in response.desired_lrps {
        report.desired.push(DesiredLrp::try_from(desired).map_err(|e| e.to_string())?);
    }
    Ok(report)
}

impl Effects for ContextEffects {
    fn request_lrp_auctions(&self, starts: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async move { self.ctx.auctioneer.request_lrp_auctions(starts).await.map_err(EffectError::new) })
    }

    fn request_task_auctions(&self, starts: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async move { self.ctx.auctioneer.request_task_auctions(starts).await.map_err(EffectError::new) })
    }

    fn stop_instance(&self, stop: StopInstance) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async move {
            let address = crate::cells::rep_address(self.ctx.reader(), stop.cell_id.as_str())
                .await
                .map_err(EffectError::new)?
                .ok_or_else(|| EffectError::new(format!("cell {} is gone", stop.cell_id)))?;
            self.ctx
                .reps
                .stop_lrp_instance(
                    stop.cell_id.as_str(),
                    &address,
                    stop.process_guid.as_str(),
                    stop.instance_guid.as_str(),
                    stop.index,
                )
                .await
                .map_err(EffectError::new)
        })
    }

    fn retry_callback(&self, task: Task) {
        self.ctx.callbacks.enqueue(task);
    }

    fn publish_index_change(&self, change: &IndexChange<()>) {
        self.ctx.publish_index_change(change);
    }

    fn publish_removed(&self, lrp: &ActualLrp) {
        let mut before = IndexRows::default();
        *before.slot_mut(lrp.presence) = Some(lrp.clone());
        debug_assert!(matches!(lrp.presence, Presence::Ordinary | Presence::Evacuating | Presence::Suspect));
        self.ctx.publish_index_change(&IndexChange { value: (), before, after: IndexRows::default() });
    }

    fn publish_task_change(&self, before: &Task, after: Option<&Task>) {
        let event = match after {
            Some(after) => pb::task_event::Event::TaskChanged(pb::TaskChangedEvent {
                before: Some(before.clone().into()),
                after: Some(after.clone().into()),
            }),
            None => pb::task_event::Event::TaskRemoved(pb::TaskRemovedEvent { task: Some(before.clone().into()) }),
        };
        self.ctx.events.publish_task(event);
    }

    fn cell_report<'a>(
        &'a self,
        cell: &'a CellId,
        desired_for: &'a [ProcessGuid],
    ) -> BoxFuture<'a, Result<Option<CellReport>, EffectError>> {
        Box::pin(async move {
            let mut chunks = desired_for.chunks(DESIRED_PER_REPORT);
            let Some(mut report) = self.report(cell, chunks.next().unwrap_or_default(), false).await? else {
                return Ok(None);
            };
            for chunk in chunks {
                report.desired.extend(self.report(cell, chunk, false).await?.map(|r| r.desired).unwrap_or_default());
            }
            Ok(Some(report))
        })
    }

    fn request_cell_sync<'a>(&'a self, cell: &'a CellId) -> BoxFuture<'a, Result<(), EffectError>> {
        Box::pin(async move { self.report(cell, &[], true).await.map(|_| ()) })
    }

    fn publish_desired_recovered(&self, lrp: &DesiredLrp) {
        self.ctx.publish_desired(pb::instance_event::Event::DesiredLrpCreated(pb::DesiredLrpCreatedEvent {
            desired_lrp: Some(lrp.clone().into()),
            trace_id: String::new(),
        }));
    }

    fn removed_lately(&self, process_guid: &ProcessGuid) -> bool {
        self.ctx.removed_lately.contains(process_guid)
    }

    fn lock_key<'a>(&'a self, key: LockKey<'a>) -> BoxFuture<'a, KeyGuard<'a>> {
        Box::pin(async move {
            let guard: KeyGuard<'a> = match key {
                LockKey::Instance(guid, index) => Box::new(self.ctx.locks.lock((guid.as_str(), index)).await),
                LockKey::Task(guid) => Box::new(self.ctx.locks.lock(guid.as_str()).await),
            };
            guard
        })
    }
}
