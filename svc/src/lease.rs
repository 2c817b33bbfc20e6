//! The one lease holder: the BBS leader lock, the auctioneer lock and every cell presence are
//! kept alive by [`LeaseHolder`]; each user says only what one lease call is ([`LeaseCalls`]:
//! a direct store call for the BBS, a Locket call for the others) and what holding it means.
//!
//! The rules, in one place:
//! - An acquire-or-renew attempt is made every [`LeaseTiming::renew_interval`] (the retry
//!   interval, but at least three times per TTL), measured from the start of each attempt, and
//!   each attempt is bounded by that interval.
//! - A failed attempt while the lease is still ours (renewed within the TTL) is retried after
//!   [`LeaseTiming::retry_after_failure`] (a tenth of the TTL), so a blip does not cost the
//!   lease.
//! - What a failed renewal means depends on [`Fencing`]: a holder whose writes the store fences
//!   keeps its status until the lease would have run out; any other holder loses it at once,
//!   before another process can take the lease over.
//! - On shutdown a lease that may be ours (held, or an attempt timed out or was cut short and may
//!   have taken effect) is released, so a successor need not wait for the TTL.
//! - Every attempt's duration goes to [`LEASE_RENEWAL_DURATION`], and failed renewals of a lease
//!   that was still ours to [`LEASE_RENEWAL_FAILURES`], both labelled with the lease's key.
//!
//! [`LeaseMachine`] is the pure part (no IO, no clock: instants are passed in); the holder drives
//! it with `tokio::time`.
//!
//! A lease's owner names its holder ([`owner`]): under mutual TLS `<identity-uri>#<instance>`
//! ([`owner_for`] makes a process's), and a caller may lock or release only as its own identity.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod locket;
pub mod owner;
mod status;

pub use owner::{is_own_owner, owner_for};
pub use status::HeldStatus;

/// Histogram: how long one acquire-or-renew of a lease took, in seconds; label `key`.
pub const LEASE_RENEWAL_DURATION: &str = "lease_renewal_duration_seconds";
/// Counter: renewals that failed or timed out while the lease was still ours (not attempts of a
/// standby, nor those refused because another owner holds it); label `key`.
pub const LEASE_RENEWAL_FAILURES: &str = "lease_renewal_failures_total";

/// A lease's TTL and retry interval, and the cadence derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long the lease lives without a renewal.
    pub ttl: Duration,
    /// How often to renew (and, standing by, to try again).
    pub retry_interval: Duration,
}

impl LeaseTiming {
    /// A lease living `ttl`, renewed every `retry_interval`.
    pub fn new(ttl: Duration, retry_interval: Duration) -> Self {
        Self { ttl, retry_interval }
    }

    /// How often a holder renews, and the bound on one call: the retry interval, but never less
    /// often than every third of the TTL, so two renewals can fail before the lease runs out.
    pub fn renew_interval(&self) -> Duration {
        self.retry_interval.min(self.ttl / 3).max(Duration::from_millis(1))
    }

    /// How soon a failed attempt is retried while the lease may still be ours.
    pub fn retry_after_failure(&self) -> Duration {
        (self.ttl / 10).clamp(Duration::from_millis(1), self.renew_interval())
    }
}

/// What a failed renewal means to the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// The store refuses the holder's writes once the lease is gone (the BBS leader), so the
    /// holder keeps its status until the lease would have run out.
    Fenced,
    /// Nothing stops the holder acting without the lease (auctions, a cell's presence), so a
    /// failed renewal loses the status at once.
    Unfenced,
}

/// The outcome of one acquire-or-renew call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// The lease is ours; `T` is what holding it gives (the BBS's fence, or nothing).
    Held(T),
    /// Another owner holds the lease (at `holder`, when known): it is certainly not ours.
    Refused {
        /// The holder's advertised value, when known.
        holder: Option<String>,
    },
    /// The call failed; it may have taken effect when `maybe_applied` (a timeout).
    Failed {
        /// What went wrong.
        error: String,
        /// Whether the lease may have been acquired or renewed anyway.
        maybe_applied: bool,
    },
}

/// What the holder knows about its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState<T> {
    /// Held, with what holding it gives.
    Held(T),
    /// Not held; `holder` is the current owner's value when known.
    NotHeld {
        /// The owner's advertised value, when known.
        holder: Option<String>,
    },
}

impl<T> LeaseState<T> {
    /// Whether the lease is held.
    pub fn is_held(&self) -> bool {
        matches!(self, LeaseState::Held(_))
    }
}

/// What one attempt changed, for the user's logs and status.
#[derive(Debug)]
pub struct Report<'a, T> {
    /// The lease's key.
    pub key: &'a str,
    /// The state before the attempt.
    pub before: &'a LeaseState<T>,
    /// The state after it.
    pub after: &'a LeaseState<T>,
    /// Why the attempt failed, if it did.
    pub error: Option<&'a str>,
    /// Attempts in a row that did not hold the lease (0 after a success).
    pub failures: u64,
    /// Whether this is the holder stopping (after shutdown), not an attempt.
    pub stopping: bool,
}

/// The calls a lease is made of. One implementation per kind of lease; the holder does the
/// rest.
pub trait LeaseCalls: Send + Sync + 'static {
    /// What holding the lease gives (the BBS's fence; `()` for Locket leases).
    type Held: Clone + PartialEq + Send + Sync + std::fmt::Debug + 'static;

    /// The lease's key (also the metrics label).
    fn key(&self) -> &str;

    /// One acquire-or-renew call. The holder bounds it by the renew interval.
    fn acquire(&self) -> BoxFuture<'_, Attempt<Self::Held>>;

    /// Who holds the lease, asked after a refusal that did not say (bounded like `acquire`).
    fn holder(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }

    /// Releases the lease if this owner holds it.
    fn release(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Called after every attempt, and once more when the holder stops (before it releases).
    fn report(&self, report: &Report<'_, Self::Held>) {
        let _ = report;
    }
}

/// What the machine decided after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// How long after the attempt's start the next one starts.
    pub pause: Duration,
    /// Whether a renewal failed while the lease was still ours (counted in
    /// [`LEASE_RENEWAL_FAILURES`]).
    pub renewal_failed: bool,
}

/// The lease rules with no IO: fed each attempt's outcome and the instants it started and
/// ended, it says what is held and when to try next.
#[derive(Debug, Clone)]
pub struct LeaseMachine<T> {
    timing: LeaseTiming,
    fencing: Fencing,
    state: LeaseState<T>,
    /// When the last successful attempt started (the lease lives `ttl` from then, at least).
    last_renewal: Option<Instant>,
    /// Whether the last attempt may have taken effect without saying so.
    maybe_applied: bool,
    failures: u64,
}

impl<T: Clone> LeaseMachine<T> {
    /// A machine that holds nothing yet.
    pub fn new(timing: LeaseTiming, fencing: Fencing) -> Self {
        Self {
            timing,
            fencing,
            state: LeaseState::NotHeld { holder: None },
            last_renewal: None,
            maybe_applied: false,
            failures: 0,
        }
    }

    /// The timing.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// What is held.
    pub fn state(&self) -> &LeaseState<T> {
        &self.state
    }

    /// Attempts in a row that did not hold the lease.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Whether the lease is ours at `now` for certain: renewed within the TTL.
    pub fn renewed_within_ttl(&self, now: Instant) -> bool {
        self.last_renewal.is_some_and(|at| now.saturating_duration_since(at) < self.timing.ttl)
    }

    /// Whether the lease may be ours at `now`: renewed within the TTL, or the last attempt may
    /// have taken effect.
    pub fn may_hold(&self, now: Instant) -> bool {
        self.maybe_applied || self.renewed_within_ttl(now)
    }

    /// Takes in the outcome of the attempt that ran from `started` to `now`.
    pub fn observe(&mut self, started: Instant, now: Instant, attempt: Attempt<T>) -> Step {
        let was_ours = self.renewed_within_ttl(started);
        match attempt {
            Attempt::Held(held) => {
                self.state = LeaseState::Held(held);
                self.last_renewal = Some(started);
                self.maybe_applied = false;
                self.failures = 0;
                Step { pause: self.timing.renew_interval(), renewal_failed: false }
            }
            Attempt::Refused { holder } => {
                self.state = LeaseState::NotHeld { holder };
                self.last_renewal = None;
                self.maybe_applied = false;
                self.failures += 1;
                Step { pause: self.timing.renew_interval(), renewal_failed: false }
            }
            Attempt::Failed { maybe_applied, .. } => {
                self.maybe_applied = maybe_applied;
                self.failures += 1;
                let still_ours = self.renewed_within_ttl(now);
                if self.state.is_held() && !(self.fencing == Fencing::Fenced && still_ours) {
                    self.state = LeaseState::NotHeld { holder: None };
                }
                if !still_ours {
                    self.last_renewal = None;
                }
                let pause = if still_ours { self.timing.retry_after_failure() } else { self.timing.renew_interval() };
                Step { pause, renewal_failed: was_ours }
            }
        }
    }

    /// An attempt was cut short (by shutdown): it may have taken effect.
    pub fn interrupted(&mut self) {
        self.maybe_applied = true;
    }

    /// Whether stopping at `now` should release the lease.
    pub fn should_release(&self, now: Instant) -> bool {
        self.state.is_held() || self.may_hold(now)
    }

    /// Stops holding: nothing is held any more.
    pub fn stop(&mut self) {
        self.state = LeaseState::NotHeld { holder: None };
        self.last_renewal = None;
        self.maybe_applied = false;
    }
}

/// One acquire-or-renew call of `calls`, bounded by the renew interval (a timeout may have
/// taken effect), asking who holds the lease after a refusal that did not say. Records its
/// duration in [`LEASE_RENEWAL_DURATION`].
pub async fn attempt<C: LeaseCalls>(calls: &C, timing: LeaseTiming) -> Attempt<C::Held> {
    let started = Instant::now();
    let bound = timing.renew_interval();
    let attempt = match tokio::time::timeout(bound, calls.acquire()).await {
        Ok(attempt) => attempt,
        Err(_) => Attempt::Failed { error: format!("timed out after {bound:?}"), maybe_applied: true },
    };
    metrics::histogram!(LEASE_RENEWAL_DURATION, "key" => calls.key().to_owned())
        .record(started.elapsed().as_secs_f64());
    match attempt {
        Attempt::Refused { holder: None } => {
            let holder = tokio::time::timeout(bound, calls.holder()).await.ok().flatten();
            Attempt::Refused { holder }
        }
        other => other,
    }
}

/// Counts a renewal that failed while the lease may have been ours.
pub fn record_renewal_failure(key: &str) {
    metrics::counter!(LEASE_RENEWAL_FAILURES, "key" => key.to_owned()).increment(1);
}

/// Keeps one lease: [`LeaseHolder::tick`] is one attempt, [`LeaseHolder::run`] the loop.
pub struct LeaseHolder<C: LeaseCalls> {
    calls: C,
    machine: LeaseMachine<C::Held>,
}

impl<C: LeaseCalls> std::fmt::Debug for LeaseHolder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseHolder").field("key", &self.calls.key()).field("machine", &self.machine).finish()
    }
}

impl<C: LeaseCalls> LeaseHolder<C> {
    /// A holder of the lease `calls` make, with `timing` and `fencing`.
    pub fn new(calls: C, timing: LeaseTiming, fencing: Fencing) -> Self {
        Self { calls, machine: LeaseMachine::new(timing, fencing) }
    }

    /// The calls.
    pub fn calls(&self) -> &C {
        &self.calls
    }

    /// The timing.
    pub fn timing(&self) -> LeaseTiming {
        self.machine.timing()
    }

    /// What is held.
    pub fn state(&self) -> &LeaseState<C::Held> {
        self.machine.state()
    }

    /// One attempt, bounded by the renew interval; returns when the next one is due.
    pub async fn tick(&mut self) -> Step {
        let started = Instant::now();
        let attempt = attempt(&self.calls, self.machine.timing()).await;
        self.settle(started, attempt)
    }

    fn settle(&mut self, started: Instant, attempt: Attempt<C::Held>) -> Step {
        let error = match &attempt {
            Attempt::Failed { error, .. } => Some(error.clone()),
            _ => None,
        };
        let before = self.machine.state().clone();
        let step = self.machine.observe(started, Instant::now(), attempt);
        if step.renewal_failed {
            record_renewal_failure(self.calls.key());
        }
        self.calls.report(&Report {
            key: self.calls.key(),
            before: &before,
            after: self.machine.state(),
            error: error.as_deref(),
            failures: self.machine.failures(),
            stopping: false,
        });
        step
    }

    /// Attempts until `shutdown` (cutting an attempt in flight short), then reports the lease
    /// no longer held and releases it if it may be ours (bounded by the renew interval; a lease
    /// that cannot be released expires after its TTL).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let started = Instant::now();
            let timing = self.machine.timing();
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.machine.interrupted();
                    break;
                }
                attempt = attempt(&self.calls, timing) => attempt,
            };
            let step = self.settle(started, attempt);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(started + step.pause) => {}
            }
        }
        // Stop acting on the lease first, then give it back.
        let release = self.machine.should_release(Instant::now());
        let before = self.machine.state().clone();
        self.machine.stop();
        let key = self.calls.key().to_owned();
        self.calls.report(&Report {
            key: &key,
            before: &before,
            after: self.machine.state(),
            error: None,
            failures: self.machine.failures(),
            stopping: true,
        });
        if release {
            match tokio::time::timeout(self.machine.timing().renew_interval(), self.calls.release()).await {
                Ok(Ok(())) => tracing::info!(%key, "released the lease"),
                Ok(Err(error)) => tracing::warn!(%key, %error, "cannot release the lease; it expires after its ttl"),
                Err(_) => tracing::warn!(%key, "releasing the lease timed out; it expires after its ttl"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);
    const RETRY: Duration = Duration::from_secs(5);

    fn failed(maybe_applied: bool) -> Attempt<u64> {
        Attempt::Failed { error: "boom".into(), maybe_applied }
    }

    #[test]
    fn the_renew_interval_is_at_most_a_third_of_the_ttl_and_failures_retry_after_a_tenth() {
        let timing = LeaseTiming::new(Duration::from_secs(6), Duration::from_secs(5));
        assert_eq!(timing.renew_interval(), Duration::from_secs(2));
        assert_eq!(timing.retry_after_failure(), Duration::from_millis(600));
        let timing = LeaseTiming::new(TTL, RETRY);
        assert_eq!(timing.renew_interval(), RETRY);
        assert_eq!(timing.retry_after_failure(), Duration::from_millis(1_500));
    }

    #[test]
    fn an_unfenced_holder_loses_the_lease_at_the_first_failed_renewal_and_retries_soon() {
        let t0 = Instant::now();
        let mut machine = LeaseMachine::new(LeaseTiming::new(TTL, RETRY), Fencing::Unfenced);
        assert_eq!(machine.observe(t0, t0, Attempt::Held(1)).pause, RETRY);
        assert_eq!(machine.state(), &LeaseState::Held(1));
        let step = machine.observe(t0 + RETRY, t0 + RETRY, failed(false));
        assert_eq!(machine.state(), &LeaseState::NotHeld { holder: None });
        assert_eq!(step, Step { pause: Duration::from_millis(1_500), renewal_failed: true });
        assert!(machine.should_release(t0 + RETRY));
        // Once the lease would have run out, failures are ordinary standby attempts.
        let late = t0 + TTL;
        assert_eq!(machine.observe(late, late, failed(false)), Step { pause: RETRY, renewal_failed: false });
        assert!(!machine.should_release(late));
    }

    #[test]
    fn a_fenced_holder_keeps_the_lease_until_its_ttl_runs_out() {
        let t0 = Instant::now();
        let mut machine = LeaseMachine::new(LeaseTiming::new(TTL, RETRY), Fencing::Fenced);
        machine.observe(t0, t0, Attempt::Held(7));
        machine.observe(t0 + RETRY, t0 + RETRY, failed(false));
        assert_eq!(machine.state(), &LeaseState::Held(7));
        let expired = t0 + TTL;
        machine.observe(expired - RETRY, expired, failed(true));
        assert_eq!(machine.state(), &LeaseState::NotHeld { holder: None });
        // The last attempt timed out: it may have renewed, so it is released on the way out.
        assert!(machine.should_release(expired));
    }

    #[test]
    fn a_refusal_names_the_holder_and_is_not_a_renewal_failure() {
        let t0 = Instant::now();
        let mut machine = LeaseMachine::<u64>::new(LeaseTiming::new(TTL, RETRY), Fencing::Fenced);
        let step = machine.observe(t0, t0, Attempt::Refused { holder: Some("10.0.0.1:8889".into()) });
        assert_eq!(step, Step { pause: RETRY, renewal_failed: false });
        assert_eq!(machine.state(), &LeaseState::NotHeld { holder: Some("10.0.0.1:8889".into()) });
        assert!(!machine.should_release(t0));
        assert_eq!(machine.failures(), 1);
        machine.interrupted();
        assert!(machine.should_release(t0), "an attempt cut short may have acquired the lease");
        machine.stop();
        assert!(!machine.should_release(t0));
    }
}
