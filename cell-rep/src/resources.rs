//! Pure capacity arithmetic: a cell's memory, disk and container slots, and the check that a
//! reservation fits. No IO and no locking here; the executor holds the registry and calls these.
//!
//! Mirrors `executor/resources.go`: limits are reservations, not measured usage, and the remaining
//! capacity is the total minus the sum of every registry entry (reserved, running or completed but
//! not yet deleted).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A quantity of cell capacity: memory and disk in MB and a number of container slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// Memory in MB.
    pub memory_mb: i32,
    /// Disk in MB.
    pub disk_mb: i32,
    /// Container slots.
    pub containers: i32,
}

/// The resource a reservation ran short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// Memory in MB.
    Memory,
    /// Disk in MB.
    Disk,
    /// Container slots.
    Containers,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Memory => "memory",
            ResourceKind::Disk => "disk",
            ResourceKind::Containers => "containers",
        })
    }
}

/// Why a request does not fit in the remaining capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// The first resource (memory, then disk, then containers) that is short.
    pub kind: ResourceKind,
    /// How much the request asked for.
    pub requested: i32,
    /// How much is left.
    pub available: i32,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.kind {
            ResourceKind::Containers => "",
            ResourceKind::Memory | ResourceKind::Disk => " mb",
        };
        write!(f, "insufficient {}: requested {}{unit}, available {}{unit}", self.kind, self.requested, self.available)
    }
}

impl Resources {
    /// A quantity from its three parts.
    pub const fn new(memory_mb: i32, disk_mb: i32, containers: i32) -> Self {
        Self { memory_mb, disk_mb, containers }
    }

    /// The allocation of one container: its memory and disk and one slot.
    pub const fn container(memory_mb: i32, disk_mb: i32) -> Self {
        Self { memory_mb, disk_mb, containers: 1 }
    }

    /// Whether `request` fits in `self` (memory ≥, disk ≥ and containers ≥ the request).
    /// Checks memory, then disk, then slots, and names the first one that is short.
    pub fn check_fits(&self, request: &Resources) -> Result<(), Shortfall> {
        let pairs = [
            (ResourceKind::Memory, request.memory_mb, self.memory_mb),
            (ResourceKind::Disk, request.disk_mb, self.disk_mb),
            (ResourceKind::Containers, request.containers, self.containers),
        ];
        for (kind, requested, available) in pairs {
            if requested > available {
                return Err(Shortfall { kind, requested, available });
            }
        }
        Ok(())
    }

    /// `self − other`, saturating at the `i32` bounds (never panics).
    #[must_use]
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            disk_mb: self.disk_mb.saturating_sub(other.disk_mb),
            containers: self.containers.saturating_sub(other.containers),
        }
    }

    /// `self + other`, saturating at the `i32` bounds (never panics).
    #[must_use]
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            memory_mb: self.memory_mb.saturating_add(other.memory_mb),
            disk_mb: self.disk_mb.saturating_add(other.disk_mb),
            containers: self.containers.saturating_add(other.containers),
        }
    }

    /// The remaining capacity: `total` minus the sum of `allocations`.
    pub fn remaining<'a>(total: &Resources, allocations: impl IntoIterator<Item = &'a Resources>) -> Resources {
        let used = allocations.into_iter().fold(Resources::default(), |acc, r| acc.saturating_add(r));
        total.saturating_sub(&used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_fits_is_accepted() {
        let available = Resources::new(1024, 2048, 3);
        assert_eq!(available.check_fits(&Resources::container(1024, 2048)), Ok(()));
    }

    #[test]
    fn the_first_short_resource_is_named() {
        let available = Resources::new(512, 100, 0);
        let err = available.check_fits(&Resources::container(1024, 200)).unwrap_err();
        assert_eq!(err.kind, ResourceKind::Memory);
        assert_eq!(err.to_string(), "insufficient memory: requested 1024 mb, available 512 mb");
        let err = available.check_fits(&Resources::container(256, 200)).unwrap_err();
        assert_eq!(err.kind, ResourceKind::Disk);
        let err = available.check_fits(&Resources::container(256, 50)).unwrap_err();
        assert_eq!(err.kind, ResourceKind::Containers);
        assert_eq!(err.to_string(), "insufficient containers: requested 1, available 0");
    }

    #[test]
    fn remaining_subtracts_every_allocation() {
        let total = Resources::new(4096, 8192, 10);
        let allocations = [Resources::container(1024, 1024), Resources::container(512, 0)];
        assert_eq!(Resources::remaining(&total, &allocations), Resources::new(2560, 7168, 8));
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let big = Resources::new(i32::MAX, i32::MAX, i32::MAX);
        assert_eq!(big.saturating_add(&big), big);
        let small = Resources::new(i32::MIN, 0, 0);
        assert_eq!(small.saturating_sub(&big).memory_mb, i32::MIN);
    }
}
