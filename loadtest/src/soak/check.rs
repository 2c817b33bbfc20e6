//! The invariant checker, once a second, and the samplers: every acknowledged desire present
//! with its acknowledged instance count (a record marked `[recovered] ` counts); no index with two
//! ordinary RUNNING instances for longer than one convergence interval (plus one sampling
//! period); every task completed (succeeded or failed, as its policy says) within a bound, then
//! resolved and deleted by the checker; running versus desired over time; each component's VmRSS
//! and the churn calls' p99 per window.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::Api;
use super::api::bbs_call;
use super::churn::{DOMAIN, Model};
use super::components::{CONVERGENCE_INTERVAL, Component, rss_kib};
use super::rules::{Doubles, Instances, desired_findings};

/// How often the invariants are checked.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How often RSS is sampled.
const RSS_PERIOD: Duration = Duration::from_secs(5);
/// The window of one p99 figure.
pub const P99_WINDOW: Duration = Duration::from_secs(10);
/// An LRP changed this recently is not expected to run its instances yet.
const SETTLING: Duration = Duration::from_secs(5);

/// One broken invariant.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Seconds since the start.
    pub at_s: f64,
    /// `desired-lost`, `desired-instances`, `double-running`, `task-lost`, `task-stuck`,
    /// `not-recovered`.
    pub kind: &'static str,
    /// What was seen.
    pub detail: String,
}

/// One check's counts.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start.
    pub at_s: f64,
    /// Desired instances (sum over the listed desired LRPs).
    pub desired: u64,
    /// Ordinary RUNNING instances at a desired index.
    pub running: u64,
    /// Indexes with two ordinary RUNNING instances.
    pub doubles: u64,
}

/// One RSS sample: KiB by component (absent while it is down).
#[derive(Debug, Clone, Serialize)]
pub struct RssSample {
    /// Seconds since the start.
    pub at_s: f64,
    /// VmRSS in KiB by component name.
    pub kib: BTreeMap<String, u64>,
}

/// One latency window of the churn calls.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyWindow {
    /// Seconds since the start (end of the window).
    pub at_s: f64,
    /// Calls acknowledged in the window.
    pub calls: u64,
    /// Their p99 in ms.
    pub p99_ms: f64,
}

/// Everything observed while soaking.
#[derive(Debug, Default, Serialize)]
pub struct Observed {
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// Running versus desired.
    pub samples: Vec<Sample>,
    /// Component memory.
    pub rss: Vec<RssSample>,
    /// Churn latency.
    pub latency: Vec<LatencyWindow>,
    /// Checks whose listings could not be read (the BBS or the database down).
    pub unreadable: u64,
    /// Longest time one index had two ordinary RUNNING instances (ms).
    pub longest_double_ms: u64,
    /// Tasks completed and not failed / failed / lost.
    pub tasks_succeeded: u64,
    /// Tasks completed as failed (e.g. their cell was killed).
    pub tasks_failed: u64,
    /// Whether the last readable check saw every settled LRP run its instances.
    #[serde(skip)]
    pub converged: bool,
    /// When `converged` was last computed.
    #[serde(skip)]
    pub converged_at: Option<Instant>,
}

impl Observed {
    /// Records a violation (and prints it).
    pub fn violate(&mut self, at_s: f64, kind: &'static str, detail: String) {
        eprintln!("soak: [{at_s:7.1}s] VIOLATION {kind}: {detail}");
        if self.violations.len() < 10_000 {
            self.violations.push(Violation { at_s, kind, detail });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the checker needs.
pub struct Checker {
    /// The operator client.
    pub api: Arc<Api>,
    /// The expectations.
    pub model: Arc<Mutex<Model>>,
    /// The components (for RSS).
    pub components: Arc<Mutex<BTreeMap<String, Component>>>,
    /// What is observed.
    pub observed: Arc<Mutex<Observed>>,
    /// The soak's start.
    pub start: Instant,
    /// How long a task may take to complete.
    pub task_bound: Duration,
}

impl Checker {
    fn at(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Checks every [`PERIOD`] until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last_rss, mut last_latency) = (Instant::now() - RSS_PERIOD, Instant::now());
        let mut doubles = Doubles::default();
        while !stop.is_cancelled() {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            self.check(&mut doubles).await;
            if last_rss.elapsed() >= RSS_PERIOD {
                last_rss = Instant::now();
                let kib: BTreeMap<String, u64> = lock(&self.components)
                    .values()
                    .filter_map(|c| Some((c.name.clone(), rss_kib(c.pid()?)?)))
                    .collect();
                lock(&self.observed).rss.push(RssSample { at_s: self.at(), kib });
            }
            if last_latency.elapsed() >= P99_WINDOW {
                last_latency = Instant::now();
                let h = self.api.take_latency();
                let window = LatencyWindow {
                    at_s: self.at(),
                    calls: h.len(),
                    p99_ms: if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1_000.0 },
                };
                lock(&self.observed).latency.push(window);
            }
        }
    }

    /// One check of every invariant.
    pub async fn check(&self, doubles: &mut Doubles) {
        let snapshot: Vec<(String, i32, u64)> = lock(&self.model)
            .lrps
            .iter()
            .filter(|(_, e)| e.busy == 0 && !e.uncertain)
            .map(|(g, e)| (g.clone(), e.instances, e.epoch))
            .collect();
        let listed_at = Instant::now();
        let (desired, actual, tasks) =
            tokio::join!(self.api.desired(DOMAIN), self.api.actual(DOMAIN), self.api.tasks(DOMAIN));
        let at = self.at();
        let (Ok(desired), Ok(actual)) = (desired, actual) else {
            let mut o = lock(&self.observed);
            o.unreadable += 1;
            o.converged = false;
            o.converged_at = Some(Instant::now());
            return;
        };
        // 1. Every acknowledged desire, untouched while listing, is present as acknowledged.
        let mut found = desired_findings(&snapshot, &lock(&self.model).lrps, &desired);
        // 2. Doubles, and running versus desired.
        let instances = Instances::of(&actual);
        let (doubled, longest) = doubles.observe(&instances, Instant::now(), CONVERGENCE_INTERVAL + PERIOD);
        found.extend(doubled);
        let (running, crashed) = (&instances.running, &instances.crashed);
        let mut want = 0u64;
        let mut have = 0u64;
        let mut settled = true;
        {
            let model = lock(&self.model);
            for d in &desired {
                let key = |i: i32| (d.process_guid.clone(), i);
                let n = (0..d.instances).filter(|i| running.contains_key(&key(*i))).count() as u64;
                let placed =
                    (0..d.instances).filter(|i| running.contains_key(&key(*i)) || crashed.contains(&key(*i))).count();
                want += d.instances.max(0) as u64;
                have += n;
                let fresh =
                    model.lrps.get(&d.process_guid).is_some_and(|e| e.changed.elapsed() < SETTLING || e.busy > 0);
                if placed as u64 != d.instances.max(0) as u64 && !fresh {
                    settled = false;
                }
            }
        }
        // 3. Tasks.
        let mut resolve = Vec::new();
        let mut delete = Vec::new();
        if let Ok(tasks) = tasks {
            let by_guid: HashMap<&str, &pb::Task> = tasks.iter().map(|t| (t.task_guid.as_str(), t)).collect();
            let mut model = lock(&self.model);
            let mut o = lock(&self.observed);
            let mut done = Vec::new();
            for (guid, entry) in &mut model.tasks {
                match by_guid.get(guid.as_str()) {
                    Some(t) if t.state == pb::task::State::Completed as i32 => {
                        if t.failed {
                            o.tasks_failed += 1
                        } else {
                            o.tasks_succeeded += 1
                        }
                        resolve.push(guid.clone());
                        done.push(guid.clone());
                    }
                    Some(t) if t.state == pb::task::State::Resolving as i32 => delete.push(guid.clone()),
                    Some(_) => {
                        entry.uncertain = false;
                        if entry.desired.elapsed() > self.task_bound {
                            found.push(("task-stuck", format!("{guid} not completed after {:?}", self.task_bound)));
                            done.push(guid.clone());
                        }
                    }
                    // An uncertain DesireTask that never shows up was not taken.
                    None if entry.uncertain && entry.desired.elapsed() > Duration::from_secs(60) => {
                        done.push(guid.clone())
                    }
                    None if entry.uncertain => {}
                    None if entry.answered < listed_at => {
                        found.push(("task-lost", format!("{guid} is not listed")));
                        done.push(guid.clone());
                    }
                    None => {}
                }
            }
            for guid in done {
                model.tasks.remove(&guid);
            }
        }
        {
            let mut o = lock(&self.observed);
            for (kind, detail) in found {
                o.violate(at, kind, detail);
            }
            o.longest_double_ms = o.longest_double_ms.max(longest.as_millis() as u64);
            let doubles = instances.doubles() as u64;
            o.samples.push(Sample { at_s: at, desired: want, running: have, doubles });
            o.converged = settled && doubles == 0;
            o.converged_at = Some(Instant::now());
        }
        for guid in resolve {
            let request = api::TaskGuidRequest { task_guid: guid.clone() };
            if bbs_call!(self.api, "ResolvingTask", false, resolving_task, request.clone()).is_ok() {
                delete.push(guid);
            }
        }
        for guid in delete {
            let request = api::TaskGuidRequest { task_guid: guid };
            let _ = bbs_call!(self.api, "DeleteTask", false, delete_task, request.clone());
        }
    }
}
