//! The task lifecycle through the controller (bbs.md 3.5): desire, read, start, reject, complete,
//! cancel, fail, resolve and delete, the events each call publishes, and a standby's refusals.

use super::*;

on_every_backend!(
    desire_stores_a_pending_task_and_requests_one_auction,
    get_and_list_read_the_store,
    start_moves_a_pending_task_to_running_once,
    reject_returns_the_task_to_pending_until_the_retry_limit,
    complete_records_the_outcome_and_enqueues_the_callback,
    cancel_fails_the_task_and_enqueues_the_callback,
    cancel_tells_the_rep_the_task_ran_on,
    fail_completes_the_task_with_the_reason,
    resolving_and_delete_finish_a_completed_task,
    every_call_publishes_its_event_in_order,
    a_standby_refuses_writes_and_serves_reads,
);

// ---------------------------------------------------------------------------------------------
// Controller cases

async fn desire_stores_a_pending_task_and_requests_one_auction(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let mut events = subscribe(&h.ctx);

    let task = desire(&h.ctx, "t-1", "").await;
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!((task.created_at, task.updated_at, task.first_completed_at), (START_NS, START_NS, 0));
    assert_eq!((task.cell_id.clone(), task.rejection_count), (None, 0));
    assert_eq!(Tasks(&h.ctx).get(&guid("t-1")).await.unwrap(), task);

    match next_event(&mut events).await {
        (1, Event::Created(created)) => assert_eq!(created, pb::Task::from(task.clone())),
        other => panic!("expected TaskCreated with sequence 1, got {other:?}"),
    }
    let calls = h.auctioneer.wait_task_calls(1).await;
    assert_eq!(
        calls,
        vec![vec![TaskStartRequest {
            task_guid: guid("t-1"),
            domain: domain(DOMAIN),
            memory_mb: 512,
            disk_mb: 1024,
            max_pids: 64,
            rootfs: "preloaded:cflinuxfs4".into(),
            placement_tags: vec!["isolated".into()],
            volume_drivers: vec!["nfsdriver".into()],
        }]]
    );

    // A taken guid: ResourceExists, nothing published, no second auction.
    let again = Tasks(&h.ctx).desire(&guid("t-1"), &domain("other"), &definition("")).await;
    assert_eq!(code(again), ErrorCode::ResourceExists);
    assert_no_event(&mut events);
    desire(&h.ctx, "sentinel", "").await;
    let calls = h.auctioneer.wait_task_calls(2).await;
    let guids: Vec<&str> = calls.iter().flatten().map(|r| r.task_guid.as_str()).collect();
    assert_eq!(guids, ["t-1", "sentinel"]);
    assert!(queued.try_recv().is_err(), "desire enqueues no callback");
}

async fn get_and_list_read_the_store(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    assert_eq!(code(tasks.get(&guid("missing")).await), ErrorCode::ResourceNotFound);
    assert!(tasks.list(&TaskFilter::default()).await.unwrap().is_empty());

    desire(&h.ctx, "t-b", "").await;
    desire(&h.ctx, "t-a", "").await;
    tasks.desire(&guid("t-other"), &domain("other-domain"), &definition("")).await.unwrap();
    assert!(tasks.start(&guid("t-b"), &cell(CELL)).await.unwrap());

    let names = |list: Vec<Task>| list.into_iter().map(|t| t.task_guid.into_string()).collect::<Vec<_>>();
    assert_eq!(names(tasks.list(&TaskFilter::default()).await.unwrap()), ["t-a", "t-b", "t-other"]);
    let by_domain = TaskFilter { domain: Some(domain(DOMAIN)), cell_id: None };
    assert_eq!(names(tasks.list(&by_domain).await.unwrap()), ["t-a", "t-b"]);
    let by_cell = TaskFilter { domain: None, cell_id: Some(cell(CELL)) };
    assert_eq!(names(tasks.list(&by_cell).await.unwrap()), ["t-b"]);
    let nowhere = TaskFilter { domain: Some(domain("other-domain")), cell_id: Some(cell(CELL)) };
    assert!(tasks.list(&nowhere).await.unwrap().is_empty());

    let running = tasks.get(&guid("t-b")).await.unwrap();
    assert_eq!((running.state, running.cell_id), (TaskState::Running, Some(cell(CELL))));
}

async fn start_moves_a_pending_task_to_running_once(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    desire(&h.ctx, "t-1", "").await;
    let mut events = subscribe(&h.ctx);
    h.clock.advance(Duration::from_secs(2));

    assert!(tasks.start(&guid("t-1"), &cell(CELL)).await.unwrap(), "a pending task should start");
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    assert_eq!((after.cell_id.as_str(), after.updated_at), (CELL, START_NS + 2_000_000_000));

    // Again from the same cell: success, should_start false, nothing written or published.
    h.clock.advance(Duration::from_secs(2));
    assert!(!tasks.start(&guid("t-1"), &cell(CELL)).await.unwrap());
    assert_no_event(&mut events);
    assert_eq!(tasks.get(&guid("t-1")).await.unwrap().updated_at, START_NS + 2_000_000_000);

    // Another cell, a completed task, a missing task.
    assert_eq!(code(tasks.start(&guid("t-1"), &cell("cell-2")).await), ErrorCode::InvalidStateTransition);
    tasks.cancel(&guid("t-1")).await.unwrap();
    expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;
    assert_eq!(code(tasks.start(&guid("t-1"), &cell(CELL)).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.start(&guid("missing"), &cell(CELL)).await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn reject_returns_the_task_to_pending_until_the_retry_limit(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "http://127.0.0.1:1/cb").await;
    h.auctioneer.wait_task_calls(1).await;
    let mut events = subscribe(&h.ctx);

    // max_task_retries = 3: rejections 1..=3 return it to PENDING (one of them while running).
    tasks.reject(&t, "no capacity").await.unwrap();
    tasks.reject(&t, "no capacity").await.unwrap();
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    tasks.reject(&t, "container creation failed").await.unwrap();
    expect_changed(&mut events, TaskState::Pending, TaskState::Pending).await;
    expect_changed(&mut events, TaskState::Pending, TaskState::Pending).await;
    expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    let (_, after) = expect_changed(&mut events, TaskState::Running, TaskState::Pending).await;
    assert_eq!(after.rejection_count, 3);
    let task = tasks.get(&t).await.unwrap();
    assert_eq!((task.state, task.cell_id, task.rejection_count), (TaskState::Pending, None, 3));
    assert_eq!(task.rejection_reason, "container creation failed");
    assert!(queued.try_recv().is_err(), "a rejected task that goes back to pending has no callback");

    // The fourth rejection fails it with the reason, and its callback is enqueued.
    h.clock.advance(Duration::from_secs(7));
    tasks.reject(&t, "still no capacity").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Completed).await;
    assert_eq!((after.failed, after.failure_reason.as_str(), after.rejection_count), (true, "still no capacity", 4));
    let task = tasks.get(&t).await.unwrap();
    assert_eq!(
        (task.state, task.failed, task.first_completed_at),
        (TaskState::Completed, true, START_NS + 7_000_000_000)
    );
    assert_eq!(queued.try_recv().unwrap(), task);

    // Rejecting a completed task is an invalid request; a missing one is not found.
    assert_eq!(code(tasks.reject(&t, "again").await), ErrorCode::InvalidRequest);
    assert_eq!(code(tasks.reject(&guid("missing"), "x").await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);

    // No rejection sent an auction: only the desire's, then the sentinel's.
    desire(&h.ctx, "sentinel", "").await;
    let calls = h.auctioneer.wait_task_calls(2).await;
    let guids: Vec<&str> = calls.iter().flatten().map(|r| r.task_guid.as_str()).collect();
    assert_eq!(guids, ["t-1", "sentinel"]);
}

async fn complete_records_the_outcome_and_enqueues_the_callback(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "http://127.0.0.1:1/cb").await;
    let mut events = subscribe(&h.ctx);

    assert_eq!(code(tasks.complete(&t, &cell(CELL), false, "", "").await), ErrorCode::InvalidStateTransition);
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    assert_eq!(code(tasks.complete(&t, &cell("cell-2"), false, "", "").await), ErrorCode::RunningOnDifferentCell);
    assert_no_event(&mut events);
    assert!(queued.try_recv().is_err());

    h.clock.advance(Duration::from_secs(9));
    tasks.complete(&t, &cell(CELL), false, "", "{\"migrated\":12}").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;
    assert_eq!(after.result, "{\"migrated\":12}");
    let task = tasks.get(&t).await.unwrap();
    let done = START_NS + 9_000_000_000;
    assert_eq!((task.state, task.cell_id.clone(), task.failed), (TaskState::Completed, None, false));
    assert_eq!((task.first_completed_at, task.updated_at), (done, done));
    assert_eq!(queued.try_recv().unwrap(), task);

    assert_eq!(code(tasks.complete(&t, &cell(CELL), false, "", "").await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.complete(&guid("missing"), &cell(CELL), false, "", "").await), ErrorCode::ResourceNotFound);

    // Without a callback url nothing is enqueued; a failure keeps its reason.
    desire(&h.ctx, "t-2", "").await;
    assert!(tasks.start(&guid("t-2"), &cell(CELL)).await.unwrap());
    tasks.complete(&guid("t-2"), &cell(CELL), true, "exit status 1", "").await.unwrap();
    let task = tasks.get(&guid("t-2")).await.unwrap();
    assert_eq!((task.failed, task.failure_reason.as_str()), (true, "exit status 1"));
    assert!(queued.try_recv().is_err(), "no callback url, no callback");
}

async fn cancel_fails_the_task_and_enqueues_the_callback(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "http://127.0.0.1:1/cb").await;
    let mut events = subscribe(&h.ctx);

    h.clock.advance(Duration::from_secs(1));
    tasks.cancel(&t).await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Completed).await;
    assert_eq!((after.failed, after.failure_reason.as_str()), (true, "task was cancelled"));
    let task = tasks.get(&t).await.unwrap();
    assert_eq!(
        (task.state, task.failed, task.failure_reason.as_str()),
        (TaskState::Completed, true, "task was cancelled")
    );
    assert_eq!(task.first_completed_at, START_NS + 1_000_000_000);
    assert_eq!(queued.try_recv().unwrap(), task);

    assert_eq!(code(tasks.cancel(&t).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.cancel(&guid("missing")).await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn cancel_tells_the_rep_the_task_ran_on(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    register_cell(&h, CELL, REP_ADDRESS).await;

    // Pending (no cell) and running on a cell with no presence: cancelled, no rep call.
    desire(&h.ctx, "t-pending", "").await;
    tasks.cancel(&guid("t-pending")).await.unwrap();
    desire(&h.ctx, "t-gone", "").await;
    assert!(tasks.start(&guid("t-gone"), &cell("cell-gone")).await.unwrap());
    tasks.cancel(&guid("t-gone")).await.unwrap();
    assert_eq!(state_of(&h.ctx, "t-gone").await, TaskState::Completed);

    // Running on a live cell: the rep at its presence's address is told.
    desire(&h.ctx, "t-running", "").await;
    assert!(tasks.start(&guid("t-running"), &cell(CELL)).await.unwrap());
    tasks.cancel(&guid("t-running")).await.unwrap();
    let calls = h.reps.wait_calls(1).await;
    assert_eq!(calls, vec![RepCall::Cancel { address: REP_ADDRESS.into(), task_guid: "t-running".into() }]);
    let task = tasks.get(&guid("t-running")).await.unwrap();
    assert_eq!(
        (task.state, task.cell_id, task.failure_reason.as_str()),
        (TaskState::Completed, None, "task was cancelled")
    );
}

async fn fail_completes_the_task_with_the_reason(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    desire(&h.ctx, "t-pending", "http://127.0.0.1:1/cb").await;
    desire(&h.ctx, "t-running", "").await;
    assert!(tasks.start(&guid("t-running"), &cell(CELL)).await.unwrap());
    let mut events = subscribe(&h.ctx);

    tasks.fail(&guid("t-pending"), "operator gave up").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Pending, TaskState::Completed).await;
    assert_eq!((after.failed, after.failure_reason.as_str()), (true, "operator gave up"));
    let task = tasks.get(&guid("t-pending")).await.unwrap();
    assert_eq!(queued.try_recv().unwrap(), task);

    tasks.fail(&guid("t-running"), "cell lost").await.unwrap();
    let (_, after) = expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;
    assert_eq!((after.cell_id.as_str(), after.failure_reason.as_str()), ("", "cell lost"));
    assert!(queued.try_recv().is_err(), "no callback url, no callback");

    assert_eq!(code(tasks.fail(&guid("t-pending"), "again").await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.fail(&guid("missing"), "x").await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn resolving_and_delete_finish_a_completed_task(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let t = guid("t-1");
    desire(&h.ctx, "t-1", "").await;
    let mut events = subscribe(&h.ctx);

    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::InvalidStateTransition);
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::InvalidStateTransition);
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::InvalidStateTransition);
    tasks.complete(&t, &cell(CELL), false, "", "ok").await.unwrap();
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::InvalidStateTransition);
    expect_changed(&mut events, TaskState::Pending, TaskState::Running).await;
    expect_changed(&mut events, TaskState::Running, TaskState::Completed).await;

    tasks.resolving(&t).await.unwrap();
    expect_changed(&mut events, TaskState::Completed, TaskState::Resolving).await;
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::InvalidStateTransition);

    tasks.delete(&t).await.unwrap();
    match next_event(&mut events).await {
        (_, Event::Removed(task)) => {
            assert_eq!((task.task_guid.as_str(), task.state), ("t-1", TaskState::Resolving.as_i32()))
        }
        (_, other) => panic!("expected TaskRemoved, got {other:?}"),
    }
    assert_eq!(code(tasks.get(&t).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(tasks.delete(&t).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(tasks.resolving(&t).await), ErrorCode::ResourceNotFound);
    assert_no_event(&mut events);
}

async fn every_call_publishes_its_event_in_order(backend: Backend) {
    let Some((h, _queued)) = leader(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let mut events = subscribe(&h.ctx);
    let t = guid("t-1");

    desire(&h.ctx, "t-1", "").await;
    tasks.reject(&t, "no room").await.unwrap();
    assert!(tasks.start(&t, &cell(CELL)).await.unwrap());
    assert!(!tasks.start(&t, &cell(CELL)).await.unwrap()); // no event
    tasks.complete(&t, &cell(CELL), false, "", "").await.unwrap();
    tasks.resolving(&t).await.unwrap();
    tasks.delete(&t).await.unwrap();
    desire(&h.ctx, "t-2", "").await;
    tasks.cancel(&guid("t-2")).await.unwrap();
    desire(&h.ctx, "t-3", "").await;
    tasks.fail(&guid("t-3"), "x").await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..10 {
        let (sequence, event) = next_event(&mut events).await;
        let summary = match event {
            Event::Created(task) => format!("created {} {}", task.task_guid, task.state),
            Event::Changed(before, after) => format!("changed {} {}->{}", after.task_guid, before.state, after.state),
            Event::Removed(task) => format!("removed {}", task.task_guid),
        };
        seen.push((sequence, summary));
    }
    assert_no_event(&mut events);
    let sequences: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, (1..=10).collect::<Vec<u64>>());
    let summaries: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "created t-1 1",
            "changed t-1 1->1",
            "changed t-1 1->2",
            "changed t-1 2->3",
            "changed t-1 3->4",
            "removed t-1",
            "created t-2 1",
            "changed t-2 1->3",
            "created t-3 1",
            "changed t-3 1->3",
        ]
    );
}

async fn a_standby_refuses_writes_and_serves_reads(backend: Backend) {
    let Some(h) = Harness::standby(backend).await else { return };
    let tasks = Tasks(&h.ctx);
    let mut events = subscribe(&h.ctx);
    // The leader stored a task; the standby reads it.
    let stored = h.db.store.desire_task(&guid("t-1"), &domain(DOMAIN), &definition(""), START_NS).await.unwrap();
    assert_eq!(tasks.get(&guid("t-1")).await.unwrap(), stored);
    assert_eq!(tasks.list(&TaskFilter::default()).await.unwrap(), vec![stored]);

    let t = guid("t-1");
    let unavailable = ErrorCode::Unavailable;
    assert_eq!(code(tasks.desire(&guid("t-2"), &domain(DOMAIN), &definition("")).await), unavailable);
    assert_eq!(code(tasks.start(&t, &cell(CELL)).await), unavailable);
    assert_eq!(code(tasks.cancel(&t).await), unavailable);
    assert_eq!(code(tasks.fail(&t, "x").await), unavailable);
    assert_eq!(code(tasks.reject(&t, "x").await), unavailable);
    assert_eq!(code(tasks.complete(&t, &cell(CELL), false, "", "").await), unavailable);
    assert_eq!(code(tasks.resolving(&t).await), unavailable);
    assert_eq!(code(tasks.delete(&t).await), unavailable);
    let err = tasks.cancel(&t).await.unwrap_err();
    assert!(err.to_string().contains("10.0.0.9:8889"), "names the leader: {err}");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Pending);
    assert_no_event(&mut events);
}
