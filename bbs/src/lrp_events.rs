//! Instance events from the rows of one index before and after a write (bbs.md 4.4; mirrors
//! `bbs/events/calculator/actual_lrp_event_calculator.go`). Pure: the controllers call
//! [`instance_events`] with the `IndexChange` the store returns and publish the result.
//!
//! Rows are paired first by instance key across presences (so the evacuation dance's copy and a
//! suspect flip are *changes*, not create + remove), then by presence slot where the old row had
//! no instance key (UNCLAIMED -> CLAIMED is a change). A row that loses its instance key by going
//! UNCLAIMED is reported as removed + created (its identity changed); a move to CRASHED adds an
//! `actual_lrp_crashed` event. Order: crash events, then events whose resulting row is RUNNING,
//! then the rest, so routes are registered before old ones are removed.

use db::sql::actual_lrps::IndexRows;
use proto::models::{ActualLrp, ActualLrpState};
use proto::pb::models::v1 as pb;

/// One instance event plus the cells it concerns (for the subscription cell filter).
pub type CellEvent = (pb::instance_event::Event, Vec<String>);

/// The events that turn `before` into `after`.
pub fn instance_events(before: &IndexRows, after: &IndexRows) -> Vec<CellEvent> {
    events(before, after, false)
}

/// The events of a crash report (CrashActualLRP, EvacuateCrashedActualLRP): the instance that
/// lost its key crashed even when its count did not grow (it resets to 1 after 5 min running).
pub fn crash_events(before: &IndexRows, after: &IndexRows) -> Vec<CellEvent> {
    events(before, after, true)
}

fn events(before: &IndexRows, after: &IndexRows, crashed_report: bool) -> Vec<CellEvent> {
    let before: Vec<&ActualLrp> = before.iter().collect();
    let after: Vec<&ActualLrp> = after.iter().collect();
    let mut paired_before = vec![false; before.len()];
    let mut paired_after = vec![false; after.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    // First by instance key, across presences; then by presence slot.
    for (ai, a) in after.iter().enumerate() {
        let Some(key) = a.instance_key.as_ref() else { continue };
        if let Some(bi) =
            (0..before.len()).find(|&bi| !paired_before[bi] && before[bi].instance_key.as_ref() == Some(key))
        {
            paired_before[bi] = true;
            paired_after[ai] = true;
            pairs.push((bi, ai));
        }
    }
    for (ai, a) in after.iter().enumerate() {
        if paired_after[ai] {
            continue;
        }
        if let Some(bi) = (0..before.len()).find(|&bi| !paired_before[bi] && before[bi].presence == a.presence) {
            paired_before[bi] = true;
            paired_after[ai] = true;
            pairs.push((bi, ai));
        }
    }
    let unpaired_after: Vec<usize> = (0..after.len()).filter(|&ai| !paired_after[ai]).collect();

    let mut crashed = Vec::new();
    let mut running = Vec::new();
    let mut rest = Vec::new();
    for (bi, ai) in pairs {
        let (b, a) = (before[bi], after[ai]);
        let cells = cells_of(&[b, a]);
        let lost_key = b.instance_key.is_some()
            && a.instance_key.is_none()
            && (a.state == ActualLrpState::Crashed || a.state == ActualLrpState::Unclaimed);
        let crash = lost_key && (crashed_report || a.crash_count > b.crash_count);
        if crash {
            crashed.push((crashed_event(b, a), cells.clone()));
        }
        if b.instance_key.is_some() && a.instance_key.is_none() && a.state == ActualLrpState::Unclaimed {
            // The instance lost its identity: the old one is gone, a new one waits for a cell.
            rest.push((removed(b), cells_of(&[b])));
            rest.push((created(a), Vec::new()));
        } else if a != b {
            let event = changed(b, a);
            if a.state == ActualLrpState::Running {
                running.push((event, cells));
            } else {
                rest.push((event, cells));
            }
        }
    }
    for ai in unpaired_after {
        let a = after[ai];
        let event = (created(a), cells_of(&[a]));
        if a.state == ActualLrpState::Running {
            running.push(event);
        } else {
            rest.push(event);
        }
    }
    for (bi, b) in before.iter().enumerate() {
        if !paired_before[bi] {
            rest.push((removed(b), cells_of(&[b])));
        }
    }
    crashed.into_iter().chain(running).chain(rest).collect()
}

fn cells_of(rows: &[&ActualLrp]) -> Vec<String> {
    let mut cells: Vec<String> =
        rows.iter().filter_map(|r| r.instance_key.as_ref().map(|k| k.cell_id.to_string())).collect();
    cells.dedup();
    cells
}

fn created(a: &ActualLrp) -> pb::instance_event::Event {
    pb::instance_event::Event::ActualLrpInstanceCreated(pb::ActualLrpInstanceCreatedEvent {
        actual_lrp: Some(a.clone().into()),
        trace_id: String::new(),
    })
}

fn removed(b: &ActualLrp) -> pb::instance_event::Event {
    pb::instance_event::Event::ActualLrpInstanceRemoved(pb::ActualLrpInstanceRemovedEvent {
        actual_lrp: Some(b.clone().into()),
        trace_id: String::new(),
    })
}

fn changed(b: &ActualLrp, a: &ActualLrp) -> pb::instance_event::Event {
    let key = a.instance_key.clone().or_else(|| b.instance_key.clone());
    pb::instance_event::Event::ActualLrpInstanceChanged(pb::ActualLrpInstanceChangedEvent {
        actual_lrp_key: Some(a.key.clone().into()),
        actual_lrp_instance_key: key.map(Into::into),
        before: Some(proto::convert::actual_lrp_info_to_pb(b)),
        after: Some(proto::convert::actual_lrp_info_to_pb(a)),
        trace_id: String::new(),
    })
}

fn crashed_event(b: &ActualLrp, a: &ActualLrp) -> pb::instance_event::Event {
    pb::instance_event::Event::ActualLrpCrashed(pb::ActualLrpCrashedEvent {
        actual_lrp_key: Some(a.key.clone().into()),
        actual_lrp_instance_key: b.instance_key.clone().map(Into::into),
        crash_count: a.crash_count,
        crash_reason: a.crash_reason.clone(),
        since: a.since,
    })
}

#[cfg(test)]
mod tests {
    use proto::models::{
        ActualLrpInstanceKey, ActualLrpKey, CellId, DomainName, InstanceGuid, NetInfo, Presence, ProcessGuid,
    };

    use super::*;

    fn unclaimed() -> ActualLrp {
        let key = ActualLrpKey {
            process_guid: ProcessGuid::parse("app").unwrap(),
            index: 0,
            domain: DomainName::parse("d").unwrap(),
        };
        ActualLrp::new_unclaimed(key, "epoch", 1)
    }

    fn instance_key(guid: &str, cell: &str) -> ActualLrpInstanceKey {
        ActualLrpInstanceKey {
            instance_guid: InstanceGuid::parse(guid).unwrap(),
            cell_id: CellId::parse(cell).unwrap(),
        }
    }

    fn claimed(guid: &str, cell: &str) -> ActualLrp {
        ActualLrp { state: ActualLrpState::Claimed, instance_key: Some(instance_key(guid, cell)), ..unclaimed() }
    }

    fn running(guid: &str, cell: &str) -> ActualLrp {
        ActualLrp {
            state: ActualLrpState::Running,
            net_info: Some(NetInfo { address: "10.0.0.1".into(), ..Default::default() }),
            ..claimed(guid, cell)
        }
    }

    fn rows(ordinary: Option<ActualLrp>, evacuating: Option<ActualLrp>, suspect: Option<ActualLrp>) -> IndexRows {
        IndexRows { ordinary, evacuating, suspect }
    }

    fn names(events: &[CellEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|(e, _)| match e {
                pb::instance_event::Event::ActualLrpInstanceCreated(_) => "created",
                pb::instance_event::Event::ActualLrpInstanceChanged(_) => "changed",
                pb::instance_event::Event::ActualLrpInstanceRemoved(_) => "removed",
                pb::instance_event::Event::ActualLrpCrashed(_) => "crashed",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_new_row_is_created_and_a_deleted_one_removed() {
        let empty = IndexRows::default();
        let one = rows(Some(unclaimed()), None, None);
        assert_eq!(names(&instance_events(&empty, &one)), ["created"]);
        assert_eq!(names(&instance_events(&one, &empty)), ["removed"]);
        assert!(instance_events(&one, &one).is_empty());
    }

    #[test]
    fn claim_and_start_are_changes_on_the_claiming_cell() {
        let before = rows(Some(unclaimed()), None, None);
        let after = rows(Some(claimed("ig", "cell-1")), None, None);
        let events = instance_events(&before, &after);
        assert_eq!(names(&events), ["changed"]);
        assert_eq!(events[0].1, ["cell-1"]);
        let started = rows(Some(running("ig", "cell-1")), None, None);
        assert_eq!(names(&instance_events(&after, &started)), ["changed"]);
    }

    #[test]
    fn a_crash_reports_crashed_then_changed() {
        let before = rows(Some(running("ig", "cell-1")), None, None);
        let crashed = ActualLrp {
            state: ActualLrpState::Crashed,
            instance_key: None,
            net_info: None,
            crash_count: 3,
            ..unclaimed()
        };
        let events = instance_events(&before, &rows(Some(crashed), None, None));
        assert_eq!(names(&events), ["crashed", "changed"]);
        assert_eq!(events[0].1, ["cell-1"]);
    }

    #[test]
    fn an_immediate_restart_is_crashed_removed_and_created() {
        let before = rows(Some(running("ig", "cell-1")), None, None);
        let restarted = ActualLrp { crash_count: 1, ..unclaimed() };
        assert_eq!(
            names(&instance_events(&before, &rows(Some(restarted), None, None))),
            ["crashed", "removed", "created"]
        );
    }

    #[test]
    fn a_crash_report_after_a_count_reset_still_reports_crashed() {
        let before = rows(Some(ActualLrp { crash_count: 1, ..running("ig", "cell-1") }), None, None);
        let after = rows(Some(ActualLrp { crash_count: 1, ..unclaimed() }), None, None);
        assert_eq!(names(&crash_events(&before, &after)), ["crashed", "removed", "created"]);
        // The same rows from an unclaim (evacuation, lost cell) are no crash.
        assert_eq!(names(&instance_events(&before, &after)), ["removed", "created"]);
    }

    #[test]
    fn an_unclaim_is_removed_and_created() {
        let before = rows(Some(claimed("ig", "cell-1")), None, None);
        assert_eq!(names(&instance_events(&before, &rows(Some(unclaimed()), None, None))), ["removed", "created"]);
    }

    #[test]
    fn the_evacuation_dance_is_a_change_plus_a_created_replacement() {
        let before = rows(Some(running("ig", "cell-1")), None, None);
        let copy = ActualLrp { presence: Presence::Evacuating, ..running("ig", "cell-1") };
        let after = rows(Some(unclaimed()), Some(copy), None);
        assert_eq!(names(&instance_events(&before, &after)), ["changed", "created"]);
    }

    #[test]
    fn a_replacement_starting_removes_the_suspect_after_announcing_itself() {
        let suspect = ActualLrp { presence: Presence::Suspect, ..running("old", "cell-1") };
        let before = rows(Some(claimed("new", "cell-2")), None, Some(suspect));
        let after = rows(Some(running("new", "cell-2")), None, None);
        assert_eq!(names(&instance_events(&before, &after)), ["changed", "removed"]);
    }
}
