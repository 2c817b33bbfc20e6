//! Controllers: the lifecycle rules of the BBS API, independent of gRPC. The gRPC adapter
//! (`grpc.rs`) decodes a request into domain types, calls one controller method, and encodes the
//! result. Controllers write through the leader's fenced store, publish events after commit while
//! holding the key's lock stripe, and make outbound calls off the request path where Diego does.

pub mod actual_lrps;
pub mod desired_lrps;
pub mod evacuation;
pub mod tasks;

use std::sync::Arc;

use db::Store;
use db::sql::actual_lrps::IndexChange;
use proto::lifecycle::crash::CrashPolicy;
use proto::pb::models::v1 as pb;

use crate::callbacks::Callbacks;
use crate::clients::{AuctioneerClient, LrpStartRequest, RepClient, TaskStartRequest};
use crate::clock::Clock;
use crate::events::{EventHub, KeyLocks};
use crate::leader::Leadership;
use crate::{Result, cells, lrp_events};

/// Everything a controller needs; cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// Leadership, and through it the fenced writer and the reader.
    pub leadership: Arc<Leadership>,
    /// Event fan-out.
    pub events: Arc<EventHub>,
    /// Per-key lock stripes (commit order = event order).
    pub locks: Arc<KeyLocks>,
    /// Serializes RECREATE evacuations of one desired LRP, standing in for Diego's row lock on
    /// the desired LRP: only the leader writes, so this makes "count the running instances, then
    /// unclaim one" one step. Separate from `locks` (taken first, never while holding a stripe),
    /// so it cannot deadlock with them. Per BBS: two BBSes in one process share nothing.
    pub recreate_locks: Arc<KeyLocks>,
    /// Start requests.
    pub auctioneer: Arc<dyn AuctioneerClient>,
    /// Stop / cancel / update calls.
    pub reps: Arc<dyn RepClient>,
    /// Wall clock for stored timestamps.
    pub clock: Arc<dyn Clock>,
    /// Crash restart policy.
    pub crash_policy: CrashPolicy,
    /// Task rejections before a task fails.
    pub max_task_retries: i32,
    /// Most instances one desired LRP may ask for (the operator's `max_lrp_instances`).
    pub max_lrp_instances: i32,
    /// Task completion callbacks.
    pub callbacks: Callbacks,
    /// Where this BBS announces cells whose presence expired (the converger follows it); one
    /// channel per BBS, so two in one process share nothing.
    pub lost_cells: tokio::sync::broadcast::Sender<String>,
    /// The desired LRPs this BBS removed lately: convergence does not rebuild them from the
    /// reps' reports while their stops are under way ([`crate::removed`]).
    pub removed_lately: Arc<crate::removed::RemovedLately>,
}

impl Context {
    /// The fenced store to write with, or NotLeader.
    pub fn writer(&self) -> Result<Store> {
        self.leadership.writer()
    }

    /// Refuses more instances than the operator allows, naming `field` and the limit.
    pub fn check_instances(&self, field: &str, instances: i32) -> Result<()> {
        if instances > self.max_lrp_instances {
            return Err(crate::Error::Invalid(proto::models::ValidationError::new(
                field,
                format!("must be at most {} (the bbs's max_lrp_instances)", self.max_lrp_instances),
            )));
        }
        Ok(())
    }

    /// The store to read with (works on standbys).
    pub fn reader(&self) -> &Store {
        self.leadership.reader()
    }

    /// Now, in nanoseconds since the epoch.
    pub fn now_ns(&self) -> i64 {
        self.clock.now_ns()
    }

    /// Publishes the instance events of one index write.
    pub fn publish_index_change<T>(&self, change: &IndexChange<T>) {
        for (event, cells) in lrp_events::instance_events(&change.before, &change.after) {
            self.events.publish_instance(event, cells);
        }
    }

    /// Publishes the instance events of a crash report (always includes `actual_lrp_crashed`).
    pub fn publish_crash_change<T>(&self, change: &IndexChange<T>) {
        for (event, cells) in lrp_events::crash_events(&change.before, &change.after) {
            self.events.publish_instance(event, cells);
        }
    }

    /// Publishes a desired-LRP event (every subscriber receives these).
    pub fn publish_desired(&self, event: pb::instance_event::Event) {
        self.events.publish_desired(event);
    }

    /// Sends LRP start requests in the background: an auction failure is only logged, as in
    /// Diego; convergence retries stale unclaimed instances.
    pub fn request_lrp_auctions(&self, requests: Vec<LrpStartRequest>) {
        if requests.iter().all(|r| r.indices.is_empty()) {
            return;
        }
        let auctioneer = self.auctioneer.clone();
        tokio::spawn(async move {
            let count: usize = requests.iter().map(|r| r.indices.len()).sum();
            if let Err(e) = auctioneer.request_lrp_auctions(requests).await {
                tracing::warn!(error = %e, instances = count, "lrp auction request failed; convergence will retry");
            }
        });
    }

    /// Sends task start requests in the background (failures only logged).
    pub fn request_task_auctions(&self, requests: Vec<TaskStartRequest>) {
        if requests.is_empty() {
            return;
        }
        let auctioneer = self.auctioneer.clone();
        tokio::spawn(async move {
            if let Err(e) = auctioneer.request_task_auctions(requests).await {
                tracing::warn!(error = %e, "task auction request failed; convergence will retry");
            }
        });
    }

    /// Asks the rep of `cell_id` to stop an instance, in the background, with the client's
    /// timeout. Unknown cells are skipped: convergence cleans their instances up.
    pub fn stop_instance(&self, cell_id: String, process_guid: String, instance_guid: String, index: i32) {
        let (store, reps) = (self.reader().clone(), self.reps.clone());
        tokio::spawn(async move {
            match cells::rep_address(&store, &cell_id).await {
                Ok(Some(address)) => {
                    if let Err(e) =
                        reps.stop_lrp_instance(&cell_id, &address, &process_guid, &instance_guid, index).await
                    {
                        tracing::warn!(%cell_id, %process_guid, %instance_guid, index, error = %e, "stop request failed");
                    }
                }
                Ok(None) => tracing::info!(%cell_id, %process_guid, index, "cell is gone; not sending a stop"),
                Err(e) => tracing::warn!(%cell_id, error = %e, "cannot look the cell up to stop an instance"),
            }
        });
    }
}
