//! The checker's judgements, pure so that they can be tested: which acknowledged desires a
//! listing lost or changed, which instances run or wait out a crash, and which indexes have had
//! two ordinary RUNNING instances for too long.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use proto::pb::models::v1 as pb;
use tokio::time::Instant;

use super::churn::LrpEntry;

/// One broken invariant: its kind and what was seen.
pub type Finding = (&'static str, String);

/// A `(process guid, index)`.
pub type Index = (String, i32);

/// The acknowledged desires of `snapshot` (guid, instances, epoch, taken before the listing)
/// that `listed` lost or shows with another instance count. A record an operation touched since
/// the snapshot (`lrps` now has another epoch, or an operation in flight) is not judged.
pub fn desired_findings(
    snapshot: &[(String, i32, u64)],
    lrps: &BTreeMap<String, LrpEntry>,
    listed: &[pb::DesiredLrp],
) -> Vec<Finding> {
    let listed: HashMap<&str, &pb::DesiredLrp> = listed.iter().map(|d| (d.process_guid.as_str(), d)).collect();
    let mut found = Vec::new();
    for (guid, instances, epoch) in snapshot {
        let untouched = lrps.get(guid).is_some_and(|e| e.epoch == *epoch && e.busy == 0);
        if !untouched {
            continue;
        }
        match listed.get(guid.as_str()) {
            None => found.push(("desired-lost", format!("{guid} ({instances} instances) is not listed"))),
            Some(d) if d.instances != *instances => found
                .push(("desired-instances", format!("{guid} has {} instances, {instances} acknowledged", d.instances))),
            Some(_) => {}
        }
    }
    found
}

/// What the actual LRPs say per index.
#[derive(Debug, Default)]
pub struct Instances {
    /// Ordinary RUNNING instances per index.
    pub running: HashMap<Index, u64>,
    /// Indexes with a CRASHED instance (waiting out its restart backoff: the crash policy at
    /// work, not a failure to converge; the churn crashes instances on purpose).
    pub crashed: HashSet<Index>,
}

impl Instances {
    /// Counts `actual`.
    pub fn of(actual: &[pb::ActualLrp]) -> Instances {
        let mut out = Instances::default();
        for a in actual {
            let Some(key) = a.actual_lrp_key.as_ref() else { continue };
            let index = (key.process_guid.clone(), key.index);
            if a.state == pb::ActualLrpState::Crashed as i32 {
                out.crashed.insert(index);
            } else if a.state == pb::ActualLrpState::Running as i32 && a.presence == pb::Presence::Ordinary as i32 {
                *out.running.entry(index).or_default() += 1;
            }
        }
        out
    }

    /// Indexes with two ordinary RUNNING instances or more.
    pub fn doubles(&self) -> usize {
        self.running.values().filter(|&&n| n >= 2).count()
    }
}

/// Since when each index has had two ordinary RUNNING instances, and whether that was reported.
#[derive(Debug, Default)]
pub struct Doubles {
    since: HashMap<Index, (Instant, bool)>,
}

impl Doubles {
    /// Takes in one check's instances at `now`; returns a finding for each index doubled for
    /// longer than `tolerance` (once per episode) and the longest current episode.
    pub fn observe(&mut self, instances: &Instances, now: Instant, tolerance: Duration) -> (Vec<Finding>, Duration) {
        let running = &instances.running;
        self.since.retain(|k, _| running.get(k).is_some_and(|&n| n >= 2));
        let mut found = Vec::new();
        let mut longest = Duration::ZERO;
        for (k, n) in running.iter().filter(|(_, n)| **n >= 2) {
            let (since, reported) = self.since.entry(k.clone()).or_insert((now, false));
            let lasted = now - *since;
            longest = longest.max(lasted);
            if lasted > tolerance && !*reported {
                *reported = true;
                found.push((
                    "double-running",
                    format!("{} index {} has {n} ordinary RUNNING instances for {lasted:?}", k.0, k.1),
                ));
            }
        }
        (found, longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(instances: i32, epoch: u64, busy: u32) -> LrpEntry {
        LrpEntry { instances, busy, epoch, uncertain: false, changed: Instant::now() }
    }

    fn actual(guid: &str, index: i32, state: pb::ActualLrpState, presence: pb::Presence) -> pb::ActualLrp {
        pb::ActualLrp {
            actual_lrp_key: Some(pb::ActualLrpKey { process_guid: guid.into(), index, domain: "soak".into() }),
            state: state as i32,
            presence: presence as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_lost_or_changed_desire_is_found_and_a_touched_one_is_not_judged() {
        let snapshot =
            vec![("a".to_owned(), 2, 1), ("b".to_owned(), 3, 1), ("c".to_owned(), 1, 1), ("d".to_owned(), 1, 1)];
        let lrps: BTreeMap<String, LrpEntry> = [
            ("a".to_owned(), entry(2, 1, 0)),
            ("b".to_owned(), entry(3, 1, 0)),
            ("c".to_owned(), entry(1, 2, 0)),
            ("d".to_owned(), entry(1, 1, 1)),
        ]
        .into();
        let mut recovered = super::super::churn::lrp("b", 2);
        recovered.annotation = "[recovered] soak".into();
        let listed = vec![super::super::churn::lrp("a", 2), recovered];
        let found = desired_findings(&snapshot, &lrps, &listed);
        let kinds: Vec<&str> = found.iter().map(|f| f.0).collect();
        assert_eq!(kinds, ["desired-instances"], "{found:?}");
        let listed = vec![super::super::churn::lrp("b", 3)];
        let found = desired_findings(&snapshot, &lrps, &listed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].0 == "desired-lost" && found[0].1.starts_with("a "), "{found:?}");
    }

    #[test]
    fn a_double_is_reported_once_when_it_outlasts_the_tolerance() {
        let tolerance = Duration::from_secs(3);
        let doubled = Instances::of(&[
            actual("a", 0, pb::ActualLrpState::Running, pb::Presence::Ordinary),
            actual("a", 0, pb::ActualLrpState::Running, pb::Presence::Ordinary),
            actual("a", 1, pb::ActualLrpState::Running, pb::Presence::Ordinary),
            actual("a", 1, pb::ActualLrpState::Running, pb::Presence::Evacuating),
            actual("a", 2, pb::ActualLrpState::Crashed, pb::Presence::Ordinary),
        ]);
        assert_eq!(doubled.doubles(), 1);
        assert!(doubled.crashed.contains(&("a".to_owned(), 2)));
        let t0 = Instant::now();
        let mut d = Doubles::default();
        assert!(d.observe(&doubled, t0, tolerance).0.is_empty());
        assert!(d.observe(&doubled, t0 + Duration::from_secs(2), tolerance).0.is_empty());
        let (found, longest) = d.observe(&doubled, t0 + Duration::from_secs(4), tolerance);
        assert_eq!((found.len(), longest), (1, Duration::from_secs(4)), "{found:?}");
        assert!(d.observe(&doubled, t0 + Duration::from_secs(5), tolerance).0.is_empty(), "reported once");
        // The episode ends; a new one starts from zero.
        assert!(d.observe(&Instances::default(), t0 + Duration::from_secs(6), tolerance).0.is_empty());
        assert!(d.observe(&doubled, t0 + Duration::from_secs(7), tolerance).0.is_empty());
        assert!(d.observe(&doubled, t0 + Duration::from_secs(9), tolerance).0.is_empty());
    }
}
