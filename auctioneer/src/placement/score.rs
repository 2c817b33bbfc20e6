//! The fit check and score of reference §1.7, on a compact per-cell record the auction mutates
//! as it reserves (§1.8).
//!
//! Lower is better. For an item needing memory `m` and disk `d` on a cell with totals `T` and
//! (in-auction) availability `A`:
//!
//! ```text
//! used_x   = 1 − (A_x − r_x) / T_x        for memory, disk and containers (r = 1 slot)
//! resource = (used_mem + used_disk + used_containers) / 3 + starting_weight × starting(cell)
//! LRP      = resource + 1000 × (instances of the same process guid on the cell)
//!                     + bin_pack_weight × (cell's position in its zone)
//! task     = resource + 1000 × (tasks on the cell)
//! ```
//!
//! Everything that does not depend on the item is folded into `Slot::base` and refreshed only
//! when the cell receives work, so the per-cell cost of scoring one item is a handful of loads,
//! compares and multiply-adds, with no allocation.

use super::model::{CellState, PlacementConfig, Rejections};

/// The near-hard anti-affinity offset per instance of the same app (per task, for tasks).
pub(crate) const LOCALITY_PENALTY: f64 = 1000.0;

/// Largest weight honoured; larger ones are clamped so no score can become infinite or NaN.
const MAX_WEIGHT: f64 = 1_000_000.0;

/// A weight made safe: NaN, infinite and negative values become 0.
pub(crate) fn sanitize_weight(w: f64) -> f64 {
    if w.is_finite() && w > 0.0 { w.min(MAX_WEIGHT) } else { 0.0 }
}

/// The hot, scoring-ready state of one cell during an auction: exactly one cache line, so
/// scoring a cell touches one line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub memory: i64,
    pub disk: i64,
    /// Starts the cell can still take: free container slots, capped by the per-cell limit.
    pub free: i64,
    /// The item-independent part of the resource score.
    pub base: f64,
    /// `1 / (3 × total memory)`, or 0 for a cell reporting no memory total.
    pub memory_weight: f64,
    /// `1 / (3 × total disk)`, or 0.
    pub disk_weight: f64,
    /// LRP-only extra: the bin-pack term, plus the same-app penalty while an item is scored.
    pub lrp_extra: f64,
    /// Task-only extra: 1000 × tasks on the cell.
    pub task_extra: f64,
}

/// The rest of a cell's state, read only when it receives work or is reported in an error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cold {
    containers: i64,
    /// Starts the per-cell cap still allows (`i64::MAX` when uncapped).
    start_room: i64,
    starting: i64,
    total_memory: i64,
    total_disk: i64,
    total_containers: i64,
    starting_weight: f64,
}

fn fraction(available: i64, total: i64) -> f64 {
    if total > 0 {
        available as f64 / total as f64
    } else {
        // A cell without a total is scored as full: it only wins when nothing else fits.
        0.0
    }
}

fn weight(total: i64) -> f64 {
    if total > 0 { 1.0 / (3.0 * total as f64) } else { 0.0 }
}

impl Slot {
    /// The slot for a cell; `bin_pack_term` is the weight times the cell's position in its zone.
    pub fn new(cell: &CellState, config: &PlacementConfig, bin_pack_term: f64) -> (Self, Cold) {
        let starting = cell.starting_containers.max(0);
        let start_room = match i64::try_from(config.max_starting_per_cell) {
            Ok(0) | Err(_) => i64::MAX,
            Ok(cap) => cap.saturating_sub(starting),
        };
        let cold = Cold {
            containers: cell.available.containers,
            start_room,
            starting,
            total_memory: cell.total.memory_mb,
            total_disk: cell.total.disk_mb,
            total_containers: cell.total.containers,
            starting_weight: sanitize_weight(config.starting_container_weight),
        };
        let mut slot = Slot {
            memory: cell.available.memory_mb,
            disk: cell.available.disk_mb,
            free: 0,
            base: 0.0,
            memory_weight: weight(cell.total.memory_mb),
            disk_weight: weight(cell.total.disk_mb),
            lrp_extra: bin_pack_term,
            task_extra: LOCALITY_PENALTY * cell.existing_tasks.max(0) as f64,
        };
        slot.refresh(&cold);
        (slot, cold)
    }

    fn refresh(&mut self, cold: &Cold) {
        self.free = cold.containers.min(cold.start_room);
        let used = 3.0
            - fraction(self.memory, cold.total_memory)
            - fraction(self.disk, cold.total_disk)
            - fraction(cold.containers.saturating_sub(1), cold.total_containers);
        self.base = used / 3.0 + cold.starting_weight * cold.starting as f64;
    }

    /// True when the item fits on the cell now.
    #[inline(always)]
    pub fn fits(&self, memory: i64, disk: i64) -> bool {
        self.memory >= memory && self.disk >= disk && self.free >= 1
    }

    /// The resource part of the score; `extra` is `lrp_extra` or `task_extra`.
    #[inline(always)]
    pub fn score(&self, memory: i64, disk: i64, extra: f64) -> f64 {
        self.base + memory as f64 * self.memory_weight + disk as f64 * self.disk_weight + extra
    }

    /// Takes the item's resources and one starting slot. The caller checked `fits`.
    pub fn reserve(&mut self, cold: &mut Cold, memory: i64, disk: i64) {
        self.memory = self.memory.saturating_sub(memory);
        self.disk = self.disk.saturating_sub(disk);
        cold.containers = cold.containers.saturating_sub(1);
        cold.start_room = cold.start_room.saturating_sub(1);
        cold.starting = cold.starting.saturating_add(1);
        self.refresh(cold);
    }

    /// Counts each way the item does not fit into `r`.
    pub fn count_shortfalls(&self, cold: &Cold, memory: i64, disk: i64, r: &mut Rejections) {
        r.memory += usize::from(self.memory < memory);
        r.disk += usize::from(self.disk < disk);
        r.containers += usize::from(cold.containers < 1);
        r.starting_limit += usize::from(cold.start_room < 1);
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed hash used to break exact score ties.
#[inline(always)]
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The running winner of one item's search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Best {
    pub cell: Option<u32>,
    score: f64,
    /// Per-item random draw; exact ties go to the cell with the smaller `mix(tie ^ cell)`,
    /// which is a uniformly random pick among the tied cells.
    tie: u64,
}

impl Best {
    pub fn new(tie: u64) -> Self {
        Best { cell: None, score: f64::INFINITY, tie }
    }
}

/// Scores every cell in `cells` for an item of `memory`/`disk` and keeps the lowest score.
/// `LRP` selects the `lrp_extra` or `task_extra` term. Cells that do not fit are counted into
/// `short` (only read when no cell fits at all).
#[inline]
pub(crate) fn scan<const LRP: bool>(
    slots: &[Slot],
    cold: &[Cold],
    cells: &[u32],
    memory: i64,
    disk: i64,
    best: &mut Best,
    short: &mut Rejections,
) {
    for &cell in cells {
        let Some(slot) = slots.get(cell as usize) else {
            continue;
        };
        if !slot.fits(memory, disk) {
            if let Some(cold) = cold.get(cell as usize) {
                slot.count_shortfalls(cold, memory, disk, short);
            }
            continue;
        }
        let extra = if LRP { slot.lrp_extra } else { slot.task_extra };
        let score = slot.score(memory, disk, extra);
        match best.cell {
            None => {
                best.cell = Some(cell);
                best.score = score;
            }
            Some(current) => {
                if score < best.score
                    || (score == best.score && mix(best.tie ^ u64::from(cell)) < mix(best.tie ^ u64::from(current)))
                {
                    best.cell = Some(cell);
                    best.score = score;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::model::Resources;

    fn cell(total: Resources, available: Resources, starting: i64) -> CellState {
        CellState { total, available, starting_containers: starting, ..CellState::default() }
    }

    #[test]
    fn worked_example_of_reference_1_13() {
        // Cell C: 4 GB, 10 GB, 100 slots, empty, 2 containers starting; item 512 MB, 1 GB.
        let total = Resources::new(4096, 10240, 100);
        // The two starting containers hold two slots, so the slot term is 3/100.
        let available = Resources::new(4096, 10240, 98);
        let (c, _) = Slot::new(&cell(total, available, 2), &PlacementConfig::default(), 0.0);
        let score = c.score(512, 1024, c.lrp_extra);
        assert!((score - 0.585).abs() < 0.001, "{score}");
        // Cell B: idle, (0.125 + 0.1 + 0.01) / 3.
        let (b, _) = Slot::new(&cell(total, total, 0), &PlacementConfig::default(), 0.0);
        let score = b.score(512, 1024, 0.0);
        assert!((score - 0.0783).abs() < 0.001, "{score}");
    }

    #[test]
    fn score_grows_with_resource_use() {
        let total = Resources::new(1000, 1000, 10);
        let (empty, _) = Slot::new(&cell(total, total, 0), &PlacementConfig::default(), 0.0);
        let (half, _) = Slot::new(&cell(total, Resources::new(500, 500, 5), 0), &PlacementConfig::default(), 0.0);
        assert!(empty.score(100, 100, 0.0) < half.score(100, 100, 0.0));
        // Full use of every resource scores 1.
        let (last, _) = Slot::new(&cell(total, Resources::new(100, 100, 1), 0), &PlacementConfig::default(), 0.0);
        assert!((last.score(100, 100, 0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn starting_containers_add_the_configured_weight() {
        let total = Resources::new(1000, 1000, 10);
        let config = PlacementConfig { starting_container_weight: 0.5, ..PlacementConfig::default() };
        let (idle, _) = Slot::new(&cell(total, total, 0), &config, 0.0);
        let (busy, _) = Slot::new(&cell(total, total, 3), &config, 0.0);
        let delta = busy.score(10, 10, 0.0) - idle.score(10, 10, 0.0);
        assert!((delta - 1.5).abs() < 1e-12);
    }

    #[test]
    fn reservation_reduces_room_and_raises_the_score() {
        let total = Resources::new(1000, 1000, 2);
        let (mut slot, mut slot_cold) = Slot::new(&cell(total, total, 0), &PlacementConfig::default(), 0.0);
        let before = slot.score(400, 400, 0.0);
        slot.reserve(&mut slot_cold, 400, 400);
        assert_eq!((slot.memory, slot.disk, slot.free), (600, 600, 1));
        assert!(slot.score(400, 400, 0.0) > before + 0.25);
        slot.reserve(&mut slot_cold, 400, 400);
        assert!(!slot.fits(0, 0), "no container slot left");
    }

    #[test]
    fn fit_checks_memory_disk_slots_and_per_cell_start_cap() {
        let total = Resources::new(100, 100, 5);
        let config = PlacementConfig { max_starting_per_cell: 2, ..PlacementConfig::default() };
        let (slot, slot_cold) = Slot::new(&cell(total, total, 1), &config, 0.0);
        assert!(slot.fits(100, 100));
        assert!(!slot.fits(101, 100));
        assert!(!slot.fits(100, 101));
        let mut r = Rejections::default();
        slot.count_shortfalls(&slot_cold, 101, 101, &mut r);
        assert_eq!((r.memory, r.disk, r.containers, r.starting_limit), (1, 1, 0, 0));
        let (capped, _) = Slot::new(&cell(total, total, 2), &config, 0.0);
        assert!(!capped.fits(1, 1));
        let (no_slots, _) = Slot::new(&cell(total, Resources::new(100, 100, 0), 0), &config, 0.0);
        assert!(!no_slots.fits(1, 1));
    }

    #[test]
    fn weights_are_sanitized() {
        assert_eq!(sanitize_weight(f64::NAN), 0.0);
        assert_eq!(sanitize_weight(f64::INFINITY), 0.0);
        assert_eq!(sanitize_weight(-1.0), 0.0);
        assert_eq!(sanitize_weight(0.25), 0.25);
        assert_eq!(sanitize_weight(1e300), MAX_WEIGHT);
    }

    #[test]
    fn cells_without_totals_score_as_full_and_stay_finite() {
        let (slot, _) =
            Slot::new(&cell(Resources::default(), Resources::new(10, 10, 1), 0), &PlacementConfig::default(), 0.0);
        let s = slot.score(5, 5, 0.0);
        assert!(s.is_finite());
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn scan_picks_lowest_score_and_counts_shortfalls() {
        let total = Resources::new(1000, 1000, 10);
        let config = PlacementConfig::default();
        let (slots, cold): (Vec<Slot>, Vec<Cold>) = [500, 900, 50]
            .into_iter()
            .map(|m| Slot::new(&cell(total, Resources::new(m, 1000, 10), 0), &config, 0.0))
            .unzip();
        let mut best = Best::new(7);
        let mut short = Rejections::default();
        scan::<false>(&slots, &cold, &[0, 1, 2], 100, 10, &mut best, &mut short);
        assert_eq!(best.cell, Some(1));
        assert_eq!(short.memory, 1);
    }

    #[test]
    fn exact_ties_are_broken_by_the_draw() {
        let total = Resources::new(1000, 1000, 10);
        let config = PlacementConfig::default();
        let (slots, cold): (Vec<Slot>, Vec<Cold>) =
            vec![Slot::new(&cell(total, total, 0), &config, 0.0); 8].into_iter().unzip();
        let cells: Vec<u32> = (0..8).collect();
        let mut winners = std::collections::BTreeSet::new();
        for tie in 0..64 {
            let mut best = Best::new(mix(tie));
            scan::<true>(&slots, &cold, &cells, 1, 1, &mut best, &mut Rejections::default());
            winners.insert(best.cell);
        }
        assert!(winners.len() >= 6, "ties should spread: {winners:?}");
    }
}
