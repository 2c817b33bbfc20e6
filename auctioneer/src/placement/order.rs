//! The order in which the auction considers work (reference §1.5).
//!
//! 1. LRP instances with index 0 (and below): every app gets one instance before anything else;
//! 2. tasks;
//! 3. LRP instances with index ≥ 1, by ascending index, so every app gets its second instance
//!    before any gets its third.
//!
//! Within a group larger memory goes first ("boulders before pebbles"). Diego's sort is not
//! stable; here equal items are ordered by their key (process guid then domain, or task guid
//! then domain) and then by input position, so the order is a pure function of the input.

use std::cmp::Ordering;

use super::model::{LrpWork, TaskWork};

/// An item of the problem, by position in its input list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    Lrp(usize),
    Task(usize),
}

/// Requested memory as the placement counts it: negative values are 0.
pub(crate) fn memory(mb: i64) -> i64 {
    mb.max(0)
}

fn lrp_cmp(a: &LrpWork, b: &LrpWork) -> Ordering {
    a.index
        .cmp(&b.index)
        .then_with(|| memory(b.resource.memory_mb).cmp(&memory(a.resource.memory_mb)))
        .then_with(|| a.process_guid.cmp(&b.process_guid))
        .then_with(|| a.domain.cmp(&b.domain))
}

fn task_cmp(a: &TaskWork, b: &TaskWork) -> Ordering {
    memory(b.resource.memory_mb)
        .cmp(&memory(a.resource.memory_mb))
        .then_with(|| a.task_guid.cmp(&b.task_guid))
        .then_with(|| a.domain.cmp(&b.domain))
}

/// The processing order of all items.
pub(crate) fn order(lrps: &[LrpWork], tasks: &[TaskWork]) -> Vec<Item> {
    let mut lrp_order: Vec<usize> = (0..lrps.len()).collect();
    // Stable sort: input position breaks the remaining ties.
    lrp_order.sort_by(|&a, &b| match (lrps.get(a), lrps.get(b)) {
        (Some(x), Some(y)) => lrp_cmp(x, y),
        _ => Ordering::Equal,
    });
    let mut task_order: Vec<usize> = (0..tasks.len()).collect();
    task_order.sort_by(|&a, &b| match (tasks.get(a), tasks.get(b)) {
        (Some(x), Some(y)) => task_cmp(x, y),
        _ => Ordering::Equal,
    });
    let split = lrp_order.partition_point(|&i| lrps.get(i).is_some_and(|l| l.index <= 0));
    let mut out = Vec::with_capacity(lrps.len() + tasks.len());
    out.extend(lrp_order[..split].iter().map(|&i| Item::Lrp(i)));
    out.extend(task_order.iter().map(|&i| Item::Task(i)));
    out.extend(lrp_order[split..].iter().map(|&i| Item::Lrp(i)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::model::WorkResource;

    fn lrp(guid: &str, index: i32, memory_mb: i64) -> LrpWork {
        LrpWork {
            process_guid: guid.into(),
            index,
            resource: WorkResource { memory_mb, ..WorkResource::default() },
            ..LrpWork::default()
        }
    }

    fn task(guid: &str, memory_mb: i64) -> TaskWork {
        TaskWork {
            task_guid: guid.into(),
            resource: WorkResource { memory_mb, ..WorkResource::default() },
            ..TaskWork::default()
        }
    }

    #[test]
    fn index_zero_lrps_then_tasks_then_higher_indices() {
        let lrps = vec![lrp("a", 1, 10), lrp("b", 0, 10), lrp("a", 0, 10), lrp("b", 2, 10)];
        let tasks = vec![task("t", 10)];
        assert_eq!(order(&lrps, &tasks), vec![Item::Lrp(2), Item::Lrp(1), Item::Task(0), Item::Lrp(0), Item::Lrp(3)]);
    }

    #[test]
    fn higher_indices_go_by_ascending_index_before_memory() {
        let lrps = vec![lrp("a", 2, 4096), lrp("b", 1, 128), lrp("c", 3, 8192)];
        assert_eq!(order(&lrps, &[]), vec![Item::Lrp(1), Item::Lrp(0), Item::Lrp(2)]);
    }

    #[test]
    fn boulders_before_pebbles_within_a_group() {
        let lrps = vec![lrp("small", 0, 128), lrp("big", 0, 4096), lrp("mid", 0, 1024)];
        let tasks = vec![task("t-small", 1), task("t-big", 100)];
        assert_eq!(order(&lrps, &tasks), vec![Item::Lrp(1), Item::Lrp(2), Item::Lrp(0), Item::Task(1), Item::Task(0)]);
    }

    #[test]
    fn equal_items_are_ordered_by_key_then_input_position() {
        let lrps = vec![lrp("b", 0, 64), lrp("a", 0, 64), lrp("a", 0, 64)];
        let tasks = vec![task("y", 1), task("x", 1)];
        assert_eq!(order(&lrps, &tasks), vec![Item::Lrp(1), Item::Lrp(2), Item::Lrp(0), Item::Task(1), Item::Task(0)]);
    }

    #[test]
    fn negative_indices_and_memory_do_not_break_ordering() {
        let lrps = vec![lrp("a", 1, -5), lrp("b", -1, 10), lrp("c", 1, 0)];
        // Negative index sorts first and counts as the first group; -5 MB counts as 0, so "a"
        // and "c" tie on memory and fall back to the guid.
        assert_eq!(order(&lrps, &[]), vec![Item::Lrp(1), Item::Lrp(0), Item::Lrp(2)]);
    }
}
