//! Evacuation rules (bbs.md 3.3, 4.2 "Evacuation"): what a draining rep reports about each of
//! its containers, and whether it should keep the container (`keep_container`).
//!
//! Each endpoint is one [`Store::modify_index`](db::Store::modify_index) transaction over the
//! rows of the index: a pure function of the locked rows decides (with
//! [`proto::lifecycle::actual_lrp::decide`] where the transition table has a rule) and mutates
//! them, so it re-runs cleanly when the transaction is retried. The controller holds the index's
//! lock stripe until the events of the change are published, then requests the auction of an
//! unclaimed replacement where Diego does. Mirrors `bbs/controllers/evacuation_controller.go`,
//! except that each decision and its writes are one transaction instead of a read followed by
//! separate writes.
//!
//! Errors and `keep_container`: the gRPC response carries only `keep_container`, and a rep
//! treats an error as "keep the container and ask again". So where Diego answers
//! `keep_container = true` together with an error, these methods return the error. Where Diego
//! answers `false` with ResourceNotFound (no row carries the instance key), the error is
//! returned too: the rep deletes claimed, stopped and crashed containers whatever the answer.

use std::sync::OnceLock;

use db::sql::actual_lrps::{ActualLrpFilter, IndexRows, StartInfo};
use proto::lifecycle::actual_lrp::{Command, KeyMatch, Verdict, decide};
use proto::lifecycle::crash::CrashPolicy;
use proto::models::validation::truncate_reason;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, ModificationTag, Presence, SchedulingInfo,
    UpdateStrategy,
};

use super::Context;
use super::actual_lrps::request_index_auction;
use crate::Result;
use crate::events::KeyLocks;

/// Serializes RECREATE evacuations of one desired LRP in this process, standing in for Diego's
/// row lock on the desired LRP: only the leader writes, so this makes "count the running
/// instances, then unclaim one" one step. Separate from the context's stripes (taken first,
/// never while holding one), so it cannot deadlock with them.
fn recreate_locks() -> &'static KeyLocks {
    static LOCKS: OnceLock<KeyLocks> = OnceLock::new();
    LOCKS.get_or_init(|| KeyLocks::new(64))
}

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
                apply_evacuate_claimed(rows, key, instance_key, now)
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

    /// EvacuateRunningActualLRP: a draining rep asks whether to keep a running container.
    ///
    /// ROLLING (the default):
    /// - no rows at all: `false`;
    /// - the ordinary row is gone (desired LRP removed), or another instance's ordinary row is
    ///   RUNNING or CRASHED (the replacement is done): this instance's evacuating (or suspect)
    ///   row is deleted, `false`;
    /// - the desired LRP is gone: likewise;
    /// - this instance has no row or only an evacuating one: `false` if another instance already
    ///   holds the evacuating slot, otherwise its evacuating row is created or refreshed from
    ///   the request, `true`;
    /// - this instance is the ordinary or suspect row, CLAIMED or RUNNING: the evacuation dance
    ///   (an EVACUATING RUNNING copy keeps serving; the suspect row is deleted, or the ordinary
    ///   row unclaimed and auctioned), `true`.
    ///
    /// RECREATE: no evacuating copies are kept (an existing one is deleted, `false`); a suspect
    /// row is deleted (`false`); a CLAIMED or RUNNING ordinary row is unclaimed and auctioned
    /// (`false`) only while every desired instance is RUNNING, otherwise `true` and the rep asks
    /// again, so instances are replaced one at a time.
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
            Some(UpdateStrategy::Recreate) => Some(recreate_locks().lock(key.process_guid.as_str()).await),
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
                apply_evacuate_running(rows, key, instance_key, start, desired, now)
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
                apply_evacuate_stopped(rows, key, instance_key)
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
                apply_evacuate_crashed(rows, key, instance_key, reason, &policy, now)
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
                apply_remove_evacuating(rows, key, instance_key)
            })
            .await?;
        ctx.publish_index_change(&change);
        tracing::info!(instance_guid = %instance_key.instance_guid, "removed a stranded evacuating instance");
        Ok(())
    }
}

/// What EvacuateRunning knows about the desired LRP, read before the index is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desired {
    /// The desired LRP no longer exists.
    Gone,
    /// ROLLING: keep an evacuating copy until the replacement runs.
    Rolling,
    /// RECREATE, and whether every desired instance is RUNNING right now.
    Recreate { all_running: bool },
}

/// What EvacuateRunning decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunningOutcome {
    /// The rep keeps the container.
    keep: bool,
    /// The ordinary row was unclaimed: request its auction.
    auction: bool,
}

const KEEP: RunningOutcome = RunningOutcome { keep: true, auction: false };
const DROP: RunningOutcome = RunningOutcome { keep: false, auction: false };

/// Whether every desired instance of `info` has a RUNNING ordinary row (RECREATE's condition
/// for taking one more instance down).
async fn all_running(ctx: &Context, info: &SchedulingInfo) -> Result<bool> {
    let filter = ActualLrpFilter { process_guid: Some(info.process_guid.clone()), ..Default::default() };
    let running = ctx
        .reader()
        .actual_lrps(&filter)
        .await?
        .iter()
        .filter(|lrp| {
            lrp.presence == Presence::Ordinary && lrp.state == ActualLrpState::Running && lrp.key.index < info.instances
        })
        .count();
    Ok(i64::try_from(running).unwrap_or(i64::MAX) >= i64::from(info.instances))
}

/// The presence of the row carrying `instance_key`, if any (ordinary first, as Diego looks).
fn carrier(rows: &IndexRows, instance_key: &ActualLrpInstanceKey) -> Option<Presence> {
    rows.with_instance_key(instance_key).map(|lrp| lrp.presence)
}

fn not_found(key: &ActualLrpKey, instance_key: &ActualLrpInstanceKey) -> db::Error {
    db::Error::NotFound {
        what: "actual lrp",
        key: format!(
            "{} index {} with instance {} on cell {}",
            key.process_guid, key.index, instance_key.instance_guid, instance_key.cell_id
        ),
    }
}

/// Asks the transition table what `cmd` by `instance_key` does to `row`.
fn judge(cmd: Command, row: &ActualLrp, instance_key: &ActualLrpInstanceKey) -> db::Result<Verdict> {
    let key_match = match &row.instance_key {
        None => KeyMatch::Absent,
        Some(stored) if stored == instance_key => KeyMatch::Same,
        Some(_) => KeyMatch::Different,
    };
    decide(row.state, row.presence, key_match, cmd).map_err(|code| {
        db::Error::refused(
            code,
            format!(
                "cannot evacuate actual lrp {} index {}: {:?} row is {} (requested by instance {} on cell {})",
                row.key.process_guid,
                row.key.index,
                row.presence,
                row.state.as_str(),
                instance_key.instance_guid,
                instance_key.cell_id
            ),
        )
    })
}

fn unexpected(cmd: Command, row: &ActualLrp, verdict: Verdict) -> db::Error {
    db::Error::refused(
        proto::error::ErrorCode::InvalidStateTransition,
        format!(
            "cannot evacuate actual lrp {} index {}: unexpected verdict {verdict:?} for {cmd:?} on a {} row",
            row.key.process_guid,
            row.key.index,
            row.state.as_str()
        ),
    )
}

/// Deletes the instance's evacuating or suspect row. The evacuating row goes through the
/// table's Remove rule (it must carry the key); the table has no evacuation rule for suspect
/// rows, which bbs.md 3.3 deletes outright.
fn delete_copy(rows: &mut IndexRows, presence: Presence, instance_key: &ActualLrpInstanceKey) -> db::Result<()> {
    let slot = rows.slot_mut(presence);
    let Some(row) = slot.as_ref() else { return Ok(()) };
    if presence == Presence::Evacuating {
        match judge(Command::Remove, row, instance_key)? {
            Verdict::Delete => {}
            other => return Err(unexpected(Command::Remove, row, other)),
        }
    }
    *slot = None;
    Ok(())
}

/// Unclaims the ordinary row (state UNCLAIMED, instance key and net info cleared, `since`
/// bumped), as the store's internal unclaim does.
fn unclaim_ordinary(rows: &mut IndexRows, instance_key: &ActualLrpInstanceKey, now: i64) -> db::Result<bool> {
    let Some(row) = rows.ordinary.as_mut() else { return Ok(false) };
    match judge(Command::Unclaim, row, instance_key)? {
        Verdict::Write(state) => {
            row.state = state;
            row.instance_key = None;
            row.net_info = None;
            row.placement_error.clear();
            row.since = now;
            Ok(true)
        }
        Verdict::Unchanged => Ok(false),
        other => Err(unexpected(Command::Unclaim, row, other)),
    }
}

fn apply_evacuate_claimed(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    now: i64,
) -> db::Result<bool> {
    match carrier(rows, instance_key) {
        None => Err(not_found(key, instance_key)),
        Some(presence @ (Presence::Evacuating | Presence::Suspect)) => {
            delete_copy(rows, presence, instance_key)?;
            Ok(false)
        }
        Some(Presence::Ordinary) => unclaim_ordinary(rows, instance_key, now),
    }
}

fn apply_evacuate_running(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    start: &StartInfo,
    desired: Desired,
    now: i64,
) -> db::Result<RunningOutcome> {
    if rows.is_empty() {
        return Ok(DROP);
    }
    let target = carrier(rows, instance_key);
    let replacement_done = rows.ordinary.as_ref().is_none_or(|ordinary| {
        target != Some(Presence::Ordinary)
            && matches!(ordinary.state, ActualLrpState::Running | ActualLrpState::Crashed)
    });
    if replacement_done || desired == Desired::Gone {
        // Nothing needs this container any more; its copy goes (the ordinary row is stopped
        // through the desired LRP's removal or is the replacement).
        if let Some(presence @ (Presence::Evacuating | Presence::Suspect)) = target {
            delete_copy(rows, presence, instance_key)?;
        }
        return Ok(DROP);
    }
    if let Desired::Recreate { all_running } = desired {
        return match target {
            None => Ok(DROP),
            Some(presence @ (Presence::Evacuating | Presence::Suspect)) => {
                delete_copy(rows, presence, instance_key)?;
                Ok(DROP)
            }
            Some(Presence::Ordinary) if !all_running => Ok(KEEP),
            Some(Presence::Ordinary) => {
                let auction = unclaim_ordinary(rows, instance_key, now)?;
                Ok(RunningOutcome { keep: false, auction })
            }
        };
    }
    match target {
        None | Some(Presence::Evacuating) => {
            if rows.evacuating.as_ref().is_some_and(|e| e.instance_key.as_ref() != Some(instance_key)) {
                // Another instance already evacuates this index; at most one copy is kept.
                return Ok(DROP);
            }
            let base = rows.evacuating.clone().unwrap_or_else(|| ActualLrp {
                presence: Presence::Evacuating,
                ..ActualLrp::new_unclaimed(key.clone(), String::new(), now)
            });
            let next = ActualLrp {
                state: ActualLrpState::Running,
                instance_key: Some(instance_key.clone()),
                net_info: Some(start.net_info.clone()),
                internal_routes: start.internal_routes.clone(),
                metric_tags: start.metric_tags.clone(),
                routable: start.routable,
                availability_zone: start.availability_zone.clone(),
                placement_error: String::new(),
                ..base.clone()
            };
            // Refresh only what changed; an identical report writes nothing.
            if rows.evacuating.as_ref() != Some(&next) {
                rows.evacuating = Some(ActualLrp { since: now, ..next });
            }
            Ok(KEEP)
        }
        Some(presence @ (Presence::Ordinary | Presence::Suspect)) => {
            let Some(row) = rows.get(presence).cloned() else { return Ok(DROP) };
            if !matches!(row.state, ActualLrpState::Running | ActualLrpState::Claimed) {
                return Ok(DROP);
            }
            // The dance: an EVACUATING RUNNING copy of this instance keeps serving. A RUNNING
            // row keeps its own net info and `since`; a CLAIMED one (the rep's start was not
            // recorded yet) takes what the rep reports now.
            let copy = if row.state == ActualLrpState::Running {
                ActualLrp { presence: Presence::Evacuating, ..row }
            } else {
                ActualLrp {
                    presence: Presence::Evacuating,
                    state: ActualLrpState::Running,
                    net_info: Some(start.net_info.clone()),
                    internal_routes: start.internal_routes.clone(),
                    metric_tags: start.metric_tags.clone(),
                    routable: start.routable,
                    availability_zone: start.availability_zone.clone(),
                    since: now,
                    ..row
                }
            };
            // The copy is a new record: a fresh epoch, or the slot's own tag when it replaces
            // another instance's copy.
            let tag = rows
                .evacuating
                .as_ref()
                .map(|e| e.modification_tag.clone())
                .unwrap_or_else(|| ModificationTag::new(""));
            rows.evacuating = Some(ActualLrp { modification_tag: tag, ..copy });
            if presence == Presence::Suspect {
                // The ordinary row already is the replacement.
                rows.suspect = None;
                return Ok(KEEP);
            }
            let auction = unclaim_ordinary(rows, instance_key, now)?;
            Ok(RunningOutcome { keep: true, auction })
        }
    }
}

fn apply_evacuate_stopped(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
) -> db::Result<()> {
    match carrier(rows, instance_key) {
        None => Err(not_found(key, instance_key)),
        Some(presence @ (Presence::Evacuating | Presence::Suspect)) => delete_copy(rows, presence, instance_key),
        Some(Presence::Ordinary) => {
            let Some(row) = rows.ordinary.as_ref() else { return Err(not_found(key, instance_key)) };
            match judge(Command::Remove, row, instance_key)? {
                Verdict::Delete => {
                    rows.ordinary = None;
                    Ok(())
                }
                other => Err(unexpected(Command::Remove, row, other)),
            }
        }
    }
}

fn apply_evacuate_crashed(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
    reason: &str,
    policy: &CrashPolicy,
    now: i64,
) -> db::Result<()> {
    match carrier(rows, instance_key) {
        None => Err(not_found(key, instance_key)),
        Some(presence @ (Presence::Evacuating | Presence::Suspect)) => delete_copy(rows, presence, instance_key),
        Some(Presence::Ordinary) => {
            let Some(row) = rows.ordinary.as_mut() else { return Err(not_found(key, instance_key)) };
            match judge(Command::Crash, row, instance_key)? {
                Verdict::Write(_) => {
                    let was_running = row.state == ActualLrpState::Running;
                    let crash_count = policy.next_crash_count(was_running, row.crash_count, row.since, now);
                    row.state = if policy.restart_immediately(crash_count) {
                        ActualLrpState::Unclaimed
                    } else {
                        ActualLrpState::Crashed
                    };
                    row.instance_key = None;
                    row.net_info = None;
                    row.crash_count = crash_count;
                    row.crash_reason = truncate_reason(reason);
                    row.since = now;
                    Ok(())
                }
                other => Err(unexpected(Command::Crash, row, other)),
            }
        }
    }
}

fn apply_remove_evacuating(
    rows: &mut IndexRows,
    key: &ActualLrpKey,
    instance_key: &ActualLrpInstanceKey,
) -> db::Result<()> {
    match carrier(rows, instance_key) {
        Some(Presence::Evacuating) => delete_copy(rows, Presence::Evacuating, instance_key),
        _ => Err(not_found(key, instance_key)),
    }
}
