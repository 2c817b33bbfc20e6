//! The chaos driver: a seeded schedule (the same seed and duration give the same events at the
//! same offsets), then each event done to the real processes, and its recovery timed: from the
//! end of the fault (the process started again, resumed, the database back) until the leader takes
//! a write and every settled LRP runs its instances again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt as _;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::Api;
use super::check::Observed;
use super::components::{Component, Kind};
use super::database::Database;

/// What one chaos event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chaos {
    /// SIGKILL the BBS holding the `bbs` lease, start it again.
    KillBbsLeader,
    /// SIGKILL the other BBS, start it again.
    KillBbsStandby,
    /// SIGKILL the auctioneer, start it again.
    KillAuctioneer,
    /// SIGKILL a random cell rep, start it again.
    KillCell,
    /// SIGSTOP a random component, SIGCONT it a few seconds later.
    Pause,
    /// Stop the database for a while.
    StopDatabase,
    /// `DELETE FROM actual_lrps` (once per soak).
    WipeActualLrps,
}

/// Every kind, in the order the report lists them.
pub const ALL: [Chaos; 7] = [
    Chaos::KillBbsLeader,
    Chaos::KillBbsStandby,
    Chaos::KillAuctioneer,
    Chaos::KillCell,
    Chaos::Pause,
    Chaos::StopDatabase,
    Chaos::WipeActualLrps,
];

/// One scheduled event.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Seconds after the start.
    pub at_s: f64,
    /// What.
    pub chaos: Chaos,
}

/// The seeded schedule over `duration`: nothing in the first sixth (at most 20 s: the cluster
/// settles) and the last quarter (at most 45 s: it recovers before the end), events `every`
/// apart (or packed so that every kind happens once when the window is short); the first round
/// has every kind once in a seeded order, later rounds draw at random (the wipe stays single).
pub fn schedule(seed: u64, duration: Duration, every: Duration) -> Vec<Planned> {
    let d = duration.as_secs_f64();
    let warmup = (d / 6.0).min(20.0);
    let cooldown = (d / 4.0).min(45.0);
    let window = (d - warmup - cooldown).max(0.0);
    let spacing = every.as_secs_f64().min(window / ALL.len() as f64).max(1.0);
    let count = if spacing > 0.0 { (window / spacing).floor() as usize } else { 0 };
    let mut rng = crate::generator::stream(seed, &[0xc4a0]);
    let mut first: Vec<Chaos> = ALL.to_vec();
    for i in (1..first.len()).rev() {
        first.swap(i, rng.random_range(0..=i));
    }
    (0..count)
        .map(|k| {
            let chaos = if k < first.len() { first[k] } else { ALL[rng.random_range(0..ALL.len() - 1)] };
            Planned { at_s: warmup + spacing * k as f64, chaos }
        })
        .collect()
}

/// One event as done.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds after the start when it began.
    pub at_s: f64,
    /// What.
    pub chaos: Chaos,
    /// Which component (or `database`).
    pub target: String,
    /// How long the fault lasted (killed to restarted, stopped to resumed), ms.
    pub fault_ms: u64,
    /// From the fault's end until the leader writes and running == desired again, ms (`None`:
    /// not within the bound, or the soak ended first).
    pub recovery_ms: Option<u64>,
    /// What went wrong doing it, if anything.
    pub error: Option<String>,
}

/// What the driver needs.
pub struct Driver {
    /// The operator client.
    pub api: Arc<Api>,
    /// The components.
    pub components: Arc<Mutex<BTreeMap<String, Component>>>,
    /// The database.
    pub database: Arc<tokio::sync::Mutex<Database>>,
    /// What the checker sees.
    pub observed: Arc<Mutex<Observed>>,
    /// Done events.
    pub events: Arc<Mutex<Vec<Event>>>,
    /// The soak's start.
    pub start: Instant,
    /// Seed of the targets.
    pub seed: u64,
    /// How long the database stays stopped.
    pub database_down: Duration,
    /// How long a recovery may take before it is a violation.
    pub recovery_bound: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Driver {
    /// Runs `plan` until `stop`.
    pub async fn run(self: Arc<Self>, plan: Vec<Planned>, stop: CancellationToken) {
        let mut rng = crate::generator::stream(self.seed, &[0xc4a0, 2]);
        for p in plan {
            let when = self.start + Duration::from_secs_f64(p.at_s);
            tokio::select! {
                _ = tokio::time::sleep_until(when) => {}
                _ = stop.cancelled() => return,
            }
            let pick: u64 = rng.random();
            let at_s = self.start.elapsed().as_secs_f64();
            let began = Instant::now();
            let (target, result) = self.apply(p.chaos, pick).await;
            let fault_ms = began.elapsed().as_millis() as u64;
            let ended = Instant::now();
            eprintln!(
                "soak: [{at_s:7.1}s] chaos {:?} on {target}: {} ms{}",
                p.chaos,
                fault_ms,
                result.as_ref().err().map(|e| format!(" ({e})")).unwrap_or_default()
            );
            let index = {
                let mut events = lock(&self.events);
                events.push(Event {
                    at_s,
                    chaos: p.chaos,
                    target,
                    fault_ms,
                    recovery_ms: None,
                    error: result.err().map(|e| format!("{e:#}")),
                });
                events.len() - 1
            };
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { me.time_recovery(index, ended, stop).await });
        }
    }

    /// Waits until the leader writes and the checker sees running == desired after `from`.
    async fn time_recovery(&self, index: usize, from: Instant, stop: CancellationToken) {
        let deadline = from + self.recovery_bound;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let checked = lock(&self.observed).converged_at.is_some_and(|t| t > from);
            if checked && lock(&self.observed).converged && self.api.writable(super::churn::DOMAIN).await {
                let ms = from.elapsed().as_millis() as u64;
                if let Some(e) = lock(&self.events).get_mut(index) {
                    e.recovery_ms = Some(ms);
                }
                return;
            }
            if Instant::now() > deadline {
                let at = self.start.elapsed().as_secs_f64();
                let what = lock(&self.events).get(index).map(|e| format!("{:?} on {}", e.chaos, e.target));
                lock(&self.observed).violate(
                    at,
                    "not-recovered",
                    format!("{} not recovered within {:?}", what.unwrap_or_default(), self.recovery_bound),
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn names(&self, keep: impl Fn(&Component) -> bool) -> Vec<String> {
        lock(&self.components).values().filter(|c| keep(c)).map(|c| c.name.clone()).collect()
    }

    /// SIGKILL `name`, wait `down`, start it again.
    async fn bounce(&self, name: &str, down: Duration) -> anyhow::Result<()> {
        if let Some(c) = lock(&self.components).get_mut(name) {
            c.kill();
        }
        tokio::time::sleep(down).await;
        match lock(&self.components).get_mut(name) {
            Some(c) => c.start(),
            None => anyhow::bail!("no component {name}"),
        }
    }

    async fn apply(&self, chaos: Chaos, pick: u64) -> (String, anyhow::Result<()>) {
        let choose = |names: Vec<String>| names.get((pick % names.len().max(1) as u64) as usize).cloned();
        match chaos {
            Chaos::KillBbsLeader | Chaos::KillBbsStandby => {
                let leader = self.api.leader().await;
                let bbs = self.names(|c| c.kind == Kind::Bbs);
                let leading = lock(&self.components)
                    .values()
                    .find(|c| c.kind == Kind::Bbs && Some(&c.address) == leader.as_ref())
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| bbs.first().cloned().unwrap_or_default());
                let target = if chaos == Chaos::KillBbsLeader {
                    leading
                } else {
                    bbs.into_iter().find(|n| *n != leading).unwrap_or_default()
                };
                let r = self.bounce(&target, Duration::from_secs(2)).await;
                (target, r)
            }
            Chaos::KillAuctioneer => ("auctioneer".into(), self.bounce("auctioneer", Duration::from_secs(2)).await),
            Chaos::KillCell => {
                let target = choose(self.names(|c| matches!(c.kind, Kind::SimCell | Kind::ProcessCell)));
                let target = target.unwrap_or_default();
                let r = self.bounce(&target, Duration::from_secs(3)).await;
                (target, r)
            }
            Chaos::Pause => {
                let target = choose(self.names(|_| true)).unwrap_or_default();
                if let Some(c) = lock(&self.components).get_mut(&target) {
                    c.pause(true);
                }
                tokio::time::sleep(Duration::from_secs(4)).await;
                if let Some(c) = lock(&self.components).get_mut(&target) {
                    c.pause(false);
                }
                (target, Ok(()))
            }
            Chaos::StopDatabase => {
                let mut db = self.database.lock().await;
                if let Err(e) = db.stop().await {
                    return ("database".into(), Err(e));
                }
                tokio::time::sleep(self.database_down).await;
                ("database".into(), db.restart().await)
            }
            Chaos::WipeActualLrps => {
                let db = self.database.lock().await;
                match db.wipe("actual_lrps").await {
                    Ok(n) => (format!("database ({n} rows)"), Ok(())),
                    Err(e) => ("database".into(), Err(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_schedule_has_every_kind_once_and_the_wipe_only_once() {
        let plan = schedule(7, Duration::from_secs(120), Duration::from_secs(30));
        for kind in ALL {
            assert!(plan.iter().any(|p| p.chaos == kind), "{kind:?} missing from {plan:?}");
        }
        assert!(plan.first().is_some_and(|p| p.at_s >= 19.9));
        assert!(plan.last().is_some_and(|p| p.at_s <= 120.0 - 30.0));
        let long = schedule(7, Duration::from_secs(3600), Duration::from_secs(30));
        assert_eq!(long.iter().filter(|p| p.chaos == Chaos::WipeActualLrps).count(), 1);
        assert!(long.len() > 100, "{}", long.len());
        let again = schedule(7, Duration::from_secs(3600), Duration::from_secs(30));
        assert_eq!(format!("{long:?}"), format!("{again:?}"), "the same seed gives the same schedule");
    }
}
