//! The pure LRP convergence decision (bbs.md 6.2, 3.2, 3.4; issue item 1): from one
//! [`LrpSnapshot`], the [`CellSet`] and the time, [`plan`] lists what to do as [`LrpAction`]s. No
//! IO, no clock. Mirrors `bbs/db/sqldb/lrp_convergence.go`, but decides from one consistent
//! snapshot in memory instead of a dozen joins.
//!
//! Rules, per (process guid, index), using the *desired* LRP's domain for freshness (the row's own
//! domain for orphans):
//!
//! | rows of the index | action | destructive |
//! |---|---|---|
//! | every domain | delete expired domain rows | yes |
//! | EVACUATING on a cell that is not live | delete it | yes |
//! | no ORDINARY row for an index in `0..instances` (any domain freshness) | create it UNCLAIMED, start | no |
//! | ORDINARY UNCLAIMED / CRASHED at an index `>= instances`, or with no desired LRP; any domain | retire: delete | yes |
//! | ORDINARY CLAIMED / RUNNING at an index `>= instances`, or with no desired LRP; fresh domain only | retire: stop on a live cell, else delete | yes |
//! | ORDINARY UNCLAIMED with `since < now - stale_unclaimed` | start again | no |
//! | ORDINARY CRASHED and `CrashPolicy::should_restart` | unclaim, start | no |
//! | ORDINARY CLAIMED / RUNNING on a cell that is not live, no SUSPECT | move to SUSPECT, new UNCLAIMED ORDINARY, start | yes |
//! | the same with a SUSPECT (the replacement's own cell was lost) | unclaim the ORDINARY, no start now | yes |
//! | SUSPECT beyond `instances` or with no desired LRP; fresh domain only | delete it (and stop it on a live cell) | yes |
//! | SUSPECT RUNNING while the ORDINARY runs on a live cell ("extra suspect") | delete it (and stop it on a live cell) | yes |
//! | otherwise SUSPECT on a live cell (its cell came back) | promote: delete the ORDINARY, SUSPECT becomes ORDINARY | yes |
//!
//! "Extra suspect" is decided before "promote" (bbs.md 3.4 implementation note), and an index
//! whose suspect is promoted gets no other action this pass. Deliberate differences from Diego:
//! an ordinary row only counts as a healthy replacement for the extra-suspect rule when its own
//! cell is live; only indices in `0..instances` are re-auctioned, restarted or replaced (an extra
//! index is retired, never replaced); a stopped suspect on a live cell also gets a rep stop; an
//! extra or orphaned ordinary row without a container is deleted whatever its domain's freshness
//! (deleting it stops nothing, and a desire of the same guid creates it again), so a scale-down
//! or removal the BBS could not finish (it died or lost its lease half-way) is finished here
//! even while the domain is stale (issue 17 item 1).
//!
//! The guard ([`cells::guard`]): when the cell set is unreadable, empty, or shrank unexplained,
//! every destructive action is moved to [`LrpPlan::withheld`] and [`LrpPlan::guard`] says why.
//!
//! The hold ([`plan_with`] given the cells' [`CellReports`], issue 19; rules in
//! [`super::recovery`]): while within `cell_sync_grace`, a missing index a cell reports running
//! is left for its rep to re-adopt, no index is created while a live cell has not answered, a
//! placed instance with no desired LRP is not retired, and a desired LRP a cell reported the run
//! info of is rebuilt ([`LrpAction::RecoverDesired`]) instead of its instances being retired.
//! What was held back is in [`LrpPlan::withheld`] and [`LrpPlan::hold`]. Past the grace period
//! the plan is the unreported one, except that recoverable desired LRPs are still rebuilt.

use std::collections::{BTreeSet, HashMap, HashSet};

use db::sql::convergence::{ActualSummary, DesiredSummary, LrpSnapshot};
use proto::models::{ActualLrpState, CellId, DomainName, InstanceGuid, ModificationTag, Presence, ProcessGuid};

use super::recovery::{CellReports, Hold};
use crate::cells::{self, CellSet, GuardReason};
use crate::config::{ConvergenceConfig, nanos};

/// One row, as the snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    /// The desired LRP.
    pub process_guid: ProcessGuid,
    /// The index.
    pub index: i32,
    /// Which copy.
    pub presence: Presence,
    /// The row's modification tag in the snapshot: the executor leaves the row alone if it
    /// changed since.
    pub modification_tag: ModificationTag,
}

impl RowRef {
    fn of(row: &ActualSummary) -> Self {
        Self {
            process_guid: row.process_guid.clone(),
            index: row.index,
            presence: row.presence,
            modification_tag: row.modification_tag.clone(),
        }
    }
}

/// Why a row is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// An ORDINARY row at an index `>= instances` (scale-down).
    Extra,
    /// An ORDINARY row whose desired LRP is gone.
    Orphan,
    /// A SUSPECT row whose replacement runs on a live cell.
    SuspectReplaced,
    /// A SUSPECT row whose desired LRP is gone or whose index is `>= instances`.
    SuspectOrphaned,
}

/// A container to stop: the cell and instance of a CLAIMED or RUNNING row on a live cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The live cell.
    pub cell_id: CellId,
    /// The container.
    pub instance_guid: InstanceGuid,
}

/// One thing a pass does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LrpAction {
    /// Delete the domains whose expiry has passed (step 1).
    PruneExpiredDomains,
    /// Delete the EVACUATING rows whose cell is not live (step 2); the store rechecks each row
    /// under lock against the live set.
    PruneEvacuating {
        /// The rows the snapshot shows on cells that are not live.
        rows: Vec<RowRef>,
    },
    /// Create UNCLAIMED ORDINARY rows for indices in `0..instances` that have none, and start
    /// them.
    CreateMissing {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// Its domain.
        domain: DomainName,
        /// The missing indices, ascending.
        indices: Vec<i32>,
    },
    /// Start a stale UNCLAIMED instance again (no write).
    AuctionStaleUnclaimed {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// The index.
        index: i32,
    },
    /// CRASHED -> UNCLAIMED, then start.
    RestartCrashed {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// The index.
        index: i32,
        /// The crash count the snapshot saw.
        crash_count: i32,
    },
    /// The ORDINARY row's cell is lost: it becomes SUSPECT, a new UNCLAIMED ORDINARY row
    /// replaces it and is started.
    SuspectAndReplace {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// The index.
        index: i32,
        /// The lost cell.
        cell_id: CellId,
    },
    /// The replacement's own cell is lost while a SUSPECT exists: back to UNCLAIMED; the
    /// stale-unclaimed rule starts it at least `stale_unclaimed` later.
    UnclaimReplacement {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// The index.
        index: i32,
        /// The lost cell.
        cell_id: CellId,
    },
    /// The SUSPECT's cell is live again: delete the ORDINARY replacement (stopping its container
    /// if it was placed on a live cell) and make the SUSPECT ORDINARY.
    Promote {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// The index.
        index: i32,
        /// The suspect's cell.
        cell_id: CellId,
    },
    /// Rebuild a missing desired LRP from the run info a cell reported for it (issue 19 item 2),
    /// marked recovered, with `instances` instances: the highest index seen plus one.
    RecoverDesired {
        /// The desired LRP.
        process_guid: ProcessGuid,
        /// Its instance count.
        instances: i32,
        /// The indices a cell reports running: their rows, if missing, are created UNCLAIMED
        /// but not auctioned (their reps re-adopt them).
        running: Vec<i32>,
    },
    /// Retire a row: delete it, stop its container, or both.
    Retire {
        /// The row.
        row: RowRef,
        /// Why.
        reason: RetireReason,
        /// Delete the row now (it has no container on a live cell, or it is a suspect).
        delete: bool,
        /// Ask the rep of this live cell to stop the container (for an ORDINARY row the rep then
        /// removes the row itself).
        stop: Option<Placement>,
    },
}

impl LrpAction {
    /// Whether the action can take work away or delete records, so the guard withholds it.
    pub fn is_destructive(&self) -> bool {
        !matches!(
            self,
            Self::CreateMissing { .. }
                | Self::AuctionStaleUnclaimed { .. }
                | Self::RestartCrashed { .. }
                | Self::RecoverDesired { .. }
        )
    }
}

/// What the snapshot looks like, for metrics (bbs.md 6.2 "emit metrics").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LrpCounts {
    /// Desired LRPs.
    pub desired_lrps: usize,
    /// Sum of their `instances` (Diego's LRPsDesired).
    pub desired_instances: u64,
    /// Indices in `0..instances` with no ORDINARY row (LRPsMissing).
    pub missing: usize,
    /// ORDINARY rows to retire, beyond `instances` or orphaned (LRPsExtra): those without a
    /// container in any domain, the others in fresh domains.
    pub extra: usize,
    /// ORDINARY rows UNCLAIMED (LRPsUnclaimed).
    pub unclaimed: usize,
    /// ORDINARY rows CLAIMED (LRPsClaimed).
    pub claimed: usize,
    /// ORDINARY rows RUNNING (LRPsRunning).
    pub running: usize,
    /// ORDINARY rows CRASHED (CrashedActualLRPs).
    pub crashed: usize,
    /// Desired LRPs with at least one CRASHED instance (CrashingDesiredLRPs).
    pub crashing_desired: usize,
    /// SUSPECT rows RUNNING (SuspectRunningActualLRPs).
    pub suspect_running: usize,
    /// SUSPECT rows CLAIMED (SuspectClaimedActualLRPs).
    pub suspect_claimed: usize,
    /// EVACUATING rows.
    pub evacuating: usize,
    /// Live cells (PresentCells).
    pub present_cells: usize,
    /// Cells that are not live but hold CLAIMED or RUNNING rows (SuspectCells); 0 when the cell
    /// set could not be read.
    pub suspect_cells: usize,
    /// Fresh domains.
    pub fresh_domains: usize,
    /// Desired LRPs rebuilt from the cells' reports this pass.
    pub recovered: usize,
    /// CLAIMED or RUNNING ORDINARY rows with no desired LRP, in any domain.
    pub orphaned: usize,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LrpPlan {
    /// Why destructive actions were withheld, if they were.
    pub guard: Option<GuardReason>,
    /// What to do, in a deterministic order.
    pub actions: Vec<LrpAction>,
    /// The destructive actions the guard withheld and the actions the hold held back (logged
    /// and counted, never executed).
    pub withheld: Vec<LrpAction>,
    /// What the hold held back while awaiting the cells' word, if anything.
    pub hold: Option<Hold>,
    /// The state of the world, for metrics.
    pub counts: LrpCounts,
}

/// The rows of one (process guid, index).
#[derive(Default)]
struct Slots<'a> {
    ordinary: Option<&'a ActualSummary>,
    evacuating: Option<&'a ActualSummary>,
    suspect: Option<&'a ActualSummary>,
}

/// Decides one LRP convergence pass without the cells' reports. See the module docs for the
/// rules.
pub fn plan(snapshot: &LrpSnapshot, cells: &CellSet, now_ns: i64, config: &ConvergenceConfig) -> LrpPlan {
    plan_with(snapshot, cells, None, now_ns, config)
}

/// Decides one LRP convergence pass, holding back what the cells' `reports` contradict (the
/// hold, see the module docs). With `reports` `None` it is [`plan`].
pub fn plan_with(
    snapshot: &LrpSnapshot,
    cells: &CellSet,
    reports: Option<&CellReports>,
    now_ns: i64,
    config: &ConvergenceConfig,
) -> LrpPlan {
    let guard = cells::guard(cells, config);
    let holding = reports.filter(|r| r.holding(now_ns, nanos(config.cell_sync_grace)));
    let recoverable = |guid: &ProcessGuid| reports.is_some_and(|r| r.recoverable.contains_key(guid));
    let mut hold = Hold::default();
    let mut held: Vec<LrpAction> = Vec::new();
    // Per recoverable process guid, the highest index its rows show.
    let mut recover_max: HashMap<&ProcessGuid, i32> = HashMap::new();
    let desired: HashMap<&ProcessGuid, &DesiredSummary> =
        snapshot.desired.iter().map(|d| (&d.process_guid, d)).collect();
    let fresh: HashSet<&DomainName> = snapshot.fresh_domains.iter().collect();
    let stale_before = now_ns.saturating_sub(nanos(config.stale_unclaimed));
    let readable = cells.read_error.is_none();
    // Hashed once: every row is checked against it, some twice.
    let live: HashSet<&str> = cells.live.iter().map(CellId::as_str).collect();
    let is_live = |c: &CellId| live.contains(c.as_str());
    let on_live_cell = |row: &ActualSummary| row.cell_id.as_ref().is_some_and(is_live);
    let placed = |row: &ActualSummary| matches!(row.state, ActualLrpState::Claimed | ActualLrpState::Running);

    let mut counts = LrpCounts {
        desired_lrps: snapshot.desired.len(),
        desired_instances: snapshot.desired.iter().map(|d| u64::try_from(d.instances).unwrap_or(0)).sum(),
        present_cells: cells.live.len(),
        fresh_domains: snapshot.fresh_domains.len(),
        ..LrpCounts::default()
    };
    let mut actions = vec![LrpAction::PruneExpiredDomains];
    let mut key_actions = Vec::new();
    let mut evacuating_lost = Vec::new();
    let mut suspect_cells: BTreeSet<&CellId> = BTreeSet::new();
    let mut crashing: HashSet<&ProcessGuid> = HashSet::new();
    // Which indices in 0..instances have an ORDINARY row, per desired LRP. The groups come in
    // process guid order, so each guid's entry is the last one while its rows are visited.
    let mut present: Vec<(&ProcessGuid, Vec<bool>)> = Vec::new();
    let mut current: Option<(&ProcessGuid, Option<&DesiredSummary>)> = None;

    for ((guid, index), slots) in group(&snapshot.actual) {
        let desired_lrp = match current {
            Some((seen, d)) if seen == guid => d,
            _ => {
                let d = desired.get(guid).copied();
                current = Some((guid, d));
                if let Some(d) = d {
                    present.push((guid, vec![false; usize::try_from(d.instances).unwrap_or(0)]));
                }
                d
            }
        };
        let instances = desired_lrp.map_or(0, |d| d.instances.max(0));
        let in_range = desired_lrp.is_some() && (0..instances).contains(&index);
        let domain_fresh = |row: &ActualSummary| fresh.contains(desired_lrp.map_or(&row.domain, |d| &d.domain));
        if desired_lrp.is_none() && recoverable(guid) {
            // Its desired LRP is rebuilt this pass; the rows are judged against it next pass.
            let max = recover_max.entry(guid).or_insert(index);
            *max = (*max).max(index);
            continue;
        }
        // A placed instance with no desired LRP is not stopped while the cells' word is awaited.
        let mut retire_or_hold = |action: LrpAction| {
            let placed_orphan = desired_lrp.is_none() && matches!(&action, LrpAction::Retire { stop: Some(_), .. });
            if placed_orphan && holding.is_some() {
                hold.orphans += 1;
                held.push(action);
            } else {
                key_actions.push(action);
            }
        };

        for row in [slots.ordinary, slots.evacuating, slots.suspect].into_iter().flatten() {
            if readable && placed(row) && !on_live_cell(row) {
                suspect_cells.extend(row.cell_id.as_ref());
            }
        }

        if let Some(evacuating) = slots.evacuating {
            counts.evacuating += 1;
            if !on_live_cell(evacuating) {
                evacuating_lost.push(RowRef::of(evacuating));
            }
        }

        let mut promoted = false;
        if let Some(suspect) = slots.suspect {
            match suspect.state {
                ActualLrpState::Running => counts.suspect_running += 1,
                ActualLrpState::Claimed => counts.suspect_claimed += 1,
                _ => {}
            }
            let replacement_runs =
                slots.ordinary.is_some_and(|o| o.state == ActualLrpState::Running && on_live_cell(o));
            if !in_range {
                if domain_fresh(suspect) {
                    retire_or_hold(retire(suspect, RetireReason::SuspectOrphaned, &on_live_cell));
                }
            } else if replacement_runs && suspect.state == ActualLrpState::Running {
                retire_or_hold(retire(suspect, RetireReason::SuspectReplaced, &on_live_cell));
            } else if let Some(cell) = suspect.cell_id.as_ref().filter(|c| is_live(c)) {
                promoted = true;
                retire_or_hold(LrpAction::Promote { process_guid: guid.clone(), index, cell_id: cell.clone() });
            }
        }

        if in_range
            && (slots.ordinary.is_some() || promoted)
            && let (Some((seen_guid, seen)), Ok(slot)) = (present.last_mut(), usize::try_from(index))
            && *seen_guid == guid
            && let Some(seen) = seen.get_mut(slot)
        {
            *seen = true;
        }

        let Some(ordinary) = slots.ordinary else { continue };
        if desired_lrp.is_none() && placed(ordinary) {
            counts.orphaned += 1;
        }
        match ordinary.state {
            ActualLrpState::Unclaimed => counts.unclaimed += 1,
            ActualLrpState::Claimed => counts.claimed += 1,
            ActualLrpState::Running => counts.running += 1,
            ActualLrpState::Crashed => counts.crashed += 1,
        }
        if !in_range {
            let unplaced = matches!(ordinary.state, ActualLrpState::Unclaimed | ActualLrpState::Crashed);
            if unplaced || domain_fresh(ordinary) {
                counts.extra += 1;
                let reason = if desired_lrp.is_some() { RetireReason::Extra } else { RetireReason::Orphan };
                retire_or_hold(retire(ordinary, reason, &on_live_cell));
            }
            continue;
        }
        if ordinary.state == ActualLrpState::Crashed {
            crashing.insert(guid);
        }
        if promoted {
            continue;
        }
        match ordinary.state {
            ActualLrpState::Unclaimed if ordinary.since < stale_before => {
                let action = LrpAction::AuctionStaleUnclaimed { process_guid: guid.clone(), index };
                if holding.is_some_and(|r| r.runs(guid, index)) {
                    hold.adopting += 1;
                    held.push(action);
                } else {
                    key_actions.push(action);
                }
            }
            ActualLrpState::Crashed
                if config.crash_policy.should_restart(ordinary.crash_count, ordinary.since, now_ns) =>
            {
                key_actions.push(LrpAction::RestartCrashed {
                    process_guid: guid.clone(),
                    index,
                    crash_count: ordinary.crash_count,
                });
            }
            ActualLrpState::Claimed | ActualLrpState::Running => {
                if let Some(cell) = ordinary.cell_id.as_ref().filter(|c| !is_live(c)) {
                    let (process_guid, cell_id) = (guid.clone(), cell.clone());
                    key_actions.push(if slots.suspect.is_some() {
                        LrpAction::UnclaimReplacement { process_guid, index, cell_id }
                    } else {
                        LrpAction::SuspectAndReplace { process_guid, index, cell_id }
                    });
                }
            }
            _ => {}
        }
    }

    if !evacuating_lost.is_empty() {
        actions.push(LrpAction::PruneEvacuating { rows: evacuating_lost });
    }
    actions.extend(key_actions);

    let present: HashMap<&ProcessGuid, Vec<bool>> = present.into_iter().collect();
    let mut by_guid: Vec<&DesiredSummary> = snapshot.desired.iter().collect();
    by_guid.sort_by(|a, b| a.process_guid.cmp(&b.process_guid));
    for d in by_guid {
        let seen = present.get(&d.process_guid);
        let missing: Vec<i32> = (0..d.instances.max(0))
            .filter(|&i| {
                let slot = usize::try_from(i).unwrap_or(usize::MAX);
                !seen.is_some_and(|s| s.get(slot).copied().unwrap_or(false))
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        counts.missing += missing.len();
        let create = |indices: Vec<i32>| LrpAction::CreateMissing {
            process_guid: d.process_guid.clone(),
            domain: d.domain.clone(),
            indices,
        };
        let Some(reports) = holding else {
            actions.push(create(missing));
            continue;
        };
        let (adopting, lost): (Vec<i32>, Vec<i32>) =
            missing.into_iter().partition(|&i| reports.runs(&d.process_guid, i));
        if !adopting.is_empty() {
            hold.adopting += adopting.len();
            held.push(create(adopting));
        }
        // A loss no answering cell contradicts is created now, unless a cell did not answer.
        if !lost.is_empty() && reports.unanswered.is_empty() {
            actions.push(create(lost));
        } else if !lost.is_empty() {
            hold.creations += lost.len();
            held.push(create(lost));
        }
    }
    if let Some(reports) = reports {
        let desired_guids: HashSet<&ProcessGuid> = desired.keys().copied().collect();
        for guid in reports.recoverable.keys().filter(|g| !desired_guids.contains(g)) {
            let running: Vec<i32> = reports
                .running
                .range((guid.clone(), i32::MIN)..=(guid.clone(), i32::MAX))
                .map(|((_, i), _)| *i)
                .collect();
            let highest = running.iter().copied().chain(recover_max.get(guid).copied()).max();
            if let Some(highest) = highest {
                counts.recovered += 1;
                actions.push(LrpAction::RecoverDesired {
                    process_guid: guid.clone(),
                    instances: highest.saturating_add(1),
                    running,
                });
            }
        }
        if holding.is_some() && (hold.adopting + hold.orphans + hold.creations) > 0 {
            hold.unanswered = reports.unanswered.len();
        }
    }
    let hold = (hold != Hold::default()).then_some(hold);
    counts.crashing_desired = crashing.len();
    counts.suspect_cells = suspect_cells.len();

    let mut withheld = if guard.is_some() {
        let (destructive, kept): (Vec<_>, Vec<_>) = actions.into_iter().partition(LrpAction::is_destructive);
        actions = kept;
        destructive
    } else {
        Vec::new()
    };
    withheld.extend(held);
    LrpPlan { guard, actions, withheld, hold, counts }
}

/// A retirement of `row`: a row with a container on a live cell is stopped there; an ORDINARY
/// row is otherwise deleted; a SUSPECT row is always deleted (the rep's removal would address
/// the ordinary row, not it) and also stopped when its cell is live.
fn retire(row: &ActualSummary, reason: RetireReason, on_live_cell: &impl Fn(&ActualSummary) -> bool) -> LrpAction {
    let placed = matches!(row.state, ActualLrpState::Claimed | ActualLrpState::Running);
    let stop = match (&row.cell_id, &row.instance_guid) {
        (Some(cell_id), Some(instance_guid)) if placed && on_live_cell(row) => {
            Some(Placement { cell_id: cell_id.clone(), instance_guid: instance_guid.clone() })
        }
        _ => None,
    };
    let delete = row.presence == Presence::Suspect || stop.is_none();
    LrpAction::Retire { row: RowRef::of(row), reason, delete, stop }
}

/// The rows grouped by (process guid, index), in key order. The snapshot is already sorted,
/// which makes the stable sort here a single pass; unsorted input (tests) works too.
fn group(actual: &[ActualSummary]) -> Vec<((&ProcessGuid, i32), Slots<'_>)> {
    let mut rows: Vec<&ActualSummary> = actual.iter().collect();
    rows.sort_by(|a, b| {
        (a.process_guid.as_str(), a.index, a.presence).cmp(&(b.process_guid.as_str(), b.index, b.presence))
    });
    let mut out: Vec<((&ProcessGuid, i32), Slots<'_>)> = Vec::new();
    for row in rows {
        let key = (&row.process_guid, row.index);
        let fresh_key = out.last().is_none_or(|(k, _)| *k != key);
        if fresh_key {
            out.push((key, Slots::default()));
        }
        if let Some((_, slots)) = out.last_mut() {
            let slot = match row.presence {
                Presence::Ordinary => &mut slots.ordinary,
                Presence::Evacuating => &mut slots.evacuating,
                Presence::Suspect => &mut slots.suspect,
            };
            *slot = Some(row);
        }
    }
    out
}

#[cfg(test)]
mod tests;
