//! The cluster smoke benchmark (the Diego team's smoke test): desire K instances across A apps
//! through a real BBS, auctioneer and `sim` reps, and time how long until all are RUNNING,
//! recording every instance's lifecycle (desired → UNCLAIMED → CLAIMED → RUNNING).
//!
//! - Target: a cluster this process starts (a BBS on the database URL, as for the BBS workload;
//!   the auctioneer; N reps with the `sim` runtime, all on 127.0.0.1:0), or an existing cluster
//!   by `--bbs-address` (its auctioneer and reps must be running; the apps are removed at the
//!   end).
//! - Lifecycle times come from a global instance-event subscriber opened before the first
//!   desire (client receive times, relative to the first DesireLRP sent); "all RUNNING" is also
//!   confirmed by polling `ActualLRPs` every 250 ms, so a lost event cannot fake or hide it.
//! - Report: a table (time to all RUNNING next to Diego's published "under 30 s" for 4,000
//!   instances on 100 cells; per-phase latency percentiles), `smoke-report.json` with every
//!   instance's lifecycle and the raw histograms, and SVG charts: the lifecycle timeline (one row
//!   per instance, coloured by state over time) and one latency distribution per phase.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use plotters::prelude::*;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::report::{OperationReport, Report, ms};
use crate::stats::Recorder;
use crate::target::{Clients, Target, TargetInfo, TargetSpec, nodelay_listener};

/// The smoke benchmark's domain.
pub const DOMAIN: &str = "benchmark-smoke";
/// Diego's published figure: 4,000 instances on 100 cells all RUNNING in under 30 s.
pub const DIEGO_SECONDS: f64 = 30.0;

/// Operation names of the smoke benchmark.
pub mod ops {
    /// One `DesireLRP` (one app, several instances).
    pub const DESIRE: &str = "SmokeDesireLRP";
    /// DesireLRP sent → the instance's UNCLAIMED row announced.
    pub const TO_UNCLAIMED: &str = "DesiredToUnclaimed";
    /// UNCLAIMED → CLAIMED (batching, auction, Perform, the rep's claim).
    pub const TO_CLAIMED: &str = "UnclaimedToClaimed";
    /// CLAIMED → RUNNING (container created and healthy, the rep's start).
    pub const TO_RUNNING: &str = "ClaimedToRunning";
    /// DesireLRP sent → RUNNING.
    pub const DESIRED_TO_RUNNING: &str = "DesiredToRunning";
}

/// Flags of the smoke benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct SmokeArgs {
    /// Drive the existing cluster whose BBS is at this address (auctioneer and reps running).
    #[arg(long, value_name = "ADDR")]
    pub bbs_address: Option<String>,
    /// Database of the in-process cluster's BBS (as for the BBS workload; default: a fresh
    /// SQLite file in the output directory).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Sim cells of the in-process cluster.
    #[arg(long, default_value_t = 100)]
    pub cells: usize,
    /// Instances desired in total.
    #[arg(long, default_value_t = 4_000)]
    pub instances: usize,
    /// Apps (desired LRPs) the instances are spread over.
    #[arg(long, default_value_t = 400)]
    pub apps: usize,
    /// Seed (app contents, the auctioneer's tie breaks, database name).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for smoke-table.txt, smoke-report.json and charts/.
    #[arg(long, value_name = "DIR", default_value = "benchmark-bbs-smoke-output")]
    pub output: PathBuf,
    /// Memory of each sim cell, in MB.
    #[arg(long, default_value_t = 8_192)]
    pub cell_memory_mb: i32,
    /// Container slots of each sim cell.
    #[arg(long, default_value_t = 249)]
    pub cell_containers: i32,
    /// Memory of each instance, in MB.
    #[arg(long, default_value_t = 128)]
    pub instance_memory_mb: i32,
    /// Milliseconds a sim container takes to become healthy.
    #[arg(long, default_value_t = 500)]
    pub sim_start_delay_ms: u64,
    /// Concurrent DesireLRP calls.
    #[arg(long, default_value_t = 16)]
    pub desire_workers: usize,
    /// Seconds to wait for all instances to run.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Keep a database this run created.
    #[arg(long)]
    pub keep_database: bool,
    /// Wipe a named database that already holds desired LRPs.
    #[arg(long)]
    pub reseed: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// One smoke run.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeConfig {
    /// An existing cluster's BBS.
    pub bbs_address: Option<String>,
    /// The in-process cluster's database (serialized without its password).
    #[serde(serialize_with = "crate::config::redacted")]
    pub database_url: Option<String>,
    /// Sim cells.
    pub cells: usize,
    /// Instances in total.
    pub instances: usize,
    /// Apps.
    pub apps: usize,
    /// Seed.
    pub seed: u64,
    /// Output directory.
    pub output: PathBuf,
    /// Memory per cell (MB).
    pub cell_memory_mb: i32,
    /// Container slots per cell.
    pub cell_containers: i32,
    /// Memory per instance (MB).
    pub instance_memory_mb: i32,
    /// How long a sim container takes to become healthy.
    #[serde(serialize_with = "secs")]
    pub sim_start_delay: Duration,
    /// Concurrent DesireLRP calls.
    pub desire_workers: usize,
    /// How long to wait for all RUNNING.
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    /// Keep a created database.
    pub keep_database: bool,
    /// Wipe a named database first.
    pub reseed: bool,
    /// Progress bars.
    pub progress: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl From<SmokeArgs> for SmokeConfig {
    fn from(a: SmokeArgs) -> Self {
        Self {
            bbs_address: a.bbs_address,
            database_url: a.database_url,
            cells: a.cells,
            instances: a.instances,
            apps: a.apps,
            seed: a.seed,
            output: a.output,
            cell_memory_mb: a.cell_memory_mb,
            cell_containers: a.cell_containers,
            instance_memory_mb: a.instance_memory_mb,
            sim_start_delay: Duration::from_millis(a.sim_start_delay_ms),
            desire_workers: a.desire_workers,
            timeout: Duration::from_secs(a.timeout),
            keep_database: a.keep_database,
            reseed: a.reseed,
            progress: !a.no_progress,
        }
    }
}

impl SmokeConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.apps >= 1 && self.instances >= self.apps, "need 1 <= --apps <= --instances");
        anyhow::ensure!(self.apps < 100_000, "--apps must be below 100,000");
        anyhow::ensure!(self.bbs_address.is_some() || self.cells >= 1, "--cells must be at least 1");
        anyhow::ensure!(self.desire_workers >= 1, "--desire-workers must be at least 1");
        if self.bbs_address.is_none() {
            let capacity = self.cells as i64 * i64::from(self.cell_memory_mb / self.instance_memory_mb.max(1));
            let slots = self.cells as i64 * i64::from(self.cell_containers);
            anyhow::ensure!(
                capacity.min(slots) >= self.instances as i64,
                "{} cells of {} MB / {} slots cannot hold {} instances of {} MB",
                self.cells,
                self.cell_memory_mb,
                self.cell_containers,
                self.instances,
                self.instance_memory_mb
            );
        }
        Ok(())
    }

    /// Instances of app `a`: the total spread evenly, the first apps taking the remainder.
    pub fn instances_of(&self, a: usize) -> usize {
        self.instances / self.apps + usize::from(a < self.instances % self.apps)
    }
}

/// The process guid of smoke app `a`.
pub fn app_guid(a: usize) -> String {
    format!("SMOKE-APP-{a:05}")
}

/// One instance's lifecycle, in milliseconds since the first DesireLRP was sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lifecycle {
    /// The app.
    pub process_guid: String,
    /// The instance index.
    pub index: i32,
    /// When its DesireLRP was sent.
    pub desired_ms: f64,
    /// When its UNCLAIMED row was announced.
    pub unclaimed_ms: Option<f64>,
    /// When it was claimed.
    pub claimed_ms: Option<f64>,
    /// When it was RUNNING.
    pub running_ms: Option<f64>,
    /// The cell that runs it.
    pub cell_id: String,
}

/// The smoke benchmark's report.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    /// The configuration.
    pub config: SmokeConfig,
    /// What was driven.
    pub target: TargetInfo,
    /// Whether every instance reached RUNNING within the timeout.
    pub all_running: bool,
    /// First DesireLRP sent → the last instance's RUNNING event.
    pub time_to_all_running_s: Option<f64>,
    /// First DesireLRP sent → the first poll that saw every instance RUNNING (250 ms polls).
    pub time_to_all_running_polled_s: Option<f64>,
    /// Time to send every DesireLRP.
    pub desire_duration_s: f64,
    /// Instances RUNNING at the last poll.
    pub running: usize,
    /// Cells that run at least one instance, and the fewest / most instances on one.
    pub cells_used: usize,
    /// Fewest instances on a used cell.
    pub min_per_cell: usize,
    /// Most instances on one cell.
    pub max_per_cell: usize,
    /// Instance events received, and crash / removal events among them.
    pub events: u64,
    /// Crashes and removals seen (zero in a healthy run).
    pub crashes_or_removals: u64,
    /// Why the event stream ended early, if it did.
    pub event_stream_closed: Option<String>,
    /// Per-phase latencies.
    pub operations: Vec<OperationReport>,
    /// Every instance's lifecycle.
    pub instances: Vec<Lifecycle>,
    /// Wall time of the run.
    pub wall_time_s: f64,
    /// The table file, the JSON file and the charts.
    pub files: crate::report::Files,
}

/// Lifecycles being filled by the event subscriber.
#[derive(Default)]
struct Tracker {
    by_key: HashMap<(String, i32), Lifecycle>,
    events: u64,
    crashes_or_removals: u64,
    closed: Option<String>,
}

type Shared = Arc<Mutex<Tracker>>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record_state(tracker: &Shared, key: &pb::ActualLrpKey, cell: Option<&str>, state: i32, at_ms: f64) {
    let mut t = lock(tracker);
    let entry = t.by_key.entry((key.process_guid.clone(), key.index)).or_insert_with(|| Lifecycle {
        process_guid: key.process_guid.clone(),
        index: key.index,
        ..Lifecycle::default()
    });
    if let Some(cell) = cell.filter(|c| !c.is_empty()) {
        entry.cell_id = cell.to_owned();
    }
    let slot = match pb::ActualLrpState::try_from(state) {
        Ok(pb::ActualLrpState::Unclaimed) => &mut entry.unclaimed_ms,
        Ok(pb::ActualLrpState::Claimed) => &mut entry.claimed_ms,
        Ok(pb::ActualLrpState::Running) => &mut entry.running_ms,
        _ => return,
    };
    slot.get_or_insert(at_ms);
}

/// The in-process cluster's auctioneer and reps.
struct Cluster {
    auctioneer: Option<(CancellationToken, tokio::task::JoinHandle<Result<(), auctioneer::RunError>>)>,
    reps: Vec<(CancellationToken, tokio::task::JoinHandle<Result<(), cell_rep::RunError>>)>,
    data_dir: PathBuf,
}

impl Cluster {
    async fn start(config: &SmokeConfig, bbs_address: &str) -> anyhow::Result<Self> {
        // TCP_NODELAY on every gRPC listener, as for the BBS (see `TargetSpec::nodelay_listener`).
        let grpc = nodelay_listener()?;
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let auctioneer_config = auctioneer::AuctioneerConfig {
            bbs_address: bbs_address.to_owned(),
            seed: config.seed,
            // Every rep shares this process's two cores: give State calls room.
            cell_state_timeout: Duration::from_secs(5),
            ..auctioneer::AuctioneerConfig::default()
        };
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(auctioneer::run(auctioneer_config, auctioneer::Listeners { grpc, admin }, stop.clone()));
        let data_dir = config.output.join("smoke-cells");
        let mut reps = Vec::new();
        for i in 0..config.cells {
            let grpc = nodelay_listener()?;
            let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let rep_config = cell_rep::RepConfig {
                bbs_address: bbs_address.to_owned(),
                cell_id: format!("cell-{i}"),
                zone: format!("z{}", i % 2 + 1),
                runtime: cell_rep::RuntimeKind::Sim,
                advertise_address: grpc.local_addr()?.to_string(),
                memory_mb: config.cell_memory_mb,
                containers: config.cell_containers,
                data_dir: data_dir.join(format!("cell-{i}")),
                sim_start_delay: config.sim_start_delay,
                ..cell_rep::RepConfig::default()
            }
            .validate()?;
            let deps = cell_rep::Deps::from_config(&rep_config)?;
            let rep_stop = deps.stop.clone();
            let task = tokio::spawn(cell_rep::run_with(
                rep_config,
                cell_rep::Listeners { grpc, admin },
                deps,
                rep_stop.clone(),
            ));
            reps.push((rep_stop, task));
        }
        Ok(Self { auctioneer: Some((stop, task)), reps, data_dir })
    }

    async fn stop(mut self) {
        for (stop, _) in &self.reps {
            stop.cancel();
        }
        for (_, task) in self.reps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some((stop, task)) = self.auctioneer.take() {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The desired LRP of smoke app `a`: a small web app with a route and a TCP health check.
pub fn smoke_lrp(config: &SmokeConfig, a: usize) -> pb::DesiredLrp {
    let guid = app_guid(a);
    let route = format!(r#"[{{"hostnames":["smoke-{a}.apps.example.com"],"port":8080}}]"#);
    pb::DesiredLrp {
        process_guid: guid.clone(),
        domain: DOMAIN.into(),
        rootfs: "preloaded:busybox".into(),
        instances: config.instances_of(a) as i32,
        memory_mb: config.instance_memory_mb,
        disk_mb: 128,
        ports: vec![8080],
        routes: [("cf-router".to_owned(), route.into_bytes())].into(),
        log_guid: guid,
        action: Some(pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/bin/sh".into(),
                args: vec!["-c".into(), "exec httpd -f -p $PORT".into()],
                user: "vcap".into(),
                ..Default::default()
            })),
        }),
        check_definition: Some(pb::CheckDefinition {
            checks: vec![pb::Check {
                tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 1_000, interval_ms: 0 }),
                http_check: None,
            }],
            log_source: "HEALTH".into(),
            readiness_checks: vec![],
        }),
        ..Default::default()
    }
}

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
        stub_auctioneer: false,
        nodelay_listener: true,
    };
    let target = Target::start(&spec).await?;
    let cluster = if config.bbs_address.is_none() {
        Some(Cluster::start(&config, &target.info.bbs_address).await?)
    } else {
        None
    };
    let result = run_on(&config, &target, &progress, started).await;
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    if let Err(e) = target.stop().await {
        tracing::warn!(error = %e, "cleaning up the target failed");
    }
    let mut report = result?;
    report.write(&config.output)?;
    Ok(report)
}

async fn run_on(
    config: &SmokeConfig,
    target: &Target,
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<SmokeReport> {
    let clients = Clients::new(&target.info.bbs_address, 4, Duration::from_secs(60))?;
    clients.wait_for_leader(Duration::from_secs(60)).await?;
    let upsert = api::UpsertDomainRequest { domain: DOMAIN.into(), ttl: 0 };
    clients.bbs().upsert_domain(upsert).await?;
    if config.bbs_address.is_none() {
        let spinner = progress.spinner(&format!("waiting for {} sim cells", config.cells));
        wait_for_cells(&clients, config.cells, Duration::from_secs(120)).await?;
        spinner.finish();
    }

    // The observer, before the first desire.
    let tracker: Shared = Arc::default();
    let t0 = Instant::now();
    let stop_events = CancellationToken::new();
    let mut stream = clients
        .bbs()
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await?
        .into_inner();
    let observer = {
        let (tracker, stop) = (tracker.clone(), stop_events.clone());
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = stop.cancelled() => return,
                    item = stream.next() => item,
                };
                let at = t0.elapsed().as_secs_f64() * 1_000.0;
                match item {
                    Some(Ok(event)) => {
                        lock(&tracker).events += 1;
                        observe(&tracker, event, at);
                    }
                    Some(Err(status)) => {
                        lock(&tracker).closed = Some(status.to_string());
                        return;
                    }
                    None => {
                        lock(&tracker).closed = Some("the stream ended".into());
                        return;
                    }
                }
            }
        })
    };

    // Desire every app.
    let recorder = Recorder::new();
    let bar = progress.bar(config.instances as u64, "instances RUNNING");
    let desired_at: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(vec![0.0; config.apps]));
    futures::stream::iter(0..config.apps)
        .for_each_concurrent(config.desire_workers, |a| {
            let (clients, recorder, desired_at) = (clients.clone(), recorder.clone(), desired_at.clone());
            let request = api::DesireLrpRequest { desired_lrp: Some(smoke_lrp(config, a)) };
            async move {
                if let Ok(mut d) = desired_at.lock() {
                    d[a] = t0.elapsed().as_secs_f64() * 1_000.0;
                }
                let _ = recorder.time(ops::DESIRE, clients.bbs().desire_lrp(request)).await;
            }
        })
        .await;
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
                let mut t = lock(&tracker);
                for lrp in lrps {
                    if let (Some(key), Some(ik)) = (lrp.actual_lrp_key, lrp.actual_lrp_instance_key)
                        && let Some(entry) = t.by_key.get_mut(&(key.process_guid, key.index))
                        && entry.cell_id.is_empty()
                    {
                        entry.cell_id = ik.cell_id;
                    }
                }
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
    stop_events.cancel();
    let _ = observer.await;

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

    let desired_at = desired_at.lock().map(|d| d.clone()).unwrap_or_default();
    let tracker = std::mem::take(&mut *lock(&tracker));
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
    let span = |a: f64, b: Option<f64>| b.map(|b| Duration::from_secs_f64(((b - a) / 1_000.0).max(0.0)));
    for l in &instances {
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
        operations: Report::operations_of(&recorder.snapshot()),
        instances,
        wall_time_s: started.elapsed().as_secs_f64(),
        files: crate::report::Files::default(),
    })
}

fn observe(tracker: &Shared, event: pb::InstanceEvent, at: f64) {
    use pb::instance_event::Event;
    match event.event {
        Some(Event::ActualLrpInstanceCreated(created)) => {
            if let Some(lrp) = created.actual_lrp
                && let Some(key) = lrp.actual_lrp_key.as_ref()
            {
                let cell = lrp.actual_lrp_instance_key.as_ref().map(|k| k.cell_id.as_str());
                record_state(tracker, key, cell, lrp.state, at);
            }
        }
        Some(Event::ActualLrpInstanceChanged(changed)) => {
            if let (Some(key), Some(after)) = (changed.actual_lrp_key.as_ref(), changed.after.as_ref()) {
                let cell = changed.actual_lrp_instance_key.as_ref().map(|k| k.cell_id.as_str());
                record_state(tracker, key, cell, after.state, at);
            }
        }
        Some(Event::ActualLrpCrashed(_) | Event::ActualLrpInstanceRemoved(_)) => {
            lock(tracker).crashes_or_removals += 1;
        }
        _ => {}
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

impl SmokeReport {
    /// Whether every instance ran within the timeout and nothing crashed or failed.
    pub fn ok(&self) -> bool {
        self.all_running && self.crashes_or_removals == 0 && self.operations.iter().all(|o| o.summary.errors == 0)
    }

    /// The printed table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let _ = writeln!(
            out,
            "smoke benchmark: {} instances across {} apps on {} {}",
            c.instances,
            c.apps,
            if c.bbs_address.is_some() {
                "the cells of an existing cluster".to_owned()
            } else {
                format!("{} sim cells", c.cells)
            },
            if c.bbs_address.is_some() {
                String::new()
            } else {
                format!("(sim start delay {} ms)", c.sim_start_delay.as_millis())
            }
        );
        let t = &self.target;
        let _ = writeln!(
            out,
            "target: {} BBS at {}{}{}",
            t.kind,
            t.bbs_address,
            t.database.as_ref().map(|d| format!(" on {d}")).unwrap_or_default(),
            if t.nodelay { " (TCP_NODELAY set on its listener)" } else { "" }
        );
        let _ = writeln!(out, "desired every app in {:.2} s", self.desire_duration_s);
        match (self.time_to_all_running_s, self.time_to_all_running_polled_s) {
            (Some(events), Some(polled)) => {
                let _ = writeln!(
                    out,
                    "time to all RUNNING: {events:.2} s (last RUNNING event; first full poll {polled:.2} s); Diego: under {DIEGO_SECONDS:.0} s for 4,000 instances on 100 cells ({:.2}x)",
                    events / DIEGO_SECONDS
                );
            }
            (None, Some(polled)) => {
                let _ =
                    writeln!(out, "time to all RUNNING: {polled:.2} s (by polling; some RUNNING events were not seen)");
            }
            _ => {
                let _ = writeln!(
                    out,
                    "NOT all RUNNING within {:.0} s: {} of {} running",
                    c.timeout.as_secs_f64(),
                    self.running,
                    c.instances
                );
            }
        }
        let _ = writeln!(
            out,
            "placement: {} cells used, {}..{} instances per cell; {} instance events, {} crashes/removals{}",
            self.cells_used,
            self.min_per_cell,
            self.max_per_cell,
            self.events,
            self.crashes_or_removals,
            self.event_stream_closed.as_ref().map(|c| format!("; event stream closed early: {c}")).unwrap_or_default()
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "phase", "count", "errors", "mean", "p50", "p90", "p99", "max"
        );
        for op in &self.operations {
            let m = &op.summary;
            let _ = writeln!(
                out,
                "{:<24} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
                op.name,
                m.count,
                m.errors,
                ms(m.mean_ms),
                ms(m.p50_ms),
                ms(m.p90_ms),
                ms(m.p99_ms),
                ms(m.max_ms)
            );
        }
        let _ =
            writeln!(out, "wall time: {:.1} s; result: {}", self.wall_time_s, if self.ok() { "OK" } else { "FAILED" });
        out
    }

    /// Writes `smoke-table.txt`, `smoke-report.json` and the charts into `dir`.
    pub fn write(&mut self, dir: &Path) -> anyhow::Result<()> {
        let charts = dir.join("charts");
        std::fs::create_dir_all(&charts)?;
        self.files.table = dir.join("smoke-table.txt");
        self.files.json = dir.join("smoke-report.json");
        let mut written = Vec::new();
        let timeline = charts.join("smoke-timeline.svg");
        timeline_chart(self, &timeline)?;
        written.push(timeline);
        for op in self.operations.iter().filter(|o| o.summary.count > 0) {
            let path = charts.join(format!("smoke-latency-{}.svg", crate::charts::slug(&op.name)));
            crate::charts::distribution(op, &path)?;
            written.push(path);
        }
        self.files.charts = written;
        std::fs::write(&self.files.table, self.table())?;
        std::fs::write(&self.files.json, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

/// The lifecycle timeline: one row per instance (ordered by desire time, then by when it ran),
/// coloured by state over time.
fn timeline_chart(report: &SmokeReport, path: &Path) -> anyhow::Result<()> {
    let err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("timeline chart: {e:?}");
    let mut rows: Vec<&Lifecycle> = report.instances.iter().collect();
    rows.sort_by(|a, b| {
        (a.desired_ms, a.running_ms.unwrap_or(f64::MAX))
            .partial_cmp(&(b.desired_ms, b.running_ms.unwrap_or(f64::MAX)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let last = rows
        .iter()
        .flat_map(|l| [Some(l.desired_ms), l.unclaimed_ms, l.claimed_ms, l.running_ms])
        .flatten()
        .fold(0.0, f64::max);
    let end_s = (last / 1_000.0 * 1.05).max(1.0);
    let root = SVGBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, legend) = root.split_horizontally(1180);
    let caption = match report.time_to_all_running_s.or(report.time_to_all_running_polled_s) {
        Some(t) => format!("{} instances on {} cells: all RUNNING after {t:.2} s", rows.len(), report.cells_used),
        None => format!("{} instances: NOT all RUNNING ({} running)", rows.len(), report.running),
    };
    let n = rows.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end_s, 0f64..n)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("seconds since the first DesireLRP")
        .y_desc("instance (by desire time)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    let colours = [
        ("desired, not yet announced", RGBColor(190, 190, 190)),
        ("UNCLAIMED", RGBColor(230, 190, 0)),
        ("CLAIMED", RGBColor(240, 120, 20)),
        ("RUNNING", RGBColor(40, 160, 60)),
    ];
    let mut rects = Vec::with_capacity(rows.len() * 4);
    for (y, l) in rows.iter().enumerate() {
        let times = [Some(l.desired_ms), l.unclaimed_ms, l.claimed_ms, l.running_ms];
        for (state, start) in times.iter().enumerate() {
            let Some(start) = start else { continue };
            let stop = times[state + 1..].iter().flatten().next().copied().unwrap_or(end_s * 1_000.0);
            if stop > *start {
                let (y0, y1) = (y as f64, y as f64 + 1.0);
                rects.push(Rectangle::new([(start / 1_000.0, y0), (stop / 1_000.0, y1)], colours[state].1.filled()));
            }
        }
    }
    chart.draw_series(rects).map_err(|e| err(&e))?;
    if report.config.instances == 4_000 && DIEGO_SECONDS < end_s {
        chart
            .draw_series(LineSeries::new([(DIEGO_SECONDS, 0.0), (DIEGO_SECONDS, n)], RED.stroke_width(2)))
            .map_err(|e| err(&e))?;
    }
    for (i, (label, colour)) in colours.iter().enumerate() {
        let y = 80 + 26 * i as i32;
        legend.draw(&Rectangle::new([(10, y - 8), (34, y + 8)], colour.filled())).map_err(|e| err(&e))?;
        legend.draw(&Text::new(*label, (42, y - 7), ("sans-serif", 14).into_font())).map_err(|e| err(&e))?;
    }
    if report.config.instances == 4_000 {
        let y = 80 + 26 * 4;
        legend.draw(&PathElement::new([(10, y), (34, y)], RED.stroke_width(2))).map_err(|e| err(&e))?;
        let label = if DIEGO_SECONDS < end_s { "Diego: < 30 s" } else { "Diego: < 30 s (beyond the axis)" };
        legend.draw(&Text::new(label, (42, y - 7), ("sans-serif", 14).into_font())).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
