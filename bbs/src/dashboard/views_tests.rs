use proto::models::{
    ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellCapacity, CellId, DomainName, InstanceGuid, ProcessGuid,
};

use super::*;

fn limits() -> Limits {
    Limits { lrps_per_page: 2, instances_per_lrp: 3, recent_tasks: 2, cells: 2, ..Limits::default() }
}

fn info(guid: &str, instances: i32) -> SchedulingInfo {
    SchedulingInfo {
        process_guid: ProcessGuid::parse(guid).unwrap(),
        domain: DomainName::parse("apps").unwrap(),
        log_guid: String::new(),
        annotation: String::new(),
        instances,
        memory_mb: 64,
        disk_mb: 128,
        max_pids: 0,
        rootfs: "preloaded:busybox".into(),
        routes: BTreeMap::new(),
        modification_tag: Default::default(),
        volume_placement: vec![],
        placement_tags: vec![],
        update_strategy: Default::default(),
    }
}

fn row(guid: &str, index: i32, state: ActualLrpState, cell: Option<&str>) -> ActualLrp {
    let key = ActualLrpKey {
        process_guid: ProcessGuid::parse(guid).unwrap(),
        index,
        domain: DomainName::parse("apps").unwrap(),
    };
    let mut lrp = ActualLrp::new_unclaimed(key, "epoch", 7);
    lrp.state = state;
    lrp.instance_key = cell.map(|cell| ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(format!("i-{index}")).unwrap(),
        cell_id: CellId::parse(cell).unwrap(),
    });
    lrp
}

fn presence(cell: &str) -> CellPresence {
    CellPresence {
        cell_id: CellId::parse(cell).unwrap(),
        rep_address: format!("{cell}:1801"),
        rep_url: String::new(),
        zone: "z1".into(),
        capacity: CellCapacity { memory_mb: 1024, disk_mb: 2048, containers: 10 },
        rootfs_providers: vec![],
        placement_tags: vec![],
        optional_placement_tags: vec![],
        annotations: BTreeMap::new(),
    }
}

fn task(guid: &str, state: TaskState, updated_at: i64) -> Task {
    // The shared task fixture, at the size the cells' use counts.
    let mut definition = db::testing::fixtures::task_definition_pb();
    (definition.memory_mb, definition.disk_mb) = (32, 16);
    let wire = pb::Task {
        task_definition: Some(definition),
        task_guid: guid.into(),
        domain: "jobs".into(),
        state: state.as_i32(),
        cell_id: if state == TaskState::Running { "cell-a".into() } else { String::new() },
        created_at: 1,
        updated_at,
        ..Default::default()
    };
    Task::try_from(wire).unwrap()
}

#[test]
fn an_lrp_shows_its_instances_with_state_cell_and_placement_error() {
    let mut unplaced = row("web", 2, ActualLrpState::Unclaimed, None);
    unplaced.placement_error = "insufficient resources: memory".into();
    let mut crashed = row("web", 1, ActualLrpState::Crashed, None);
    crashed.crash_count = 3;
    crashed.crash_reason = "Exited with status 1".into();
    let rows = vec![row("web", 0, ActualLrpState::Running, Some("cell-a")), crashed, unplaced];
    let view = lrp_view(&info("web", 3), rows, false, &limits());
    assert_eq!(view.process_guid, "web");
    assert_eq!(view.desired_instances, 3);
    let shown: Vec<_> = view.instances.iter().map(|i| (i.index, i.state, i.cell_id.as_str())).collect();
    assert_eq!(shown, [(0, "RUNNING", "cell-a"), (1, "CRASHED", ""), (2, "UNCLAIMED", "")]);
    assert_eq!(view.instances[1].crash_count, 3);
    assert_eq!(view.instances[1].crash_reason, "Exited with status 1");
    assert_eq!(view.instances[2].placement_error, "insufficient resources: memory");
    assert_eq!(view.states, BTreeMap::from([("CRASHED", 1), ("RUNNING", 1), ("UNCLAIMED", 1)]));
    assert_eq!(view.more_instances, 0);
}

#[test]
fn an_lrp_with_more_rows_than_the_cap_shows_the_first_ones_and_how_many_more() {
    // The gatherer reads one row past the cap to learn that there are more.
    let rows: Vec<_> = (0..4).map(|i| row("big", i, ActualLrpState::Running, Some("cell-a"))).collect();
    let view = lrp_view(&info("big", 100_000), rows, false, &limits());
    assert_eq!(view.instances.len(), 3);
    assert_eq!(view.instances.last().map(|i| i.index), Some(2));
    assert_eq!(view.more_instances, 100_000 - 3);
    // More rows than desired instances (an evacuating copy past the cap): at least one more.
    let rows: Vec<_> = (0..3).map(|i| row("small", i, ActualLrpState::Running, Some("cell-a"))).collect();
    assert_eq!(lrp_view(&info("small", 3), rows, true, &limits()).more_instances, 1);
}

#[test]
fn cells_are_sorted_capped_and_carry_their_load() {
    let mut load = CellLoad::default();
    load.add_instance(Some(&info("web", 1)));
    load.add_instance(None);
    load.add_task(&task("t1", TaskState::Running, 5));
    let loads = HashMap::from([("cell-b".to_owned(), load)]);
    let view = cells_view(vec![presence("cell-c"), presence("cell-b"), presence("cell-a")], &loads, &limits());
    let ids: Vec<_> = view.cells.iter().map(|c| c.cell_id.as_str()).collect();
    assert_eq!(ids, ["cell-a", "cell-b"]);
    assert_eq!(view.more_cells, 1);
    assert_eq!(view.cells[0].used, Resources::default(), "a cell with nothing placed uses nothing");
    let b = &view.cells[1];
    assert_eq!(b.capacity, Resources { memory_mb: 1024, disk_mb: 2048, containers: 10 });
    assert_eq!(b.used, Resources { memory_mb: 64 + 32, disk_mb: 128 + 16, containers: 3 });
    assert_eq!((b.instances, b.tasks), (2, 1));
}

#[test]
fn the_task_tally_counts_every_state_and_keeps_only_the_newest() {
    let mut tally = TaskTally::new(&limits());
    for (guid, state, at) in [
        ("a", TaskState::Pending, 10),
        ("b", TaskState::Running, 40),
        ("c", TaskState::Completed, 30),
        ("d", TaskState::Pending, 20),
        ("e", TaskState::Pending, 40),
    ] {
        tally.add(&task(guid, state, at));
    }
    let view = tally.view(false);
    assert_eq!(view.total, Count { count: 5, at_least: false });
    assert_eq!(view.states, BTreeMap::from([("COMPLETED", 1), ("PENDING", 3), ("RESOLVING", 0), ("RUNNING", 1)]));
    let recent: Vec<_> = view.recent.iter().map(|t| (t.task_guid.as_str(), t.updated_at)).collect();
    assert_eq!(recent, [("e", 40), ("b", 40)], "newest first, ties by guid, at most recent_tasks");
    assert_eq!(view.recent[1].cell_id, "cell-a");
}

#[test]
fn a_tally_that_stopped_early_says_its_counts_are_lower_bounds() {
    let view = TaskTally::new(&Limits { recent_tasks: 0, ..limits() }).view(true);
    assert_eq!(view.total, Count { count: 0, at_least: true });
    assert!(view.recent.is_empty());
}

#[test]
fn instance_events_name_the_instance_its_state_and_why() {
    let key = pb::ActualLrpKey { process_guid: "web".into(), index: 1, domain: "apps".into() };
    let instance = pb::ActualLrpInstanceKey { instance_guid: "i-1".into(), cell_id: "cell-a".into() };
    let crashed = pb::instance_event::Event::ActualLrpCrashed(pb::ActualLrpCrashedEvent {
        actual_lrp_key: Some(key.clone()),
        actual_lrp_instance_key: Some(instance.clone()),
        crash_count: 1,
        crash_reason: "Exited with status 1".into(),
        since: 5,
    });
    let view = instance_event_view(&crashed);
    assert_eq!(
        view,
        EventView {
            kind: "actual_lrp_crashed",
            guid: "web".into(),
            index: Some(1),
            cell_id: "cell-a".into(),
            state: None,
            detail: "Exited with status 1".into(),
        }
    );
    let changed = pb::instance_event::Event::ActualLrpInstanceChanged(pb::ActualLrpInstanceChangedEvent {
        actual_lrp_key: Some(key),
        actual_lrp_instance_key: Some(instance),
        after: Some(pb::ActualLrpInfo {
            state: pb::ActualLrpState::Unclaimed as i32,
            placement_error: "no cell".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let view = instance_event_view(&changed);
    assert_eq!((view.kind, view.state, view.detail.as_str()), ("actual_lrp_changed", Some("UNCLAIMED"), "no cell"));
    let removed = pb::instance_event::Event::DesiredLrpRemoved(pb::DesiredLrpRemovedEvent {
        desired_lrp: Some(pb::DesiredLrp { process_guid: "web".into(), ..Default::default() }),
        trace_id: String::new(),
    });
    assert_eq!(instance_event_view(&removed).guid, "web");
    let empty = pb::instance_event::Event::ActualLrpInstanceRemoved(pb::ActualLrpInstanceRemovedEvent::default());
    assert_eq!(instance_event_view(&empty).guid, "", "a malformed event still makes a line");
}

#[test]
fn task_events_name_the_task_and_its_state() {
    let task = pb::Task {
        task_guid: "t1".into(),
        state: TaskState::Completed.as_i32(),
        failure_reason: "boom".into(),
        ..Default::default()
    };
    let event = pb::task_event::Event::TaskChanged(pb::TaskChangedEvent { before: None, after: Some(task) });
    let view = task_event_view(&event);
    assert_eq!(
        (view.kind, view.guid.as_str(), view.state, view.detail.as_str()),
        ("task_changed", "t1", Some("COMPLETED"), "boom")
    );
}

#[test]
fn an_sse_message_is_one_event_line_and_one_data_line() {
    let json = serde_json::to_string(&serde_json::json!({"detail": "line one\nline two <b>"})).unwrap();
    let message = sse_message("instance", &json);
    assert_eq!(message.lines().count(), 3, "{message}");
    assert!(message.starts_with("event: instance\ndata: {"));
    assert!(message.ends_with("}\n\n"));
}
