//! The BBS side of convergence: the converger's [`Effects`] over the controllers' context
//! (auction requests, rep stops, callbacks, events, key locks), and the configuration it runs
//! with. `run()` spawns the converger; it acts only while this BBS leads.

use converger::effects::{EffectError, Effects, KeyGuard, LockKey, LrpStartRequest, StopInstance, TaskStartRequest};
use db::sql::actual_lrps::{IndexChange, IndexRows};
use futures::future::BoxFuture;
use proto::models::{ActualLrp, Presence, Task};
use proto::pb::models::v1 as pb;

use crate::controllers::Context;

/// The converger's effects, applied through the controllers' context.
pub struct ContextEffects(pub Context);

impl Effects for ContextEffects {
    fn request_lrp_auctions(&self, starts: Vec<LrpStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async move { self.0.auctioneer.request_lrp_auctions(starts).await.map_err(EffectError::new) })
    }

    fn request_task_auctions(&self, starts: Vec<TaskStartRequest>) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async move { self.0.auctioneer.request_task_auctions(starts).await.map_err(EffectError::new) })
    }

    fn stop_instance(&self, stop: StopInstance) -> BoxFuture<'_, Result<(), EffectError>> {
        Box::pin(async move {
            let address = crate::cells::rep_address(self.0.reader(), stop.cell_id.as_str())
                .await
                .map_err(EffectError::new)?
                .ok_or_else(|| EffectError::new(format!("cell {} is gone", stop.cell_id)))?;
            self.0
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
        self.0.callbacks.enqueue(task);
    }

    fn publish_index_change(&self, change: &IndexChange<()>) {
        self.0.publish_index_change(change);
    }

    fn publish_removed(&self, lrp: &ActualLrp) {
        let mut before = IndexRows::default();
        *before.slot_mut(lrp.presence) = Some(lrp.clone());
        debug_assert!(matches!(lrp.presence, Presence::Ordinary | Presence::Evacuating | Presence::Suspect));
        self.0.publish_index_change(&IndexChange { value: (), before, after: IndexRows::default() });
    }

    fn publish_task_change(&self, before: &Task, after: Option<&Task>) {
        let event = match after {
            Some(after) => pb::task_event::Event::TaskChanged(pb::TaskChangedEvent {
                before: Some(before.clone().into()),
                after: Some(after.clone().into()),
            }),
            None => pb::task_event::Event::TaskRemoved(pb::TaskRemovedEvent { task: Some(before.clone().into()) }),
        };
        self.0.events.publish_task(event);
    }

    fn lock_key<'a>(&'a self, key: LockKey<'a>) -> BoxFuture<'a, KeyGuard<'a>> {
        Box::pin(async move {
            let guard: KeyGuard<'a> = match key {
                LockKey::Instance(guid, index) => Box::new(self.0.locks.lock((guid.as_str(), index)).await),
                LockKey::Task(guid) => Box::new(self.0.locks.lock(guid.as_str()).await),
            };
            guard
        })
    }
}
