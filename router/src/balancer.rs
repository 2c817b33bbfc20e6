//! Which instance of a route takes a request: round-robin, or least-connections (the fewest
//! requests in flight through this router, ties in turn). The choice itself is the pure
//! [`choose`]; [`Balancer`] holds the turn counter and the in-flight counts.
//!
//! An instance that refused a connection is passed over for `failure_ejection` (unless every
//! instance of the route was), as gorouter does: an instance being stopped refuses until the
//! BBS's event takes it out of the table, and only the first request to find it pays a retry.
//! The retry goes to the instance that last answered, when the route has it: the one most
//! likely alive while several instances stop at once (a scale-down).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Balancing;
use crate::table::Endpoint;

/// Picks among `candidates` (indices into the route's endpoints): with `turn`, the request
/// counter, and `active`, the requests in flight per address. `None` when there is no candidate.
pub fn choose(mode: Balancing, turn: usize, candidates: &[&Endpoint], active: impl Fn(&str) -> usize) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let start = turn % candidates.len();
    match mode {
        Balancing::RoundRobin => Some(start),
        Balancing::LeastConnections => (0..candidates.len())
            .map(|offset| (start + offset) % candidates.len())
            .min_by_key(|&i| active(&candidates[i].address)),
    }
}

/// Most instances remembered as failed at once (beyond it the oldest are forgotten).
const MAX_FAILED: usize = 10_000;

/// The balancer of one router: every route shares its counter.
#[derive(Debug)]
pub struct Balancer {
    mode: Balancing,
    turn: AtomicUsize,
    active: Arc<Mutex<HashMap<String, usize>>>,
    /// Instances that refused a connection, and when.
    failed: Mutex<HashMap<String, Instant>>,
    /// The instance that last answered.
    last_good: Mutex<Option<String>>,
    failure_ejection: Duration,
}

impl Balancer {
    /// A balancer of `mode` passing over a refusing instance for `failure_ejection`.
    pub fn new(mode: Balancing, failure_ejection: Duration) -> Self {
        Self {
            mode,
            turn: AtomicUsize::new(0),
            active: Arc::default(),
            failed: Mutex::default(),
            last_good: Mutex::default(),
            failure_ejection,
        }
    }

    /// Records that `address` refused a connection.
    pub fn failed(&self, address: &str) {
        let now = Instant::now();
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.retain(|_, at| now.duration_since(*at) < self.failure_ejection);
        if failed.len() >= MAX_FAILED
            && let Some(oldest) = failed.iter().min_by_key(|(_, at)| **at).map(|(a, _)| a.clone())
        {
            failed.remove(&oldest);
        }
        failed.insert(address.to_owned(), now);
    }

    /// Records that `address` accepted a connection.
    pub fn answered(&self, address: &str) {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).remove(address);
        let mut last = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(address) {
            *last = Some(address.to_owned());
        }
    }

    /// The endpoint for the next request, leaving out `except` (the one that just refused: the
    /// retry, which prefers the instance that last answered).
    pub fn pick<'a>(&self, endpoints: &'a [Endpoint], except: Option<&str>) -> Option<&'a Endpoint> {
        let others: Vec<&Endpoint> =
            endpoints.iter().filter(|e| except.is_none_or(|address| e.address != address)).collect();
        let candidates = {
            let now = Instant::now();
            let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = |e: &&Endpoint| {
                failed.get(&e.address).is_none_or(|at| now.duration_since(*at) >= self.failure_ejection)
            };
            let healthy: Vec<&Endpoint> = others.iter().copied().filter(fresh).collect();
            if healthy.is_empty() { others } else { healthy }
        };
        if except.is_some() {
            let last = self.last_good.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(last) = last.and_then(|last| candidates.iter().copied().find(|e| e.address == last)) {
                return Some(last);
            }
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = {
            let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            choose(self.mode, turn, &candidates, |address| active.get(address).copied().unwrap_or(0))
        };
        chosen.map(|i| candidates[i])
    }

    /// Counts a request in flight to `address` until the guard is dropped.
    pub fn begin(&self, address: &str) -> InFlight {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()).entry(address.to_owned()).or_insert(0) += 1;
        InFlight { active: self.active.clone(), address: address.to_owned() }
    }

    /// Requests in flight to `address`.
    pub fn in_flight(&self, address: &str) -> usize {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).get(address).copied().unwrap_or(0)
    }
}

/// One request in flight; its count goes when it is dropped (an address with none is
/// forgotten, so the map holds only addresses in use).
#[derive(Debug)]
pub struct InFlight {
    active: Arc<Mutex<HashMap<String, usize>>>,
    address: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = active.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                active.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                address: format!("127.0.0.1:{}", 61000 + i),
                process_guid: "web".into(),
                index: i as i32,
                instance_guid: format!("g{i}"),
            })
            .collect()
    }

    fn balancer(mode: Balancing) -> Balancer {
        Balancer::new(mode, Duration::from_secs(5))
    }

    #[test]
    fn round_robin_visits_every_instance_in_turn() {
        let balancer = balancer(Balancing::RoundRobin);
        let all = endpoints(3);
        let picked: Vec<i32> = (0..6).filter_map(|_| balancer.pick(&all, None)).map(|e| e.index).collect();
        assert_eq!(picked, vec![0, 1, 2, 0, 1, 2]);
        assert!(balancer.pick(&[], None).is_none());
    }

    #[test]
    fn the_retry_never_goes_back_to_the_instance_that_refused() {
        let balancer = balancer(Balancing::RoundRobin);
        let all = endpoints(2);
        for _ in 0..4 {
            assert_eq!(balancer.pick(&all, Some(&all[0].address)).map(|e| e.index), Some(1));
        }
        assert!(balancer.pick(&all[..1], Some(&all[0].address)).is_none());
    }

    #[test]
    fn least_connections_prefers_the_idlest_and_forgets_finished_requests() {
        let balancer = balancer(Balancing::LeastConnections);
        let all = endpoints(3);
        let busy0 = balancer.begin(&all[0].address);
        let busy1 = balancer.begin(&all[1].address);
        let _busy1_again = balancer.begin(&all[1].address);
        for _ in 0..3 {
            assert_eq!(balancer.pick(&all, None).map(|e| e.index), Some(2));
        }
        let busy2 = balancer.begin(&all[2].address);
        // 0 and 2 have one each, 1 has two: never 1.
        for _ in 0..4 {
            assert_ne!(balancer.pick(&all, None).map(|e| e.index), Some(1));
        }
        drop((busy0, busy1, busy2));
        assert_eq!(balancer.in_flight(&all[0].address), 0);
        assert_eq!(balancer.in_flight(&all[1].address), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusing_instance_is_passed_over_for_a_while_and_the_retry_goes_to_the_last_that_answered() {
        let balancer = balancer(Balancing::RoundRobin);
        let all = endpoints(4);
        balancer.answered(&all[3].address);
        balancer.failed(&all[1].address);
        balancer.failed(&all[2].address);
        for _ in 0..6 {
            let picked = balancer.pick(&all, None).map(|e| e.index);
            assert!(matches!(picked, Some(0 | 3)), "{picked:?}");
        }
        // The retry after instance 0 refused: the last that answered.
        for _ in 0..3 {
            assert_eq!(balancer.pick(&all, Some(&all[0].address)).map(|e| e.index), Some(3));
        }
        // Every instance refused lately: they are all tried again rather than none.
        balancer.failed(&all[0].address);
        balancer.failed(&all[3].address);
        assert!(balancer.pick(&all, None).is_some());
        // After the ejection, back in turn.
        tokio::time::advance(Duration::from_secs(6)).await;
        let picked: std::collections::BTreeSet<i32> =
            (0..4).filter_map(|_| balancer.pick(&all, None)).map(|e| e.index).collect();
        assert_eq!(picked.len(), 4);
    }
}
