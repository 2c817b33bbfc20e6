//! Hand-written domain types. They hold only valid states: identifiers are newtypes that parse,
//! enums replace wire integers, optional parts are `Option`s. Values arrive from the wire through
//! [`crate::convert`] (which validates) and leave through `From` impls.
//!
//! The run-time half of a desired LRP ([`RunInfo`]) and a task's [`TaskDefinition`] stay in their
//! wire form inside a validated wrapper: they are opaque to scheduling (the rep executes them),
//! and mirroring some forty action / volume / network messages by hand would buy nothing but a
//! second copy to keep in sync. This is a deliberate exception to "no `pb` types outside proto".

mod actual_lrp;
mod cell;
mod desired_lrp;
mod ids;
mod task;
pub mod validation;
mod work;

pub use actual_lrp::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, NetInfo, PortMapping, PreferredAddress, Presence,
};
pub use cell::{CellCapacity, CellPresence, RootfsProvider};
pub use desired_lrp::{DesiredLrp, DesiredLrpUpdate, MetricTagValue, RunInfo, SchedulingInfo, UpdateStrategy};
pub use ids::{CellId, DomainName, InstanceGuid, ProcessGuid, TaskGuid};
pub use task::{Task, TaskDefinition, TaskState};
pub use work::{LrpStart, LrpStartRequest, PlacementConstraint, Resource, TaskStart, TaskStartRequest};

/// Optimistic ordering for consumers: a new epoch when a record is created, index +1 per write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModificationTag {
    /// Set once, when the record is created (a random GUID).
    pub epoch: String,
    /// Incremented on every write.
    pub index: u32,
}

impl ModificationTag {
    /// A fresh tag for a new record.
    pub fn new(epoch: impl Into<String>) -> Self {
        Self { epoch: epoch.into(), index: 0 }
    }

    /// The tag after one more write.
    pub fn incremented(&self) -> Self {
        Self { epoch: self.epoch.clone(), index: self.index.wrapping_add(1) }
    }
}

/// A domain and when it goes stale. Fresh domains gate destructive convergence actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The domain name.
    pub name: DomainName,
    /// Nanoseconds since the Unix epoch; the domain is fresh while this is in the future.
    /// `i64::MAX` means it never expires.
    pub expire_time: i64,
}

impl Domain {
    /// Whether the domain is fresh at `now_ns`.
    pub fn is_fresh(&self, now_ns: i64) -> bool {
        self.expire_time > now_ns
    }

    /// The whole seconds it stays fresh after `now_ns`, rounded up (at most `u32::MAX`, the
    /// largest TTL `UpsertDomain` takes); 0 when it never expires, 1 at least while it is fresh,
    /// 0 once it is stale.
    pub fn ttl_remaining_secs(&self, now_ns: i64) -> u32 {
        if self.expire_time == i64::MAX || !self.is_fresh(now_ns) {
            return 0;
        }
        let left_ns = i128::from(self.expire_time) - i128::from(now_ns);
        let secs = (left_ns + 999_999_999) / 1_000_000_000;
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod domain_tests {
    use super::*;

    #[test]
    fn a_domains_remaining_ttl_is_rounded_up_and_zero_when_it_never_expires() {
        let domain = |expire_time| Domain { name: DomainName::parse("d").unwrap(), expire_time };
        assert_eq!(domain(i64::MAX).ttl_remaining_secs(0), 0);
        assert_eq!(domain(10_000_000_001).ttl_remaining_secs(0), 11);
        assert_eq!(domain(10_000_000_000).ttl_remaining_secs(0), 10);
        assert_eq!(domain(5).ttl_remaining_secs(4), 1, "fresh for a nanosecond is fresh");
        assert_eq!(domain(5).ttl_remaining_secs(5), 0, "stale");
        assert_eq!(domain(i64::MAX - 1).ttl_remaining_secs(i64::MIN), u32::MAX);
    }
}

/// A field that broke a rule: `process_guid must match [A-Za-z0-9_-]+`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct ValidationError {
    /// The field's wire name, with a path for nested fields (`action.run_action.path`).
    pub field: String,
    /// The rule it broke, as a phrase that completes the sentence.
    pub rule: String,
}

impl ValidationError {
    /// A new error for `field` breaking `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }

    /// The same error with `parent.` prefixed to its field path.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}
