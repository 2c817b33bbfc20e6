//! The measured phase: `trials` rounds; in each, concurrently,
//!
//! - every cell's rep bulk loop (`RepBulkLoop`): fetch its actual LRPs (`RepBulkFetching`,
//!   checked against the seeded count), then for each `StartActualLRP` (`RepStartActualLRP`, the
//!   heartbeat re-assert: a write only when the instance was CLAIMED) and, with probability
//!   `percent_writes / 2` %, `ClaimActualLRP` right after it (`RepClaimActualLRP`), which flips
//!   the instance RUNNING → CLAIMED so the next round's start writes. With
//!   [`RepStarts::Batch`] (what the diego-rs cell rep's bulk sync does) the re-asserts of one
//!   loop go in `StartActualLRPs` calls of at most 1,000 (`RepStartActualLRPs`), and the claims
//!   follow them, one call each as before;
//! - the nsync bulker: all scheduling infos (`NsyncBulkerFetching`, count checked);
//! - the global route emitter: all actual LRPs + all scheduling infos
//!   (`FetchActualLRPsAndSchedulingInfos`, counts checked);
//! - the per-cell route emitters: each cell's actual LRPs + the scheduling infos of their process
//!   guids (`FetchActualLRPsAndSchedulingInfosLocal`);
//! - the cell presence fetch (`CellPresenceFetching`, count checked);
//! - with the database known, right after each rep's fetch, the same read as raw SQL
//!   ([`crate::baseline::ops::PER_CELL_UNDER_LOAD`]), and with the bulker and the global route
//!   emitter, their raw scans ([`crate::baseline::scans_under_load`], on two connections of
//!   their own), so the loaded reads can be set against what the database alone shows under
//!   the same load.
//!
//! The rep loops call over their cell's own connection, as their cell
//! ([`crate::target::Clients::cell`]); the bulker, the route emitters (global and per cell:
//! their scheduling-info reads are an operator's) and the presence fetch call as the operator.
//!
//! Every call waits for a slot of one simulator-wide semaphore (`max_in_flight`, Diego's 25,000
//! semaphore); its latency is measured from when it holds the slot. Claim decisions come from a
//! random stream per (trial, LRP), so a run is reproducible whatever order the calls finish in.
//! The expected event count is tallied from what the writes did: one per successful claim and
//! one per start of an instance the rep's fetch found CLAIMED.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use db::Store;
use futures::StreamExt;
use indicatif::ProgressBar;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use rand::RngExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::baseline;
use crate::config::{Config, RepStarts};
use crate::generator::{self, DOMAIN, Placement, cell_id, stream};
use crate::listing;
use crate::progress::Progress;
use crate::stats::Recorder;
use crate::target::Clients;

/// Operation names of the measured phase (Diego's metric names where it had one).
pub mod ops {
    /// One rep bulk loop: fetch plus every start (and claim) it issued.
    pub const REP_BULK_LOOP: &str = "RepBulkLoop";
    /// `ActualLRPs(cell_id)`.
    pub const REP_BULK_FETCHING: &str = "RepBulkFetching";
    /// `StartActualLRP` of an instance the rep runs.
    pub const REP_START: &str = "RepStartActualLRP";
    /// `StartActualLRPs` of (up to 1,000 of) one rep's instances (`--rep-starts batch`).
    pub const REP_START_BATCH: &str = "RepStartActualLRPs";
    /// `ClaimActualLRP` of a running instance (makes the next start a write).
    pub const REP_CLAIM: &str = "RepClaimActualLRP";
    /// All scheduling infos.
    pub const NSYNC_BULKER: &str = "NsyncBulkerFetching";
    /// All actual LRPs + all scheduling infos.
    pub const ROUTE_EMITTER: &str = "FetchActualLRPsAndSchedulingInfos";
    /// One cell's actual LRPs + their scheduling infos.
    pub const ROUTE_EMITTER_LOCAL: &str = "FetchActualLRPsAndSchedulingInfosLocal";
    /// `Cells()`.
    pub const CELL_PRESENCE_FETCHING: &str = "CellPresenceFetching";
}

/// What the trials did, beyond the latencies.
#[derive(Debug, Clone, Serialize)]
pub struct TrialsReport {
    /// Wall time of each trial, in seconds.
    pub trial_durations_s: Vec<f64>,
    /// CPU time of each trial ([`crate::cpu`]); empty where it cannot be measured.
    pub trial_cpu: Vec<crate::cpu::Spent>,
    /// Successful claims.
    pub claims: u64,
    /// Starts that wrote (the instance was CLAIMED).
    pub writing_starts: u64,
    /// Instance events the writes caused (what the global subscriber should receive).
    pub expected_events: u64,
    /// The same per cell, by cell index.
    #[serde(skip)]
    pub expected_events_by_cell: Vec<u64>,
}

struct Shared {
    config: Config,
    clients: Clients,
    store: Option<Store>,
    /// The pool of the raw scans under load (see the module docs), when the database is known.
    scans: Option<Store>,
    recorder: Recorder,
    placement: Arc<Placement>,
    slots: Semaphore,
    claims: AtomicU64,
    writing_starts: AtomicU64,
    expected_by_cell: Vec<AtomicU64>,
    bar: ProgressBar,
}

impl Shared {
    fn expect_event(&self, cell: usize) {
        self.expected_by_cell[cell].fetch_add(1, Ordering::Relaxed);
    }

    /// A start of an instance the rep's fetch found CLAIMED succeeded: it wrote, and an event
    /// follows.
    fn started_claimed(&self, cell: usize) {
        self.writing_starts.fetch_add(1, Ordering::Relaxed);
        self.expect_event(cell);
    }

    async fn slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.slots.acquire().await.unwrap_or_else(|_| unreachable!("the semaphore is never closed"))
    }
}

/// Runs every trial.
pub async fn run(
    config: &Config,
    clients: &Clients,
    bbs_pid: Option<u32>,
    store: Option<&Store>,
    placement: &Arc<Placement>,
    recorder: &Recorder,
    progress: &Progress,
) -> TrialsReport {
    let steps_per_trial = (config.desired_lrps + config.cells) as u64;
    let scans = match store {
        Some(store) => match store.dedicated(2, std::time::Duration::from_secs(60)).await {
            Ok(scans) => Some(scans),
            Err(e) => {
                recorder.fail(crate::baseline::ops::SCHEDULING_SCAN_UNDER_LOAD, format!("no connection: {e}"));
                None
            }
        },
        None => None,
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        clients: clients.clone(),
        store: store.cloned(),
        scans,
        recorder: recorder.clone(),
        placement: placement.clone(),
        slots: Semaphore::new(config.max_in_flight),
        claims: AtomicU64::new(0),
        writing_starts: AtomicU64::new(0),
        expected_by_cell: (0..config.cells).map(|_| AtomicU64::new(0)).collect(),
        bar: progress.bar(steps_per_trial * config.trials as u64, "trials: rep loops, bulkers, route emitters"),
    });
    let (mut trial_durations_s, mut trial_cpu) = (Vec::new(), Vec::new());
    for trial in 0..config.trials {
        shared.bar.set_message(format!("trial {}/{}", trial + 1, config.trials));
        let started = Instant::now();
        let cpu_before = crate::cpu::Snapshot::now(bbs_pid);
        let mut tasks = Vec::new();
        for cell in 0..config.cells {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move { rep_bulk_loop(&shared, trial, cell).await }));
        }
        let periodic = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let local = async {
                    if shared.config.route_emitters.local() {
                        futures::future::join_all((0..shared.config.cells).map(|c| local_route_emitter(&shared, c)))
                            .await;
                    }
                };
                let global = async {
                    if shared.config.route_emitters.global() {
                        global_route_emitter(&shared).await;
                    }
                };
                let raw = async {
                    if let Some(scans) = &shared.scans {
                        let global = shared.config.route_emitters.global();
                        baseline::scans_under_load(scans, shared.config.desired_lrps, global, &shared.recorder).await;
                    }
                };
                futures::join!(nsync_bulker(&shared), global, local, cell_presences(&shared), raw);
            })
        };
        for task in tasks {
            if let Err(e) = task.await {
                recorder.fail(ops::REP_BULK_LOOP, format!("a rep loop panicked: {e}"));
            }
        }
        if let Err(e) = periodic.await {
            recorder.fail(ops::NSYNC_BULKER, format!("a periodic fetcher panicked: {e}"));
        }
        trial_durations_s.push(started.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu_before, crate::cpu::Snapshot::now(bbs_pid)) {
            trial_cpu.push(after.since(&before));
        }
    }
    shared.bar.finish();
    if let Some(scans) = &shared.scans {
        scans.close().await;
    }
    let expected_events_by_cell: Vec<u64> = shared.expected_by_cell.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    TrialsReport {
        trial_durations_s,
        trial_cpu,
        claims: shared.claims.load(Ordering::Relaxed),
        writing_starts: shared.writing_starts.load(Ordering::Relaxed),
        expected_events: expected_events_by_cell.iter().sum(),
        expected_events_by_cell,
    }
}

/// The index of a benchmark process guid (`BENCHMARK-BBS-GUID-000042` → 42).
fn lrp_index(process_guid: &str) -> Option<usize> {
    process_guid.strip_prefix("BENCHMARK-BBS-GUID-")?.parse().ok()
}

async fn rep_bulk_loop(shared: &Shared, trial: usize, cell: usize) {
    let recorder = &shared.recorder;
    let loop_started = Instant::now();
    let fetched = {
        let _slot = shared.slot().await;
        let request = api::ActualLrPsRequest { cell_id: cell_id(cell), ..Default::default() };
        recorder.time(ops::REP_BULK_FETCHING, listing::actual_lrps(shared.clients.cell(cell), request)).await
    };
    shared.bar.inc(1);
    if let Some(store) = &shared.store {
        let _slot = shared.slot().await;
        baseline::per_cell(store, &shared.placement, cell, baseline::ops::PER_CELL_UNDER_LOAD, recorder).await;
    }
    let actuals = match fetched {
        Ok(actuals) => actuals,
        Err(e) => {
            recorder.fail(ops::REP_BULK_LOOP, format!("{}: fetch failed: {e}", cell_id(cell)));
            shared.bar.inc(shared.placement.lrps_of[cell].len() as u64);
            return;
        }
    };
    let expected = shared.placement.lrps_of[cell].len();
    if actuals.len() != expected {
        recorder.fail(
            ops::REP_BULK_FETCHING,
            format!("{}: fetched {} actual LRPs, expected {expected}", cell_id(cell), actuals.len()),
        );
    }
    let failures = match shared.config.rep_starts {
        RepStarts::Each => {
            let failures = AtomicU64::new(0);
            futures::stream::iter(actuals)
                .for_each_concurrent(shared.config.cell_concurrency, |actual| {
                    let failures = &failures;
                    async move {
                        if !operate(shared, trial, cell, actual).await {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        shared.bar.inc(1);
                    }
                })
                .await;
            failures.load(Ordering::Relaxed)
        }
        RepStarts::Batch => operate_batched(shared, trial, cell, actuals).await,
    };
    if failures == 0 {
        recorder.record(ops::REP_BULK_LOOP, loop_started.elapsed());
    } else {
        recorder.fail(ops::REP_BULK_LOOP, format!("{}: {failures} operations failed", cell_id(cell)));
    }
}

/// The operation a rep enqueues for one of its actual LRPs: start (re-assert), maybe claim.
/// Returns whether every call succeeded.
async fn operate(shared: &Shared, trial: usize, cell: usize, actual: pb::ActualLrp) -> bool {
    let recorder = &shared.recorder;
    let Some((i, was_claimed)) = resolve(shared, cell, &actual, ops::REP_START) else {
        return false;
    };
    let instance_guid = &shared.placement.instance_guid[i];
    let start = {
        let _slot = shared.slot().await;
        let request = generator::start_request(i, cell, instance_guid);
        recorder.time(ops::REP_START, shared.clients.cell(cell).start_actual_lrp(request)).await
    };
    if start.is_err() {
        return false;
    }
    if was_claimed {
        shared.started_claimed(cell);
    }
    claim(shared, trial, cell, i).await
}

/// The benchmark LRP an actual LRP of `cell`'s fetch stands for, and whether it was CLAIMED;
/// `None` (a failure of `op`) for an actual the benchmark did not seed.
fn resolve(shared: &Shared, cell: usize, actual: &pb::ActualLrp, op: &'static str) -> Option<(usize, bool)> {
    let guid = actual.actual_lrp_key.as_ref().map(|k| k.process_guid.as_str()).unwrap_or_default();
    let Some(i) = lrp_index(guid).filter(|&i| i < shared.placement.cell_of.len()) else {
        shared.recorder.fail(op, format!("{}: unexpected actual LRP {guid:?}", cell_id(cell)));
        return None;
    };
    Some((i, actual.state == pb::ActualLrpState::Claimed as i32))
}

/// With probability `percent_writes / 2` % (a stream per trial and LRP), claims LRP `i` again,
/// which flips it RUNNING → CLAIMED so the next trial's start writes. Returns whether the claim
/// (if any) succeeded.
async fn claim(shared: &Shared, trial: usize, cell: usize, i: usize) -> bool {
    let recorder = &shared.recorder;
    let instance_guid = &shared.placement.instance_guid[i];
    let claim = stream(shared.config.seed, &[5, trial as u64, i as u64]).random_bool(shared.config.claim_probability());
    if !claim {
        return true;
    }
    let claimed = {
        let _slot = shared.slot().await;
        let request = generator::claim_request(i, cell, instance_guid);
        recorder.time(ops::REP_CLAIM, shared.clients.cell(cell).claim_actual_lrp(request)).await
    };
    if claimed.is_err() {
        return false;
    }
    shared.claims.fetch_add(1, Ordering::Relaxed);
    shared.expect_event(cell);
    true
}

/// `--rep-starts batch`: re-asserts every fetched instance in `StartActualLRPs` calls of at
/// most [`proto::limits::MAX_BATCH_ITEMS`], then claims as [`operate`] does, `cell_concurrency`
/// at a time. Returns the operations that failed (a failed call counts all of its items).
async fn operate_batched(shared: &Shared, trial: usize, cell: usize, actuals: Vec<pb::ActualLrp>) -> u64 {
    let recorder = &shared.recorder;
    let total = actuals.len() as u64;
    let mut failures = 0u64;
    let resolved: Vec<(usize, bool)> = actuals
        .iter()
        .filter_map(|actual| {
            let found = resolve(shared, cell, actual, ops::REP_START_BATCH);
            failures += u64::from(found.is_none());
            found
        })
        .collect();
    let mut started = Vec::with_capacity(resolved.len());
    for chunk in resolved.chunks(proto::limits::MAX_BATCH_ITEMS) {
        let starts =
            chunk.iter().map(|&(i, _)| generator::start_request(i, cell, &shared.placement.instance_guid[i])).collect();
        let answered = {
            let _slot = shared.slot().await;
            let request = api::StartActualLrPsRequest { starts };
            recorder.time(ops::REP_START_BATCH, shared.clients.cell(cell).start_actual_lr_ps(request)).await
        };
        let results = match answered {
            Ok(response) => response.into_inner().results,
            Err(e) => {
                recorder.fail(ops::REP_START_BATCH, format!("{}: {e}", cell_id(cell)));
                failures += chunk.len() as u64;
                continue;
            }
        };
        if results.len() != chunk.len() {
            recorder.fail(
                ops::REP_START_BATCH,
                format!("{}: {} results for {} starts", cell_id(cell), results.len(), chunk.len()),
            );
        }
        for (&(i, was_claimed), result) in chunk.iter().zip(&results) {
            match &result.error {
                None => {
                    if was_claimed {
                        shared.started_claimed(cell);
                    }
                    started.push(i);
                }
                Some(e) => {
                    recorder.fail(ops::REP_START_BATCH, format!("{}: {}: {}", cell_id(cell), e.r#type, e.message));
                    failures += 1;
                }
            }
        }
        failures += chunk.len().saturating_sub(results.len()) as u64;
    }
    let claims_failed = AtomicU64::new(0);
    futures::stream::iter(started)
        .for_each_concurrent(shared.config.cell_concurrency, |i| {
            let claims_failed = &claims_failed;
            async move {
                if !claim(shared, trial, cell, i).await {
                    claims_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    shared.bar.inc(total);
    failures + claims_failed.load(Ordering::Relaxed)
}

async fn nsync_bulker(shared: &Shared) {
    let recorder = &shared.recorder;
    let fetched = {
        let _slot = shared.slot().await;
        let request = api::DesiredLrPsRequest { domain: DOMAIN.into(), ..Default::default() };
        recorder.time(ops::NSYNC_BULKER, listing::scheduling_infos(shared.clients.bbs(), request)).await
    };
    if let Ok(infos) = fetched {
        let got = infos.len();
        if got != shared.config.desired_lrps {
            recorder
                .fail(ops::NSYNC_BULKER, format!("{got} scheduling infos, expected {}", shared.config.desired_lrps));
        }
    }
}

async fn global_route_emitter(shared: &Shared) {
    let recorder = &shared.recorder;
    let _slot = shared.slot().await;
    let client = shared.clients.bbs();
    let body = async {
        let actuals = listing::actual_lrps(client.clone(), api::ActualLrPsRequest::default()).await?.len();
        let infos = listing::scheduling_infos(client.clone(), api::DesiredLrPsRequest::default()).await?.len();
        Ok::<_, tonic::Status>((actuals, infos))
    };
    if let Ok((actuals, infos)) = recorder.time(ops::ROUTE_EMITTER, body).await {
        let expected = shared.config.desired_lrps;
        if actuals != expected || infos != expected {
            recorder.fail(
                ops::ROUTE_EMITTER,
                format!("{actuals} actual LRPs and {infos} scheduling infos, expected {expected} of each"),
            );
        }
    }
}

async fn local_route_emitter(shared: &Shared, cell: usize) {
    let recorder = &shared.recorder;
    let _slot = shared.slot().await;
    let client = shared.clients.bbs();
    let body = async {
        let request = api::ActualLrPsRequest { cell_id: cell_id(cell), ..Default::default() };
        let actuals = listing::actual_lrps(client.clone(), request).await?;
        let process_guids: Vec<String> =
            actuals.iter().filter_map(|a| a.actual_lrp_key.as_ref().map(|k| k.process_guid.clone())).collect();
        let infos = if process_guids.is_empty() {
            0
        } else {
            let request = api::DesiredLrPsRequest { process_guids, ..Default::default() };
            listing::scheduling_infos(client.clone(), request).await?.len()
        };
        Ok::<_, tonic::Status>((actuals.len(), infos))
    };
    if let Ok((actuals, infos)) = recorder.time(ops::ROUTE_EMITTER_LOCAL, body).await {
        let expected = shared.placement.lrps_of[cell].len();
        if actuals != expected || infos != expected {
            recorder.fail(
                ops::ROUTE_EMITTER_LOCAL,
                format!("{}: {actuals} actual LRPs and {infos} scheduling infos, expected {expected}", cell_id(cell)),
            );
        }
    }
}

async fn cell_presences(shared: &Shared) {
    let recorder = &shared.recorder;
    let fetched = {
        let _slot = shared.slot().await;
        recorder.time(ops::CELL_PRESENCE_FETCHING, listing::cells(shared.clients.bbs())).await
    };
    if let Ok(cells) = fetched {
        let got = cells.iter().filter(|c| c.cell_id.starts_with("cell-")).count();
        if got != shared.config.cells {
            recorder.fail(ops::CELL_PRESENCE_FETCHING, format!("{got} cells, expected {}", shared.config.cells));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn guid_indices() {
        assert_eq!(super::lrp_index("BENCHMARK-BBS-GUID-000042"), Some(42));
        assert_eq!(super::lrp_index("other"), None);
    }
}
