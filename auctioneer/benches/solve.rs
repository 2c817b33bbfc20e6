//! Throughput of the pure placement function, `auctioneer::placement::solve`, on one core.
//!
//! Scenario: 250,000 LRP instances of mixed sizes from 2,500 apps (2 to 198 instances each,
//! 128 MB to 1 GB) onto 1,000 empty cells across 3 zones, filling memory to about 85 %. A few
//! apps ask for an optional `ssd` tag or use a docker rootfs, so several constraint classes are
//! live at once. Only the `solve` call is timed; building the problem is not.
//!
//! The printed ratios compare against published scheduler throughputs collected in
//! `docs/reference/performance-anchors.md`:
//! - Nomad C1M (row 11, §3): 1,000,000 containers on 5,000 hosts in under 5 minutes, about
//!   3,750 placements/s (Nomad 0.3.1, 5 servers, 2016);
//! - kube-scheduler (row 9, §2.3): about 100 pods/s average at 5,000 nodes (2019) up to
//!   792–909 pods/s in SchedulingBasic/500Nodes (2020).
//!
//! Those are whole systems (API, consensus, binding) and this is the placement core alone, so
//! the ratio says the auction's decision is not the bottleneck, not that the system is faster.
//!
//! Run: `cargo bench -p auctioneer --bench solve` (`BENCH_RUNS` sets the repetitions, default 5).

#![allow(missing_docs, clippy::disallowed_types)]

use std::time::Instant;

use auctioneer::placement::{
    CellState, LrpWork, PlacementConfig, PlacementConstraint, Problem, Resources, RootfsProvider, WorkResource, solve,
};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

const CELLS: usize = 1_000;
const ZONES: usize = 3;
const APPS: usize = 2_500;
const NOMAD_C1M: f64 = 3_750.0;
const KUBE_LOW: f64 = 100.0;
const KUBE_HIGH: f64 = 900.0;

fn problem() -> Problem {
    let cells = (0..CELLS)
        .map(|i| {
            let total = Resources::new(128 * 1024, 400 * 1024, 400);
            CellState {
                cell_id: format!("cell-{i:04}"),
                zone: format!("z{}", i % ZONES),
                total,
                available: total,
                rootfs_providers: vec![
                    RootfsProvider::fixed("preloaded", ["cflinuxfs4", "cflinuxfs3"]),
                    RootfsProvider::arbitrary("docker"),
                ],
                optional_placement_tags: if i % 10 == 0 { vec!["ssd".into()] } else { Vec::new() },
                ..CellState::default()
            }
        })
        .collect();
    let memory = [128, 256, 256, 512, 1024];
    let disk = [512, 1024, 1024, 2048, 1024];
    let mut lrps = Vec::with_capacity(250_000);
    for app in 0..APPS {
        // Pairs of apps sum to 200 instances, so the total is exactly 250,000.
        let d = (app / 2 * 37 % 99) as i32;
        let instances = if app % 2 == 0 { 100 + d } else { 100 - d };
        let constraint = PlacementConstraint {
            rootfs: if app % 10 == 3 {
                format!("docker:///org/app-{}", app % 7)
            } else {
                "preloaded:cflinuxfs4".into()
            },
            placement_tags: if app % 50 == 7 { vec!["ssd".into()] } else { Vec::new() },
            volume_drivers: Vec::new(),
        };
        for index in 0..instances {
            lrps.push(LrpWork {
                process_guid: format!("app-{app:05}"),
                index,
                domain: "cf-apps".into(),
                resource: WorkResource {
                    memory_mb: memory[app % memory.len()],
                    disk_mb: disk[app % disk.len()],
                    max_pids: 1024,
                },
                constraint: constraint.clone(),
            });
        }
    }
    Problem { cells, lrps, tasks: Vec::new(), config: PlacementConfig::default() }
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let problem = problem();
    let instances = problem.lrps.len();
    println!(
        "solve benchmark: {instances} instances from {APPS} apps onto {CELLS} cells in {ZONES} zones, {runs} runs, one core"
    );
    let mut rates = Vec::with_capacity(runs);
    for run in 0..runs {
        let mut rng = ChaCha8Rng::seed_from_u64(run as u64);
        let start = Instant::now();
        let solution = solve(&problem, &mut rng);
        let elapsed = start.elapsed();
        let placed = solution.lrp_placements.len();
        let rate = instances as f64 / elapsed.as_secs_f64();
        println!(
            "run {run}: {:>8.1} ms  placed {placed:>7}  failed {:>5}  {:>10.0} placements/s",
            elapsed.as_secs_f64() * 1e3,
            solution.failed_lrps.len(),
            rate
        );
        rates.push(rate);
        // Keep the solution alive until after timing so its drop is not measured.
        drop(solution);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let best = rates[rates.len() - 1];
    println!();
    println!("median {median:.0} placements/s, best {best:.0} placements/s (solve alone)");
    println!("vs Nomad C1M 3,750 placements/s (anchors row 11): {:.0}x", median / NOMAD_C1M);
    println!(
        "vs kube-scheduler 100-900 pods/s (anchors row 9, section 2.3): {:.0}x-{:.0}x",
        median / KUBE_HIGH,
        median / KUBE_LOW
    );
}
