//! The chaos soak (`benchmark-bbs soak`): a cluster of real processes — two BBSs, an
//! auctioneer, `sim` cells and `process` cells, every hop under mutual TLS — on a PostgreSQL the
//! soak can stop, under a steady churn of desires, scales, updates, removes, tasks and instance
//! crashes, while a seeded chaos driver kills and restarts the BBS leader, the standby, the
//! auctioneer and cells, pauses components (SIGSTOP), stops the database for a while and wipes
//! `actual_lrps` once. The checker holds the cluster to its invariants every second; the report
//! gives the figures (`soak.md`, `soak.json`, `soak.svg`). docs/soak.md tells the whole story.
//!
//! - [`components`]: the processes, their configs and certificates; [`postgres`] and
//!   [`database`]: the private PostgreSQL, or the cuttable proxy to `--database-url`;
//! - [`api`]: the operator's client; [`churn`]: the load and the model of what was acknowledged;
//! - [`chaos`]: the schedule and the faults, with recovery times; [`check`]: the invariants and
//!   the samples, [`rules`] its judgements; [`report`]: the files.

pub mod api;
pub mod chaos;
pub mod check;
pub mod churn;
pub mod components;
pub mod database;
pub mod postgres;
pub mod report;
pub mod rules;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use proto::pb::bbs::v1 as pbapi;
use svc::identity::Role;
use svc::pki::Pki;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::chaos::{Chaos, Driver};
use self::check::{Checker, Observed};
use self::churn::{ChurnConfig, Model};
use self::components::{Component, Kind};
use self::database::Database;
use self::report::{SoakReport, Trend};

fn duration(text: &str) -> Result<Duration, String> {
    svc::config::parse_duration(text)
}

/// `benchmark-bbs soak` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long to soak ("90s", "2m", "1h").
    #[arg(long, default_value = "2m", value_parser = duration)]
    pub duration: Duration,
    /// Run on a fresh database of this PostgreSQL server, reached through a proxy the chaos
    /// driver cuts; without it the soak starts a private PostgreSQL cluster (as the `postgres`
    /// user) that it stops and starts again.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Seed of the chaos schedule, its targets and the churn.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for soak.md, soak.json, soak.svg and the components' configs and logs.
    #[arg(long, value_name = "DIR", default_value = "soak-output")]
    pub out: PathBuf,
    /// Cells with the `sim` runtime.
    #[arg(long, default_value_t = 3)]
    pub sim_cells: usize,
    /// Cells with the `process` runtime (real processes: `sleep` under busybox).
    #[arg(long, default_value_t = 1)]
    pub process_cells: usize,
    /// Churn operations per second.
    #[arg(long, default_value_t = 4.0)]
    pub rate: f64,
    /// Desired LRPs the churn keeps (about; 1-4 instances each).
    #[arg(long, default_value_t = 20)]
    pub lrps: usize,
    /// Time between two chaos events (packed closer when the run is too short for every kind).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub chaos_every: Duration,
    /// How long the database stays stopped.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub database_down: Duration,
    /// How long a recovery may take before it counts as a violation.
    #[arg(long, default_value = "90s", value_parser = duration)]
    pub recovery_bound: Duration,
    /// How long a task may take to complete before it counts as a violation.
    #[arg(long, default_value = "120s", value_parser = duration)]
    pub task_bound: Duration,
}

impl SoakArgs {
    /// Refuses settings the soak cannot run with.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.duration < Duration::from_secs(30) {
            bail!("--duration: at least 30s");
        }
        if !(0.1..=200.0).contains(&self.rate) {
            bail!("--rate: 0.1 to 200 operations per second");
        }
        if self.sim_cells + self.process_cells == 0 || self.sim_cells + self.process_cells > 32 {
            bail!("--sim-cells plus --process-cells: 1 to 32");
        }
        if self.lrps == 0 || self.lrps > 2_000 {
            bail!("--lrps: 1 to 2000");
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits up to `patience` for `ok`.
async fn wait_for<F: Future<Output = bool>>(
    what: &str,
    patience: Duration,
    mut ok: impl FnMut() -> F,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    while !ok().await {
        if Instant::now() > deadline {
            bail!("{what}: not within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Runs the soak and writes its report; `Ok` also when invariants were violated (see
/// [`SoakReport::observed`]).
pub async fn run(args: SoakArgs) -> anyhow::Result<SoakReport> {
    args.validate()?;
    std::fs::create_dir_all(&args.out)?;
    let out = std::fs::canonicalize(&args.out)?;
    let pki = Pki::open(&out.join("tls"), &[]).context("the soak's PKI")?;
    let operator = pki.tls_of(Role::Operator, "soak")?.security()?;
    eprintln!("soak: starting the database");
    let database = Database::start(&out, args.database_url.as_deref(), args.seed).await?;
    let components = components::plan(&out, &pki, &database.url(), args.sim_cells, args.process_cells)?;
    let addresses: Vec<String> =
        components.values().filter(|c| c.kind == Kind::Bbs).map(|c| c.address.clone()).collect();
    let api = Arc::new(api::Api::new(&addresses, operator, Duration::from_secs(5))?);
    let components = Arc::new(Mutex::new(components));
    let database = Arc::new(tokio::sync::Mutex::new(database));
    let result = soak(&args, &out, api, components.clone(), database.clone()).await;
    // Tear down whatever happened: every component, stray container processes, the database.
    for c in lock(&components).values_mut() {
        c.pause(false);
        c.kill();
    }
    let strays = components::kill_strays(&out);
    if strays > 0 {
        eprintln!("soak: {strays} stray container processes killed");
    }
    let database = Arc::try_unwrap(database).ok().map(tokio::sync::Mutex::into_inner);
    if let Some(db) = database {
        db.finish().await;
    }
    let report = result?;
    report.write(&out)?;
    Ok(report)
}

async fn soak(
    args: &SoakArgs,
    out: &std::path::Path,
    api: Arc<api::Api>,
    components: Arc<Mutex<BTreeMap<String, Component>>>,
    database: Arc<tokio::sync::Mutex<Database>>,
) -> anyhow::Result<SoakReport> {
    eprintln!("soak: starting the components (configs and logs in {})", out.display());
    lock(&components).get_mut("bbs-1").context("bbs-1")?.start()?;
    wait_for("bbs-1 to lead", Duration::from_secs(60), || api.writable(churn::DOMAIN)).await?;
    for c in lock(&components).values_mut() {
        c.start()?;
    }
    let cells = args.sim_cells + args.process_cells;
    wait_for("every cell to be present", Duration::from_secs(60), || async {
        let r = api::bbs_call!(api, "Cells", false, cells, pbapi::CellsRequest::default());
        r.is_ok_and(|r| r.cells.len() >= cells)
    })
    .await?;
    let start = Instant::now();
    let model = Arc::new(Mutex::new(Model::default()));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let plan = chaos::schedule(args.seed, args.duration, args.chaos_every);
    eprintln!("soak: {} chaos events planned over {:?}", plan.len(), args.duration);
    let stop_load = CancellationToken::new();
    let stop_check = CancellationToken::new();
    let checker = Checker {
        api: api.clone(),
        model: model.clone(),
        components: components.clone(),
        observed: observed.clone(),
        start,
        task_bound: args.task_bound,
    };
    let check_task = tokio::spawn(checker.run(stop_check.clone()));
    let churn_config = ChurnConfig { rate: args.rate, lrps: args.lrps, seed: args.seed };
    let churn_task =
        tokio::spawn(churn::run(churn_config, api.clone(), model.clone(), components.clone(), stop_load.clone()));
    let driver = Arc::new(Driver {
        api: api.clone(),
        components: components.clone(),
        database: database.clone(),
        observed: observed.clone(),
        events: events.clone(),
        start,
        seed: args.seed,
        database_down: args.database_down,
        recovery_bound: args.recovery_bound,
    });
    let chaos_task = tokio::spawn(driver.run(plan, stop_load.clone()));
    // Progress, every 10 s, until the duration is over.
    // SIGINT or SIGTERM ends the load early; the soak still drains, tears down and reports.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    while start.elapsed() < args.duration {
        let nap = Duration::from_secs(10).min(args.duration.saturating_sub(start.elapsed()));
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = tokio::signal::ctrl_c() => { eprintln!("soak: interrupted: stopping the load"); break; }
            _ = term.recv() => { eprintln!("soak: terminated: stopping the load"); break; }
        }
        progress(start, &model, &observed, &events);
        // A component that exited by itself is started again (and reported).
        for c in lock(&components).values_mut() {
            if c.pid().is_some() && !c.alive() {
                eprintln!("soak: {} exited by itself: started again (see {}.log)", c.name, c.name);
                c.kill();
                let _ = c.start();
            }
        }
    }
    stop_load.cancel();
    let _ = churn_task.await;
    let _ = chaos_task.await;
    // Drain: the cluster settles, the last tasks complete.
    eprintln!("soak: load stopped; waiting up to 60 s for convergence and the last tasks");
    let drained = Instant::now();
    while drained.elapsed() < Duration::from_secs(60) {
        let settled = lock(&observed).converged && lock(&model).tasks.values().all(|t| t.uncertain);
        if settled && drained.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_check.cancel();
    let _ = check_task.await;
    let duration_s = start.elapsed().as_secs_f64();
    {
        let mut o = lock(&observed);
        if !o.converged {
            o.violate(duration_s, "not-converged", "running != desired 60 s after the load stopped".into());
        }
        for (guid, t) in lock(&model).tasks.iter().filter(|(_, t)| !t.uncertain) {
            let detail = format!(
                "{guid} not completed at the end ({:.0} s after it was desired)",
                t.desired.elapsed().as_secs_f64()
            );
            o.violate(duration_s, "task-stuck", detail);
        }
    }
    let m = std::mem::take(&mut *lock(&model));
    let mut report = SoakReport {
        duration_s,
        seed: args.seed,
        database: database.lock().await.how().to_owned(),
        operations: m.ops.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        crashes: m.crashes,
        events: std::mem::take(&mut *lock(&events)),
        rss_mib: BTreeMap::new(),
        p99_ms: Trend { start: 0.0, end: 0.0, grew: false },
        observed: std::mem::take(&mut *lock(&observed)),
    };
    report.trends((args.duration.as_secs_f64() / 6.0).min(20.0));
    Ok(report)
}

fn progress(start: Instant, model: &Mutex<Model>, observed: &Mutex<Observed>, events: &Mutex<Vec<chaos::Event>>) {
    let (lrps, tasks) = {
        let m = lock(model);
        (m.lrps.len(), m.tasks.len())
    };
    let o = lock(observed);
    let last = o.samples.last();
    eprintln!(
        "soak: [{:7.1}s] lrps {lrps}, desired {} running {}, open tasks {tasks}, chaos events {}, violations {}",
        start.elapsed().as_secs_f64(),
        last.map_or(0, |s| s.desired),
        last.map_or(0, |s| s.running),
        lock(events).len(),
        o.violations.len()
    );
}

impl SoakReport {
    /// Whether no invariant was violated.
    pub fn ok(&self) -> bool {
        self.observed.violations.is_empty()
    }

    /// Chaos kinds that happened at least once.
    pub fn kinds(&self) -> Vec<Chaos> {
        let mut kinds: Vec<Chaos> = self.events.iter().filter(|e| e.error.is_none()).map(|e| e.chaos).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}
