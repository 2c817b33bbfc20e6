//! The cluster smoke benchmark (the Diego team's smoke test): desire K instances across A apps
//! through a real BBS, auctioneer and `sim` reps, and time how long until all are RUNNING,
//! recording every instance's lifecycle (desired → UNCLAIMED → CLAIMED → RUNNING).
//!
//! - Target: a cluster this process starts (a BBS on the database URL, as for the BBS workload;
//!   the auctioneer; N reps with the `sim` runtime, all on 127.0.0.1:0), or an existing cluster
//!   by `--bbs-address` (its auctioneer and reps must be running; the apps are removed at the
//!   end).
//! - Transport: plaintext, or with `--tls` mutual TLS on every hop: the BBS, the auctioneer and
//!   every rep get certificates from one PKI under `<output>/tls` (or `--tls-dir`), and the
//!   benchmark's own calls (desires, listings, the event stream) go as
//!   `diego://operator/benchmark`.
//! - Lifecycle times come from a global instance-event subscriber opened before the first
//!   desire (client receive times, relative to the first DesireLRP sent); "all RUNNING" is also
//!   confirmed by polling `ActualLRPs` every 250 ms, so a lost event cannot fake or hide it.
//! - Report: a table (time to all RUNNING next to Diego's published "under 30 s" for 4,000
//!   instances on 100 cells; per-phase latency percentiles), `smoke-report.json` with every
//!   instance's lifecycle and the raw histograms, and SVG charts: the lifecycle timeline (one row
//!   per instance, coloured by state over time) and one latency distribution per phase.

mod config;
mod observer;
mod report;
mod timeline;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use cli::cluster::{Cluster, ClusterSpec};
use futures::StreamExt;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tokio::time::Instant;

pub use self::config::{SmokeArgs, SmokeConfig, app_guid, smoke_lrp};
pub use self::observer::Lifecycle;
pub use self::report::SmokeReport;

use self::observer::Observer;
use crate::operations::{Catalogue, Files};
use crate::progress::Progress;
use crate::stats::Recorder;
use crate::target::{Clients, Target, TargetSpec};

/// The smoke benchmark's domain.
pub const DOMAIN: &str = "benchmark-smoke";
/// Diego's published figure: 4,000 instances on 100 cells all RUNNING in under 30 s.
pub const DIEGO_SECONDS: f64 = 30.0;

/// Operation names of the smoke benchmark.
pub mod ops {
    /// One `DesireLRP` (one app, several instances).
    pub const DESIRE: &str = "SmokeDesireLRP";
    /// One `DesireLRPs` call (`desire_batch` apps); a refused app counts as one of its errors.
    pub const DESIRE_BATCH: &str = "SmokeDesireLRPs";
    /// DesireLRP sent → the instance's UNCLAIMED row announced.
    pub const TO_UNCLAIMED: &str = "DesiredToUnclaimed";
    /// UNCLAIMED → CLAIMED (batching, auction, Perform, the rep's claim).
    pub const TO_CLAIMED: &str = "UnclaimedToClaimed";
    /// CLAIMED → RUNNING (container created and healthy, the rep's start).
    pub const TO_RUNNING: &str = "ClaimedToRunning";
    /// DesireLRP sent → RUNNING.
    pub const DESIRED_TO_RUNNING: &str = "DesiredToRunning";
}

/// The order the smoke operations are listed in, all in phase `smoke`.
const CATALOGUE: Catalogue<'static> = Catalogue {
    order: &[
        ("smoke", ops::DESIRE),
        ("smoke", ops::DESIRE_BATCH),
        ("smoke", ops::TO_UNCLAIMED),
        ("smoke", ops::TO_CLAIMED),
        ("smoke", ops::TO_RUNNING),
        ("smoke", ops::DESIRED_TO_RUNNING),
    ],
    diego_2016_ms: &[],
    baseline_of: &[],
};

/// Runs the smoke benchmark and writes its files.
pub async fn run(config: SmokeConfig) -> anyhow::Result<SmokeReport> {
    config.validate()?;
    std::fs::create_dir_all(&config.output).with_context(|| format!("cannot create {}", config.output.display()))?;
    let started = Instant::now();
    let progress = Progress::new(config.progress);
    let spec = TargetSpec {
        bbs_address: config.bbs_address.clone(),
        database_url: config.database_url.clone(),
        seed: config.seed,
        output: config.output.clone(),
        reseed: config.reseed,
        keep_database: config.keep_database,
        // The observer must see every event of the burst.
        event_buffer: 1 << 16,
        max_event_subscribers: bbs::config::BbsConfig::default().max_event_subscribers,
        stub_auctioneer: false,
        nodelay_listener: true,
        tls: config.tls_dir(),
    };
    let target = Target::start(&spec).await?;
    let cluster = if config.bbs_address.is_none() {
        Some(Cluster::join(target.info.bbs_address.clone(), cluster_spec(&config)).await?)
    } else {
        None
    };
    let result = run_on(&config, &target, &progress, started).await;
    if let Some(cluster) = cluster {
        let data_dir = cluster.data_dir.clone();
        cluster.shutdown().await;
        let _ = std::fs::remove_dir_all(data_dir);
    }
    if let Err(e) = target.stop().await {
        tracing::warn!(error = %e, "cleaning up the target failed");
    }
    let mut report = result?;
    report.write(&config.output)?;
    Ok(report)
}

/// The in-process cluster around the target's BBS: the auctioneer and `config.cells` sim reps
/// with Diego's timings.
fn cluster_spec(config: &SmokeConfig) -> ClusterSpec {
    let data_dir = config.output.join("smoke-cells");
    let mut spec = ClusterSpec::new(String::new(), data_dir, config.cells, cell_rep::RuntimeKind::Sim);
    spec.fast = false;
    // The same transport as the target's BBS: its PKI directory under --tls, else plaintext.
    spec.tls_dir = config.tls_dir();
    spec.cell_memory_mb = config.cell_memory_mb;
    let (containers, sim_start_delay, seed) = (config.cell_containers, config.sim_start_delay, config.seed);
    spec.rep = std::sync::Arc::new(move |rep| {
        rep.containers = containers;
        rep.disk_mb = cell_rep::RepConfig::default().disk_mb;
        rep.sim_start_delay = sim_start_delay;
    });
    spec.auctioneer_config = std::sync::Arc::new(move |auctioneer| {
        auctioneer.seed = seed;
        // Every rep shares this process's two cores: give State calls room.
        auctioneer.cell_state_timeout = Duration::from_secs(5);
    });
    spec
}

async fn run_on(
    config: &SmokeConfig,
    target: &Target,
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<SmokeReport> {
    let clients = Clients::new(&target.info.bbs_address, 4, 0, Duration::from_secs(60), target.pki.as_deref())?;
    clients.wait_for_leader(Duration::from_secs(60)).await?;
    let upsert = api::UpsertDomainRequest { domain: DOMAIN.into(), ttl: 0 };
    clients.bbs().upsert_domain(upsert).await?;
    if config.bbs_address.is_none() {
        let spinner = progress.spinner(&format!("waiting for {} sim cells", config.cells));
        wait_for_cells(&clients, config.cells, Duration::from_secs(120)).await?;
        spinner.finish();
    }

    // The observer, before the first desire.
    let t0 = Instant::now();
    let observer = Observer::start(&clients, t0).await?;

    // Desire every app.
    let recorder = Recorder::new();
    let bar = progress.bar(config.instances as u64, "instances RUNNING");
    let desired_at = desire_all(config, &clients, &recorder, t0).await;
    let desire_duration_s = t0.elapsed().as_secs_f64();

    // Poll until all RUNNING or the timeout.
    let deadline = t0 + config.timeout;
    let mut polled_all = None;
    let mut running = 0;
    loop {
        let request = api::ActualLrPsRequest { domain: DOMAIN.into(), ..Default::default() };
        if let Ok(lrps) = crate::listing::actual_lrps(clients.bbs(), request).await {
            running = lrps.iter().filter(|l| l.state == pb::ActualLrpState::Running as i32).count();
            bar.set_position(running as u64);
            if running >= config.instances {
                polled_all = Some(t0.elapsed().as_secs_f64());
                // Cells, for instances whose events were missed.
                observer.fill_cells(lrps);
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish();
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tracker = observer.stop().await;

    if config.bbs_address.is_some() {
        // An existing cluster keeps running: remove what this run desired.
        futures::stream::iter(0..config.apps)
            .for_each_concurrent(config.desire_workers, |a| {
                let mut client = clients.bbs();
                async move {
                    let _ = client.remove_desired_lrp(api::RemoveDesiredLrpRequest { process_guid: app_guid(a) }).await;
                }
            })
            .await;
    }

    let mut instances: Vec<Lifecycle> = Vec::with_capacity(config.instances);
    for (a, desired_ms) in desired_at.iter().enumerate() {
        for index in 0..config.instances_of(a) as i32 {
            let key = (app_guid(a), index);
            let mut lifecycle = tracker.by_key.get(&key).cloned().unwrap_or_else(|| Lifecycle {
                process_guid: key.0.clone(),
                index,
                ..Lifecycle::default()
            });
            lifecycle.desired_ms = *desired_ms;
            instances.push(lifecycle);
        }
    }
    record_phases(&instances, &recorder);
    let all_events = instances.iter().all(|l| l.running_ms.is_some());
    let time_to_all_running_s = (all_events && polled_all.is_some())
        .then(|| instances.iter().filter_map(|l| l.running_ms).fold(0.0, f64::max) / 1_000.0);
    let mut per_cell: HashMap<&str, usize> = HashMap::new();
    for l in instances.iter().filter(|l| !l.cell_id.is_empty()) {
        *per_cell.entry(l.cell_id.as_str()).or_default() += 1;
    }
    let (min_per_cell, max_per_cell) =
        (per_cell.values().copied().min().unwrap_or(0), per_cell.values().copied().max().unwrap_or(0));
    Ok(SmokeReport {
        config: config.clone(),
        target: target.info.clone(),
        all_running: polled_all.is_some(),
        time_to_all_running_s,
        time_to_all_running_polled_s: polled_all,
        desire_duration_s,
        running,
        cells_used: per_cell.len(),
        min_per_cell,
        max_per_cell,
        events: tracker.events,
        crashes_or_removals: tracker.crashes_or_removals,
        event_stream_closed: tracker.closed,
        operations: CATALOGUE.operations_of(&recorder.snapshot()),
        instances,
        wall_time_s: started.elapsed().as_secs_f64(),
        files: Files::default(),
    })
}

/// Desires every app, `desire_workers` calls at a time, `desire_batch` apps per `DesireLRPs`
/// call (or one `DesireLRP` per app when it is 1); returns when each app's desire was sent, in
/// milliseconds since `t0`.
async fn desire_all(config: &SmokeConfig, clients: &Clients, recorder: &Recorder, t0: Instant) -> Vec<f64> {
    let desired_at: std::sync::Arc<std::sync::Mutex<Vec<f64>>> =
        std::sync::Arc::new(std::sync::Mutex::new(vec![0.0; config.apps]));
    let apps: Vec<usize> = (0..config.apps).collect();
    futures::stream::iter(apps.chunks(config.desire_batch.max(1)))
        .for_each_concurrent(config.desire_workers, |batch| {
            let (clients, recorder, desired_at) = (clients.clone(), recorder.clone(), desired_at.clone());
            let lrps: Vec<_> = batch.iter().map(|&a| smoke_lrp(config, a)).collect();
            async move {
                if let Ok(mut d) = desired_at.lock() {
                    for &a in batch {
                        d[a] = t0.elapsed().as_secs_f64() * 1_000.0;
                    }
                }
                if config.desire_batch <= 1 {
                    let request = api::DesireLrpRequest { desired_lrp: lrps.into_iter().next() };
                    let _ = recorder.time(ops::DESIRE, clients.bbs().desire_lrp(request)).await;
                    return;
                }
                let request = api::DesireLrPsRequest { desired_lrps: lrps };
                if let Ok(response) = recorder.time(ops::DESIRE_BATCH, clients.bbs().desire_lr_ps(request)).await {
                    for error in response.into_inner().results.into_iter().filter_map(|r| r.error) {
                        recorder.fail(ops::DESIRE_BATCH, format!("{}: {}", error.r#type, error.message));
                    }
                }
            }
        })
        .await;
    desired_at.lock().map(|d| d.clone()).unwrap_or_default()
}

/// Records every instance's phase latencies (a phase not observed counts as an error).
fn record_phases(instances: &[Lifecycle], recorder: &Recorder) {
    let span = |a: f64, b: Option<f64>| b.map(|b| Duration::from_secs_f64(((b - a) / 1_000.0).max(0.0)));
    for l in instances {
        let phases = [
            (ops::TO_UNCLAIMED, span(l.desired_ms, l.unclaimed_ms)),
            (ops::TO_CLAIMED, l.unclaimed_ms.and_then(|u| span(u, l.claimed_ms))),
            (ops::TO_RUNNING, l.claimed_ms.and_then(|c| span(c, l.running_ms))),
            (ops::DESIRED_TO_RUNNING, span(l.desired_ms, l.running_ms)),
        ];
        for (op, d) in phases {
            match d {
                Some(d) => recorder.record(op, d),
                None => recorder.fail(op, format!("{}/{}: phase not observed", l.process_guid, l.index)),
            }
        }
    }
}

async fn wait_for_cells(clients: &Clients, n: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let cells = crate::listing::cells(clients.bbs()).await.map(|cells| cells.len()).unwrap_or(0);
        if cells >= n {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {cells} of {n} cells registered within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
