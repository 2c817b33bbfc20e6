//! The capacity guard of `desire-lrp`, `scale` and `update-lrp --instances`: before asking for
//! instances, the CLI reads the live cells and what is placed on them ([`super::cells`]) and
//!
//! - refuses (exit 2) when the cluster could not hold that many instances even empty, or when
//!   one instance is bigger than every cell (it could never be placed), saying how many it can
//!   hold, unless `--force`;
//! - warns on standard error when they fit the cluster but not its free capacity right now
//!   (the rest wait, UNCLAIMED with a placement error, until room frees up).
//!
//! [`assess`] is the pure decision; [`guard`] fetches and applies it. With no live cell at all
//! the guard only warns: cells may still be registering (a cluster just started).

use std::io::Write;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use super::cells::{self, CellView, Resources};
use crate::client::Bbs;
use crate::error::Error;

/// What one instance needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Memory in MB (0 constrains nothing).
    pub memory_mb: i64,
    /// Disk in MB (0 constrains nothing).
    pub disk_mb: i64,
}

/// The guard's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every instance fits in the free capacity now.
    Fits,
    /// They fit the cluster, but only `free` more fit its free capacity now.
    AboveFree {
        /// How many more instances fit now.
        free: i64,
        /// How many more instances are asked for.
        wanted: i64,
    },
    /// An instance fits on no cell, even an empty one.
    TooBig {
        /// The largest memory of any cell.
        max_memory_mb: i64,
        /// The largest disk of any cell.
        max_disk_mb: i64,
    },
    /// More instances than the cluster can hold, even empty.
    TooMany {
        /// How many it can hold.
        holds: i64,
    },
}

/// How many instances of `need` fit in `room` (memory, disk and one container each); `room`'s
/// containers is the number of containers left (a cell offering 0 containers sets no limit).
fn holds(room: Resources, need: Need) -> i64 {
    let by = |have: i64, each: i64| if each > 0 { (have / each).max(0) } else { i64::MAX };
    by(room.memory_mb, need.memory_mb).min(by(room.disk_mb, need.disk_mb)).min(room.containers.max(0))
}

/// A cell's whole capacity, with "no container limit" as the largest count.
fn whole(cell: &CellView) -> Resources {
    let containers = if cell.capacity.containers > 0 { cell.capacity.containers } else { i64::MAX };
    Resources { containers, ..cell.capacity }
}

/// What is left on a cell.
fn left(cell: &CellView) -> Resources {
    let containers =
        if cell.capacity.containers > 0 { cell.capacity.containers - cell.used.containers } else { i64::MAX };
    Resources {
        memory_mb: cell.capacity.memory_mb - cell.used.memory_mb,
        disk_mb: cell.capacity.disk_mb - cell.used.disk_mb,
        containers,
    }
}

/// Decides whether `instances` of `need` fit `cells` (non-empty), `placed` of them being
/// placed already (CLAIMED or RUNNING, so counted in the cells' use).
pub fn assess(cells: &[CellView], need: Need, instances: i64, placed: i64) -> Verdict {
    let total: i64 = cells.iter().map(|c| holds(whole(c), need)).fold(0, i64::saturating_add);
    if total == 0 {
        return Verdict::TooBig {
            max_memory_mb: cells.iter().map(|c| c.capacity.memory_mb).max().unwrap_or(0),
            max_disk_mb: cells.iter().map(|c| c.capacity.disk_mb).max().unwrap_or(0),
        };
    }
    if instances > total {
        return Verdict::TooMany { holds: total };
    }
    let free: i64 = cells.iter().map(|c| holds(left(c), need)).fold(0, i64::saturating_add);
    let wanted = instances - placed;
    if wanted > free { Verdict::AboveFree { free, wanted } } else { Verdict::Fits }
}

/// The verdict as a sentence, and whether it refuses.
pub fn explain(verdict: &Verdict, need: Need, instances: i64, cells: usize) -> Option<(bool, String)> {
    let size = format!("{} MB memory and {} MB disk", need.memory_mb, need.disk_mb);
    match verdict {
        Verdict::Fits => None,
        Verdict::TooBig { max_memory_mb, max_disk_mb } => Some((
            true,
            format!(
                "an instance of {size} fits on no cell (the largest offer {max_memory_mb} MB memory and \
                 {max_disk_mb} MB disk): it could never be placed; the cluster can hold 0 instances of it"
            ),
        )),
        Verdict::TooMany { holds } => Some((
            true,
            format!(
                "{instances} instances of {size} do not fit: the cluster's {cells} cell(s) can hold at most \
                 {holds} instances of it, even empty"
            ),
        )),
        Verdict::AboveFree { free, wanted } => Some((
            false,
            format!(
                "the free capacity holds only {free} more instance(s) of {size} now, {wanted} asked: the \
                 rest wait unplaceable until capacity frees up"
            ),
        )),
    }
}

/// Prints `text`, when there is one, as a warning on standard error.
pub fn warn(text: Option<String>) {
    if let Some(text) = text {
        let _ = writeln!(std::io::stderr(), "warning: {text}");
    }
}

/// Checks that `instances` of `need` for `process_guid` fit the cluster: refuses (exit 2) what
/// never can unless `force`; returns the warning to print once the request is accepted about
/// what cannot fit now (printed after, so a refusal by the BBS stays the only line).
pub async fn guard(
    bbs: &Bbs,
    process_guid: &str,
    need: Need,
    instances: i32,
    force: bool,
) -> Result<Option<String>, Error> {
    if instances <= 0 {
        return Ok(None);
    }
    let cells = bbs.all(api::CellsRequest::default(), |mut c, r| async move { c.cells(r).await }).await?;
    if cells.is_empty() {
        return Ok(Some("no live cell: the capacity is unknown; the instances wait until cells register".into()));
    }
    let count = cells.len();
    let actual = bbs.all(api::ActualLrPsRequest::default(), |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
    let request = api::DesiredLrPsRequest::default();
    let infos = bbs.all(request, |mut c, r| async move { c.desired_lrp_scheduling_infos(r).await }).await?;
    let tasks = bbs.all(api::TasksRequest::default(), |mut c, r| async move { c.tasks(r).await }).await?;
    let placed = actual
        .iter()
        .filter(|lrp| lrp.actual_lrp_key.as_ref().is_some_and(|k| k.process_guid == process_guid))
        .filter(|lrp| lrp.presence == pb::Presence::Ordinary as i32)
        .filter(|lrp| {
            lrp.state == pb::ActualLrpState::Claimed as i32 || lrp.state == pb::ActualLrpState::Running as i32
        })
        .count() as i64;
    let views = cells::compute(cells, &actual, &infos, &tasks);
    let verdict = assess(&views, need, i64::from(instances), placed);
    match explain(&verdict, need, i64::from(instances), count) {
        None => Ok(None),
        Some((true, text)) if !force => Err(Error::Capacity(format!("{text}; pass --force to ask anyway"))),
        Some((_, text)) => Ok(Some(text)),
    }
}

/// What one instance of an existing desired LRP needs.
pub async fn need_of(bbs: &Bbs, process_guid: &str) -> Result<Need, Error> {
    let request = api::DesiredLrpByProcessGuidRequest { process_guid: process_guid.to_owned() };
    let info = bbs.unary(bbs.raw().desired_lrp_scheduling_info_by_process_guid(request)).await?;
    let resource = info.desired_lrp_scheduling_info.and_then(|i| i.desired_lrp_resource).unwrap_or_default();
    Ok(Need { memory_mb: i64::from(resource.memory_mb), disk_mb: i64::from(resource.disk_mb) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(memory_mb: i64, used_mb: i64) -> CellView {
        CellView {
            cell_id: "c".into(),
            capacity: Resources { memory_mb, disk_mb: 100_000, containers: 250 },
            used: Resources { memory_mb: used_mb, disk_mb: 0, containers: used_mb / 128 },
            ..Default::default()
        }
    }

    const NEED: Need = Need { memory_mb: 128, disk_mb: 256 };

    #[test]
    fn what_fits_the_free_capacity_fits() {
        assert_eq!(assess(&[cell(1024, 0), cell(1024, 0)], NEED, 16, 0), Verdict::Fits);
    }

    #[test]
    fn more_than_the_cluster_holds_empty_is_too_many() {
        assert_eq!(assess(&[cell(1024, 0), cell(1024, 0)], NEED, 17, 0), Verdict::TooMany { holds: 16 });
        let (refuses, text) = explain(&Verdict::TooMany { holds: 16 }, NEED, 17, 2).unwrap();
        assert!(refuses && text.contains("can hold at most 16 instances"), "{text}");
    }

    #[test]
    fn an_instance_bigger_than_every_cell_is_too_big() {
        let need = Need { memory_mb: 999_999, disk_mb: 1 };
        assert_eq!(
            assess(&[cell(1024, 0), cell(2048, 0)], need, 1, 0),
            Verdict::TooBig { max_memory_mb: 2048, max_disk_mb: 100_000 }
        );
    }

    #[test]
    fn used_capacity_only_warns_and_placed_instances_count_as_in_place() {
        // 8 of 16 slots taken by others: 10 more do not fit now, but the cluster holds them.
        let cells = [cell(1024, 512), cell(1024, 512)];
        assert_eq!(assess(&cells, NEED, 10, 0), Verdict::AboveFree { free: 8, wanted: 10 });
        // The same 8 slots taken by this LRP's own instances: 10 means 2 more.
        assert_eq!(assess(&cells, NEED, 10, 8), Verdict::Fits);
        let (refuses, _) = explain(&Verdict::AboveFree { free: 8, wanted: 10 }, NEED, 10, 2).unwrap();
        assert!(!refuses);
    }

    #[test]
    fn containers_bound_what_a_cell_holds() {
        let mut small = cell(1_000_000, 0);
        small.capacity.containers = 3;
        assert_eq!(assess(&[small], NEED, 4, 0), Verdict::TooMany { holds: 3 });
    }
}
