//! The churn driver: at a steady rate, one operation per tick through the BBS as the operator —
//! desire an LRP, scale one, update one (its annotation), remove one, desire a task, or crash an
//! instance on a process cell (SIGKILL one of its processes). What the BBS acknowledged goes into
//! the [`Model`] the checker holds the cluster to; an operation whose outcome is unknown (the
//! call failed) marks its record uncertain until a later read settles it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use rand::RngExt as _;
use rand::rngs::ChaCha8Rng as StdRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::bbs_call;
use super::api::{Api, code};
use super::components::{Component, Kind, descendants, signal};

/// The domain of everything the soak desires.
pub const DOMAIN: &str = "soak";

/// One desired LRP as the operator last had it acknowledged.
#[derive(Debug, Clone)]
pub struct LrpEntry {
    /// Acknowledged instance count.
    pub instances: i32,
    /// Operations in flight on it.
    pub busy: u32,
    /// Bumped by every operation start and end (a read racing one is not judged).
    pub epoch: u64,
    /// The last operation's outcome is unknown.
    pub uncertain: bool,
    /// When it last changed.
    pub changed: Instant,
}

/// One task the operator desired.
#[derive(Debug, Clone)]
pub struct TaskEntry {
    /// When DesireTask was sent.
    pub desired: Instant,
    /// When its answer came (a listing that began before it may miss the task).
    pub answered: Instant,
    /// DesireTask's outcome is unknown.
    pub uncertain: bool,
}

/// What the operator was told: the soak's expectations.
#[derive(Debug, Default)]
pub struct Model {
    /// Desired LRPs by process guid.
    pub lrps: BTreeMap<String, LrpEntry>,
    /// Tasks not yet completed and deleted, by guid.
    pub tasks: BTreeMap<String, TaskEntry>,
    /// Churn operations by kind: (acknowledged, failed).
    pub ops: BTreeMap<&'static str, (u64, u64)>,
    /// Instance processes killed on process cells.
    pub crashes: u64,
}

impl Model {
    fn count(&mut self, op: &'static str, ok: bool) {
        let e = self.ops.entry(op).or_default();
        if ok { e.0 += 1 } else { e.1 += 1 }
    }
}

/// Churn settings.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Operations per second.
    pub rate: f64,
    /// LRPs kept desired (about).
    pub lrps: usize,
    /// Seed of every choice.
    pub seed: u64,
}

/// An LRP of `instances` running `sleep 3600` under busybox (really, on process cells).
pub fn lrp(guid: &str, instances: i32) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: DOMAIN.into(),
        rootfs: "preloaded:busybox".into(),
        instances,
        memory_mb: 16,
        disk_mb: 16,
        action: Some(shell("sleep 3600")),
        annotation: "soak".into(),
        ..Default::default()
    }
}

fn shell(script: &str) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/bin/busybox".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            user: "root".into(),
            log_source: "APP".into(),
            ..Default::default()
        })),
    }
}

/// A task running `sleep 1`.
pub fn task() -> pb::TaskDefinition {
    pb::TaskDefinition {
        root_fs: "preloaded:busybox".into(),
        action: Some(shell("sleep 1")),
        memory_mb: 16,
        disk_mb: 16,
        ..Default::default()
    }
}

/// Runs the churn until `stop`.
pub async fn run(
    config: ChurnConfig,
    api: Arc<Api>,
    model: Arc<Mutex<Model>>,
    components: Arc<Mutex<BTreeMap<String, Component>>>,
    stop: CancellationToken,
) {
    let mut rng = crate::generator::stream(config.seed, &[0x50a4, 1]);
    let period = Duration::from_secs_f64(1.0 / config.rate.max(0.01));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_guid = 0u64;
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // Settle one uncertain record first.
        let uncertain = lock(&model).lrps.iter().find(|(_, e)| e.uncertain && e.busy == 0).map(|(g, _)| g.clone());
        if let Some(guid) = uncertain {
            settle(&api, &model, &guid).await;
            continue;
        }
        let (count, guids): (usize, Vec<String>) = {
            let m = lock(&model);
            (m.lrps.len(), m.lrps.iter().filter(|(_, e)| e.busy == 0).map(|(g, _)| g.clone()).collect())
        };
        let roll = rng.random_range(0..100);
        let pick = |rng: &mut StdRng| (!guids.is_empty()).then(|| guids[rng.random_range(0..guids.len())].clone());
        if count < config.lrps / 2 || (roll < 20 && count < config.lrps * 3 / 2) {
            next_guid += 1;
            let guid = format!("soak-{}-{next_guid}", config.seed);
            let instances = rng.random_range(1..=3);
            desire(&api, &model, &guid, instances).await;
        } else if roll < 40 {
            if let Some(guid) = pick(&mut rng) {
                let instances = rng.random_range(1..=4);
                update(&api, &model, &guid, Some(instances), None).await;
            }
        } else if roll < 52 {
            if let Some(guid) = pick(&mut rng) {
                let note = format!("soak update {}", rng.random_range(0..1_000_000u32));
                update(&api, &model, &guid, None, Some(note)).await;
            }
        } else if roll < 62 {
            if let Some(guid) = pick(&mut rng) {
                remove(&api, &model, &guid).await;
            }
        } else if roll < 95 {
            desire_task(&api, &model, &format!("soak-task-{}-{}", config.seed, uuid::Uuid::new_v4().simple())).await;
        } else {
            crash_one(&components, &model, &mut rng);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks `guid` busy (creating its entry with `instances` when new); returns nothing.
fn begin(model: &Mutex<Model>, guid: &str, instances: i32) {
    let mut m = lock(model);
    let e = m.lrps.entry(guid.to_owned()).or_insert(LrpEntry {
        instances,
        busy: 0,
        epoch: 0,
        uncertain: false,
        changed: Instant::now(),
    });
    e.busy += 1;
    e.epoch += 1;
}

/// Ends an operation on `guid`: acknowledged with `instances` (`None`: removed), or unknown.
fn end(model: &Mutex<Model>, op: &'static str, guid: &str, outcome: Result<Option<i32>, ()>) {
    let mut m = lock(model);
    m.count(op, outcome.is_ok());
    match outcome {
        Ok(None) => {
            m.lrps.remove(guid);
        }
        Ok(Some(instances)) => {
            if let Some(e) = m.lrps.get_mut(guid) {
                e.instances = instances;
                e.busy = e.busy.saturating_sub(1);
                e.epoch += 1;
                e.uncertain = false;
                e.changed = Instant::now();
            }
        }
        Err(()) => {
            if let Some(e) = m.lrps.get_mut(guid) {
                e.busy = e.busy.saturating_sub(1);
                e.epoch += 1;
                e.uncertain = true;
                e.changed = Instant::now();
            }
        }
    }
}

async fn desire(api: &Api, model: &Mutex<Model>, guid: &str, instances: i32) {
    begin(model, guid, instances);
    let request = api::DesireLrpRequest { desired_lrp: Some(lrp(guid, instances)) };
    let r = bbs_call!(api, "DesireLRP", true, desire_lrp, request.clone());
    end(model, "desire", guid, r.map(|_| Some(instances)).map_err(|_| ()));
}

async fn update(api: &Api, model: &Mutex<Model>, guid: &str, instances: Option<i32>, annotation: Option<String>) {
    let before = lock(model).lrps.get(guid).map_or(1, |e| e.instances);
    begin(model, guid, before);
    let op = if instances.is_some() { "scale" } else { "update" };
    let request = api::UpdateDesiredLrpRequest {
        process_guid: guid.into(),
        update: Some(pb::DesiredLrpUpdate { instances, annotation, ..Default::default() }),
    };
    let r = bbs_call!(api, "UpdateDesiredLRP", true, update_desired_lrp, request.clone());
    end(model, op, guid, r.map(|_| Some(instances.unwrap_or(before))).map_err(|_| ()));
}

async fn remove(api: &Api, model: &Mutex<Model>, guid: &str) {
    let before = lock(model).lrps.get(guid).map_or(1, |e| e.instances);
    begin(model, guid, before);
    let request = api::RemoveDesiredLrpRequest { process_guid: guid.into() };
    let r = bbs_call!(api, "RemoveDesiredLRP", true, remove_desired_lrp, request.clone());
    end(model, "remove", guid, r.map(|_| None).map_err(|_| ()));
}

/// Reads an uncertain LRP back and adopts what the BBS has (or that it has none).
async fn settle(api: &Api, model: &Mutex<Model>, guid: &str) {
    begin(model, guid, 1);
    let request = api::DesiredLrpByProcessGuidRequest { process_guid: guid.into() };
    let r = bbs_call!(api, "DesiredLRPByProcessGuid", false, desired_lrp_by_process_guid, request.clone());
    let outcome = match r {
        Ok(found) => Ok(Some(found.desired_lrp.map_or(1, |d| d.instances))),
        Err(e) if code(&e) == tonic::Code::NotFound => Ok(None),
        Err(_) => Err(()),
    };
    let mut m = lock(model);
    match outcome {
        Ok(None) => {
            m.lrps.remove(guid);
        }
        Ok(Some(instances)) => {
            if let Some(e) = m.lrps.get_mut(guid) {
                (e.instances, e.busy, e.uncertain, e.changed) =
                    (instances, e.busy.saturating_sub(1), false, Instant::now());
                e.epoch += 1;
            }
        }
        Err(()) => {
            if let Some(e) = m.lrps.get_mut(guid) {
                e.busy = e.busy.saturating_sub(1);
                e.epoch += 1;
            }
        }
    }
}

async fn desire_task(api: &Api, model: &Mutex<Model>, guid: &str) {
    let request =
        api::DesireTaskRequest { task_definition: Some(task()), task_guid: guid.into(), domain: DOMAIN.into() };
    let sent = Instant::now();
    let r = bbs_call!(api, "DesireTask", true, desire_task, request.clone());
    let mut m = lock(model);
    m.count("task", r.is_ok());
    m.tasks.insert(guid.to_owned(), TaskEntry { desired: sent, answered: Instant::now(), uncertain: r.is_err() });
}

/// SIGKILLs one instance process of a random running process cell.
fn crash_one(components: &Mutex<BTreeMap<String, Component>>, model: &Mutex<Model>, rng: &mut StdRng) {
    let pids: Vec<u32> = lock(components)
        .values()
        .filter(|c| c.kind == Kind::ProcessCell && !c.paused)
        .filter_map(Component::pid)
        .collect();
    if pids.is_empty() {
        return;
    }
    let rep = pids[rng.random_range(0..pids.len())];
    let sleepers: Vec<u32> = descendants(rep)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.iter().any(|a| *a == b"sleep 3600")
                    || args.windows(2).any(|w| w[0].ends_with(b"sleep") && w[1] == b"3600")
            })
        })
        .collect();
    let mut m = lock(model);
    if sleepers.is_empty() {
        m.count("crash", false);
        return;
    }
    signal(sleepers[rng.random_range(0..sleepers.len())], nix::sys::signal::Signal::SIGKILL);
    m.crashes += 1;
    m.count("crash", true);
}
