//! Proptest postconditions of `solve` (style convention 7): capacity is never exceeded, every
//! placeable item is placed, the result is a function of problem and seed, and every failure
//! names each reason a cell turned the item down.

use proptest::prelude::*;

use super::*;
use crate::placement::filter::{Verdict, verdict};

const GUIDS: [&str; 5] = ["app-a", "app-b", "app-c", "app-d", "app-e"];
const TAGS: [&str; 3] = ["gpu", "ssd", "edge"];
const ROOTFS: [&str; 4] = [STACK, "preloaded:busybox", "docker:///busybox", "preloaded:nope"];

fn subset(names: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(proptest::sample::select(names), 0..=2).prop_map(|mut v| {
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(str::to_string).collect()
    })
}

/// Mostly empty: a cell with required tags refuses all untagged work.
fn rare(tags: impl Strategy<Value = Vec<String>>) -> impl Strategy<Value = Vec<String>> {
    (prop::bool::weighted(0.15), tags).prop_map(|(keep, t)| if keep { t } else { Vec::new() })
}

fn arb_cell() -> impl Strategy<Value = CellState> {
    (
        (0u8..3, 1i64..4000, 1i64..4000, 0i64..40),
        (prop::sample::select(&[1u8, 1, 1, 3, 3, 2, 0][..]), prop::bool::weighted(0.6)),
        (rare(subset(&TAGS)), subset(&TAGS), subset(&["nfs", "smb"])),
        (0i64..4, proptest::collection::vec(proptest::sample::select(&GUIDS[..]), 0..4), 0i64..3),
        prop::bool::weighted(0.1),
    )
        .prop_flat_map(
            |((zone, mem, disk, slots), (p1, p2), (req, opt, drivers), (starting, existing, tasks), evac)| {
                (0..=mem, 0..=disk, 0..=slots, prop::bool::weighted(0.5)).prop_map(move |(am, ad, ac, fresh)| {
                    let (am, ad, ac) = if fresh { (mem, disk, slots) } else { (am, ad, ac) };
                    let mut providers = Vec::new();
                    if p1 & 1 == 1 {
                        providers.push(RootfsProvider::fixed("preloaded", ["cflinuxfs4"]));
                    }
                    if p1 & 2 == 2 {
                        providers.push(RootfsProvider::fixed("preloaded", ["busybox"]));
                    }
                    if p2 {
                        providers.push(RootfsProvider::arbitrary("docker"));
                    }
                    CellState {
                        cell_id: String::new(), // numbered below
                        zone: format!("z{zone}"),
                        total: Resources::new(mem, disk, slots),
                        available: Resources::new(am, ad, ac),
                        rootfs_providers: providers,
                        volume_drivers: drivers.clone(),
                        placement_tags: req.clone(),
                        optional_placement_tags: opt.clone(),
                        starting_containers: starting,
                        existing: existing.iter().map(|g| ExistingInstance { process_guid: g.to_string() }).collect(),
                        existing_tasks: tasks,
                        evacuating: evac,
                    }
                })
            },
        )
}

fn arb_constraint() -> impl Strategy<Value = PlacementConstraint> {
    (
        prop::sample::select(&[ROOTFS[0], ROOTFS[0], ROOTFS[0], ROOTFS[0], ROOTFS[1], ROOTFS[2], ROOTFS[3]][..]),
        prop::bool::weighted(0.8),
        subset(&TAGS),
        prop::bool::weighted(0.85),
        subset(&["nfs", "smb"]),
    )
        .prop_map(|(rootfs, untagged, tags, no_drivers, drivers)| PlacementConstraint {
            rootfs: rootfs.to_string(),
            placement_tags: if untagged { Vec::new() } else { tags },
            volume_drivers: if no_drivers { Vec::new() } else { drivers },
        })
}

fn arb_problem() -> impl Strategy<Value = Problem> {
    let lrps = proptest::collection::vec(
        (prop::sample::select(&GUIDS[..]), 0i32..4, 0i64..600, 0i64..600, arb_constraint()),
        0..40,
    );
    let tasks = proptest::collection::vec((0i64..600, 0i64..600, arb_constraint()), 0..10);
    // Each limit is off half the time.
    let limit = |min: usize, max: usize| prop_oneof![Just(0usize), min..max];
    let config = (0.0f64..1.0, prop::bool::ANY, limit(10, 100), limit(2, 12));
    // One problem in twenty has no cells at all.
    let cells = (proptest::collection::vec(arb_cell(), 1..10), prop::bool::weighted(0.05));
    (cells, lrps, tasks, config).prop_map(
        |((mut cells, no_cells), lrps, tasks, (weight, bin_pack, in_flight, per_cell))| {
            if no_cells {
                cells.clear();
            }
            for (i, c) in cells.iter_mut().enumerate() {
                c.cell_id = format!("cell-{i}");
            }
            Problem {
                cells,
                lrps: lrps
                    .into_iter()
                    .map(|(g, index, m, d, constraint)| LrpWork { constraint, ..lrp(g, index, m, d) })
                    .collect(),
                tasks: tasks
                    .into_iter()
                    .enumerate()
                    .map(|(i, (m, d, constraint))| TaskWork { constraint, ..task(&format!("task-{i}"), m, d) })
                    .collect(),
                config: PlacementConfig {
                    starting_container_weight: weight,
                    bin_pack_first_fit_weight: if bin_pack { 0.5 } else { 0.0 },
                    max_in_flight_starts: in_flight,
                    max_starting_per_cell: per_cell,
                },
            }
        },
    )
}

/// The cells' availability and starting counts after applying every placement.
fn final_state(p: &Problem, s: &Solution) -> Vec<(Resources, i64)> {
    let mut state: Vec<(Resources, i64)> =
        p.cells.iter().map(|c| (c.available, c.starting_containers.max(0))).collect();
    let needs = s
        .lrp_placements
        .iter()
        .map(|(l, c)| (l.resource, c))
        .chain(s.task_placements.iter().map(|(t, c)| (t.resource, c)));
    for (r, cell_id) in needs {
        let i = p.cells.iter().position(|c| &c.cell_id == cell_id).expect("placed on a known cell");
        state[i].0.memory_mb -= r.memory_mb.max(0);
        state[i].0.disk_mb -= r.disk_mb.max(0);
        state[i].0.containers -= 1;
        state[i].1 += 1;
    }
    state
}

fn fits(p: &Problem, state: &(Resources, i64), r: &WorkResource) -> bool {
    let cap = p.config.max_starting_per_cell as i64;
    state.0.memory_mb >= r.memory_mb.max(0)
        && state.0.disk_mb >= r.disk_mb.max(0)
        && state.0.containers >= 1
        && (cap == 0 || state.1 < cap)
}

fn check_failure(
    p: &Problem,
    s: &Solution,
    state: &[(Resources, i64)],
    r: &WorkResource,
    c: &PlacementConstraint,
    e: &PlacementError,
) {
    let compatible: Vec<usize> =
        (0..p.cells.len()).filter(|&i| verdict(&p.cells[i], c) == Verdict::Compatible).collect();
    let text = e.to_string();
    match e {
        PlacementError::NoCells => assert!(p.cells.is_empty()),
        PlacementError::InFlightLimit { limit } => {
            let starting: i64 = p.cells.iter().map(|c| c.starting_containers.max(0)).sum();
            let placed = (s.lrp_placements.len() + s.task_placements.len()) as i64;
            assert!(starting + placed >= *limit as i64, "{text}");
        }
        PlacementError::NoCompatibleCell(rej) => {
            assert!(compatible.is_empty(), "{text}");
            assert!(text.contains("found no compatible cell"), "{text}");
            assert_eq!(rej.rootfs + rej.volume_drivers + rej.placement_tags + rej.evacuating, p.cells.len());
        }
        PlacementError::InsufficientResources(rej) => {
            // Room only shrinks during an auction, so "no room then" means "no room now".
            assert!(!compatible.is_empty(), "{text}");
            for &i in &compatible {
                assert!(!fits(p, &state[i], r), "cell {i} has room for a failed item: {text}");
            }
            assert!(text.starts_with("insufficient resources: "), "{text}");
            assert_eq!(
                rej.rootfs + rej.volume_drivers + rej.placement_tags + rej.evacuating + compatible.len(),
                p.cells.len()
            );
        }
    }
    if let Some(rej) = e.rejections() {
        let phrases = [
            (rej.memory, "memory ("),
            (rej.disk, "disk ("),
            (rej.containers, "containers ("),
            (rej.starting_limit, "starting-container limit ("),
            (rej.rootfs, "found no compatible cell for rootfs"),
            (rej.volume_drivers, "found no compatible cell with required volume drivers"),
            (rej.placement_tags, "placement tag"),
            (rej.evacuating, "evacuating ("),
        ];
        for (count, phrase) in phrases {
            assert_eq!(count > 0, text.contains(phrase), "{phrase} vs {text}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn solve_never_exceeds_capacity_and_places_every_placeable_item(p in arb_problem(), seed in any::<u64>()) {
        let s = run(&p, seed);
        prop_assert_eq!(s.lrp_placements.len() + s.failed_lrps.len(), p.lrps.len());
        prop_assert_eq!(s.task_placements.len() + s.failed_tasks.len(), p.tasks.len());
        let state = final_state(&p, &s);
        for (i, (left, starting)) in state.iter().enumerate() {
            prop_assert!(left.memory_mb >= 0 && left.disk_mb >= 0 && left.containers >= 0, "cell {} over capacity: {:?}", i, left);
            let cap = p.config.max_starting_per_cell as i64;
            let before = p.cells[i].starting_containers;
            prop_assert!(cap == 0 || *starting <= cap.max(before), "cell {} over its start cap", i);
        }
        let limit = p.config.max_in_flight_starts;
        if limit > 0 {
            let starting: i64 = p.cells.iter().map(|c| c.starting_containers.max(0)).sum();
            let placed = (s.lrp_placements.len() + s.task_placements.len()) as i64;
            prop_assert!(placed == 0 || starting + placed <= (limit as i64).max(starting));
        }
        let placed = s.lrp_placements.iter().map(|(l, c)| (&l.constraint, c)).chain(s.task_placements.iter().map(|(t, c)| (&t.constraint, c)));
        for (constraint, cell_id) in placed {
            let cell = p.cells.iter().find(|c| &c.cell_id == cell_id).expect("known cell");
            prop_assert_eq!(verdict(cell, constraint), Verdict::Compatible);
        }
        for (l, e) in &s.failed_lrps {
            check_failure(&p, &s, &state, &l.resource, &l.constraint, e);
        }
        for (t, e) in &s.failed_tasks {
            check_failure(&p, &s, &state, &t.resource, &t.constraint, e);
        }
    }

    #[test]
    fn solve_is_a_function_of_problem_and_seed(p in arb_problem(), seed in any::<u64>()) {
        prop_assert_eq!(run(&p, seed), run(&p, seed));
    }

    #[test]
    fn everything_is_placed_when_room_is_ample_and_constraints_match(
        cells in 1usize..30,
        zones in 1usize..4,
        items in proptest::collection::vec((prop::sample::select(&GUIDS[..]), 0i32..6, 0i64..512, 0i64..512), 0..80),
        tasks in proptest::collection::vec((0i64..512, 0i64..512), 0..20),
        seed in any::<u64>(),
    ) {
        let n = items.len() + tasks.len();
        let cells: Vec<CellState> = (0..cells)
            .map(|i| cell(&format!("c{i}"), &format!("z{}", i % zones), 512 * n as i64 + 1, 512 * n as i64 + 1, n as i64 + 1))
            .collect();
        let p = problem(
            cells,
            items.iter().map(|&(g, i, m, d)| lrp(g, i, m, d)).collect(),
            tasks.iter().enumerate().map(|(i, &(m, d))| task(&format!("t{i}"), m, d)).collect(),
        );
        let s = run(&p, seed);
        prop_assert!(s.failed_lrps.is_empty(), "{:?}", s.failed_lrps);
        prop_assert!(s.failed_tasks.is_empty(), "{:?}", s.failed_tasks);
    }
}
