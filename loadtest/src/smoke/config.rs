//! What a smoke run is asked to do: the flags, the validated run configuration and the apps it
//! desires.

use std::path::PathBuf;
use std::time::Duration;

use proto::pb::models::v1 as pb;
use serde::Serialize;

use super::DOMAIN;

/// The default `--desire-batch`: 100 apps per `DesireLRPs` call (the default 400 apps in 4 calls).
pub const DEFAULT_DESIRE_BATCH: usize = 100;

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
    /// Apps per DesireLRPs call; 1: one DesireLRP per app.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DESIRE_BATCH)]
    pub desire_batch: usize,
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
    /// Mutual TLS on every hop of the in-process cluster (BBS, auctioneer, reps, this client),
    /// with certificates issued into --tls-dir (default <output>/tls).
    #[arg(long)]
    pub tls: bool,
    /// The certificate directory (ca.pem, ca-key.pem); required with --bbs-address --tls.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
}

/// One smoke run.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeConfig {
    /// An existing cluster's BBS.
    pub bbs_address: Option<String>,
    /// The in-process cluster's database (serialized without its password).
    #[serde(serialize_with = "crate::format::redacted")]
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
    #[serde(with = "crate::format::secs")]
    pub sim_start_delay: Duration,
    /// Concurrent DesireLRP calls.
    pub desire_workers: usize,
    /// Apps per DesireLRPs call; 1: one DesireLRP per app.
    pub desire_batch: usize,
    /// How long to wait for all RUNNING.
    #[serde(with = "crate::format::secs")]
    pub timeout: Duration,
    /// Keep a created database.
    pub keep_database: bool,
    /// Wipe a named database first.
    pub reseed: bool,
    /// Progress bars.
    pub progress: bool,
    /// Mutual TLS on every hop.
    pub tls: bool,
    /// The PKI directory under TLS (default `<output>/tls`).
    pub tls_dir: Option<PathBuf>,
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
            desire_batch: a.desire_batch,
            timeout: Duration::from_secs(a.timeout),
            keep_database: a.keep_database,
            reseed: a.reseed,
            progress: !a.no_progress,
            tls: a.tls,
            tls_dir: a.tls_dir,
        }
    }
}

impl SmokeConfig {
    /// Checks the values that would make a smoke run meaningless.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.apps >= 1 && self.instances >= self.apps, "need 1 <= --apps <= --instances");
        anyhow::ensure!(self.apps < 100_000, "--apps must be below 100,000");
        anyhow::ensure!(self.bbs_address.is_some() || self.cells >= 1, "--cells must be at least 1");
        anyhow::ensure!(self.desire_workers >= 1, "--desire-workers must be at least 1");
        anyhow::ensure!(
            (1..=proto::limits::MAX_BATCH_ITEMS).contains(&self.desire_batch),
            "--desire-batch must be between 1 and {}",
            proto::limits::MAX_BATCH_ITEMS
        );
        anyhow::ensure!(self.tls_dir.is_none() || self.tls, "--tls-dir needs --tls");
        anyhow::ensure!(
            self.bbs_address.is_none() || !self.tls || self.tls_dir.is_some(),
            "--tls with --bbs-address needs --tls-dir D, the directory of that cluster's CA (ca.pem, ca-key.pem)"
        );
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

    /// The PKI directory of a TLS run (`tls_dir`, else `<output>/tls`); `None` in plaintext.
    pub fn tls_dir(&self) -> Option<PathBuf> {
        self.tls.then(|| self.tls_dir.clone().unwrap_or_else(|| self.output.join("tls")))
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
        check_definition: Some(crate::generator::port_8080_check()),
        ..Default::default()
    }
}
