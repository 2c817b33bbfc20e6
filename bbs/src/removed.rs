//! The desired LRPs this BBS removed lately, for convergence (`converger::Effects::removed_lately`).
//!
//! RemoveDesiredLRP deletes the desired record, then asks the reps to stop its instances. Until
//! a stop reaches its rep, the rep still runs the instance and reports the run info it keeps for
//! it; a convergence pass in between saw a placed instance with no desired LRP, asked the cells,
//! and rebuilt the removed record as if the database had lost it (issue 19's recovery), so the
//! removal was undone. The leader both serves the removals and runs convergence, so it remembers
//! each removal for [`REMEMBERED_FOR`], until the guid is desired again, and convergence does not
//! rebuild those.
//!
//! In memory only: a new leader does not know what the old one removed. It stops (retires) a
//! removed LRP's instances like any orphan, unless a rep that never got its stop still reports
//! the instance's run info, in which case the record is rebuilt, marked recovered, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use proto::models::ProcessGuid;

/// How long a removal is remembered: well past the reps' stops (a retirement waits at most the
/// communication timeout per call) and past the cells' sync grace of convergence.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(600);

/// Most removals remembered at once; past it the oldest are forgotten first.
pub const MAX_REMEMBERED: usize = 100_000;

/// The removals of the last [`REMEMBERED_FOR`], at most [`MAX_REMEMBERED`] of them.
#[derive(Debug, Default)]
pub struct RemovedLately {
    removed_at: Mutex<HashMap<ProcessGuid, Instant>>,
}

impl RemovedLately {
    /// Remembers that `process_guid` is being removed now.
    pub fn note(&self, process_guid: &ProcessGuid) {
        self.note_at(process_guid, Instant::now());
    }

    /// Forgets a removal of `process_guid`: it was desired again, and if its new record is lost
    /// later, it is to be rebuilt like any other.
    pub fn forget(&self, process_guid: &ProcessGuid) {
        let mut removed_at = self.removed_at.lock().unwrap_or_else(|p| p.into_inner());
        if !removed_at.is_empty() {
            removed_at.remove(process_guid);
        }
    }

    /// Whether `process_guid` was removed within the last [`REMEMBERED_FOR`].
    pub fn contains(&self, process_guid: &ProcessGuid) -> bool {
        self.contains_at(process_guid, Instant::now())
    }

    fn note_at(&self, process_guid: &ProcessGuid, now: Instant) {
        let mut removed_at = self.removed_at.lock().unwrap_or_else(|p| p.into_inner());
        removed_at.insert(process_guid.clone(), now);
        if removed_at.len() > MAX_REMEMBERED {
            removed_at.retain(|_, at| now.saturating_duration_since(*at) < REMEMBERED_FOR);
        }
        while removed_at.len() > MAX_REMEMBERED {
            let Some(oldest) = removed_at.iter().min_by_key(|(_, at)| **at).map(|(guid, _)| guid.clone()) else {
                break;
            };
            removed_at.remove(&oldest);
        }
    }

    fn contains_at(&self, process_guid: &ProcessGuid, now: Instant) -> bool {
        let removed_at = self.removed_at.lock().unwrap_or_else(|p| p.into_inner());
        removed_at.get(process_guid).is_some_and(|at| now.saturating_duration_since(*at) < REMEMBERED_FOR)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.removed_at.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(s: &str) -> ProcessGuid {
        ProcessGuid::parse(s).unwrap()
    }

    #[test]
    fn a_removal_is_remembered_for_its_time_only() {
        let removed = RemovedLately::default();
        let start = Instant::now();
        removed.note_at(&guid("web"), start);
        assert!(removed.contains_at(&guid("web"), start));
        assert!(removed.contains_at(&guid("web"), start + REMEMBERED_FOR - Duration::from_secs(1)));
        assert!(!removed.contains_at(&guid("web"), start + REMEMBERED_FOR));
        assert!(!removed.contains_at(&guid("other"), start));
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_expired_then_the_oldest() {
        let removed = RemovedLately::default();
        let start = Instant::now();
        for n in 0..MAX_REMEMBERED {
            removed.note_at(&guid(&format!("old-{n}")), start + Duration::from_millis(n as u64));
        }
        assert_eq!(removed.len(), MAX_REMEMBERED);
        // Over the bound within the time: the oldest goes.
        let later = start + Duration::from_secs(200);
        removed.note_at(&guid("new"), later);
        assert_eq!(removed.len(), MAX_REMEMBERED);
        assert!(!removed.contains_at(&guid("old-0"), later), "the oldest was kept");
        assert!(removed.contains_at(&guid("old-1"), later));
        assert!(removed.contains_at(&guid("new"), later));
        // Over the bound past the time: every expired one goes at once.
        let much_later = start + REMEMBERED_FOR + Duration::from_secs(100);
        removed.note_at(&guid("newer"), much_later);
        assert_eq!(removed.len(), 2, "new and newer are left");
    }
}
