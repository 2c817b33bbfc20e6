//! Evacuation rules (bbs.md 3.3, 4.2 "Evacuation"): what a draining rep reports about each of
//! its containers, and whether it should keep the container (`keep_container`).
//!
//! Each endpoint is one [`Store::modify_index`](db::Store::modify_index) transaction running the
//! matching `apply_evacuate_*` function of [`proto::lifecycle::actual_lrp`] (the evacuation rules
//! live there) on the locked rows of the index. This controller only locks (the index's stripe
//! until the events of the change are published, and RECREATE's per-LRP lock), reads what the
//! rules need to know about the desired LRP, and requests the auction of an unclaimed replacement
//! where Diego does.
//!
//! Errors and `keep_container`: the gRPC response carries only `keep_container`, and a rep
//! treats an error as "keep the container and ask again". So where Diego answers
//! `keep_container = true` together with an error, these methods return the error. Where Diego
//! answers `false` with ResourceNotFound (no row carries the instance key), the error is
//! returned too: the rep deletes claimed, stopped and crashed containers whatever the answer.

use db::sql::actual_lrps::{ActualLrpFilter, StartInfo};
use proto::lifecycle::actual_lrp::{
    Desired, apply_evacuate_claimed, apply_evacuate_crashed, apply_evacuate_running, apply_evacuate_stopped,
    apply_remove_evacuating, every_instance_running,
};
use proto::models::{ActualLrpInstanceKey, ActualLrpKey, SchedulingInfo, UpdateStrategy};

use super::Context;
use super::actual_lrps::request_index_auction;
use crate::Result;

/// The evacuation endpoints.
pub struct Evacuation<'a>(pub &'a Context);

impl Evacuation<'_> {
    /// EvacuateClaimedActualLRP: a draining rep gives up a container that is not running yet.
    ///
    /// - The instance's EVACUATING or SUSPECT row is deleted.
    /// - Its ORDINARY row is unclaimed (UNCLAIMED, cell cleared) and its auction requested.
    /// - No row carries the instance key: ResourceNotFound.
    ///
    /// Answers `false` on success. Diego answers `true` with any other error; those are returned
    /// as errors.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn evacuate_claimed(&self, key: &ActualLrpKey, instance_key: &ActualLrpInstanceKey) -> Result<bool> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store
            .modify_index("evacuate claimed actual lrp", &key.process_guid, key.index, |rows| {
                apply_evacuate_claimed(rows, key, instance_key, now).map_err(db::Error::from)
            })
            .await?;
        ctx.publish_index_change(&change);
        drop(guard);
        if change.value
            && let Some(row) = change.after.ordinary.as_ref()
        {
            tracing::info!(instance_guid = %instance_key.instance_guid, "unclaimed an evacuated claimed instance");
            request_index_auction(ctx, &key.process_guid, row).await;
        }
        Ok(false)
    }

    /// EvacuateRunningActualLRP: a draining rep asks whether to keep a running container. The
    /// rules (ROLLING keeps an evacuating copy until the replacement runs, RECREATE replaces
    /// instances one at a time) are [`apply_evacuate_running`]'s; this reads the desired LRP
    /// first, takes RECREATE's per-LRP lock around counting the running instances and the
    /// unclaim, and requests the auction of an unclaimed ordinary row.
    ///
    /// Errors: Diego answers `true` with every error here, so every error is returned as one
    /// (the rep keeps the container and retries). That includes a failed read of the desired
    /// LRP, which is read before the index is locked.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn evacuate_running(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        start: &StartInfo,
    ) -> Result<bool> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let info = match ctx.reader().scheduling_info(&key.process_guid).await {
            Ok(info) => Some(info),
            Err(db::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let strategy = info.as_ref().map(|i| i.update_strategy);
        // RECREATE: count the running instances and unclaim under one per-LRP lock.
        let _recreate = match strategy {
            Some(UpdateStrategy::Recreate) => Some(ctx.recreate_locks.lock(key.process_guid.as_str()).await),
            _ => None,
        };
        let desired = match &info {
            None => Desired::Gone,
            Some(info) if info.update_strategy == UpdateStrategy::Recreate => {
                Desired::Recreate { all_running: all_running(ctx, info).await? }
            }
            Some(_) => Desired::Rolling,
        };
        let now = ctx.now_ns();
        let guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store
            .modify_index("evacuate running actual lrp", &key.process_guid, key.index, |rows| {
                apply_evacuate_running(rows, key, instance_key, start, desired, now).map_err(db::Error::from)
            })
            .await?;
        ctx.publish_index_change(&change);
        drop(guard);
        let outcome = change.value;
        tracing::debug!(keep = outcome.keep, auction = outcome.auction, "evacuated a running instance");
        if outcome.auction
            && let (Some(info), Some(row)) = (&info, change.after.ordinary.as_ref())
        {
            ctx.request_lrp_auctions(vec![super::desired_lrps::start_request(info, std::slice::from_ref(row))]);
        }
        Ok(outcome.keep)
    }

    /// EvacuateStoppedActualLRP: a draining rep's container stopped. The instance's evacuating or
    /// suspect row is deleted, otherwise its ordinary row (RemoveActualLRP with the instance
    /// key). ResourceNotFound when no row carries the instance key. Answers `false`.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn evacuate_stopped(&self, key: &ActualLrpKey, instance_key: &ActualLrpInstanceKey) -> Result<bool> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store
            .modify_index("evacuate stopped actual lrp", &key.process_guid, key.index, |rows| {
                apply_evacuate_stopped(rows, key, instance_key).map_err(db::Error::from)
            })
            .await?;
        ctx.publish_index_change(&change);
        tracing::debug!(instance_guid = %instance_key.instance_guid, "removed a stopped evacuating instance");
        Ok(false)
    }

    /// EvacuateCrashedActualLRP: a draining rep's container crashed. The instance's evacuating
    /// or suspect row is deleted; otherwise its ordinary row is crashed with the usual counting
    /// (bbs.md 3.2) but no auction is requested: an instance that went UNCLAIMED is re-auctioned
    /// by convergence's stale-unclaimed path. ResourceNotFound when no row carries the instance
    /// key, ActualLrpCannotBeCrashed when the ordinary row cannot crash. Answers `false`.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn evacuate_crashed(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        reason: &str,
    ) -> Result<bool> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let now = ctx.now_ns();
        let policy = ctx.crash_policy;
        let _guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store
            .modify_index("evacuate crashed actual lrp", &key.process_guid, key.index, |rows| {
                apply_evacuate_crashed(rows, key, instance_key, reason, &policy, now).map_err(db::Error::from)
            })
            .await?;
        ctx.publish_crash_change(&change);
        tracing::info!(instance_guid = %instance_key.instance_guid, "recorded the crash of an evacuating instance");
        Ok(false)
    }

    /// RemoveEvacuatingActualLRP: a rep cleans up an evacuating row it has no container for. The
    /// row carrying the instance key must exist and be EVACUATING, otherwise ResourceNotFound.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn remove_evacuating(&self, key: &ActualLrpKey, instance_key: &ActualLrpInstanceKey) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store
            .modify_index("remove evacuating actual lrp", &key.process_guid, key.index, |rows| {
                apply_remove_evacuating(rows, key, instance_key).map_err(db::Error::from)
            })
            .await?;
        ctx.publish_index_change(&change);
        tracing::info!(instance_guid = %instance_key.instance_guid, "removed a stranded evacuating instance");
        Ok(())
    }
}

/// Whether every desired instance of `info` has a RUNNING ordinary row (RECREATE's condition
/// for taking one more instance down).
async fn all_running(ctx: &Context, info: &SchedulingInfo) -> Result<bool> {
    let filter = ActualLrpFilter { process_guid: Some(info.process_guid.clone()), ..Default::default() };
    let lrps = ctx.reader().actual_lrps(&filter).await?;
    Ok(every_instance_running(info.instances, &lrps))
}
