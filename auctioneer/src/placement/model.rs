//! The abstract placement problem: cells as the auction sees them, the work to place, the
//! configuration, and the solution with a reason for every item that could not be placed.
//!
//! These types are deliberately independent of the wire types in `proto`: the service layer
//! converts a batch plus the fetched cell states into a [`Problem`] and a [`Solution`] back into
//! `Perform` calls and BBS failure reports.

use std::fmt;

/// An amount of memory, disk and container slots, as a cell reports it.
///
/// All arithmetic is checked: the `checked_*` methods return `None` on overflow instead of
/// wrapping or panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Resources {
    /// Memory in MB.
    pub memory_mb: i64,
    /// Disk in MB.
    pub disk_mb: i64,
    /// Container slots.
    pub containers: i64,
}

impl Resources {
    /// Builds a resource triple.
    pub const fn new(memory_mb: i64, disk_mb: i64, containers: i64) -> Self {
        Self { memory_mb, disk_mb, containers }
    }

    /// Component-wise sum, or `None` if any component overflows.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        Some(Self {
            memory_mb: self.memory_mb.checked_add(other.memory_mb)?,
            disk_mb: self.disk_mb.checked_add(other.disk_mb)?,
            containers: self.containers.checked_add(other.containers)?,
        })
    }

    /// Component-wise difference, or `None` if any component overflows.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        Some(Self {
            memory_mb: self.memory_mb.checked_sub(other.memory_mb)?,
            disk_mb: self.disk_mb.checked_sub(other.disk_mb)?,
            containers: self.containers.checked_sub(other.containers)?,
        })
    }

    /// True when every component of `self` is at most the same component of `available`.
    pub fn fits_in(&self, available: &Self) -> bool {
        self.memory_mb <= available.memory_mb
            && self.disk_mb <= available.disk_mb
            && self.containers <= available.containers
    }
}

/// A root filesystem provider advertised by a cell, for example `docker` (any image) or
/// `preloaded` with the stacks `cflinuxfs4` and `busybox`: the URL scheme it serves and the fixed
/// set of names it serves (empty means "any rootfs of this scheme"). The wire's own model.
pub use proto::models::RootfsProvider;

/// An LRP instance already on a cell (running, starting, or reserved earlier).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ExistingInstance {
    /// The process guid of the instance's desired LRP; feeds the same-app penalty and the
    /// zone balance.
    pub process_guid: String,
}

/// One cell's state as fetched at the start of the auction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CellState {
    /// The cell's id; placements name it.
    pub cell_id: String,
    /// The availability zone; LRP instances of one process guid are balanced across zones.
    pub zone: String,
    /// The cell's total capacity.
    pub total: Resources,
    /// What is still free on the cell.
    pub available: Resources,
    /// The root filesystems the cell can run.
    pub rootfs_providers: Vec<RootfsProvider>,
    /// The volume drivers the cell has.
    pub volume_drivers: Vec<String>,
    /// Required tags: the cell only takes work that asks for all of them.
    pub placement_tags: Vec<String>,
    /// Optional tags: the cell also takes work that asks for them.
    pub optional_placement_tags: Vec<String>,
    /// Containers reserved, initializing or created (not yet running) on the cell.
    pub starting_containers: i64,
    /// LRP instances on the cell.
    pub existing: Vec<ExistingInstance>,
    /// Tasks on the cell; the task score spreads tasks by this count.
    pub existing_tasks: i64,
    /// An evacuating cell never receives work.
    pub evacuating: bool,
}

/// What one instance or task needs from a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WorkResource {
    /// Memory in MB; negative values count as 0.
    pub memory_mb: i64,
    /// Disk in MB; negative values count as 0.
    pub disk_mb: i64,
    /// Process limit; carried to the cell, not used for placement.
    pub max_pids: i64,
}

/// Where a piece of work may run: the rootfs URL, the requested tags (see the filter rules in
/// the module README) and the volume drivers the cell must all have. The wire's own model.
pub use proto::models::PlacementConstraint;

/// One LRP instance to start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LrpWork {
    /// The desired LRP's process guid.
    pub process_guid: String,
    /// The instance index; index 0 of every app goes before tasks and higher indices.
    pub index: i32,
    /// The domain of the desired LRP.
    pub domain: String,
    /// What the instance needs.
    pub resource: WorkResource,
    /// Where it may run.
    pub constraint: PlacementConstraint,
}

/// One task to start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TaskWork {
    /// The task guid.
    pub task_guid: String,
    /// The task's domain.
    pub domain: String,
    /// What the task needs.
    pub resource: WorkResource,
    /// Where it may run.
    pub constraint: PlacementConstraint,
}

/// Tunables of the placement; [`PlacementConfig::default`] gives Diego's defaults.
///
/// Non-finite or negative weights are treated as 0, and weights above 1,000,000 as 1,000,000,
/// so no input can produce a NaN score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementConfig {
    /// Score added per container starting on a cell (Diego: 0.25), which spreads a burst of
    /// starts instead of flooding the emptiest cell.
    pub starting_container_weight: f64,
    /// Score added per position of the cell within its zone for LRPs (Diego: 0, off); a large
    /// weight fills low-index cells first.
    pub bin_pack_first_fit_weight: f64,
    /// Maximum containers starting at once across all cells, counting those already starting;
    /// 0 means unlimited.
    pub max_in_flight_starts: usize,
    /// Maximum containers starting at once on one cell, counting those already starting;
    /// 0 means unlimited (Diego has no such cap).
    pub max_starting_per_cell: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            starting_container_weight: 0.25,
            bin_pack_first_fit_weight: 0.0,
            max_in_flight_starts: 0,
            max_starting_per_cell: 0,
        }
    }
}

/// One auction: the cells, the work, and how to score.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Problem {
    /// The cells. Within a zone, a cell's position in this list is its bin-pack index, so the
    /// caller sorts cells by their configured index when bin-pack-first-fit is on.
    pub cells: Vec<CellState>,
    /// LRP instances to place.
    pub lrps: Vec<LrpWork>,
    /// Tasks to place.
    pub tasks: Vec<TaskWork>,
    /// Scoring and limits.
    pub config: PlacementConfig,
}

/// The outcome of an auction: every item of the problem appears exactly once, placed or
/// failed, in the order the auction considered it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Solution {
    /// Placed LRP instances and the id of the cell each goes to.
    pub lrp_placements: Vec<(LrpWork, String)>,
    /// Placed tasks and the id of the cell each goes to.
    pub task_placements: Vec<(TaskWork, String)>,
    /// LRP instances that could not be placed, with the reason.
    pub failed_lrps: Vec<(LrpWork, PlacementError)>,
    /// Tasks that could not be placed, with the reason.
    pub failed_tasks: Vec<(TaskWork, PlacementError)>,
}

/// Why each cell turned an item down, counted per reason.
///
/// The filter counts (`rootfs`, `volume_drivers`, `placement_tags`, `evacuating`) are
/// exclusive: a cell is counted once, at the first check it fails, in that order. The resource
/// counts are about cells that passed every filter and are not exclusive: a cell short of both
/// memory and disk counts under both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rejections {
    /// Compatible cells without enough free memory.
    pub memory: usize,
    /// Compatible cells without enough free disk.
    pub disk: usize,
    /// Compatible cells without a free container slot.
    pub containers: usize,
    /// Compatible cells at the per-cell starting-container cap.
    pub starting_limit: usize,
    /// Cells that do not offer the rootfs.
    pub rootfs: usize,
    /// Cells that offer the rootfs but lack a requested volume driver.
    pub volume_drivers: usize,
    /// Cells that pass the other filters but whose tags do not match.
    pub placement_tags: usize,
    /// Cells skipped because they are evacuating.
    pub evacuating: usize,
    /// What the item asked for, for the message.
    pub constraint: PlacementConstraint,
}

impl Rejections {
    fn resource_total(&self) -> usize {
        self.memory + self.disk + self.containers + self.starting_limit
    }

    fn filter_total(&self) -> usize {
        self.rootfs + self.volume_drivers + self.placement_tags
    }
}

/// Why an item was not placed. The messages keep Diego's phrases (`insufficient resources`,
/// `found no compatible cell`, `reached in-flight start limit`) so existing checks still match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// The auction had no cells at all.
    NoCells,
    /// The global cap on containers starting at once was reached before this item's turn.
    InFlightLimit {
        /// The configured cap.
        limit: usize,
    },
    /// Some cell passed every filter, but none had room. (Boxed to keep the error, and every
    /// `Result` carrying it, small.)
    InsufficientResources(Box<Rejections>),
    /// No cell passed the filters.
    NoCompatibleCell(Box<Rejections>),
}

impl PlacementError {
    /// The per-reason counts, when the error is about the cells.
    pub fn rejections(&self) -> Option<&Rejections> {
        match self {
            Self::InsufficientResources(r) | Self::NoCompatibleCell(r) => Some(r.as_ref()),
            Self::NoCells | Self::InFlightLimit { .. } => None,
        }
    }
}

struct Cells(usize);

impl fmt::Display for Cells {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 1 { write!(f, "(1 cell)") } else { write!(f, "({} cells)", self.0) }
    }
}

/// `"a"`, `"a" and "b"`, `"a", "b" and "c"`.
fn quoted_list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            let sep = if i + 1 == items.len() { " and " } else { ", " };
            f.write_str(sep)?;
        }
        write!(f, "{item:?}")?;
    }
    Ok(())
}

fn write_tags(f: &mut fmt::Formatter<'_>, tags: &[String]) -> fmt::Result {
    match tags.len() {
        0 => f.write_str("with no placement tags"),
        1 => {
            f.write_str("with placement tag ")?;
            quoted_list(f, tags)
        }
        _ => {
            f.write_str("with placement tags ")?;
            quoted_list(f, tags)
        }
    }
}

impl fmt::Display for Rejections {
    /// Segments separated by `"; "`: the resource shortfalls first (alphabetical, as Diego
    /// sorts them), then the filters by precedence tags > volume drivers > rootfs, then
    /// evacuating cells.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !std::mem::take(&mut first) {
                f.write_str("; ")?;
            }
            Ok(())
        };
        if self.resource_total() > 0 {
            sep(f)?;
            f.write_str("insufficient resources: ")?;
            let parts = [
                ("containers", self.containers),
                ("disk", self.disk),
                ("memory", self.memory),
                ("starting-container limit", self.starting_limit),
            ];
            let mut first_part = true;
            for (name, count) in parts {
                if count > 0 {
                    if !std::mem::take(&mut first_part) {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name} {}", Cells(count))?;
                }
            }
        }
        if self.placement_tags > 0 {
            sep(f)?;
            f.write_str("found no compatible cell ")?;
            write_tags(f, &self.constraint.placement_tags)?;
            write!(f, " {}", Cells(self.placement_tags))?;
        }
        if self.volume_drivers > 0 {
            sep(f)?;
            f.write_str("found no compatible cell with required volume drivers ")?;
            quoted_list(f, &self.constraint.volume_drivers)?;
            write!(f, " {}", Cells(self.volume_drivers))?;
        }
        if self.rootfs > 0 {
            sep(f)?;
            write!(f, "found no compatible cell for rootfs {:?} {}", self.constraint.rootfs, Cells(self.rootfs))?;
        }
        if self.evacuating > 0 {
            sep(f)?;
            if self.resource_total() == 0 && self.filter_total() == 0 {
                f.write_str("found no compatible cell: ")?;
            }
            write!(f, "evacuating {}", Cells(self.evacuating))?;
        }
        if first {
            // Unreachable from `solve`, which always counts at least one cell; kept so a
            // hand-built value still reads sensibly.
            f.write_str("found no compatible cell")?;
        }
        Ok(())
    }
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCells => f.write_str("unable to communicate to compatible cells: no cells in the auction"),
            Self::InFlightLimit { limit } => {
                write!(f, "waiting to start instance: reached in-flight start limit of {limit}")
            }
            Self::InsufficientResources(r) | Self::NoCompatibleCell(r) => fmt::Display::fmt(r.as_ref(), f),
        }
    }
}

impl std::error::Error for PlacementError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(rootfs: &str, tags: &[&str], drivers: &[&str]) -> PlacementConstraint {
        PlacementConstraint {
            rootfs: rootfs.into(),
            placement_tags: tags.iter().map(|s| s.to_string()).collect(),
            volume_drivers: drivers.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn resources_checked_arithmetic_reports_overflow() {
        let a = Resources::new(i64::MAX, 1, 1);
        assert_eq!(a.checked_add(Resources::new(1, 0, 0)), None);
        assert_eq!(Resources::new(i64::MIN, 0, 0).checked_sub(Resources::new(1, 0, 0)), None);
        assert_eq!(Resources::new(10, 20, 3).checked_sub(Resources::new(4, 5, 1)), Some(Resources::new(6, 15, 2)));
        assert!(Resources::new(1, 2, 3).fits_in(&Resources::new(1, 2, 3)));
        assert!(!Resources::new(1, 3, 3).fits_in(&Resources::new(1, 2, 3)));
    }

    #[test]
    fn message_names_resources_and_tags_with_counts() {
        let err = PlacementError::InsufficientResources(Box::new(Rejections {
            memory: 12,
            placement_tags: 3,
            constraint: constraint("docker:///x", &["gpu"], &[]),
            ..Rejections::default()
        }));
        assert_eq!(
            err.to_string(),
            "insufficient resources: memory (12 cells); \
             found no compatible cell with placement tag \"gpu\" (3 cells)"
        );
    }

    #[test]
    fn message_sorts_resource_problems_like_diego() {
        let err =
            PlacementError::InsufficientResources(Box::new(Rejections { memory: 2, disk: 1, ..Rejections::default() }));
        assert_eq!(err.to_string(), "insufficient resources: disk (1 cell), memory (2 cells)");
    }

    #[test]
    fn message_for_rootfs_drivers_and_evacuating() {
        let err = PlacementError::NoCompatibleCell(Box::new(Rejections {
            rootfs: 2,
            volume_drivers: 1,
            evacuating: 1,
            constraint: constraint("preloaded:nope", &[], &["nfs", "smb"]),
            ..Rejections::default()
        }));
        assert_eq!(
            err.to_string(),
            "found no compatible cell with required volume drivers \"nfs\" and \"smb\" (1 cell); \
             found no compatible cell for rootfs \"preloaded:nope\" (2 cells); evacuating (1 cell)"
        );
    }

    #[test]
    fn message_for_tag_counts_follows_diego_wording() {
        let none =
            PlacementError::NoCompatibleCell(Box::new(Rejections { placement_tags: 1, ..Rejections::default() }));
        assert_eq!(none.to_string(), "found no compatible cell with no placement tags (1 cell)");
        let three = PlacementError::NoCompatibleCell(Box::new(Rejections {
            placement_tags: 4,
            constraint: constraint("", &["a", "b", "c"], &[]),
            ..Rejections::default()
        }));
        assert_eq!(three.to_string(), "found no compatible cell with placement tags \"a\", \"b\" and \"c\" (4 cells)");
    }

    #[test]
    fn message_when_every_cell_evacuates_still_says_no_compatible_cell() {
        let err = PlacementError::NoCompatibleCell(Box::new(Rejections { evacuating: 3, ..Rejections::default() }));
        assert_eq!(err.to_string(), "found no compatible cell: evacuating (3 cells)");
    }

    #[test]
    fn message_for_limits_and_no_cells() {
        assert!(
            PlacementError::InFlightLimit { limit: 5 }
                .to_string()
                .starts_with("waiting to start instance: reached in-flight start limit")
        );
        assert!(PlacementError::NoCells.to_string().starts_with("unable to communicate to compatible cells"));
    }
}
