//! Desired LRP rules (bbs.md 4.2 "DesiredLRP lifecycle"): desire creates the record and its
//! UNCLAIMED instances in one transaction and asks for one auction; update scales up (new
//! indices auctioned), scales down (extra instances retired), and pushes internal-route and
//! metric-tag changes to running instances; remove deletes the record and retires every
//! non-evacuating instance.
//!
//! Retiring the instances from an index on (issue 17 item 1), whatever their number: the
//! UNCLAIMED and CRASHED ones (no container) are deleted in bounded, set-based batches
//! ([`db::Store::retire_unplaced_actual_lrps`], at most 1,000 rows per fenced transaction), and
//! the CLAIMED and RUNNING ones (bounded by the cells' capacity) get a rep stop, after which
//! their rep removes them. This runs in a task of its own, which the request waits for at most
//! [`RETIRE_WAIT`], so a huge scale-down answers in bounded time while the rest goes on; and the
//! whole update or removal runs detached from the request, so a client that goes away or times
//! out stops neither. If the BBS dies or loses its lease mid-way, convergence retires what is
//! left (extra and orphaned rows without a container).
//!
//! Lock discipline (the `locks` stripes: commit order = event order per key). The desired record
//! is written under its guid's stripe; every instance write under its index's stripe; nobody
//! holds two stripes at once. A retirement batch takes no stripe around its transaction (a
//! thousand stripes at once would stall every other writer): the database's row locks order it
//! against every other write of those rows. A claim, like every lifecycle call, locks its row
//! first; a row the batch deleted is then NotFound for it, and a row claimed before the batch
//! locked it is CLAIMED and left alone (it gets a rep stop). After the batch commits, each
//! removal event is published under its index's stripe, taken one at a time: a writer that
//! committed to that row before the batch holds the stripe until it has published, so the
//! removal follows its event.

use std::collections::BTreeMap;
use std::time::Duration;

use db::sql::actual_lrps::{IndexChange, IndexRows};
use db::sql::desired_lrps::DesiredLrpFilter;
use proto::error::ErrorCode;
use proto::models::{
    ActualLrp, ActualLrpState, DesiredLrp, DesiredLrpUpdate, MetricTagValue, Presence, ProcessGuid, SchedulingInfo,
};
use proto::pb::models::v1 as pb;
use tracing::Instrument;

use super::Context;
use crate::Result;
use crate::clients::LrpStartRequest;

/// The route provider whose JSON lists an LRP's internal routes.
const INTERNAL_ROUTER: &str = "internal-router";

/// How long a scale-down or a removal waits for the retirement of its instances before it
/// answers; the retirement goes on in its own task after that.
pub const RETIRE_WAIT: Duration = Duration::from_secs(5);

/// Desired LRP reads and writes.
pub struct DesiredLrps<'a>(pub &'a Context);

impl DesiredLrps<'_> {
    /// Every desired LRP matching `filter`, run info included.
    pub async fn list(&self, filter: &DesiredLrpFilter) -> Result<Vec<DesiredLrp>> {
        Ok(self.0.reader().desired_lrps(filter).await?)
    }

    /// One desired LRP.
    pub async fn get(&self, guid: &ProcessGuid) -> Result<DesiredLrp> {
        Ok(self.0.reader().desired_lrp(guid).await?)
    }

    /// Scheduling infos (no run info decoded).
    pub async fn scheduling_infos(&self, filter: &DesiredLrpFilter) -> Result<Vec<SchedulingInfo>> {
        Ok(self.0.reader().scheduling_infos(filter).await?)
    }

    /// One scheduling info.
    pub async fn scheduling_info(&self, guid: &ProcessGuid) -> Result<SchedulingInfo> {
        Ok(self.0.reader().scheduling_info(guid).await?)
    }

    /// The routing view.
    pub async fn routing_infos(
        &self,
        filter: &DesiredLrpFilter,
    ) -> Result<Vec<(SchedulingInfo, BTreeMap<String, MetricTagValue>)>> {
        Ok(self.0.reader().routing_infos(filter).await?)
    }

    /// Stores a new desired LRP with `instances` UNCLAIMED instances and requests their auction.
    /// A desired LRP of the same guid that convergence rebuilt from the cells (marked recovered,
    /// issue 19) is replaced: the operator's word wins over the cells' (its running instances
    /// are kept; the indices the new one lacks are created, extra ones retired by convergence).
    #[tracing::instrument(skip_all, fields(process_guid = %lrp.scheduling.process_guid))]
    pub async fn desire(&self, lrp: DesiredLrp) -> Result<DesiredLrp> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        ctx.check_instances("desired_lrp.instances", lrp.scheduling.instances)?;
        let guid = &lrp.scheduling.process_guid;
        let _guard = ctx.locks.lock(guid.as_str()).await;
        let (stored, created, replaced) = match store.desire_lrp(&lrp, now).await {
            Ok((stored, created)) => (stored, created, None),
            Err(exists @ db::Error::Exists { .. }) => {
                let existing = store.desired_lrp(guid).await?;
                if !converger::lrp::recovery::is_recovered(&existing.scheduling.annotation) {
                    return Err(exists.into());
                }
                tracing::info!("replacing the desired lrp recovered from the cells");
                let removed = store.remove_desired_lrp(guid).await?;
                let (stored, created) = store.desire_lrp(&lrp, now).await?;
                (stored, created, Some(removed))
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(instances = stored.scheduling.instances, "desired lrp created");
        ctx.removed_lately.forget(guid);
        let event = match replaced {
            None => pb::instance_event::Event::DesiredLrpCreated(pb::DesiredLrpCreatedEvent {
                desired_lrp: Some(stored.clone().into()),
                trace_id: String::new(),
            }),
            Some(before) => pb::instance_event::Event::DesiredLrpChanged(pb::DesiredLrpChangedEvent {
                before: Some(before.into()),
                after: Some(stored.clone().into()),
                trace_id: String::new(),
            }),
        };
        ctx.publish_desired(event);
        publish_created(ctx, &created);
        ctx.request_lrp_auctions(vec![start_request(&stored.scheduling, &created)]);
        Ok(stored)
    }

    /// DesireLRPs: [`DesiredLrps::desire`] for each of `lrps`, stored in one transaction
    /// ([`db::Store::desire_lrps`]), with one answer per item in order. Each item is refused on
    /// its own (more instances than allowed, a guid stored already or repeated earlier in the
    /// batch); its neighbours are stored. Each stored item publishes the events a single desire
    /// publishes (`DesiredLrpCreated`, then `ActualLrpInstanceCreated` per instance), under its
    /// guid's stripe, and the start requests of all of them go to the auctioneer in one call.
    /// A stored guid whose record convergence rebuilt from the cells is replaced through the
    /// single desire, as [`DesiredLrps::desire`] replaces it.
    ///
    /// The stripes are taken after the commit ([`crate::events::KeyLocks::under_stripes`]), not
    /// around the transaction (a batch would hold a thousand at once): a writer of one of the new guids that commits in
    /// the moment between the batch's commit and its publishing can publish its event first.
    /// Only a client that acts on a guid before its desire has been answered can do that.
    #[tracing::instrument(skip_all, fields(items = lrps.len()))]
    pub async fn desire_many(&self, lrps: Vec<DesiredLrp>) -> Result<Vec<Result<()>>> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let mut answers: Vec<Option<Result<()>>> = Vec::with_capacity(lrps.len());
        let mut accepted = Vec::with_capacity(lrps.len());
        let mut positions = Vec::with_capacity(lrps.len());
        for (i, lrp) in lrps.into_iter().enumerate() {
            match ctx.check_instances("desired_lrp.instances", lrp.scheduling.instances) {
                Ok(()) => {
                    positions.push(i);
                    accepted.push(lrp);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let outcomes = store.desire_lrps(accepted, now).await?;
        let mut auctions = Vec::new();
        let mut created_lrps = Vec::new();
        let mut stored_before = Vec::new();
        for (i, (lrp, outcome)) in positions.into_iter().zip(outcomes) {
            answers[i] = match outcome {
                Ok(created) => {
                    ctx.removed_lately.forget(&lrp.scheduling.process_guid);
                    if !created.is_empty() {
                        auctions.push(start_request(&lrp.scheduling, &created));
                    }
                    created_lrps.push((ctx.locks.stripe_of(lrp.scheduling.process_guid.as_str()), (lrp, created)));
                    Some(Ok(()))
                }
                // Stored before this batch (not repeated within it): the single desire decides
                // whether it replaces a recovered record or is refused (after the batch's
                // events, outside its stripes).
                Err(db::Error::Exists { key, .. }) if key == lrp.scheduling.process_guid.as_str() => {
                    stored_before.push((i, lrp));
                    None
                }
                Err(e) => Some(Err(e.into())),
            };
        }
        ctx.locks
            .under_stripes(created_lrps, |(stored, created)| {
                ctx.publish_desired(pb::instance_event::Event::DesiredLrpCreated(pb::DesiredLrpCreatedEvent {
                    desired_lrp: Some(stored.into()),
                    trace_id: String::new(),
                }));
                publish_created(ctx, &created);
            })
            .await;
        for (i, lrp) in stored_before {
            answers[i] = Some(self.desire(lrp).await.map(|_| ()));
        }
        tracing::info!(instances = auctions.iter().map(|r| r.indices.len()).sum::<usize>(), "desired lrps created");
        ctx.request_lrp_auctions(auctions);
        Ok(answers.into_iter().map(|a| a.unwrap_or_else(|| Err(unanswered()))).collect())
    }

    /// Applies a partial update; see the module docs for its effects on instances.
    #[tracing::instrument(skip_all, fields(process_guid = %guid))]
    pub async fn update(&self, guid: &ProcessGuid, update: &DesiredLrpUpdate) -> Result<DesiredLrp> {
        let (ctx, guid, update) = (self.0.clone(), guid.clone(), update.clone());
        detached(async move { update_lrp(&ctx, &guid, &update).await }).await
    }

    /// Deletes the desired LRP and retires every non-evacuating instance.
    #[tracing::instrument(skip_all, fields(process_guid = %guid))]
    pub async fn remove(&self, guid: &ProcessGuid) -> Result<()> {
        let (ctx, guid) = (self.0.clone(), guid.clone());
        detached(async move { remove_lrp(&ctx, &guid).await }).await
    }
}

/// An item of a batch the store gave no outcome for (it gives one per item).
fn unanswered() -> crate::Error {
    crate::Error::Refused { code: ErrorCode::Unknown, message: "the batch left this item unanswered".into() }
}

/// Runs `work` in a task of its own and waits for its answer: a request dropped half-way (its
/// client went away, its deadline passed) cancels neither the write once it committed nor the
/// events and the retirement that follow it.
async fn detached<T: Send + 'static>(work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    tokio::spawn(work.in_current_span()).await.unwrap_or_else(|e| {
        Err(crate::Error::Refused { code: ErrorCode::Unknown, message: format!("the request's task failed: {e}") })
    })
}

async fn update_lrp(ctx: &Context, guid: &ProcessGuid, update: &DesiredLrpUpdate) -> Result<DesiredLrp> {
    let store = ctx.writer()?;
    let now = ctx.now_ns();
    if let Some(instances) = update.instances {
        ctx.check_instances("update.instances", instances)?;
    }
    let guard = ctx.locks.lock(guid.as_str()).await;
    let updated = store.update_desired_lrp(guid, update, now).await?;
    let (before, after) = (&updated.before, &updated.after);
    ctx.publish_desired(pb::instance_event::Event::DesiredLrpChanged(pb::DesiredLrpChangedEvent {
        before: Some(before.clone().into()),
        after: Some(after.clone().into()),
        trace_id: String::new(),
    }));
    publish_created(ctx, &updated.created);
    // Instance writes below take their own index stripes; never hold two stripes at once.
    drop(guard);
    ctx.request_lrp_auctions(vec![start_request(&after.scheduling, &updated.created)]);

    let new_count = after.scheduling.instances;
    let routes_changed = before.scheduling.routes.get(INTERNAL_ROUTER) != after.scheduling.routes.get(INTERNAL_ROUTER);
    let tags_changed = before.metric_tags != after.metric_tags;
    if new_count < before.scheduling.instances {
        // Started before anything else can fail: the scale-down is committed.
        let retirement = retire_instances(ctx, store.clone(), guid.clone(), new_count);
        if routes_changed || tags_changed {
            push_placed(ctx, &store, guid, after).await?;
        }
        wait_for(retirement, guid).await;
    } else if routes_changed || tags_changed {
        push_placed(ctx, &store, guid, after).await?;
    }
    Ok(updated.after)
}

async fn remove_lrp(ctx: &Context, guid: &ProcessGuid) -> Result<()> {
    let store = ctx.writer()?;
    let guard = ctx.locks.lock(guid.as_str()).await;
    // Before the record goes: a convergence pass that finds it gone must know why.
    ctx.removed_lately.note(guid);
    let removed = store.remove_desired_lrp(guid).await?;
    tracing::info!("desired lrp removed");
    ctx.publish_desired(pb::instance_event::Event::DesiredLrpRemoved(pb::DesiredLrpRemovedEvent {
        desired_lrp: Some(removed.into()),
        trace_id: String::new(),
    }));
    drop(guard);
    wait_for(retire_instances(ctx, store, guid.clone(), 0), guid).await;
    Ok(())
}

/// Sends the instances with a container (never the unbounded UNCLAIMED rows) their new internal
/// routes and metric tags.
async fn push_placed(ctx: &Context, store: &db::Store, guid: &ProcessGuid, desired: &DesiredLrp) -> Result<()> {
    let placed = store.placed_actual_lrps(guid, 0).await?;
    push_instance_updates(ctx, desired, &placed);
    Ok(())
}

/// Publishes the creation of each of `created` (UNCLAIMED: no cell's stream receives it).
fn publish_created(ctx: &Context, created: &[ActualLrp]) {
    for lrp in created {
        let cells = lrp.instance_key.iter().map(|k| k.cell_id.to_string()).collect();
        ctx.events.publish_instance(
            pb::instance_event::Event::ActualLrpInstanceCreated(pb::ActualLrpInstanceCreatedEvent {
                actual_lrp: Some(lrp.clone().into()),
                trace_id: String::new(),
            }),
            cells,
        );
    }
}

/// One start request for the given instances of an LRP.
pub fn start_request(info: &SchedulingInfo, instances: &[ActualLrp]) -> LrpStartRequest {
    LrpStartRequest {
        process_guid: info.process_guid.clone(),
        domain: info.domain.clone(),
        indices: instances.iter().map(|lrp| lrp.key.index).collect(),
        memory_mb: info.memory_mb,
        disk_mb: info.disk_mb,
        max_pids: info.max_pids,
        rootfs: info.rootfs.clone(),
        placement_tags: info.placement_tags.clone(),
        volume_drivers: info.volume_placement.clone(),
    }
}

/// Retires the non-evacuating instances of `guid` at an index `>= from` in a task of its own
/// (see the module docs): the UNCLAIMED and CRASHED ones are deleted batch by batch, each
/// removal published under its index's stripe; then the CLAIMED and RUNNING ones get a rep stop.
/// The deletes come first, so an instance claimed while they run is seen placed and stopped.
pub fn retire_instances(ctx: &Context, store: db::Store, guid: ProcessGuid, from: i32) -> tokio::task::JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let publish = |batch: Vec<ActualLrp>| {
            let ctx = ctx.clone();
            async move {
                let batch = batch
                    .into_iter()
                    .map(|lrp| (ctx.locks.stripe_of((lrp.key.process_guid.as_str(), lrp.key.index)), lrp));
                ctx.locks.under_stripes(batch.collect(), |lrp| publish_removed(&ctx, lrp)).await;
            }
        };
        match store.retire_unplaced_actual_lrps(&guid, from, publish).await {
            Ok(retired) if retired.deleted > 0 => {
                tracing::info!(process_guid = %guid, from, deleted = retired.deleted, batches = retired.batches, "retired instances without a container");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(process_guid = %guid, from, error = %e, "retiring instances stopped; convergence retires the rest");
                return;
            }
        }
        // Never stop what the desired LRP wants now: it may have been scaled up, or removed and
        // desired again, while the deletes ran.
        let from = match store.scheduling_info(&guid).await {
            Ok(info) => from.max(info.instances),
            Err(db::Error::NotFound { .. }) => from,
            Err(e) => {
                tracing::warn!(process_guid = %guid, error = %e, "cannot read the desired lrp; convergence stops the extra instances");
                return;
            }
        };
        match store.placed_actual_lrps(&guid, from).await {
            Ok(placed) => {
                for lrp in placed.into_iter().filter(|lrp| lrp.presence != Presence::Evacuating) {
                    if let Some(key) = &lrp.instance_key {
                        ctx.stop_instance(
                            key.cell_id.to_string(),
                            lrp.key.process_guid.to_string(),
                            key.instance_guid.to_string(),
                            lrp.key.index,
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(process_guid = %guid, from, error = %e, "cannot list the instances to stop; convergence stops them");
            }
        }
    })
}

/// Waits at most [`RETIRE_WAIT`] for a retirement; it goes on by itself after that.
async fn wait_for(retirement: tokio::task::JoinHandle<()>, guid: &ProcessGuid) {
    match tokio::time::timeout(RETIRE_WAIT, retirement).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(process_guid = %guid, error = %e, "the retirement task failed"),
        Err(_) => tracing::info!(process_guid = %guid, "still retiring instances; answering now"),
    }
}

/// Publishes the removal of a row deleted on its own, with the events a write of its index
/// from `{row}` to nothing gives (the other rows of the index did not change).
fn publish_removed(ctx: &Context, lrp: ActualLrp) {
    let (mut before, presence) = (IndexRows::default(), lrp.presence);
    *before.slot_mut(presence) = Some(lrp);
    ctx.publish_index_change(&IndexChange { value: (), before, after: IndexRows::default() });
}

/// Sends each CLAIMED / RUNNING instance its new internal routes and resolved metric tags.
fn push_instance_updates(ctx: &Context, desired: &DesiredLrp, instances: &[ActualLrp]) {
    let routes = internal_routes(&desired.scheduling);
    for lrp in instances {
        let Some(key) = &lrp.instance_key else { continue };
        if !matches!(lrp.state, ActualLrpState::Claimed | ActualLrpState::Running) {
            continue;
        }
        let tags = resolve_metric_tags(&desired.metric_tags, lrp.key.index, key.instance_guid.as_str());
        let (store, reps) = (ctx.reader().clone(), ctx.reps.clone());
        let (cell, process_guid, instance_guid, routes) =
            (key.cell_id.to_string(), lrp.key.process_guid.to_string(), key.instance_guid.to_string(), routes.clone());
        tokio::spawn(async move {
            if let Ok(Some(address)) = crate::cells::rep_address(&store, &cell).await
                && let Err(e) =
                    reps.update_lrp_instance(&cell, &address, &process_guid, &instance_guid, routes, tags).await
            {
                tracing::warn!(cell_id = %cell, %process_guid, %instance_guid, error = %e, "instance update failed");
            }
        });
    }
}

/// The hostnames of the `internal-router` route JSON (`[{"hostname": "..."}]`); anything else is
/// treated as no routes.
pub fn internal_routes(info: &SchedulingInfo) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Route {
        hostname: String,
    }
    info.routes
        .get(INTERNAL_ROUTER)
        .and_then(|json| serde_json::from_slice::<Vec<Route>>(json).ok())
        .map(|routes| routes.into_iter().map(|r| r.hostname).collect())
        .unwrap_or_default()
}

/// Metric tags with their per-instance values filled in.
pub fn resolve_metric_tags(
    tags: &BTreeMap<String, MetricTagValue>,
    index: i32,
    instance_guid: &str,
) -> BTreeMap<String, String> {
    tags.iter()
        .map(|(name, value)| {
            let value = match value {
                MetricTagValue::Static(s) => s.clone(),
                MetricTagValue::Index => index.to_string(),
                MetricTagValue::InstanceGuid => instance_guid.to_owned(),
            };
            (name.clone(), value)
        })
        .collect()
}
