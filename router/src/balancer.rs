//! Which instance of a route takes a request: round-robin, or least-connections (the fewest
//! requests in flight through this router, ties in turn). The choice itself is the pure
//! [`choose`]; [`Balancer`] holds the turn counter and the in-flight counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// The balancer of one router: every route shares its counter.
#[derive(Debug)]
pub struct Balancer {
    mode: Balancing,
    turn: AtomicUsize,
    active: Arc<Mutex<HashMap<String, usize>>>,
}

impl Balancer {
    /// A balancer of `mode`.
    pub fn new(mode: Balancing) -> Self {
        Self { mode, turn: AtomicUsize::new(0), active: Arc::default() }
    }

    /// The endpoint for the next request, leaving out `except` (the one that just refused).
    pub fn pick<'a>(&self, endpoints: &'a [Endpoint], except: Option<&str>) -> Option<&'a Endpoint> {
        let candidates: Vec<&Endpoint> =
            endpoints.iter().filter(|e| except.is_none_or(|address| e.address != address)).collect();
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

    #[test]
    fn round_robin_visits_every_instance_in_turn() {
        let balancer = Balancer::new(Balancing::RoundRobin);
        let all = endpoints(3);
        let picked: Vec<i32> = (0..6).filter_map(|_| balancer.pick(&all, None)).map(|e| e.index).collect();
        assert_eq!(picked, vec![0, 1, 2, 0, 1, 2]);
        assert!(balancer.pick(&[], None).is_none());
    }

    #[test]
    fn the_retry_never_goes_back_to_the_instance_that_refused() {
        let balancer = Balancer::new(Balancing::RoundRobin);
        let all = endpoints(2);
        for _ in 0..4 {
            assert_eq!(balancer.pick(&all, Some(&all[0].address)).map(|e| e.index), Some(1));
        }
        assert!(balancer.pick(&all[..1], Some(&all[0].address)).is_none());
    }

    #[test]
    fn least_connections_prefers_the_idlest_and_forgets_finished_requests() {
        let balancer = Balancer::new(Balancing::LeastConnections);
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
}
