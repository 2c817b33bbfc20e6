//! The instance-event observer: opened before the first desire, it records when every instance
//! was announced UNCLAIMED, claimed and RUNNING, on which cell, and any crash or removal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::target::Clients;

/// One instance's lifecycle, in milliseconds since the first DesireLRP was sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lifecycle {
    /// The app.
    pub process_guid: String,
    /// The instance index.
    pub index: i32,
    /// When its DesireLRP was sent.
    pub desired_ms: f64,
    /// When its UNCLAIMED row was announced.
    pub unclaimed_ms: Option<f64>,
    /// When it was claimed.
    pub claimed_ms: Option<f64>,
    /// When it was RUNNING.
    pub running_ms: Option<f64>,
    /// The cell that runs it.
    pub cell_id: String,
}

/// Lifecycles being filled by the event subscriber.
#[derive(Default)]
pub(super) struct Tracker {
    /// Lifecycles by (process guid, index).
    pub by_key: HashMap<(String, i32), Lifecycle>,
    /// Instance events received.
    pub events: u64,
    /// Crash and removal events among them.
    pub crashes_or_removals: u64,
    /// Why the stream ended early, if it did.
    pub closed: Option<String>,
}

type Shared = Arc<Mutex<Tracker>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record_state(tracker: &Shared, key: &pb::ActualLrpKey, cell: Option<&str>, state: i32, at_ms: f64) {
    let mut t = lock(tracker);
    let entry = t.by_key.entry((key.process_guid.clone(), key.index)).or_insert_with(|| Lifecycle {
        process_guid: key.process_guid.clone(),
        index: key.index,
        ..Lifecycle::default()
    });
    if let Some(cell) = cell.filter(|c| !c.is_empty()) {
        entry.cell_id = cell.to_owned();
    }
    let slot = match pb::ActualLrpState::try_from(state) {
        Ok(pb::ActualLrpState::Unclaimed) => &mut entry.unclaimed_ms,
        Ok(pb::ActualLrpState::Claimed) => &mut entry.claimed_ms,
        Ok(pb::ActualLrpState::Running) => &mut entry.running_ms,
        _ => return,
    };
    slot.get_or_insert(at_ms);
}

/// The running observer.
pub(super) struct Observer {
    tracker: Shared,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Subscribes to every instance event; event times are milliseconds since `t0`.
    pub(super) async fn start(clients: &Clients, t0: Instant) -> anyhow::Result<Observer> {
        let tracker: Shared = Arc::default();
        let stop = CancellationToken::new();
        let mut stream = clients
            .bbs()
            .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
            .await?
            .into_inner();
        let task = {
            let (tracker, stop) = (tracker.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let item = tokio::select! {
                        _ = stop.cancelled() => return,
                        item = stream.next() => item,
                    };
                    let at = t0.elapsed().as_secs_f64() * 1_000.0;
                    match item {
                        Some(Ok(event)) => {
                            lock(&tracker).events += 1;
                            observe(&tracker, event, at);
                        }
                        Some(Err(status)) => {
                            lock(&tracker).closed = Some(status.to_string());
                            return;
                        }
                        None => {
                            lock(&tracker).closed = Some("the stream ended".into());
                            return;
                        }
                    }
                }
            })
        };
        Ok(Observer { tracker, stop, task })
    }

    /// Fills in the cells of instances whose events were missed, from a listing.
    pub(super) fn fill_cells(&self, lrps: Vec<pb::ActualLrp>) {
        let mut t = lock(&self.tracker);
        for lrp in lrps {
            if let (Some(key), Some(ik)) = (lrp.actual_lrp_key, lrp.actual_lrp_instance_key)
                && let Some(entry) = t.by_key.get_mut(&(key.process_guid, key.index))
                && entry.cell_id.is_empty()
            {
                entry.cell_id = ik.cell_id;
            }
        }
    }

    /// Stops observing and returns what was recorded.
    pub(super) async fn stop(self) -> Tracker {
        self.stop.cancel();
        let _ = self.task.await;
        std::mem::take(&mut *lock(&self.tracker))
    }
}

fn observe(tracker: &Shared, event: pb::InstanceEvent, at: f64) {
    use pb::instance_event::Event;
    match event.event {
        Some(Event::ActualLrpInstanceCreated(created)) => {
            if let Some(lrp) = created.actual_lrp
                && let Some(key) = lrp.actual_lrp_key.as_ref()
            {
                let cell = lrp.actual_lrp_instance_key.as_ref().map(|k| k.cell_id.as_str());
                record_state(tracker, key, cell, lrp.state, at);
            }
        }
        Some(Event::ActualLrpInstanceChanged(changed)) => {
            if let (Some(key), Some(after)) = (changed.actual_lrp_key.as_ref(), changed.after.as_ref()) {
                let cell = changed.actual_lrp_instance_key.as_ref().map(|k| k.cell_id.as_str());
                record_state(tracker, key, cell, after.state, at);
            }
        }
        Some(Event::ActualLrpCrashed(_) | Event::ActualLrpInstanceRemoved(_)) => {
            lock(tracker).crashes_or_removals += 1;
        }
        _ => {}
    }
}
