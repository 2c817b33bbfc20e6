//! Desired LRP rules (bbs.md 4.2 "DesiredLRP lifecycle"): desire creates the record and its
//! UNCLAIMED instances in one transaction and asks for one auction; update scales up (new
//! indices auctioned), scales down (extra instances stopped), and pushes internal-route and
//! metric-tag changes to running instances; remove deletes the record and stops every
//! non-evacuating instance.

use std::collections::BTreeMap;

use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::desired_lrps::DesiredLrpFilter;
use proto::models::{
    ActualLrp, ActualLrpState, DesiredLrp, DesiredLrpUpdate, MetricTagValue, Presence, ProcessGuid, SchedulingInfo,
};
use proto::pb::models::v1 as pb;

use super::Context;
use crate::Result;
use crate::clients::LrpStartRequest;

/// The route provider whose JSON lists an LRP's internal routes.
const INTERNAL_ROUTER: &str = "internal-router";

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
    #[tracing::instrument(skip_all, fields(process_guid = %lrp.scheduling.process_guid))]
    pub async fn desire(&self, lrp: DesiredLrp) -> Result<DesiredLrp> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let lrp = stamp_created_at(lrp, now)?;
        ctx.check_instances("desired_lrp.instances", lrp.scheduling.instances)?;
        let _guard = ctx.locks.lock(lrp.scheduling.process_guid.as_str()).await;
        let (stored, created) = store.desire_lrp(&lrp, now).await?;
        tracing::info!(instances = stored.scheduling.instances, "desired lrp created");
        ctx.publish_desired(pb::instance_event::Event::DesiredLrpCreated(pb::DesiredLrpCreatedEvent {
            desired_lrp: Some(stored.clone().into()),
            trace_id: String::new(),
        }));
        publish_created(ctx, &created);
        ctx.request_lrp_auctions(vec![start_request(&stored.scheduling, &created)]);
        Ok(stored)
    }

    /// Applies a partial update; see the module docs for its effects on instances.
    #[tracing::instrument(skip_all, fields(process_guid = %guid))]
    pub async fn update(&self, guid: &ProcessGuid, update: &DesiredLrpUpdate) -> Result<DesiredLrp> {
        let ctx = self.0;
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
        let routes_changed =
            before.scheduling.routes.get(INTERNAL_ROUTER) != after.scheduling.routes.get(INTERNAL_ROUTER);
        let tags_changed = before.metric_tags != after.metric_tags;
        if new_count < before.scheduling.instances || routes_changed || tags_changed {
            let filter = ActualLrpFilter { process_guid: Some(guid.clone()), ..Default::default() };
            let instances = store.actual_lrps(&filter).await?;
            if new_count < before.scheduling.instances {
                let extra: Vec<ActualLrp> = instances
                    .iter()
                    .filter(|lrp| lrp.key.index >= new_count && lrp.presence != Presence::Evacuating)
                    .cloned()
                    .collect();
                stop_instances(ctx, &store, extra, now).await;
            }
            if routes_changed || tags_changed {
                push_instance_updates(ctx, after, &instances);
            }
        }
        Ok(updated.after)
    }

    /// Deletes the desired LRP and stops every non-evacuating instance.
    #[tracing::instrument(skip_all, fields(process_guid = %guid))]
    pub async fn remove(&self, guid: &ProcessGuid) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let guard = ctx.locks.lock(guid.as_str()).await;
        let removed = store.remove_desired_lrp(guid).await?;
        tracing::info!("desired lrp removed");
        ctx.publish_desired(pb::instance_event::Event::DesiredLrpRemoved(pb::DesiredLrpRemovedEvent {
            desired_lrp: Some(removed.into()),
            trace_id: String::new(),
        }));
        drop(guard);
        let filter = ActualLrpFilter { process_guid: Some(guid.clone()), ..Default::default() };
        let instances: Vec<ActualLrp> =
            store.actual_lrps(&filter).await?.into_iter().filter(|lrp| lrp.presence != Presence::Evacuating).collect();
        stop_instances(ctx, &store, instances, now).await;
        Ok(())
    }
}

/// Stamps `created_at` into the run info (clients do not send it).
fn stamp_created_at(lrp: DesiredLrp, now: i64) -> Result<DesiredLrp> {
    let mut run_info = lrp.run_info.into_pb();
    run_info.created_at = now;
    Ok(DesiredLrp { run_info: proto::convert::run_info_from_pb(run_info)?, ..lrp })
}

fn publish_created(ctx: &Context, created: &[ActualLrp]) {
    for lrp in created {
        ctx.events.publish_instance(
            pb::instance_event::Event::ActualLrpInstanceCreated(pb::ActualLrpInstanceCreatedEvent {
                actual_lrp: Some(lrp.clone().into()),
                trace_id: String::new(),
            }),
            Vec::new(),
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

/// Stops instances: rows without a container (UNCLAIMED, CRASHED) are deleted at once; rows on
/// a cell get a rep stop, and the rep removes them.
async fn stop_instances(ctx: &Context, store: &db::Store, instances: Vec<ActualLrp>, _now: i64) {
    for lrp in instances {
        match (&lrp.instance_key, lrp.state) {
            (Some(key), ActualLrpState::Claimed | ActualLrpState::Running) => ctx.stop_instance(
                key.cell_id.to_string(),
                lrp.key.process_guid.to_string(),
                key.instance_guid.to_string(),
                lrp.key.index,
            ),
            _ => {
                let _guard = ctx.locks.lock((lrp.key.process_guid.as_str(), lrp.key.index)).await;
                match store.delete_actual_lrp(&lrp.key.process_guid, lrp.key.index, lrp.presence).await {
                    Ok(change) => ctx.publish_index_change(&change),
                    Err(db::Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(process_guid = %lrp.key.process_guid, index = lrp.key.index, error = %e, "cannot delete instance")
                    }
                }
            }
        }
    }
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
