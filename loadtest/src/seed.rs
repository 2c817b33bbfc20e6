//! Setup: the cells' presences through Locket, then D desired LRPs with their single instance
//! RUNNING on a random cell, through the BBS (Diego's way) or straight through `db::Store`.
//! Through the BBS, `DesireLRP` is the operator's call and `StartActualLRP` the placed cell's,
//! over its own connection (as the role table requires under TLS). With `--seed-batch N` (N > 1,
//! the default) the same calls go in batches: `DesireLRPs` of N LRPs, then `StartActualLRPs` of
//! each cell's instances ([`batch`]).

mod batch;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bbs::clock::{Clock, SystemClock};
use db::Store;
use db::sql::actual_lrps::StartInfo;
use futures::StreamExt;
use proto::pb::locket::v1 as locket;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Config, SeedVia};
use crate::generator::{self, Placement, cell_id};
use crate::progress::Progress;
use crate::stats::Recorder;
use crate::target::Clients;

/// Presence TTL: within the BBS's default `locket.max_presence_ttl` (2 min). Diego's benchmark
/// locked presences for 10 days; the BBS bounds them now, so the simulator renews them
/// ([`keep_presences`]) like a real rep does.
const PRESENCE_TTL_S: i64 = 120;

/// How often [`keep_presences`] renews every presence: a quarter of its TTL.
const PRESENCE_RENEWAL: Duration = Duration::from_secs(30);

/// Presence renewals in flight at once.
const PRESENCE_RENEWALS_AT_ONCE: usize = 64;

/// Operation names of the setup phase.
pub mod ops {
    /// One Locket `Lock` of a cell presence.
    pub const CELL_PRESENCE_SETTING: &str = "CellPresenceSetting";
    /// One `DesireLRP` while seeding.
    pub const SEED_DESIRE: &str = "SeedDesireLRP";
    /// One `StartActualLRP` of a fresh UNCLAIMED instance while seeding.
    pub const SEED_START: &str = "SeedStartActualLRP";
    /// One `DesireLRPs` call of `--seed-batch` desires while seeding.
    pub const SEED_DESIRE_BATCH: &str = "SeedDesireLRPs";
    /// One `StartActualLRPs` call of one cell's instances while seeding.
    pub const SEED_START_BATCH: &str = "SeedStartActualLRPs";
    /// A desire refused inside a `DesireLRPs` call (errors only).
    pub const SEED_DESIRE_ITEM: &str = "SeedDesireLRPs item";
    /// A start refused inside a `StartActualLRPs` call (errors only).
    pub const SEED_START_ITEM: &str = "SeedStartActualLRPs item";
}

/// How seeding went.
#[derive(Debug, Clone, Serialize)]
pub struct SeedingReport {
    /// `grpc` or `store`.
    pub via: SeedVia,
    /// LRPs seeded without error.
    pub seeded: usize,
    /// LRPs whose desire or start failed.
    pub errors: usize,
    /// Wall time of the whole seeding, presences excluded.
    pub duration_s: f64,
    /// Seeded LRPs per second.
    pub lrps_per_s: f64,
}

/// The owner of simulated cell `c`'s presence: the cell's own identity and an instance
/// (`diego://cell/cell-3#benchmark-bbs`), as the Locket requires of a lease's owner under mutual
/// TLS (`svc::lease::owner`).
pub fn presence_owner(c: usize) -> String {
    format!("diego://cell/{}#benchmark-bbs", cell_id(c))
}

fn presence_resource(c: usize) -> locket::Resource {
    let presence = generator::cell_presence(c);
    locket::Resource {
        key: cell_id(c),
        owner: presence_owner(c),
        value: serde_json::to_string(&presence).unwrap_or_else(|e| unreachable!("a presence serializes: {e}")),
        type_code: locket::TypeCode::Presence as i32,
    }
}

/// Tries a cell makes to register its presence before the run gives up (a rep retries forever).
const PRESENCE_ATTEMPTS: usize = 5;

/// Pause between two tries of one cell's presence.
const PRESENCE_RETRY: Duration = Duration::from_secs(1);

/// Registers every cell's presence (one Locket `Lock` per cell, `CellPresenceSetting`), each over
/// its cell's connection, as that cell. Like Diego's presence runner, a cell tries again after a
/// failure (all cells lock at once, so a large run can see a few time out); the time is until
/// its presence is held.
pub async fn register_presences(config: &Config, clients: &Clients, recorder: &Recorder) -> anyhow::Result<()> {
    let results = futures::future::join_all((0..config.cells).map(|c| {
        let mut locket = clients.cell_locket(c);
        let recorder = recorder.clone();
        async move {
            let register = async {
                let mut attempt = 1;
                loop {
                    let request =
                        locket::LockRequest { resource: Some(presence_resource(c)), ttl_in_seconds: PRESENCE_TTL_S };
                    match locket.lock(request).await {
                        Ok(held) => return Ok(held),
                        Err(e) if attempt == PRESENCE_ATTEMPTS => return Err(e),
                        Err(e) => {
                            tracing::debug!(cell = c, attempt, error = %e, "presence not registered; trying again");
                            attempt += 1;
                            tokio::time::sleep(PRESENCE_RETRY).await;
                        }
                    }
                }
            };
            recorder.time(ops::CELL_PRESENCE_SETTING, register).await
        }
    }))
    .await;
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = errors.first() {
        anyhow::bail!(
            "{} of {} cell presences could not be registered after {PRESENCE_ATTEMPTS} tries each; the first error: {first}",
            errors.len(),
            config.cells
        );
    }
    Ok(())
}

/// Renews every cell's presence every [`PRESENCE_RENEWAL`] until the returned guard is
/// dropped, so the simulated cells stay present however long the run takes. Like a fleet of
/// reps, each renewing on its own clock, the renewals are spread evenly over the period (cell
/// `c` at `c / cells` of it), at most [`PRESENCE_RENEWALS_AT_ONCE`] in flight.
pub fn keep_presences(config: &Config, clients: &Clients) -> PresenceKeeper {
    let cells = config.cells;
    let clients = clients.clone();
    let task = tokio::spawn(async move {
        // The first round starts at once: registering thousands of cells at once can take
        // longer than a renewal period, and the first cells registered must not expire meanwhile
        // (at 1M LRPs, 1,331 of 4,000 cells did).
        loop {
            let round = Instant::now();
            // Every rep renews its own presence. One after the other, 2,000 renewals under load
            // outlasted the TTL and the last cells were declared lost; all at once, 4,000
            // renewals every 30 s queued behind each other in the BBS's Locket pool.
            futures::stream::iter(0..cells)
                .map(|c| {
                    let mut locket = clients.cell_locket(c);
                    async move {
                        tokio::time::sleep_until(round + renewal_offset(c, cells)).await;
                        let request = locket::LockRequest {
                            resource: Some(presence_resource(c)),
                            ttl_in_seconds: PRESENCE_TTL_S,
                        };
                        if let Err(status) = locket.lock(request).await {
                            tracing::warn!(cell = c, %status, "renewing a simulated cell's presence failed");
                        }
                    }
                })
                .buffer_unordered(PRESENCE_RENEWALS_AT_ONCE)
                .for_each(|()| async {})
                .await;
            // A round that ran late (a slow BBS) starts the next at once.
            tokio::time::sleep_until(round + PRESENCE_RENEWAL).await;
        }
    });
    PresenceKeeper(task)
}

/// When in each renewal round cell `c` of `cells` renews: spread evenly over the period.
fn renewal_offset(c: usize, cells: usize) -> Duration {
    let cells = u32::try_from(cells.max(1)).unwrap_or(u32::MAX);
    let c = u32::try_from(c).unwrap_or(u32::MAX).min(cells);
    PRESENCE_RENEWAL / cells * c
}

/// Stops renewing the presences when dropped.
pub struct PresenceKeeper(tokio::task::JoinHandle<()>);

impl Drop for PresenceKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Releases every cell's presence (end of run).
pub async fn release_presences(config: &Config, clients: &Clients) {
    futures::future::join_all((0..config.cells).map(|c| {
        let mut locket = clients.cell_locket(c);
        async move {
            let _ = locket.release(locket::ReleaseRequest { resource: Some(presence_resource(c)) }).await;
        }
    }))
    .await;
}

/// Seeds every LRP of `placement`: desired with one instance, RUNNING on its cell.
pub async fn seed(
    config: &Config,
    clients: &Clients,
    store: Option<&Store>,
    placement: &Arc<Placement>,
    recorder: &Recorder,
    progress: &Progress,
) -> anyhow::Result<SeedingReport> {
    let bar = progress.bar(config.desired_lrps as u64, "seeding desired LRPs (RUNNING)");
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let store = match config.seed_via {
        SeedVia::Store => Some(store.context("--seed-via store needs the database (--database-url)")?.clone()),
        SeedVia::Grpc => None,
    };
    let batched = store.is_none() && config.seed_batch > 1;
    if batched {
        let failed = batch::seed(config, placement, clients, recorder, &bar).await;
        errors.fetch_add(failed.0, Ordering::Relaxed);
    }
    // One LRP per call (Diego's way, or straight into the store), unless the batches did it.
    let per_lrp_workers = if batched { 0 } else { config.seed_workers };
    let workers: Vec<_> = (0..per_lrp_workers)
        .map(|_| {
            let (next, errors, placement, clients, recorder, bar, store) = (
                next.clone(),
                errors.clone(),
                placement.clone(),
                clients.clone(),
                recorder.clone(),
                bar.clone(),
                store.clone(),
            );
            let (seed, total) = (config.seed, config.desired_lrps);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let ok = match &store {
                        None => seed_one_grpc(seed, i, &placement, &clients, &recorder).await,
                        Some(store) => seed_one_store(seed, i, &placement, store).await,
                    };
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    bar.inc(1);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.context("a seeding worker panicked")?;
    }
    bar.finish();
    let duration = started.elapsed();
    let errors = errors.load(Ordering::Relaxed);
    let report = SeedingReport {
        via: config.seed_via,
        seeded: config.desired_lrps - errors,
        errors,
        duration_s: duration.as_secs_f64(),
        lrps_per_s: config.desired_lrps as f64 / duration.as_secs_f64().max(1e-9),
    };
    let allowed = (config.error_tolerance * config.desired_lrps as f64).floor() as usize;
    anyhow::ensure!(
        errors <= allowed,
        "seeding failed for {errors} of {} LRPs (tolerance {allowed}); see the log",
        config.desired_lrps
    );
    Ok(report)
}

async fn seed_one_grpc(seed: u64, i: usize, placement: &Placement, clients: &Clients, recorder: &Recorder) -> bool {
    let desire = recorder.time(ops::SEED_DESIRE, clients.bbs().desire_lrp(generator::desire_request(seed, i))).await;
    if let Err(e) = desire {
        tracing::warn!(lrp = i, error = %e, "seeding: DesireLRP failed");
        return false;
    }
    let cell = placement.cell_of[i];
    let start = generator::start_request(i, cell, &placement.instance_guid[i]);
    match recorder.time(ops::SEED_START, clients.cell(cell).start_actual_lrp(start)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(lrp = i, error = %e, "seeding: StartActualLRP failed");
            false
        }
    }
}

async fn seed_one_store(seed: u64, i: usize, placement: &Placement, store: &Store) -> bool {
    let result: anyhow::Result<()> = async {
        let lrp = proto::models::DesiredLrp::try_from(generator::desired_lrp(seed, i))?;
        let now = SystemClock.now_ns();
        store.desire_lrp(&lrp, now).await?;
        let request = generator::start_request(i, placement.cell_of[i], &placement.instance_guid[i]);
        let key = proto::convert::actual_lrp_key_from_pb(request.actual_lrp_key)?;
        let instance_key =
            proto::convert::instance_key_from_pb(request.actual_lrp_instance_key)?.context("instance key")?;
        let net_info = proto::convert::net_info_from_pb(request.actual_lrp_net_info)?.context("net info")?;
        let start = StartInfo {
            net_info,
            internal_routes: vec![],
            metric_tags: Default::default(),
            routable: request.routable.unwrap_or(true),
            availability_zone: request.availability_zone,
        };
        store.start_actual_lrp(&key, &instance_key, &start, SystemClock.now_ns()).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(lrp = i, error = %e, "seeding through the store failed");
            false
        }
    }
}

/// Waits until the BBS serves exactly the seeded instances (they were all written before this
/// is called; this guards against a BBS that silently lost some).
pub async fn verify(config: &Config, clients: &Clients) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let request = proto::pb::bbs::v1::ActualLrPsRequest { domain: generator::DOMAIN.into(), ..Default::default() };
    let all = crate::listing::actual_lrps(clients.bbs(), request).await?;
    let running = all.iter().filter(|a| a.state == proto::pb::models::v1::ActualLrpState::Running as i32).count();
    anyhow::ensure!(
        running + (config.error_tolerance * config.desired_lrps as f64) as usize >= config.desired_lrps,
        "after seeding only {running} of {} instances are RUNNING",
        config.desired_lrps
    );
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use svc::identity::{Identity, Role};

    #[test]
    fn renewals_are_spread_evenly_over_the_period() {
        let offsets: Vec<Duration> = (0..4).map(|c| super::renewal_offset(c, 4)).collect();
        assert_eq!(offsets, [0, 7_500, 15_000, 22_500].map(Duration::from_millis));
        assert!(super::renewal_offset(3_999, 4_000) < super::PRESENCE_RENEWAL);
        assert_eq!(super::renewal_offset(0, 0), Duration::ZERO, "no cells: no division by zero");
    }

    #[test]
    fn a_simulated_cell_owns_its_presence_as_itself() {
        for c in [0, 3, 999] {
            let cell = Identity::new(Role::Cell, super::cell_id(c)).unwrap();
            assert!(svc::lease::is_own_owner(&cell, &super::presence_owner(c)), "{}", super::presence_owner(c));
        }
    }
}
