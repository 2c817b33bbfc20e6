//! Unit tests of `solve`, one per ordering, filter and scoring rule of reference §1.5–1.9.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use super::*;

pub(super) const STACK: &str = "preloaded:cflinuxfs4";

pub(super) fn cell(id: &str, zone: &str, memory_mb: i64, disk_mb: i64, containers: i64) -> CellState {
    let total = Resources::new(memory_mb, disk_mb, containers);
    CellState {
        cell_id: id.into(),
        zone: zone.into(),
        total,
        available: total,
        rootfs_providers: vec![
            RootfsProvider::fixed("preloaded", ["cflinuxfs4", "busybox"]),
            RootfsProvider::arbitrary("docker"),
        ],
        ..CellState::default()
    }
}

pub(super) fn lrp(guid: &str, index: i32, memory_mb: i64, disk_mb: i64) -> LrpWork {
    LrpWork {
        process_guid: guid.into(),
        index,
        domain: "cf-apps".into(),
        resource: WorkResource { memory_mb, disk_mb, max_pids: 0 },
        constraint: PlacementConstraint { rootfs: STACK.into(), ..PlacementConstraint::default() },
    }
}

pub(super) fn task(guid: &str, memory_mb: i64, disk_mb: i64) -> TaskWork {
    TaskWork {
        task_guid: guid.into(),
        domain: "cf-tasks".into(),
        resource: WorkResource { memory_mb, disk_mb, max_pids: 0 },
        constraint: PlacementConstraint { rootfs: STACK.into(), ..PlacementConstraint::default() },
    }
}

pub(super) fn run(problem: &Problem, seed: u64) -> Solution {
    solve(problem, &mut ChaCha8Rng::seed_from_u64(seed))
}

fn placed_on<'a>(s: &'a Solution, guid: &str, index: i32) -> Option<&'a str> {
    s.lrp_placements.iter().find(|(l, _)| l.process_guid == guid && l.index == index).map(|(_, c)| c.as_str())
}

fn failure(s: &Solution, guid: &str, index: i32) -> String {
    s.failed_lrps
        .iter()
        .find(|(l, _)| l.process_guid == guid && l.index == index)
        .map(|(_, e)| e.to_string())
        .unwrap_or_default()
}

fn problem(cells: Vec<CellState>, lrps: Vec<LrpWork>, tasks: Vec<TaskWork>) -> Problem {
    Problem { cells, lrps, tasks, config: PlacementConfig::default() }
}

fn keys(s: &Solution) -> Vec<String> {
    let mut out: Vec<String> = s
        .lrp_placements
        .iter()
        .map(|(l, _)| format!("{}/{}", l.process_guid, l.index))
        .chain(s.task_placements.iter().map(|(t, _)| t.task_guid.clone()))
        .collect();
    out.sort();
    out
}

// --- ordering (§1.5) ---

#[test]
fn ordering_places_index_zero_then_tasks_then_higher_indices_when_scarce() {
    // Room for three containers: both index-0 instances and the task win over index 1.
    let p = problem(
        vec![cell("c", "z1", 10_000, 10_000, 3)],
        vec![lrp("a", 1, 10, 10), lrp("b", 1, 10, 10), lrp("a", 0, 10, 10), lrp("b", 0, 10, 10)],
        vec![task("t", 10, 10)],
    );
    let s = run(&p, 1);
    assert_eq!(keys(&s), vec!["a/0", "b/0", "t"]);
    assert!(failure(&s, "a", 1).contains("insufficient resources: containers (1 cell)"));
}

#[test]
fn ordering_gives_every_app_a_second_instance_before_any_gets_a_third() {
    let p = problem(
        vec![cell("c", "z1", 10_000, 10_000, 4)],
        vec![lrp("a", 2, 10, 10), lrp("a", 1, 10, 10), lrp("b", 1, 10, 10), lrp("a", 0, 10, 10), lrp("b", 0, 10, 10)],
        vec![],
    );
    assert_eq!(keys(&run(&p, 1)), vec!["a/0", "a/1", "b/0", "b/1"]);
}

#[test]
fn ordering_puts_boulders_before_pebbles() {
    // 1000 MB: the 600 goes first, the 500 no longer fits, the 300 still does.
    let p = problem(
        vec![cell("c", "z1", 1000, 10_000, 10)],
        vec![lrp("pebble", 0, 300, 1), lrp("mid", 0, 500, 1), lrp("boulder", 0, 600, 1)],
        vec![task("t-small", 50, 1), task("t-big", 100, 1)],
    );
    let s = run(&p, 1);
    assert_eq!(keys(&s), vec!["boulder/0", "pebble/0", "t-big"]);
    assert!(failure(&s, "mid", 0).contains("insufficient resources: memory (1 cell)"));
    assert_eq!(s.failed_tasks.len(), 1);
    assert_eq!(s.failed_tasks[0].0.task_guid, "t-small");
}

// --- filters (§1.6) ---

#[test]
fn filter_rootfs_unknown_stack_or_scheme_finds_no_compatible_cell() {
    let mut nope = lrp("nope", 0, 1, 1);
    nope.constraint.rootfs = "preloaded:nope".into();
    let mut oci = lrp("oci", 0, 1, 1);
    oci.constraint.rootfs = "oci:///x".into();
    let mut docker = lrp("docker", 0, 1, 1);
    docker.constraint.rootfs = "docker:///busybox".into();
    let p =
        problem(vec![cell("c1", "z1", 100, 100, 10), cell("c2", "z1", 100, 100, 10)], vec![nope, oci, docker], vec![]);
    let s = run(&p, 1);
    assert_eq!(failure(&s, "nope", 0), "found no compatible cell for rootfs \"preloaded:nope\" (2 cells)");
    assert!(failure(&s, "oci", 0).contains("found no compatible cell for rootfs \"oci:///x\""));
    assert!(placed_on(&s, "docker", 0).is_some());
}

#[test]
fn filter_volume_drivers_must_all_be_on_the_cell() {
    let mut with_nfs = cell("nfs", "z1", 100, 100, 10);
    with_nfs.volume_drivers = vec!["nfs".into()];
    let mut wants_nfs = lrp("v", 0, 1, 1);
    wants_nfs.constraint.volume_drivers = vec!["nfs".into()];
    let mut wants_smb = lrp("w", 0, 1, 1);
    wants_smb.constraint.volume_drivers = vec!["nfs".into(), "smb".into()];
    let p = problem(vec![cell("plain", "z1", 100, 100, 10), with_nfs], vec![wants_nfs, wants_smb], vec![]);
    let s = run(&p, 1);
    assert_eq!(placed_on(&s, "v", 0), Some("nfs"));
    assert_eq!(
        failure(&s, "w", 0),
        "found no compatible cell with required volume drivers \"nfs\" and \"smb\" (2 cells)"
    );
}

#[test]
fn filter_placement_tags_required_and_optional() {
    let mut gpu = cell("gpu", "z1", 100, 100, 10);
    gpu.placement_tags = vec!["gpu".into()];
    let mut ssd = cell("ssd", "z1", 100, 100, 10);
    ssd.optional_placement_tags = vec!["ssd".into()];
    let mut wants_gpu = lrp("g", 0, 1, 1);
    wants_gpu.constraint.placement_tags = vec!["gpu".into()];
    let mut wants_ssd = lrp("s", 0, 1, 1);
    wants_ssd.constraint.placement_tags = vec!["ssd".into()];
    let mut wants_both = lrp("b", 0, 1, 1);
    wants_both.constraint.placement_tags = vec!["gpu".into(), "ssd".into()];
    let untagged = lrp("u", 0, 1, 1);
    let p = problem(vec![gpu, ssd], vec![wants_gpu, wants_ssd, wants_both, untagged], vec![]);
    let s = run(&p, 1);
    assert_eq!(placed_on(&s, "g", 0), Some("gpu"));
    assert_eq!(placed_on(&s, "s", 0), Some("ssd"));
    assert_eq!(placed_on(&s, "u", 0), Some("ssd"), "optional tags do not refuse untagged work");
    assert_eq!(failure(&s, "b", 0), "found no compatible cell with placement tags \"gpu\" and \"ssd\" (2 cells)");
}

#[test]
fn filter_evacuating_cells_never_win() {
    let mut leaving = cell("leaving", "z1", 10_000, 10_000, 100);
    leaving.evacuating = true;
    let mut busy = cell("busy", "z1", 1000, 1000, 10);
    busy.available = Resources::new(100, 100, 1);
    let p = problem(vec![leaving.clone(), busy], vec![lrp("a", 0, 50, 50), lrp("b", 0, 50, 50)], vec![]);
    let s = run(&p, 1);
    assert_eq!(placed_on(&s, "a", 0), Some("busy"));
    assert_eq!(failure(&s, "b", 0), "insufficient resources: containers (1 cell); evacuating (1 cell)");

    let only_leaving = problem(vec![leaving], vec![lrp("a", 0, 1, 1)], vec![task("t", 1, 1)]);
    let s = run(&only_leaving, 1);
    assert_eq!(failure(&s, "a", 0), "found no compatible cell: evacuating (1 cell)");
    assert!(matches!(s.failed_tasks[0].1, PlacementError::NoCompatibleCell(_)));
}

#[test]
fn error_names_every_rejecting_reason_with_counts() {
    let mut gpu = cell("gpu", "z1", 10_000, 10_000, 10);
    gpu.placement_tags = vec!["gpu".into()];
    let mut no_stack = cell("other", "z1", 10_000, 10_000, 10);
    no_stack.rootfs_providers = vec![RootfsProvider::arbitrary("docker")];
    let p = problem(
        vec![cell("small-1", "z1", 100, 10_000, 10), cell("small-2", "z2", 100, 50, 10), gpu, no_stack],
        vec![lrp("big", 0, 1000, 100)],
        vec![],
    );
    let s = run(&p, 1);
    let e = &s.failed_lrps[0].1;
    assert!(matches!(e, PlacementError::InsufficientResources(_)));
    assert_eq!(
        e.to_string(),
        "insufficient resources: disk (1 cell), memory (2 cells); \
         found no compatible cell with no placement tags (1 cell); \
         found no compatible cell for rootfs \"preloaded:cflinuxfs4\" (1 cell)"
    );
    let r = e.rejections().cloned().unwrap_or_default();
    assert_eq!((r.memory, r.disk, r.placement_tags, r.rootfs), (2, 1, 1, 1));
}

// --- scoring (§1.7) and reservation (§1.8) ---

#[test]
fn reservation_makes_later_items_see_earlier_placements() {
    // Each cell fits one 600 MB instance; without reservation both would pick the same cell.
    let p = problem(
        vec![cell("c1", "z1", 1000, 1000, 10), cell("c2", "z1", 1000, 1000, 10)],
        vec![lrp("a", 0, 600, 1), lrp("b", 0, 600, 1), lrp("c", 0, 600, 1)],
        vec![],
    );
    let s = run(&p, 3);
    assert_ne!(placed_on(&s, "a", 0), placed_on(&s, "b", 0));
    assert!(failure(&s, "c", 0).contains("insufficient resources: memory (2 cells)"));
}

#[test]
fn score_prefers_the_less_used_cell() {
    let mut used = cell("used", "z1", 1000, 1000, 10);
    used.available = Resources::new(500, 500, 5);
    let p = problem(vec![used, cell("free", "z1", 1000, 1000, 10)], vec![lrp("a", 0, 10, 10)], vec![]);
    assert_eq!(placed_on(&run(&p, 1), "a", 0), Some("free"));
}

#[test]
fn score_starting_containers_push_work_elsewhere() {
    // "starting" is slightly emptier but has 2 starts in flight: 0.25 × 2 outweighs it.
    let mut starting = cell("starting", "z1", 1000, 1000, 10);
    starting.starting_containers = 2;
    let mut used = cell("used", "z1", 1000, 1000, 10);
    used.available = Resources::new(800, 800, 8);
    let p = problem(vec![starting.clone(), used.clone()], vec![lrp("a", 0, 10, 10)], vec![]);
    assert_eq!(placed_on(&run(&p, 1), "a", 0), Some("used"));

    let mut p = problem(vec![starting, used], vec![lrp("a", 0, 10, 10)], vec![]);
    p.config.starting_container_weight = 0.0;
    assert_eq!(placed_on(&run(&p, 1), "a", 0), Some("starting"));
}

#[test]
fn score_same_app_penalty_beats_any_load() {
    let mut loaded = cell("loaded", "z1", 1000, 1000, 10);
    loaded.available = Resources::new(100, 100, 1);
    let mut holder = cell("holder", "z1", 1000, 1000, 10);
    holder.existing = vec![ExistingInstance { process_guid: "x".into() }];
    let p = problem(vec![holder, loaded], vec![lrp("x", 1, 50, 50), lrp("y", 0, 50, 50)], vec![]);
    let s = run(&p, 1);
    assert_eq!(placed_on(&s, "x", 1), Some("loaded"));
    assert_eq!(placed_on(&s, "y", 0), Some("holder"));
}

#[test]
fn score_tasks_spread_by_task_count() {
    let mut with_task = cell("with-task", "z1", 1000, 1000, 10);
    with_task.existing_tasks = 1;
    let mut used = cell("used", "z1", 1000, 1000, 10);
    used.available = Resources::new(200, 200, 2);
    let p = problem(vec![with_task, used], vec![], vec![task("t1", 10, 10), task("t2", 10, 10)]);
    let s = run(&p, 1);
    let cells: Vec<&str> = s.task_placements.iter().map(|(_, c)| c.as_str()).collect();
    // Both cells end with one task each: the first goes to "used", the second then ties on
    // task count and the emptier "with-task" wins.
    let mut sorted = cells.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["used", "with-task"]);
}

#[test]
fn zone_balance_worked_example_of_reference_1_13() {
    let mut a = cell("A", "z1", 4096, 10_240, 100);
    a.existing = vec![ExistingInstance { process_guid: "X".into() }];
    a.available = Resources::new(3584, 9216, 99);
    let b = cell("B", "z1", 4096, 10_240, 100);
    let mut c = cell("C", "z2", 4096, 10_240, 100);
    c.starting_containers = 2;
    c.available.containers = 98;
    let p = problem(vec![a.clone(), b.clone(), c.clone()], vec![lrp("X", 1, 512, 1024)], vec![]);
    assert_eq!(placed_on(&run(&p, 1), "X", 1), Some("C"), "the emptier zone wins even though B is idle");

    // Had C been full, z1 is searched next, and B beats A.
    c.available = Resources::new(0, 0, 0);
    let p = problem(vec![a, b, c], vec![lrp("X", 1, 512, 1024)], vec![]);
    assert_eq!(placed_on(&run(&p, 1), "X", 1), Some("B"));
}

#[test]
fn zone_balance_counts_instances_placed_earlier_in_the_auction() {
    let cells = vec![
        cell("a1", "a", 10_000, 10_000, 100),
        cell("b1", "b", 10_000, 10_000, 100),
        cell("c1", "c", 10_000, 10_000, 100),
    ];
    let lrps = (0..6).map(|i| lrp("app", i, 10, 10)).collect();
    let s = run(&problem(cells, lrps, vec![]), 9);
    for zone in ["a1", "b1", "c1"] {
        assert_eq!(s.lrp_placements.iter().filter(|(_, c)| c == zone).count(), 2);
    }
}

#[test]
fn bin_pack_first_fit_fills_low_index_cells_first() {
    let cells = vec![cell("c0", "z1", 1000, 1000, 3), cell("c1", "z1", 1000, 1000, 3), cell("c2", "z1", 1000, 1000, 3)];
    let lrps: Vec<LrpWork> = (0..5).map(|i| lrp(&format!("app-{i}"), 0, 10, 10)).collect();
    let mut p = problem(cells, lrps, vec![]);
    p.config.bin_pack_first_fit_weight = 10.0;
    let s = run(&p, 1);
    let on = |id: &str| s.lrp_placements.iter().filter(|(_, c)| c == id).count();
    assert_eq!((on("c0"), on("c1"), on("c2")), (3, 2, 0));
}

#[test]
fn ties_are_broken_by_the_seeded_rng() {
    let cells: Vec<CellState> = (0..8).map(|i| cell(&format!("c{i}"), "z1", 1000, 1000, 10)).collect();
    let p = problem(cells, vec![lrp("a", 0, 10, 10)], vec![]);
    let winners: std::collections::BTreeSet<String> =
        (0..40).filter_map(|seed| placed_on(&run(&p, seed), "a", 0).map(str::to_string)).collect();
    assert!(winners.len() >= 5, "{winners:?}");
    assert_eq!(run(&p, 7), run(&p, 7));
}

// --- limits (§1.9) ---

#[test]
fn in_flight_start_limit_fails_the_remaining_items() {
    let mut busy = cell("c1", "z1", 10_000, 10_000, 100);
    busy.starting_containers = 1;
    let mut p = problem(
        vec![busy, cell("c2", "z1", 10_000, 10_000, 100)],
        (0..4).map(|i| lrp(&format!("a{i}"), 0, 10, 10)).collect(),
        vec![task("t", 10, 10)],
    );
    p.config.max_in_flight_starts = 3;
    let s = run(&p, 1);
    assert_eq!(s.lrp_placements.len(), 2);
    assert_eq!(s.failed_lrps.len() + s.failed_tasks.len(), 3);
    for (_, e) in &s.failed_lrps {
        assert_eq!(e, &PlacementError::InFlightLimit { limit: 3 });
        assert!(e.to_string().contains("reached in-flight start limit"));
    }
    p.config.max_in_flight_starts = 0;
    assert_eq!(run(&p, 1).lrp_placements.len(), 4, "0 means unlimited");
}

#[test]
fn per_cell_starting_cap_moves_work_to_other_cells() {
    let mut p = problem(
        vec![cell("c1", "z1", 10_000, 10_000, 100), cell("c2", "z1", 10_000, 10_000, 100)],
        (0..5).map(|i| lrp(&format!("a{i}"), 0, 10, 10)).collect(),
        vec![],
    );
    p.config.max_starting_per_cell = 2;
    let s = run(&p, 1);
    assert_eq!(s.lrp_placements.len(), 4);
    assert!(s.failed_lrps[0].1.to_string().contains("starting-container limit (2 cells)"));
}

// --- degenerate input ---

#[test]
fn no_cells_fails_every_item() {
    let s = run(&problem(vec![], vec![lrp("a", 0, 1, 1)], vec![task("t", 1, 1)]), 1);
    assert_eq!(s.failed_lrps[0].1, PlacementError::NoCells);
    assert_eq!(s.failed_tasks[0].1, PlacementError::NoCells);
}

#[test]
fn hostile_numbers_do_not_panic() {
    let mut weird = cell("weird", "z1", 0, -5, i64::MIN);
    weird.available = Resources::new(i64::MAX, i64::MIN, i64::MAX);
    weird.starting_containers = i64::MIN;
    weird.existing_tasks = i64::MAX;
    let mut huge = cell("huge", "", i64::MAX, i64::MAX, i64::MAX);
    huge.starting_containers = i64::MAX;
    let mut p = problem(
        vec![weird, huge],
        vec![lrp("a", i32::MIN, i64::MIN, i64::MAX), lrp("a", i32::MAX, i64::MAX, -1)],
        vec![task("t", -1, -1)],
    );
    p.config.starting_container_weight = f64::NAN;
    p.config.bin_pack_first_fit_weight = f64::INFINITY;
    p.config.max_in_flight_starts = usize::MAX;
    p.config.max_starting_per_cell = usize::MAX;
    let s = run(&p, 1);
    assert_eq!(s.lrp_placements.len() + s.failed_lrps.len(), 2);
    assert_eq!(s.task_placements.len() + s.failed_tasks.len(), 1);
}

#[test]
fn the_same_problem_and_seed_give_the_same_solution() {
    let cells: Vec<CellState> =
        (0..20).map(|i| cell(&format!("c{i}"), ["z1", "z2", "z3"][i % 3], 4096, 8192, 50)).collect();
    let lrps: Vec<LrpWork> =
        (0..200i32).map(|i| lrp(&format!("app-{}", i % 17), i / 17, 128 + i64::from(i % 5) * 64, 256)).collect();
    let tasks: Vec<TaskWork> = (0..30).map(|i| task(&format!("t{i}"), 256, 256)).collect();
    let p = problem(cells, lrps, tasks);
    assert_eq!(run(&p, 42), run(&p, 42));
}

mod properties;
