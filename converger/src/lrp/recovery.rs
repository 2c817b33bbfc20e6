//! Recovery from a database that forgot what runs (issue 19 items 1 and 2).
//!
//! The database is the BBS's memory of the cluster, the cells are its ground truth. When the
//! two disagree because the database lost rows (a wiped table, a restored backup, a new empty
//! database), convergence must not act on the database's word alone: a missing actual LRP whose
//! instance still runs on a cell would otherwise be started again elsewhere, and a running
//! instance whose desired LRP was lost would be stopped.
//!
//! So before a pass starts replacements or stops orphans, it lets the live cells report what they
//! run ([`CellReports`], gathered by [`LrpConvergence::tick`](super::LrpConvergence::tick)
//! through [`Effects::cell_report`](crate::Effects::cell_report)), and the pure
//! [`plan_with`](super::plan::plan_with) holds back, for at most
//! [`ConvergenceConfig::cell_sync_grace`](crate::ConvergenceConfig::cell_sync_grace):
//!
//! - the creation of a missing index that a cell reports running: its rep re-adopts it, as it
//!   is and with its ports, on its next bulk sync (`StartActualLRP` re-creates the row);
//! - every creation while a live cell has not answered (it may run any of them);
//! - the retirement of a placed instance whose desired LRP is missing.
//!
//! A desired LRP that is missing while a cell reports one of its instances, with the run info the
//! rep keeps for it, is rebuilt from that report ([`LrpAction::RecoverDesired`](super::plan::LrpAction)):
//! its instance count is the highest index seen (rows and reports) plus one, and its annotation
//! is marked [`RECOVERED_PREFIX`] (see [`recovered_annotation`]). An operator's later desire of the
//! same process guid replaces a recovered record (`bbs::controllers::desired_lrps`).
//!
//! When cells are asked ([`should_ask`]): whenever a pass would create missing instances, restart
//! stale unclaimed ones or retire orphans, or sees placed instances with no desired LRP in any
//! domain, on the first pass of a leadership term (the BBS
//! started or regained its lease), on the first pass after a failed one (it regained its
//! database), and when the desired or actual rows shrank sharply since the last pass (the table
//! was emptied; both tables wiped leave nothing else to notice). A genuine loss, reported by no
//! cell, is created in the same pass once every live cell answered: the hold costs one round of
//! calls, not a sync interval.
//!
//! The cells are asked once per question, not once per pass: when every live cell answered and
//! nothing was held back, the pass remembers what it was about to act on ([`Asked`]). A later
//! pass acting on nothing new, with the same live cells, does not ask again. So an instance that
//! no cell can place, re-auctioned every `stale_unclaimed`, costs one round of calls when it
//! first becomes stale, not one per pass (at 1,000 cells that was 1,000 calls every 30 s).

use std::collections::{BTreeMap, BTreeSet};

use proto::models::{CellId, DesiredLrp, DomainName, InstanceGuid, ProcessGuid};

use super::plan::{LrpAction, LrpPlan, RetireReason};

/// The mark a recovered desired LRP's annotation starts with.
pub const RECOVERED_PREFIX: &str = "[recovered] ";

/// Largest annotation a desired LRP may carry (proto's validation: 10 KiB).
const MAX_ANNOTATION_BYTES: usize = 10 * 1024;

/// Whether a desired LRP's annotation says it was rebuilt from the cells.
pub fn is_recovered(annotation: &str) -> bool {
    annotation.starts_with(RECOVERED_PREFIX)
}

/// The annotation of a desired LRP rebuilt from one that had `original`: [`RECOVERED_PREFIX`]
/// followed by the original (cut on a character boundary to stay within the limit), unchanged if
/// it is already marked.
pub fn recovered_annotation(original: &str) -> String {
    if is_recovered(original) {
        return original.to_owned();
    }
    let mut end = original.len().min(MAX_ANNOTATION_BYTES - RECOVERED_PREFIX.len());
    while !original.is_char_boundary(end) {
        end -= 1;
    }
    format!("{RECOVERED_PREFIX}{}", &original[..end])
}

/// One instance a cell reports running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedInstance {
    /// The desired LRP.
    pub process_guid: ProcessGuid,
    /// The index.
    pub index: i32,
    /// The container.
    pub instance_guid: InstanceGuid,
}

/// What one cell's rep reports: its running LRP instances and, for the process guids it was
/// asked about, the desired LRPs it keeps for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellReport {
    /// The running instances.
    pub instances: Vec<ReportedInstance>,
    /// The desired LRPs asked for that the rep holds (each as the rep received it to run it).
    pub desired: Vec<DesiredLrp>,
}

/// What the live cells reported for one pass: the plan's view of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellReports {
    /// Running instances by (process guid, index), with the cell reporting each.
    pub running: BTreeMap<(ProcessGuid, i32), CellId>,
    /// Live cells that did not answer.
    pub unanswered: BTreeSet<CellId>,
    /// Process guids with no desired LRP whose run info a cell reported, with its domain.
    pub recoverable: BTreeMap<ProcessGuid, DomainName>,
    /// When the hold began (the first of the consecutive passes that held something back);
    /// `None` when the previous pass held nothing.
    pub held_since: Option<i64>,
}

impl CellReports {
    /// Whether the hold is still within its grace period at `now_ns`.
    pub fn holding(&self, now_ns: i64, grace_ns: i64) -> bool {
        self.held_since.is_none_or(|since| now_ns < since.saturating_add(grace_ns))
    }

    /// Whether a cell reports instance `index` of `guid` running.
    pub fn runs(&self, guid: &ProcessGuid, index: i32) -> bool {
        self.running.contains_key(&(guid.clone(), index))
    }
}

/// What a pass held back while the cells' word was awaited, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hold {
    /// Live cells that did not answer (every creation waits for them).
    pub unanswered: usize,
    /// Missing or stale unclaimed indices a cell reports running: left for its rep to re-adopt.
    pub adopting: usize,
    /// Placed instances with no desired LRP, not retired.
    pub orphans: usize,
    /// Missing indices not created because a cell did not answer.
    pub creations: usize,
}

/// The row counts a pass saw, remembered for the next pass's [`should_ask`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeenCounts {
    /// Desired LRPs.
    pub desired: usize,
    /// Actual LRP rows.
    pub actual: usize,
}

/// Why a pass asks the cells what they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskReason {
    /// First pass of a leadership term, or first after a failed pass.
    Restarted,
    /// The desired or actual rows shrank sharply (to none, or by more than
    /// `max_cell_loss_fraction`).
    Shrunk,
    /// The unreported plan would create, restart or retire something the cells may contradict.
    Acting,
}

/// Whether a pass asks the live cells what they run before acting: see the module docs.
/// `previous` is the last successful pass's counts (`None` on the first pass of a term or after
/// a failed pass), `unreported` the plan made without reports.
pub fn should_ask(
    previous: Option<SeenCounts>,
    now: SeenCounts,
    unreported: &LrpPlan,
    asked: Option<&Asked>,
    live: &BTreeSet<CellId>,
    max_loss_fraction: f64,
) -> Option<AskReason> {
    let Some(previous) = previous else { return Some(AskReason::Restarted) };
    let sharp = |before: usize, after: usize| {
        // Counts are far below 2^52, so the float comparison is exact enough.
        before > 0 && (after == 0 || (before - after.min(before)) as f64 > max_loss_fraction * before as f64)
    };
    if sharp(previous.desired, now.desired) || sharp(previous.actual, now.actual) {
        return Some(AskReason::Shrunk);
    }
    let acting = Asked::of(unreported, live);
    let answered = asked.is_some_and(|asked| asked.covers(&acting));
    (!acting.is_empty() && !answered).then_some(AskReason::Acting)
}

/// What a pass was about to act on when every live cell answered and contradicted none of it:
/// the question the cells already answered (see the module docs). [`should_ask`] does not ask
/// again while a pass acts on a part of it, with the same live cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Asked {
    /// The live cells that answered.
    cells: BTreeSet<CellId>,
    /// Each creation, re-auction and orphan retirement, as (kind, process guid, index).
    indices: BTreeSet<(u8, ProcessGuid, i32)>,
    /// Placed instances with no desired LRP.
    orphans: usize,
}

impl Asked {
    /// What `plan` (made without reports) acts on, with `live` cells.
    pub fn of(plan: &LrpPlan, live: &BTreeSet<CellId>) -> Self {
        let mut indices = BTreeSet::new();
        for action in plan.actions.iter().chain(&plan.withheld) {
            match action {
                LrpAction::CreateMissing { process_guid, indices: missing, .. } => {
                    indices.extend(missing.iter().map(|i| (0, process_guid.clone(), *i)));
                }
                LrpAction::AuctionStaleUnclaimed { process_guid, index } => {
                    indices.insert((1, process_guid.clone(), *index));
                }
                LrpAction::Retire { row, reason: RetireReason::Orphan | RetireReason::SuspectOrphaned, .. } => {
                    indices.insert((2, row.process_guid.clone(), row.index));
                }
                _ => {}
            }
        }
        Self { cells: live.clone(), indices, orphans: plan.counts.orphaned }
    }

    /// Whether the plan acts on nothing the cells could contradict.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty() && self.orphans == 0
    }

    /// Whether the cells' answer to `self` also answers `other`: the same live cells, and
    /// nothing in `other` that `self` did not hold.
    pub fn covers(&self, other: &Asked) -> bool {
        self.cells == other.cells && other.indices.is_subset(&self.indices) && other.orphans <= self.orphans
    }
}

/// Turns the cells' answers into the plan's [`CellReports`]: `answers` has one entry per live
/// cell asked, `None` for a cell that did not answer. `known` are the process guids with a
/// desired LRP; only the others are recoverable.
pub fn collect(
    answers: Vec<(CellId, Option<CellReport>)>,
    known: &BTreeSet<&ProcessGuid>,
    held_since: Option<i64>,
) -> (CellReports, BTreeMap<ProcessGuid, DesiredLrp>) {
    let mut reports = CellReports { held_since, ..CellReports::default() };
    let mut desired = BTreeMap::new();
    for (cell, answer) in answers {
        let Some(answer) = answer else {
            reports.unanswered.insert(cell);
            continue;
        };
        for instance in answer.instances {
            reports.running.entry((instance.process_guid, instance.index)).or_insert_with(|| cell.clone());
        }
        for lrp in answer.desired {
            let guid = &lrp.scheduling.process_guid;
            if !known.contains(guid) && !desired.contains_key(guid) {
                reports.recoverable.insert(guid.clone(), lrp.scheduling.domain.clone());
                desired.insert(guid.clone(), lrp);
            }
        }
    }
    (reports, desired)
}

/// The process guids of `reports`' running instances that have no desired LRP, per cell that
/// reported them: what the second round asks each cell's run info for.
pub fn unknown_guids(reports: &CellReports, known: &BTreeSet<&ProcessGuid>) -> BTreeMap<CellId, Vec<ProcessGuid>> {
    let mut out: BTreeMap<CellId, BTreeSet<ProcessGuid>> = BTreeMap::new();
    for ((guid, _), cell) in &reports.running {
        if !known.contains(guid) {
            out.entry(cell.clone()).or_default().insert(guid.clone());
        }
    }
    out.into_iter().map(|(cell, guids)| (cell, guids.into_iter().collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lrp::plan::{LrpCounts, RowRef};
    use proto::models::{ModificationTag, Presence};

    fn guid(s: &str) -> ProcessGuid {
        ProcessGuid::parse(s).unwrap()
    }

    #[test]
    fn the_recovered_mark_is_a_prefix_added_once_within_the_limit() {
        assert_eq!(recovered_annotation("web v2"), "[recovered] web v2");
        assert!(is_recovered(&recovered_annotation("")));
        assert_eq!(recovered_annotation("[recovered] x"), "[recovered] x");
        let long = "é".repeat(6000);
        let marked = recovered_annotation(&long);
        assert!(marked.len() <= MAX_ANNOTATION_BYTES && is_recovered(&marked));
    }

    #[test]
    fn cells_are_asked_on_restart_on_a_sharp_shrink_and_before_acting() {
        let quiet = LrpPlan { actions: vec![LrpAction::PruneExpiredDomains], ..LrpPlan::default() };
        let seen = |desired, actual| SeenCounts { desired, actual };
        let live: BTreeSet<CellId> = [CellId::parse("cell-1").unwrap()].into();
        assert_eq!(should_ask(None, seen(3, 10), &quiet, None, &live, 0.5), Some(AskReason::Restarted));
        assert_eq!(should_ask(Some(seen(3, 10)), seen(3, 0), &quiet, None, &live, 0.5), Some(AskReason::Shrunk));
        assert_eq!(should_ask(Some(seen(3, 10)), seen(0, 10), &quiet, None, &live, 0.5), Some(AskReason::Shrunk));
        assert_eq!(should_ask(Some(seen(3, 10)), seen(3, 4), &quiet, None, &live, 0.5), Some(AskReason::Shrunk));
        assert_eq!(should_ask(Some(seen(3, 10)), seen(3, 5), &quiet, None, &live, 0.5), None, "half is not sharp");
        assert_eq!(should_ask(Some(seen(0, 0)), seen(0, 0), &quiet, None, &live, 0.5), None);
        let creating = LrpPlan {
            actions: vec![LrpAction::CreateMissing {
                process_guid: guid("web"),
                domain: DomainName::parse("d").unwrap(),
                indices: vec![1],
            }],
            ..LrpPlan::default()
        };
        assert_eq!(should_ask(Some(seen(3, 10)), seen(3, 10), &creating, None, &live, 0.5), Some(AskReason::Acting));
        let orphan = LrpPlan {
            withheld: vec![LrpAction::Retire {
                row: RowRef {
                    process_guid: guid("gone"),
                    index: 0,
                    presence: Presence::Ordinary,
                    modification_tag: ModificationTag::new("e"),
                },
                reason: RetireReason::Orphan,
                delete: true,
                stop: None,
            }],
            ..LrpPlan::default()
        };
        assert_eq!(should_ask(Some(seen(3, 10)), seen(3, 10), &orphan, None, &live, 0.5), Some(AskReason::Acting));
        // Running instances with no desired LRP in a stale domain: nothing to retire, still asked.
        let stale_orphans = LrpPlan { counts: LrpCounts { orphaned: 2, ..LrpCounts::default() }, ..quiet.clone() };
        assert_eq!(
            should_ask(Some(seen(3, 10)), seen(3, 10), &stale_orphans, None, &live, 0.5),
            Some(AskReason::Acting)
        );
    }

    #[test]
    fn a_question_the_cells_answered_is_not_asked_again() {
        let cell = |s: &str| CellId::parse(s).unwrap();
        let live: BTreeSet<CellId> = [cell("cell-1"), cell("cell-2")].into();
        let seen = SeenCounts { desired: 3, actual: 10 };
        let stale = |index| LrpAction::AuctionStaleUnclaimed { process_guid: guid("web"), index };
        let one = LrpPlan { actions: vec![stale(0)], ..LrpPlan::default() };
        let two = LrpPlan { actions: vec![stale(0), stale(1)], ..LrpPlan::default() };
        let answered = Asked::of(&two, &live);
        let ask =
            |plan: &LrpPlan, live: &BTreeSet<CellId>| should_ask(Some(seen), seen, plan, Some(&answered), live, 0.5);
        assert_eq!(ask(&two, &live), None, "the same re-auctions");
        assert_eq!(ask(&one, &live), None, "a part of them");
        let three = LrpPlan { actions: vec![stale(0), stale(2)], ..LrpPlan::default() };
        assert_eq!(ask(&three, &live), Some(AskReason::Acting), "a new one");
        let creating = LrpPlan {
            actions: vec![LrpAction::CreateMissing {
                process_guid: guid("web"),
                domain: DomainName::parse("d").unwrap(),
                indices: vec![0],
            }],
            ..LrpPlan::default()
        };
        assert_eq!(ask(&creating, &live), Some(AskReason::Acting), "the same index, now missing");
        let joined: BTreeSet<CellId> = [cell("cell-1"), cell("cell-2"), cell("cell-3")].into();
        assert_eq!(ask(&two, &joined), Some(AskReason::Acting), "a cell joined");
        let orphans = LrpPlan { counts: LrpCounts { orphaned: 1, ..LrpCounts::default() }, ..two.clone() };
        assert_eq!(ask(&orphans, &live), Some(AskReason::Acting), "more orphans than answered for");
        assert_eq!(should_ask(None, seen, &two, Some(&answered), &live, 0.5), Some(AskReason::Restarted));
        assert!(Asked::of(&LrpPlan::default(), &live).is_empty());
    }

    #[test]
    fn answers_become_reports_and_only_unknown_guids_are_recoverable() {
        let cell = |s: &str| CellId::parse(s).unwrap();
        let instance = |g: &str, index| ReportedInstance {
            process_guid: guid(g),
            index,
            instance_guid: InstanceGuid::parse(format!("ig-{g}-{index}")).unwrap(),
        };
        let web = guid("web");
        let known: BTreeSet<&ProcessGuid> = [&web].into();
        let answers = vec![
            (cell("a"), Some(CellReport { instances: vec![instance("web", 0), instance("lost", 2)], desired: vec![] })),
            (cell("b"), None),
        ];
        let (reports, desired) = collect(answers, &known, Some(7));
        assert!(reports.runs(&guid("web"), 0) && reports.runs(&guid("lost"), 2));
        assert!(!reports.runs(&guid("web"), 1));
        assert_eq!(reports.unanswered, [cell("b")].into());
        assert_eq!(reports.held_since, Some(7));
        assert!(desired.is_empty());
        assert_eq!(unknown_guids(&reports, &known), [(cell("a"), vec![guid("lost")])].into());
        assert!(reports.holding(10, 5) && !reports.holding(12, 5));
        assert!(CellReports::default().holding(i64::MAX, 5), "a hold that starts now is within its grace");
    }
}
