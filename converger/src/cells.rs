//! The cell set a pass converges against, and the guard that keeps a suspicious cell set from
//! destroying work (issue item 4, docs/architecture.md "Fast lost-cell recovery").
//!
//! - [`CellSet`]: the live cells (unexpired presences), the cells known to have expired, and the
//!   previous pass's count; read by [`read_cells`].
//! - [`guard`]: pure; says whether (and why) destructive actions must be withheld.
//! - [`CellBaseline`]: the count a pass compares against, advanced after every pass.
//! - [`LostCells`]: the cells the BBS saw expire (it deletes expired presences itself and
//!   reports each one), shared by both halves of convergence.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use db::Store;
use db::sql::leases::LeaseType;
use proto::models::CellId;
use tokio::time::Instant;

use crate::ConvergenceConfig;

/// The cells as one pass sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellSet {
    /// Cells with an unexpired presence.
    pub live: BTreeSet<CellId>,
    /// Cells whose presence is known to have expired (reported by the BBS), not live now.
    pub lost: BTreeSet<CellId>,
    /// How many cells the baseline pass saw; `None` on the first pass of a leadership term.
    pub previous_count: Option<usize>,
    /// Why the presences could not be read; `live` is then empty and meaningless.
    pub read_error: Option<String>,
}

impl CellSet {
    /// A readable cell set with these live cells and no history (for tests and tools).
    pub fn of(live: impl IntoIterator<Item = CellId>) -> Self {
        Self { live: live.into_iter().collect(), ..Self::default() }
    }

    /// Whether `cell` has a live presence.
    pub fn is_live(&self, cell: &CellId) -> bool {
        self.live.contains(cell)
    }
}

/// Why a pass did nothing destructive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardReason {
    /// The presences could not be read.
    Unreadable {
        /// The store error.
        error: String,
    },
    /// No cell is live: Diego would treat every instance as lost.
    NoCells,
    /// The live set shrank by more than the configured fraction, and the missing cells are not
    /// known to have expired.
    Shrunk {
        /// Cells in the baseline.
        previous: usize,
        /// Cells live now.
        present: usize,
        /// Cells gone that were not reported lost.
        unexplained: usize,
    },
}

impl GuardReason {
    /// A short label for metrics and log fields.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "cells_unreadable",
            Self::NoCells => "no_cells",
            Self::Shrunk { .. } => "cells_shrunk",
        }
    }
}

impl fmt::Display for GuardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { error } => write!(f, "the cell presences could not be read: {error}"),
            Self::NoCells => f.write_str("no cell has a live presence"),
            Self::Shrunk { previous, present, unexplained } => write!(
                f,
                "the live cells shrank from {previous} to {present} and {unexplained} of the missing cells are not known to have expired"
            ),
        }
    }
}

/// Whether destructive actions must be withheld this pass, and why (issue item 4).
///
/// Guarded when the presences could not be read, when no cell is live, or when more than
/// `max_cell_loss_fraction` of the baseline's cells are gone without being in `lost`.
pub fn guard(cells: &CellSet, config: &ConvergenceConfig) -> Option<GuardReason> {
    if let Some(error) = &cells.read_error {
        return Some(GuardReason::Unreadable { error: error.clone() });
    }
    if cells.live.is_empty() {
        return Some(GuardReason::NoCells);
    }
    let previous = cells.previous_count?;
    let present = cells.live.len();
    let explained = cells.lost.iter().filter(|c| !cells.live.contains(*c)).count();
    let unexplained = previous.saturating_sub(present).saturating_sub(explained);
    // Counts are far below 2^52, so the float comparison is exact enough.
    let allowed = config.max_cell_loss_fraction * previous as f64;
    (unexplained as f64 > allowed).then_some(GuardReason::Shrunk { previous, present, unexplained })
}

/// The cell count later passes are compared against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellBaseline {
    /// The count of the last trusted pass.
    pub count: Option<usize>,
    /// Consecutive passes held by an unexplained shrink.
    pub shrunk_passes: u32,
}

impl CellBaseline {
    /// Moves the baseline on after a pass that saw `cells` and was guarded for `guard`:
    ///
    /// - an unguarded pass makes its count the baseline;
    /// - an unreadable or empty cell set leaves the baseline alone (an empty set must never
    ///   become the normal);
    /// - a shrink keeps the old baseline, so the next pass is held too, until the missing cells
    ///   are explained or come back, or `shrink_guard_passes` passes in a row were held; the
    ///   smaller set is then accepted (and `true` returned, for the log).
    pub fn advance(&mut self, cells: &CellSet, guard: Option<&GuardReason>, config: &ConvergenceConfig) -> bool {
        match guard {
            None => {
                self.count = Some(cells.live.len());
                self.shrunk_passes = 0;
                false
            }
            Some(GuardReason::Unreadable { .. } | GuardReason::NoCells) => false,
            Some(GuardReason::Shrunk { .. }) => {
                self.shrunk_passes = self.shrunk_passes.saturating_add(1);
                if self.shrunk_passes >= config.shrink_guard_passes {
                    self.count = Some(cells.live.len());
                    self.shrunk_passes = 0;
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// The cells the BBS saw expire, with when it reported them. Cheap to clone; all clones share
/// one set.
#[derive(Debug, Clone, Default)]
pub struct LostCells(Arc<Mutex<BTreeMap<CellId, Instant>>>);

impl LostCells {
    /// Records that `cell`'s presence expired.
    pub fn report(&self, cell: CellId) {
        self.lock().insert(cell, Instant::now());
    }

    /// The cells reported within `memory` that are not in `live`; forgets the others.
    pub fn current(&self, live: &BTreeSet<CellId>, memory: std::time::Duration) -> BTreeSet<CellId> {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|cell, at| !live.contains(cell) && now.saturating_duration_since(*at) <= memory);
        map.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CellId, Instant>> {
        // The map stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads the live cells (unexpired presence leases, judged by database time) and completes the
/// set with the lost cells and the baseline. A failed read gives a set with `read_error`.
pub async fn read_cells(
    store: &Store,
    lost: &LostCells,
    baseline: &CellBaseline,
    config: &ConvergenceConfig,
) -> CellSet {
    match store.fetch_leases(LeaseType::Presence).await {
        Ok(leases) => {
            let mut live = BTreeSet::new();
            for lease in leases {
                match CellId::parse(lease.key.as_str()) {
                    Ok(cell) => {
                        live.insert(cell);
                    }
                    Err(e) => {
                        tracing::warn!(lease_key = %lease.key, error = %e, "ignoring a presence with an invalid cell id")
                    }
                }
            }
            let lost = lost.current(&live, config.lost_cell_memory);
            CellSet { live, lost, previous_count: baseline.count, read_error: None }
        }
        Err(e) => CellSet { previous_count: baseline.count, read_error: Some(e.to_string()), ..CellSet::default() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(range: std::ops::Range<usize>) -> BTreeSet<CellId> {
        range.map(|i| CellId::parse(format!("cell-{i}")).unwrap()).collect()
    }

    fn set(live: std::ops::Range<usize>, lost: std::ops::Range<usize>, previous: Option<usize>) -> CellSet {
        CellSet { live: cells(live), lost: cells(lost), previous_count: previous, read_error: None }
    }

    #[test]
    fn an_unreadable_cell_set_is_guarded() {
        let c = CellSet { read_error: Some("database unavailable".into()), ..CellSet::default() };
        let reason = guard(&c, &ConvergenceConfig::default()).unwrap();
        assert_eq!(reason.label(), "cells_unreadable");
        assert_eq!(reason.to_string(), "the cell presences could not be read: database unavailable");
    }

    #[test]
    fn an_empty_cell_set_is_guarded_even_on_the_first_pass() {
        let config = ConvergenceConfig::default();
        assert_eq!(guard(&set(0..0, 0..0, None), &config), Some(GuardReason::NoCells));
        // Even when every cell is known to have expired: "all cells lost" is never trusted.
        assert_eq!(guard(&set(0..0, 0..10, Some(10)), &config), Some(GuardReason::NoCells));
    }

    #[test]
    fn a_shrink_up_to_the_fraction_passes_and_beyond_it_is_guarded() {
        let config = ConvergenceConfig::default();
        // 10 -> 5: exactly half gone is allowed.
        assert_eq!(guard(&set(0..5, 0..0, Some(10)), &config), None);
        // 10 -> 4: six gone, none known expired.
        assert_eq!(
            guard(&set(0..4, 0..0, Some(10)), &config),
            Some(GuardReason::Shrunk { previous: 10, present: 4, unexplained: 6 })
        );
        // The same shrink with two of the cells reported lost is only four unexplained.
        assert_eq!(guard(&set(0..4, 4..6, Some(10)), &config), None);
        // Lost cells that are live again explain nothing.
        assert!(guard(&set(0..4, 0..2, Some(10)), &config).is_some());
        // No baseline: only the empty check applies.
        assert_eq!(guard(&set(0..1, 0..0, None), &config), None);
        // Growth is never guarded.
        assert_eq!(guard(&set(0..20, 0..0, Some(10)), &config), None);
    }

    #[test]
    fn the_fraction_is_configurable() {
        let strict = ConvergenceConfig { max_cell_loss_fraction: 0.0, ..Default::default() };
        assert!(guard(&set(0..9, 0..0, Some(10)), &strict).is_some());
        assert_eq!(guard(&set(0..9, 9..10, Some(10)), &strict), None);
        let off = ConvergenceConfig { max_cell_loss_fraction: 1.0, ..Default::default() };
        assert_eq!(guard(&set(0..1, 0..0, Some(1000)), &off), None);
    }

    #[test]
    fn the_baseline_holds_through_a_shrink_then_accepts_it() {
        let config = ConvergenceConfig { shrink_guard_passes: 3, ..Default::default() };
        let mut baseline = CellBaseline::default();
        let full = set(0..10, 0..0, None);
        baseline.advance(&full, guard(&full, &config).as_ref(), &config);
        assert_eq!(baseline.count, Some(10));

        // Empty and unreadable sets never move it.
        let empty = set(0..0, 0..0, Some(10));
        baseline.advance(&empty, guard(&empty, &config).as_ref(), &config);
        assert_eq!(baseline.count, Some(10));

        let shrunk = set(0..3, 0..0, Some(10));
        let reason = guard(&shrunk, &config);
        assert!(reason.is_some());
        assert!(!baseline.advance(&shrunk, reason.as_ref(), &config));
        assert!(!baseline.advance(&shrunk, reason.as_ref(), &config));
        assert_eq!(baseline.count, Some(10));
        assert!(baseline.advance(&shrunk, reason.as_ref(), &config), "third held pass accepts");
        assert_eq!(baseline.count, Some(3));
        assert_eq!(baseline.shrunk_passes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_cells_are_forgotten_when_live_again_or_after_the_memory() {
        let lost = LostCells::default();
        lost.report(CellId::parse("a").unwrap());
        lost.report(CellId::parse("b").unwrap());
        let memory = std::time::Duration::from_secs(60);
        let live: BTreeSet<CellId> = [CellId::parse("a").unwrap()].into();
        assert_eq!(lost.current(&live, memory), [CellId::parse("b").unwrap()].into());
        // `a` was forgotten: it does not come back when it vanishes again.
        assert_eq!(lost.current(&BTreeSet::new(), memory).len(), 1);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert!(lost.current(&BTreeSet::new(), memory).is_empty());
    }
}
