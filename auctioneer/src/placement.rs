//! Pure, deterministic placement of LRP instances and tasks onto cells: Diego's auction
//! (`docs/reference/auction-rep.md` §1.5–1.9) as one function, [`solve`].
//!
//! `solve` does no IO, reads no clock and uses no global RNG: the caller passes the cell
//! states, the work and a seeded RNG, and the same [`Problem`] with the same seed always gives
//! the same [`Solution`]. The algorithm and its goals are written out in `placement/README.md`;
//! the model lives in [`model`].
//!
//! Layout: `model` (the abstract problem and the errors), `order` (§1.5), `filter` (§1.6 and
//! the per-constraint cache), `score` (§1.7 fit and score on a compact per-cell record), and
//! here the auction loop with zone balancing (§1.7), reservation (§1.8) and the in-flight cap
//! (§1.9).

pub mod model;

mod filter;
mod order;
mod score;

use std::collections::HashMap;

pub use model::{
    CellState, ExistingInstance, LrpWork, PlacementConfig, PlacementConstraint, PlacementError, Problem, Rejections,
    Resources, RootfsProvider, Solution, TaskWork, WorkResource,
};

use filter::Classes;
use order::{Item, memory};
use score::{Best, Cold, LOCALITY_PENALTY, Slot, sanitize_weight, scan};

/// Places every LRP instance and task of `problem`, or says why it could not.
///
/// Items are taken in the order of §1.5 (index-0 instances, then tasks, then higher indices;
/// larger memory first). For each item the cells that pass its filters are scored, the lowest
/// score wins, and the winner's resources are reserved before the next item. LRP instances of
/// one process guid go to the zones holding the fewest of them first. Exact score ties are
/// broken with one draw from `rng` per item.
///
/// Every item of the problem appears exactly once in the solution. Never panics.
pub fn solve(problem: &Problem, rng: &mut impl rand::Rng) -> Solution {
    let items = order::order(&problem.lrps, &problem.tasks);
    let mut solution = Solution {
        lrp_placements: Vec::with_capacity(problem.lrps.len()),
        task_placements: Vec::with_capacity(problem.tasks.len()),
        ..Solution::default()
    };
    let mut auction = Auction::new(problem, &items);
    for (position, &item) in items.iter().enumerate() {
        let tie = rng.next_u64();
        match item {
            Item::Lrp(i) => {
                let Some(lrp) = problem.lrps.get(i) else {
                    continue;
                };
                match auction.place_lrp(position, i, lrp, tie) {
                    Ok(cell) => solution.lrp_placements.push((lrp.clone(), auction.cell_id(cell))),
                    Err(e) => solution.failed_lrps.push((lrp.clone(), e)),
                }
            }
            Item::Task(i) => {
                let Some(task) = problem.tasks.get(i) else {
                    continue;
                };
                match auction.place_task(position, task, tie) {
                    Ok(cell) => solution.task_placements.push((task.clone(), auction.cell_id(cell))),
                    Err(e) => solution.failed_tasks.push((task.clone(), e)),
                }
            }
        }
    }
    solution
}

/// The in-auction state: the problem's cells as mutable slots plus the caches and scratch
/// buffers the per-item search reuses, so the search itself never allocates.
struct Auction<'p> {
    cells: &'p [CellState],
    slots: Vec<Slot>,
    cold: Vec<Cold>,
    /// Each cell's bin-pack term, which `Slot::lrp_extra` is reset to after an item.
    lrp_static: Vec<f64>,
    zone_of: Vec<u32>,
    /// Non-evacuating cells per zone, in input order.
    zone_cells: Vec<Vec<u32>>,
    classes: Classes,
    /// Constraint class of each item, by processing position.
    class_of: Vec<u32>,
    /// App (interned process guid) of each LRP, by input index.
    app_of: Vec<u32>,
    /// Per app, the cells holding its instances and how many, including this auction's.
    app_cells: Vec<Vec<(u32, u32)>>,
    /// Scratch: instances of the current app per zone.
    zone_count: Vec<u32>,
    /// Scratch: `(count, index into the class's zones)` for the zone walk.
    zone_order: Vec<(u32, u32)>,
    in_flight: u64,
    in_flight_limit: Option<u64>,
}

impl<'p> Auction<'p> {
    fn new(problem: &'p Problem, items: &[Item]) -> Self {
        let cells = problem.cells.as_slice();
        let config = &problem.config;

        // Zones in order of first appearance; cells keep input order within a zone.
        let mut zone_ids: HashMap<&str, u32> = HashMap::new();
        let mut zone_cells: Vec<Vec<u32>> = Vec::new();
        let mut zone_of = Vec::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            let next = zone_cells.len() as u32;
            let zone = *zone_ids.entry(cell.zone.as_str()).or_insert(next);
            if zone == next {
                zone_cells.push(Vec::new());
            }
            zone_of.push(zone);
            if !cell.evacuating
                && let Some(members) = zone_cells.get_mut(zone as usize)
            {
                members.push(i as u32);
            }
        }

        // The bin-pack term uses the cell's position among its zone's live cells (§1.4).
        let bin_pack = sanitize_weight(config.bin_pack_first_fit_weight);
        let mut lrp_static = vec![0.0; cells.len()];
        for members in &zone_cells {
            for (rank, &cell) in members.iter().enumerate() {
                if let Some(term) = lrp_static.get_mut(cell as usize) {
                    *term = bin_pack * rank as f64;
                }
            }
        }
        let (slots, cold) = cells.iter().zip(&lrp_static).map(|(cell, &term)| Slot::new(cell, config, term)).unzip();

        let (classes, class_of) = Classes::intern(items.iter().filter_map(|item| match *item {
            Item::Lrp(i) => problem.lrps.get(i).map(|l| &l.constraint),
            Item::Task(i) => problem.tasks.get(i).map(|t| &t.constraint),
        }));

        // Apps: only guids with work matter; existing instances of other apps are ignored.
        let mut app_ids: HashMap<&str, u32> = HashMap::new();
        let mut app_of = Vec::with_capacity(problem.lrps.len());
        for lrp in &problem.lrps {
            let next = app_ids.len() as u32;
            app_of.push(*app_ids.entry(lrp.process_guid.as_str()).or_insert(next));
        }
        let mut app_cells: Vec<Vec<(u32, u32)>> = vec![Vec::new(); app_ids.len()];
        for (i, cell) in cells.iter().enumerate() {
            if cell.evacuating {
                continue; // its instances are leaving; Diego never sees this cell
            }
            for instance in &cell.existing {
                let Some(&app) = app_ids.get(instance.process_guid.as_str()) else {
                    continue;
                };
                if let Some(list) = app_cells.get_mut(app as usize) {
                    add_instance(list, i as u32);
                }
            }
        }

        let in_flight = cells.iter().map(|c| c.starting_containers.max(0) as u64).fold(0u64, u64::saturating_add);
        let in_flight_limit = match config.max_in_flight_starts {
            0 => None,
            n => Some(n as u64),
        };
        let zones = zone_cells.len();
        Auction {
            cells,
            slots,
            cold,
            lrp_static,
            zone_of,
            zone_cells,
            classes,
            class_of,
            app_of,
            app_cells,
            zone_count: vec![0; zones],
            zone_order: Vec::with_capacity(zones),
            in_flight,
            in_flight_limit,
        }
    }

    fn cell_id(&self, cell: u32) -> String {
        self.cells.get(cell as usize).map(|c| c.cell_id.clone()).unwrap_or_default()
    }

    /// The checks every item goes through before scoring (§1.9, no cells).
    fn precheck(&self) -> Result<(), PlacementError> {
        if self.cells.is_empty() {
            return Err(PlacementError::NoCells);
        }
        match self.in_flight_limit {
            Some(limit) if self.in_flight >= limit => {
                Err(PlacementError::InFlightLimit { limit: usize::try_from(limit).unwrap_or(usize::MAX) })
            }
            _ => Ok(()),
        }
    }

    fn place_lrp(&mut self, position: usize, index: usize, lrp: &LrpWork, tie: u64) -> Result<u32, PlacementError> {
        self.precheck()?;
        let class_id = self.class_of.get(position).copied().unwrap_or(u32::MAX);
        let app = self.app_of.get(index).copied().unwrap_or(u32::MAX);
        let result = self.search_lrp(class_id, app, lrp, tie);
        self.classes.release_after(class_id, position);
        let cell = result?;
        if let Some(list) = self.app_cells.get_mut(app as usize) {
            add_instance(list, cell);
        }
        Ok(cell)
    }

    fn search_lrp(&mut self, class_id: u32, app: u32, lrp: &LrpWork, tie: u64) -> Result<u32, PlacementError> {
        let Auction {
            cells,
            slots,
            cold,
            lrp_static,
            zone_of,
            zone_cells,
            classes,
            app_cells,
            zone_count,
            zone_order,
            ..
        } = self;
        let Some(class) = classes.get(class_id, &lrp.constraint, cells, zone_cells) else {
            return Err(no_compatible(&Rejections::default(), &lrp.constraint));
        };
        if class.cells.is_empty() {
            return Err(no_compatible(&class.rejected, &lrp.constraint));
        }
        let mem = memory(lrp.resource.memory_mb);
        let disk = lrp.resource.disk_mb.max(0);
        let placed: &[(u32, u32)] = app_cells.get(app as usize).map_or(&[], Vec::as_slice);

        // Same-app penalty on the cells holding this app, and its count per zone.
        for &(cell, count) in placed {
            if let Some(slot) = slots.get_mut(cell as usize) {
                slot.lrp_extra =
                    lrp_static.get(cell as usize).copied().unwrap_or(0.0) + LOCALITY_PENALTY * f64::from(count);
            }
            if let Some(z) = zone_of.get(cell as usize).and_then(|&z| zone_count.get_mut(z as usize)) {
                *z = z.saturating_add(count);
            }
        }

        // Zone walk (§1.7): zones by ascending count of this app; a group of equal counts is
        // scored as one; stop at the first group with a winner.
        zone_order.clear();
        for (i, &(zone, _, _)) in class.zones.iter().enumerate() {
            let count = zone_count.get(zone as usize).copied().unwrap_or(0);
            zone_order.push((count, i as u32));
        }
        zone_order.sort_unstable();
        let mut best = Best::new(tie);
        let mut short = Rejections::default();
        let mut i = 0;
        while i < zone_order.len() {
            let count = zone_order[i].0;
            while i < zone_order.len() && zone_order[i].0 == count {
                if let Some(&(_, start, end)) = class.zones.get(zone_order[i].1 as usize)
                    && let Some(members) = class.cells.get(start as usize..end as usize)
                {
                    scan::<true>(slots, cold, members, mem, disk, &mut best, &mut short);
                }
                i += 1;
            }
            if best.cell.is_some() {
                break;
            }
        }

        // Undo the per-item scratch state.
        for &(cell, _) in placed {
            if let Some(slot) = slots.get_mut(cell as usize) {
                slot.lrp_extra = lrp_static.get(cell as usize).copied().unwrap_or(0.0);
            }
            if let Some(z) = zone_of.get(cell as usize).and_then(|&z| zone_count.get_mut(z as usize)) {
                *z = 0;
            }
        }

        let Some(cell) = best.cell else {
            return Err(insufficient(short, &class.rejected, &lrp.constraint));
        };
        if let (Some(slot), Some(cold)) = (slots.get_mut(cell as usize), cold.get_mut(cell as usize)) {
            slot.reserve(cold, mem, disk);
        }
        self.in_flight = self.in_flight.saturating_add(1);
        Ok(cell)
    }

    fn place_task(&mut self, position: usize, task: &TaskWork, tie: u64) -> Result<u32, PlacementError> {
        self.precheck()?;
        let class_id = self.class_of.get(position).copied().unwrap_or(u32::MAX);
        let result = self.search_task(class_id, task, tie);
        self.classes.release_after(class_id, position);
        result
    }

    fn search_task(&mut self, class_id: u32, task: &TaskWork, tie: u64) -> Result<u32, PlacementError> {
        let Auction { cells, slots, cold, zone_cells, classes, .. } = self;
        let Some(class) = classes.get(class_id, &task.constraint, cells, zone_cells) else {
            return Err(no_compatible(&Rejections::default(), &task.constraint));
        };
        if class.cells.is_empty() {
            return Err(no_compatible(&class.rejected, &task.constraint));
        }
        let mem = memory(task.resource.memory_mb);
        let disk = task.resource.disk_mb.max(0);
        // Tasks have no zone balancing: all compatible cells compete at once.
        let mut best = Best::new(tie);
        let mut short = Rejections::default();
        scan::<false>(slots, cold, &class.cells, mem, disk, &mut best, &mut short);
        let Some(cell) = best.cell else {
            return Err(insufficient(short, &class.rejected, &task.constraint));
        };
        if let (Some(slot), Some(cold)) = (slots.get_mut(cell as usize), cold.get_mut(cell as usize)) {
            slot.reserve(cold, mem, disk);
            slot.task_extra += LOCALITY_PENALTY;
        }
        self.in_flight = self.in_flight.saturating_add(1);
        Ok(cell)
    }
}

/// Records one more instance of an app on `cell` in the app's `(cell, count)` list.
fn add_instance(list: &mut Vec<(u32, u32)>, cell: u32) {
    match list.iter_mut().rev().find(|(c, _)| *c == cell) {
        Some((_, count)) => *count = count.saturating_add(1),
        None => list.push((cell, 1)),
    }
}

fn with_filters(mut r: Rejections, filters: &Rejections, constraint: &PlacementConstraint) -> Rejections {
    r.rootfs = filters.rootfs;
    r.volume_drivers = filters.volume_drivers;
    r.placement_tags = filters.placement_tags;
    r.evacuating = filters.evacuating;
    r.constraint = constraint.clone();
    r
}

fn no_compatible(filters: &Rejections, constraint: &PlacementConstraint) -> PlacementError {
    PlacementError::NoCompatibleCell(Box::new(with_filters(Rejections::default(), filters, constraint)))
}

fn insufficient(short: Rejections, filters: &Rejections, constraint: &PlacementConstraint) -> PlacementError {
    PlacementError::InsufficientResources(Box::new(with_filters(short, filters, constraint)))
}

#[cfg(test)]
mod tests;
