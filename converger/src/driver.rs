//! [`run_every`]: the generic loop that drives a `tick` every interval and on every kick, until
//! shutdown (docs/architecture.md "Deciding is separate from applying"; mini-redis `purge_expired_tasks`).
//!
//! - Passes never overlap: the loop awaits each pass before it waits again.
//! - A kick during a pass is remembered (`Notify` keeps one permit) and runs one more pass right
//!   after; any number of kicks meanwhile coalesce into that one.
//! - After every pass the interval restarts, so the next periodic pass comes a full interval
//!   after the last one (Diego re-arms its timer after both halves finish). Missed ticks are
//!   delayed, never bunched (`MissedTickBehavior::Delay`).
//! - Shutdown is checked between passes: a pass in flight finishes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

/// Why a pass ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The interval elapsed (or the loop just started).
    Interval,
    /// Someone kicked.
    Kick,
}

/// Runs `tick(state, trigger)` once at start, then every `interval` and whenever `kick` is
/// notified, until `shutdown` completes. Returns after the pass in flight (if any) finishes.
pub async fn run_every<T, F>(
    interval: Duration,
    kick: Arc<Notify>,
    shutdown: impl Future<Output = ()>,
    state: &mut T,
    mut tick: F,
) where
    F: for<'a> FnMut(&'a mut T, Trigger) -> BoxFuture<'a, ()>,
{
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let trigger = tokio::select! {
            biased;
            () = &mut shutdown => return,
            _ = ticker.tick() => Trigger::Interval,
            () = kick.notified() => Trigger::Kick,
        };
        tick(state, trigger).await;
        ticker.reset_at(Instant::now() + interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        passes: Vec<(Trigger, Duration)>,
        started: Instant,
        pass_length: Duration,
    }

    fn counting(c: &mut Counter, trigger: Trigger) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            c.passes.push((trigger, c.started.elapsed()));
            tokio::time::sleep(c.pass_length).await;
        })
    }

    fn counter(pass_length: Duration) -> Counter {
        Counter { passes: Vec::new(), started: Instant::now(), pass_length }
    }

    #[tokio::test(start_paused = true)]
    async fn passes_run_at_start_then_every_interval_after_the_last_pass() {
        let kick = Arc::new(Notify::new());
        let mut c = counter(Duration::from_secs(2));
        let shutdown = tokio::time::sleep(Duration::from_secs(65));
        run_every(Duration::from_secs(30), kick, shutdown, &mut c, counting).await;
        let at: Vec<u64> = c.passes.iter().map(|(_, t)| t.as_secs()).collect();
        // Each pass takes 2 s; the next starts 30 s after it ended.
        assert_eq!(at, vec![0, 32, 64]);
        assert!(c.passes.iter().all(|(t, _)| *t == Trigger::Interval));
    }

    #[tokio::test(start_paused = true)]
    async fn kicks_run_a_pass_at_once_and_coalesce_while_one_runs() {
        let kick = Arc::new(Notify::new());
        let mut c = counter(Duration::from_secs(5));
        let kicker = {
            let kick = kick.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                kick.notify_one();
                // Three kicks during the pass that kick started: one more pass, not three.
                tokio::time::sleep(Duration::from_secs(1)).await;
                for _ in 0..3 {
                    kick.notify_one();
                }
            })
        };
        let shutdown = tokio::time::sleep(Duration::from_secs(25));
        run_every(Duration::from_secs(30), kick, shutdown, &mut c, counting).await;
        kicker.await.unwrap();
        let seen: Vec<(Trigger, u64)> = c.passes.iter().map(|(t, d)| (*t, d.as_secs())).collect();
        assert_eq!(seen, vec![(Trigger::Interval, 0), (Trigger::Kick, 10), (Trigger::Kick, 15)]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_the_pass_in_flight_finish() {
        let kick = Arc::new(Notify::new());
        let mut c = counter(Duration::from_secs(20));
        let shutdown = tokio::time::sleep(Duration::from_secs(1));
        let started = Instant::now();
        run_every(Duration::from_secs(30), kick, shutdown, &mut c, counting).await;
        assert_eq!(c.passes.len(), 1);
        assert_eq!(started.elapsed().as_secs(), 20);
    }
}
