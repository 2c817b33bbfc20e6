//! Simulations of whole auctions, reproducing the acceptance checks of
//! `docs/reference/auction-rep.md` §5 items 2–5 and 10 (Diego's `auction/simulation`
//! experiments and the scheduler's in-flight tests) against `placement::solve`.
//!
//! As in Diego's simulation, cells have 100 MB, 100 MB disk and 100 container slots, instances
//! need 1 MB and 1 MB disk unless stated, cell `i` is in zone `i % zones`, and the
//! starting-container weight is 0.5. Every scenario runs under several seeds. There are no
//! timing assertions here; throughput lives in `benches/solve.rs`.

use std::collections::{BTreeMap, BTreeSet};

use auctioneer::placement::{
    CellState, ExistingInstance, LrpWork, PlacementConfig, PlacementConstraint, PlacementError, Problem, Resources,
    RootfsProvider, Solution, TaskWork, WorkResource, solve,
};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

const SEEDS: std::ops::Range<u64> = 0..5;
const ROOTFS: &str = "preloaded:cflinuxfs4";

fn sim_config() -> PlacementConfig {
    PlacementConfig { starting_container_weight: 0.5, ..PlacementConfig::default() }
}

fn cell_id(i: usize) -> String {
    format!("cell-{i:03}")
}

fn cells(n: usize, zones: usize) -> Vec<CellState> {
    (0..n)
        .map(|i| {
            let total = Resources::new(100, 100, 100);
            CellState {
                cell_id: cell_id(i),
                zone: format!("z{}", i % zones.max(1)),
                total,
                available: total,
                rootfs_providers: vec![RootfsProvider::fixed("preloaded", ["cflinuxfs4"])],
                ..CellState::default()
            }
        })
        .collect()
}

/// Puts `n` instances of distinct apps (1 MB, 1 MB disk) on the cell before the auction.
fn preload(cell: &mut CellState, n: usize, tag: &str) {
    for k in 0..n {
        cell.existing.push(ExistingInstance { process_guid: format!("old-{tag}-{k}") });
    }
    let used = Resources::new(n as i64, n as i64, n as i64);
    cell.available = cell.available.checked_sub(used).unwrap_or_default();
}

fn lrp(guid: &str, index: i32, memory_mb: i64) -> LrpWork {
    LrpWork {
        process_guid: guid.into(),
        index,
        domain: "sim".into(),
        resource: WorkResource { memory_mb, disk_mb: 1, max_pids: 0 },
        constraint: PlacementConstraint { rootfs: ROOTFS.into(), ..PlacementConstraint::default() },
    }
}

/// `n` single-instance apps.
fn unique_apps(prefix: &str, n: usize, memory_mb: i64) -> Vec<LrpWork> {
    (0..n).map(|i| lrp(&format!("{prefix}-{i}"), 0, memory_mb)).collect()
}

/// One app with `n` instances.
fn one_app(guid: &str, n: usize, memory_mb: i64) -> Vec<LrpWork> {
    (0..n).map(|i| lrp(guid, i as i32, memory_mb)).collect()
}

fn run(cells: Vec<CellState>, lrps: Vec<LrpWork>, config: PlacementConfig, seed: u64) -> Solution {
    let problem = Problem { cells, lrps, tasks: Vec::new(), config };
    solve(&problem, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// New placements per cell, including cells that got none.
fn per_cell(s: &Solution, ncells: usize) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = (0..ncells).map(|i| (cell_id(i), 0)).collect();
    for (_, cell) in &s.lrp_placements {
        *out.entry(cell.clone()).or_default() += 1;
    }
    out
}

/// Diego's `assertDistributionTolerances`: every count within `tolerance` of the mean.
fn assert_within(counts: &[usize], tolerance: f64, what: &str) {
    let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
    for &c in counts {
        assert!(
            (c as f64 - mean).abs() <= tolerance,
            "{what}: {c} is more than {tolerance} from the mean {mean:.2}: {counts:?}"
        );
    }
}

// --- §5 item 2: ordering when resources are scarce ---

#[test]
fn ordering_boulders_before_pebbles_when_memory_is_low() {
    // One 100 MB cell: 80 single-instance 1 MB apps and a 2-instance 50 MB app. The 50 MB
    // index 0 goes first, 50 pebbles fill the rest, and 30 pebbles plus the 50 MB index 1 lose.
    for seed in SEEDS {
        let mut lrps = unique_apps("pebble", 80, 1);
        lrps.extend(one_app("red", 2, 50));
        let s = run(cells(1, 1), lrps, sim_config(), seed);
        assert_eq!(s.lrp_placements.len(), 51);
        assert_eq!(s.failed_lrps.len(), 31);
        assert!(s.lrp_placements.iter().any(|(l, _)| l.process_guid == "red" && l.index == 0));
        let red_1 = s.failed_lrps.iter().find(|(l, _)| l.process_guid == "red" && l.index == 1);
        let Some((_, err)) = red_1 else {
            panic!("red-1 should lose");
        };
        assert!(err.to_string().contains("insufficient resources: memory (1 cell)"), "{err}");
    }
}

#[test]
fn ordering_index_zero_then_tasks_then_higher_indices_when_scarce() {
    // 10 cells × 100 MB = 1000 MB for 50 apps × 2 instances and 20 tasks of 10 MB each (1200 MB):
    // every index 0 and every task is placed, and the 20 losers are all index 1.
    for seed in SEEDS {
        let lrps: Vec<LrpWork> = (0..50).flat_map(|a| one_app(&format!("app-{a}"), 2, 10)).collect();
        let tasks: Vec<TaskWork> = (0..20)
            .map(|i| TaskWork {
                task_guid: format!("task-{i}"),
                domain: "sim".into(),
                resource: WorkResource { memory_mb: 10, disk_mb: 1, max_pids: 0 },
                constraint: PlacementConstraint { rootfs: ROOTFS.into(), ..PlacementConstraint::default() },
            })
            .collect();
        let problem = Problem { cells: cells(10, 2), lrps, tasks, config: sim_config() };
        let s = solve(&problem, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(s.task_placements.len(), 20);
        assert!(s.failed_tasks.is_empty());
        assert_eq!(s.failed_lrps.len(), 20);
        assert!(s.failed_lrps.iter().all(|(l, _)| l.index == 1));
        assert!(s.lrp_placements.iter().filter(|(l, _)| l.index == 0).count() == 50);
    }
}

// --- §5 item 3: distribution ---

#[test]
fn distribution_small_cold_starts_spread_within_one_per_cell() {
    for (napps, ncells) in [(8, 4), (40, 10), (200, 20), (800, 40), (1000, 100)] {
        for seed in SEEDS {
            let s = run(cells(ncells, 2), unique_apps("app", napps, 1), sim_config(), seed);
            assert!(s.failed_lrps.is_empty());
            let counts: Vec<usize> = per_cell(&s, ncells).into_values().collect();
            assert_within(&counts, 1.0, &format!("{napps} apps on {ncells} cells"));
        }
    }
}

#[test]
fn distribution_large_cold_starts_of_mixed_sizes_spread_within_ten() {
    // Diego's "Large Cold LRPStarts": 1, 2 and 4 MB apps, half unique and half drawn from a few
    // shared guids, shuffled, filling about 96 % of memory.
    for (ncells, scale) in [(25, 1), (100, 4)] {
        for seed in SEEDS {
            let mut lrps = Vec::new();
            let colors =
                ["purple", "red", "orange", "teal", "gray", "blue", "pink", "green", "lime", "cyan", "sea", "brown"];
            for (n, memory, palette) in [(1800, 1, &colors[..4]), (200, 2, &colors[4..8]), (50, 4, &colors[8..])] {
                let n = n * scale;
                lrps.extend(unique_apps(&format!("u{memory}"), n / 2, memory));
                lrps.extend(
                    (0..n / 2).map(|i| lrp(palette[(i * 7 + seed as usize) % palette.len()], i as i32, memory)),
                );
            }
            let s = run(cells(ncells, 2), lrps, sim_config(), seed);
            assert!(s.failed_lrps.is_empty(), "{:?}", s.failed_lrps.first());
            let counts: Vec<usize> = per_cell(&s, ncells).into_values().collect();
            assert_within(&counts, 10.0, &format!("mixed workload on {ncells} cells"));
        }
    }
}

#[test]
fn distribution_imbalanced_start_does_not_flood_empty_cells() {
    // Diego's "Imbalanced scenario (e.g. a deploy)": all but a few cells hold 50 instances;
    // new single-instance apps still spread within ±1, the starting-container weight keeping
    // the empty cells from taking everything.
    for (ncells, nempty, napps) in [(100, 5, 500), (100, 1, 100)] {
        for seed in SEEDS {
            let mut cs = cells(ncells, 2);
            for (i, c) in cs.iter_mut().enumerate().take(ncells - nempty) {
                preload(c, 50, &i.to_string());
            }
            let s = run(cs, unique_apps("new", napps, 1), sim_config(), seed);
            assert!(s.failed_lrps.is_empty());
            let counts = per_cell(&s, ncells);
            let values: Vec<usize> = counts.values().copied().collect();
            assert_within(&values, 1.0, &format!("{nempty} empty of {ncells}"));
        }
    }
}

#[test]
fn distribution_one_big_app_on_loaded_cells_spreads_within_one() {
    // Diego's "Watters demo": cells hold 78–80 instances, then one app with many instances.
    for (ncells, napps) in [(10, 80), (30, 200), (100, 400)] {
        for seed in SEEDS {
            let mut cs = cells(ncells, 2);
            for (i, c) in cs.iter_mut().enumerate() {
                preload(c, 78 + (i * 7 + seed as usize) % 3, &i.to_string());
            }
            let s = run(cs, one_app("red", napps, 1), sim_config(), seed);
            assert!(s.failed_lrps.is_empty());
            let counts: Vec<usize> = per_cell(&s, ncells).into_values().collect();
            assert_within(&counts, 1.0, &format!("{napps} instances on {ncells} loaded cells"));
        }
    }
}

// --- §5 item 4: zone balance ---

#[test]
fn zones_balance_even_when_a_zones_only_cell_is_heavily_loaded() {
    // Three cells, two zones: cells 0 and 2 in z0, cell 1 alone in z1 with 50 instances.
    for seed in SEEDS {
        let mut cs = cells(3, 2);
        preload(&mut cs[1], 50, "z1");
        let s = run(cs, one_app("red", 40, 1), sim_config(), seed);
        assert!(s.failed_lrps.is_empty());
        let counts = per_cell(&s, 3);
        let z0 = counts[&cell_id(0)] + counts[&cell_id(2)];
        let z1 = counts[&cell_id(1)];
        assert_eq!((z0, z1), (20, 20), "seed {seed}");
    }
}

#[test]
fn zones_balance_one_app_across_three_zones_of_unequal_size() {
    // z0 has 1 cell, z1 has 3, z2 has 6; 30 instances go 10 per zone.
    for seed in SEEDS {
        let mut cs = cells(10, 1);
        for (i, c) in cs.iter_mut().enumerate() {
            c.zone = match i {
                0 => "z0",
                1..=3 => "z1",
                _ => "z2",
            }
            .into();
        }
        let zone_of: BTreeMap<String, String> = cs.iter().map(|c| (c.cell_id.clone(), c.zone.clone())).collect();
        let s = run(cs, one_app("red", 30, 1), sim_config(), seed);
        let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, cell) in &s.lrp_placements {
            *per_zone.entry(zone_of[cell].as_str()).or_default() += 1;
        }
        assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
    }
}

// --- §5 item 5: bin-pack-first-fit ---

fn zones_of(ncells: usize, zones: usize) -> Vec<Vec<String>> {
    (0..zones).map(|z| (z..ncells).step_by(zones).map(cell_id).collect()).collect()
}

#[test]
fn bin_pack_first_fit_favors_low_index_cells_and_keeps_zones_balanced() {
    for weight in [0.25, 0.5, 0.75] {
        for (napps, ncells) in [(8, 4), (40, 10), (200, 20), (800, 40)] {
            for seed in SEEDS {
                let config = PlacementConfig { bin_pack_first_fit_weight: weight, ..sim_config() };
                let s = run(cells(ncells, 2), unique_apps("app", napps, 1), config, seed);
                assert!(s.failed_lrps.is_empty());
                let counts = per_cell(&s, ncells);
                let mut zone_totals = Vec::new();
                for zone in zones_of(ncells, 2) {
                    let occupancy: Vec<usize> = zone.iter().map(|c| counts[c]).collect();
                    assert!(
                        occupancy.windows(2).all(|w| w[0] >= w[1]),
                        "weight {weight}, {napps} apps on {ncells} cells: occupancy must not increase with index: {occupancy:?}"
                    );
                    zone_totals.push(occupancy.iter().sum());
                }
                assert_within(&zone_totals, 1.0, "zone totals");
            }
        }
    }
}

#[test]
fn bin_pack_first_fit_still_spreads_a_single_multi_instance_app() {
    for weight in [0.25, 0.5, 0.75] {
        for (napps, ncells) in [(8, 4), (40, 10), (200, 20), (800, 40)] {
            let config = PlacementConfig { bin_pack_first_fit_weight: weight, ..sim_config() };
            let s = run(cells(ncells, 2), one_app("yellow", napps, 1), config, 1);
            let counts: Vec<usize> = per_cell(&s, ncells).into_values().collect();
            assert_within(&counts, 1.0, &format!("weight {weight}"));
        }
    }
}

// --- §5 item 10: the in-flight start cap ---

#[test]
fn in_flight_cap_holds_and_the_rest_fail_with_the_in_flight_message() {
    for seed in SEEDS {
        let mut cs = cells(10, 2);
        cs[0].starting_containers = 3;
        cs[7].starting_containers = 2;
        let config = PlacementConfig { max_in_flight_starts: 25, ..sim_config() };
        let s = run(cs.clone(), unique_apps("app", 100, 1), config, seed);
        assert_eq!(s.lrp_placements.len(), 20, "25 minus the 5 already starting");
        assert_eq!(s.failed_lrps.len(), 80);
        for (_, err) in &s.failed_lrps {
            assert_eq!(err, &PlacementError::InFlightLimit { limit: 25 });
            assert!(err.to_string().contains("waiting to start instance: reached in-flight start limit"));
        }

        // The next auction sees those 20 as starting too and places nothing more.
        let placed: BTreeSet<&str> = s.lrp_placements.iter().map(|(l, _)| l.process_guid.as_str()).collect();
        for (_, cell) in &s.lrp_placements {
            if let Some(c) = cs.iter_mut().find(|c| &c.cell_id == cell) {
                c.starting_containers += 1;
            }
        }
        let retry: Vec<LrpWork> =
            unique_apps("app", 100, 1).into_iter().filter(|l| !placed.contains(l.process_guid.as_str())).collect();
        let again = run(cs, retry, config, seed);
        assert!(again.lrp_placements.is_empty());
        assert_eq!(again.failed_lrps.len(), 80);
    }
}

#[test]
fn in_flight_cap_of_zero_is_unlimited() {
    let s = run(cells(10, 2), unique_apps("app", 500, 1), sim_config(), 0);
    assert_eq!(s.lrp_placements.len(), 500);
}

#[test]
fn per_cell_start_cap_spreads_a_burst_over_more_cells() {
    for seed in SEEDS {
        let config = PlacementConfig { max_starting_per_cell: 4, ..sim_config() };
        let s = run(cells(10, 2), unique_apps("app", 45, 1), config, seed);
        assert_eq!(s.lrp_placements.len(), 40);
        let counts = per_cell(&s, 10);
        assert!(counts.values().all(|&c| c == 4), "{counts:?}");
        assert!(s.failed_lrps.iter().all(|(_, e)| { e.to_string().contains("starting-container limit (10 cells)") }));
    }
}
