//! Actual LRP rules (bbs.md 3.1, 3.2, 4.2 "ActualLRP lifecycle"): the rep's claim, start,
//! crash and remove, the auctioneer's fail, and retirement by clients and convergence.
//!
//! Every write goes through the leader's fenced store, holds the lock stripe of
//! (process guid, index) from before the transaction until its events are published, and
//! publishes the instance events of the [`IndexChange`](db::sql::actual_lrps::IndexChange) the
//! store returns. The rules themselves (which row, which transition, which fields) live in
//! [`proto::lifecycle::actual_lrp`], run by the store's lifecycle calls. Mirrors `bbs/controllers/actual_lrp_lifecycle_controller.go`.

use db::Store;
use db::sql::actual_lrps::{ActualLrpFilter, StartInfo};
use proto::lifecycle::actual_lrp::apply_retire;
use proto::models::{ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ProcessGuid};

use super::{Context, desired_lrps};
use crate::{Error, Result, cells};

/// How many times RetireActualLRP tries before giving up (Diego: 5).
const RETIRE_ATTEMPTS: u32 = 5;

/// Actual LRP reads and lifecycle writes.
pub struct ActualLrps<'a>(pub &'a Context);

impl ActualLrps<'_> {
    /// Every actual LRP (all presences) matching `filter`; served by standbys too.
    pub async fn list(&self, filter: &ActualLrpFilter) -> Result<Vec<ActualLrp>> {
        Ok(self.0.reader().actual_lrps(filter).await?)
    }

    /// ClaimActualLRP: the rep reserved a container for the instance. A claim from the cell of a
    /// suspect instance is acknowledged and ignored. ResourceNotFound without an ordinary row,
    /// ActualLrpCannotBeClaimed when the row is held by another instance or CRASHED.
    #[tracing::instrument(skip_all, fields(process_guid = %process_guid, index = index))]
    pub async fn claim(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        instance_key: &ActualLrpInstanceKey,
    ) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((process_guid.as_str(), index)).await;
        let change = store.claim_actual_lrp(process_guid, index, instance_key, ctx.now_ns()).await?;
        ctx.publish_index_change(&change);
        if change.changed() {
            tracing::debug!(instance_guid = %instance_key.instance_guid, cell_id = %instance_key.cell_id, "actual lrp claimed");
        }
        Ok(())
    }

    /// StartActualLRP: the instance's container is healthy (also the rep's periodic re-assert,
    /// which writes nothing when nothing changed). Creates the row when it is missing and
    /// deletes the index's evacuating and suspect rows once the ordinary row runs.
    /// ActualLrpCannotBeStarted when a RUNNING or CRASHED row belongs to another instance.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn start(
        &self,
        key: &ActualLrpKey,
        instance_key: &ActualLrpInstanceKey,
        start: &StartInfo,
    ) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store.start_actual_lrp(key, instance_key, start, ctx.now_ns()).await?;
        ctx.publish_index_change(&change);
        if change.changed() {
            tracing::debug!(instance_guid = %instance_key.instance_guid, cell_id = %instance_key.cell_id, "actual lrp started");
        }
        Ok(())
    }

    /// StartActualLRPs (a rep's bulk report): [`ActualLrps::start`] for each of `starts`, in
    /// one transaction ([`db::Store::start_actual_lrps`]), with one answer per start in order.
    /// A refused start concerns itself only. Each start that changed its index publishes the
    /// events the single start publishes, under its index's stripe, taken after the commit
    /// ([`crate::events::KeyLocks::under_stripes`]; not around the transaction, which would
    /// hold a thousand stripes): a single
    /// write of one of these indices that waited for the batch's row locks can publish its
    /// event before the batch's, though it committed after it.
    #[tracing::instrument(skip_all, fields(items = starts.len()))]
    pub async fn start_many(
        &self,
        starts: Vec<(ActualLrpKey, ActualLrpInstanceKey, StartInfo)>,
    ) -> Result<Vec<Result<()>>> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let outcomes = store.start_actual_lrps(&starts, ctx.now_ns()).await?;
        let mut answers = Vec::with_capacity(starts.len());
        let mut changes = Vec::new();
        for ((key, _, _), outcome) in starts.iter().zip(outcomes) {
            answers.push(match outcome {
                Ok(Some(change)) => {
                    changes.push((ctx.locks.stripe_of((key.process_guid.as_str(), key.index)), change));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(Error::from(e)),
            });
        }
        ctx.locks.under_stripes(changes, |change| ctx.publish_index_change(&change)).await;
        Ok(answers)
    }

    /// CrashActualLRP (bbs.md 3.2): counts the crash and either writes the row UNCLAIMED and
    /// requests its auction at once (the 1st and 2nd consecutive crash) or writes it CRASHED
    /// for convergence to restart after its back-off. A crash from a suspect instance deletes
    /// the suspect row. ActualLrpCannotBeCrashed unless the row is CLAIMED or RUNNING by
    /// `instance_key`.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn crash(&self, key: &ActualLrpKey, instance_key: &ActualLrpInstanceKey, reason: &str) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let change = store.crash_actual_lrp(key, instance_key, reason, &ctx.crash_policy, ctx.now_ns()).await?;
        ctx.publish_crash_change(&change);
        drop(guard);
        let outcome = change.value;
        tracing::info!(crash_count = outcome.crash_count, restart_now = outcome.restart_now, "actual lrp crashed");
        if outcome.restart_now
            && let Some(row) = change.after.ordinary.as_ref()
        {
            request_index_auction(ctx, &key.process_guid, row).await;
        }
        Ok(())
    }

    /// FailActualLRP: the auctioneer could not place the instance; the placement error is
    /// stored on the UNCLAIMED row. A missing row is not an error (the instance was removed
    /// meanwhile), as in Diego. ActualLrpCannotBeFailed when the row is not UNCLAIMED.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn fail(&self, key: &ActualLrpKey, placement_error: &str) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        match store.fail_actual_lrp(key, placement_error, ctx.now_ns()).await {
            Ok(change) => {
                ctx.publish_index_change(&change);
                Ok(())
            }
            Err(db::Error::NotFound { .. }) => {
                tracing::debug!("failed actual lrp is gone; nothing to record");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// RemoveActualLRP: deletes the ordinary row; with an instance key, only when the row
    /// carries it (ActualLrpCannotBeRemoved otherwise). ResourceNotFound without an ordinary
    /// row.
    #[tracing::instrument(skip_all, fields(process_guid = %process_guid, index = index))]
    pub async fn remove(
        &self,
        process_guid: &ProcessGuid,
        index: i32,
        instance_key: Option<&ActualLrpInstanceKey>,
    ) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((process_guid.as_str(), index)).await;
        let change = store.remove_actual_lrp(process_guid, index, instance_key).await?;
        ctx.publish_index_change(&change);
        tracing::debug!("actual lrp removed");
        Ok(())
    }

    /// RetireActualLRP (bbs.md 4.2): an UNCLAIMED or CRASHED ordinary row is deleted; a CLAIMED
    /// or RUNNING one is deleted when its cell is gone from Locket, and otherwise its rep is
    /// asked (in the background) to stop the instance, after which the rep removes the row.
    /// The desired LRP is untouched, so convergence refills the index. ResourceNotFound when
    /// the index has no ordinary row. A row that changes under the call, and retryable
    /// database errors, are retried up to 5 attempts.
    #[tracing::instrument(skip_all, fields(process_guid = %key.process_guid, index = key.index))]
    pub async fn retire(&self, key: &ActualLrpKey) -> Result<()> {
        let ctx = self.0;
        let store = ctx.writer()?;
        let _guard = ctx.locks.lock((key.process_guid.as_str(), key.index)).await;
        let mut attempt = 1;
        loop {
            match retire_once(ctx, &store, key).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < RETIRE_ATTEMPTS && retire_retryable(&e) => {
                    tracing::warn!(attempt, error = %e, "retrying the retirement of an actual lrp");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One retirement attempt; the caller holds the index's lock stripe.
async fn retire_once(ctx: &Context, store: &Store, key: &ActualLrpKey) -> Result<()> {
    let (guid, index) = (&key.process_guid, key.index);
    // Decide and delete a row without a container in one transaction, so a claim racing the
    // retirement is either seen (and stopped) or refused by the deleted row.
    let change = store
        .modify_index("retire actual lrp", guid, index, |rows| apply_retire(rows, guid, index).map_err(db::Error::from))
        .await?;
    ctx.publish_index_change(&change);
    let Some(instance_key) = change.value else {
        tracing::info!("retired an actual lrp without a container");
        return Ok(());
    };
    let cell_id = instance_key.cell_id.to_string();
    match cells::rep_address(ctx.reader(), &cell_id).await? {
        Some(_) => {
            tracing::info!(%cell_id, instance_guid = %instance_key.instance_guid, "asking the rep to stop a retired instance");
            ctx.stop_instance(cell_id, guid.to_string(), instance_key.instance_guid.to_string(), index);
            Ok(())
        }
        None => match store.remove_actual_lrp(guid, index, Some(&instance_key)).await {
            Ok(change) => {
                ctx.publish_index_change(&change);
                tracing::info!(%cell_id, "retired an actual lrp whose cell is gone");
                Ok(())
            }
            // The instance was removed meanwhile: what retirement wanted.
            Err(db::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// Whether a failed retirement attempt is worth repeating: the row changed between the
/// decision and the delete (ActualLrpCannotBeRemoved), or the database asked for a retry.
fn retire_retryable(err: &Error) -> bool {
    match err {
        Error::Store(e) => e.is_retryable() || e.code() == proto::error::ErrorCode::ActualLrpCannotBeRemoved,
        _ => false,
    }
}

/// Requests the auction of one unclaimed index, built from the desired LRP's scheduling info.
/// A missing desired LRP means the instance is about to be removed: nothing is requested. A
/// failed lookup is only logged; convergence re-auctions stale unclaimed instances.
pub(crate) async fn request_index_auction(ctx: &Context, process_guid: &ProcessGuid, row: &ActualLrp) {
    match ctx.reader().scheduling_info(process_guid).await {
        Ok(info) => ctx.request_lrp_auctions(vec![desired_lrps::start_request(&info, std::slice::from_ref(row))]),
        Err(db::Error::NotFound { .. }) => {
            tracing::info!(index = row.key.index, "desired lrp is gone; not requesting an auction");
        }
        Err(e) => {
            tracing::warn!(index = row.key.index, error = %e, "cannot read the scheduling info; convergence will auction the instance");
        }
    }
}
