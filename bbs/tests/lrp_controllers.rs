//! The actual-LRP and evacuation controllers against the real store, on every backend
//! (bbs.md 3.1–3.4, 4.2 "ActualLRP lifecycle" and "Evacuation", 4.4 events).
//!
//! Each case is a generic `async fn case(backend)`; [`backends!`] stamps it out as
//! `sqlite::case`, `postgres::case` and `mysql::case`. Cases on a backend whose URL variable is
//! unset return at once (see `db::testing`).

mod common;

use std::pin::Pin;
use std::time::Duration;

use bbs::controllers::actual_lrps::ActualLrps;
use bbs::controllers::evacuation::Evacuation;
use common::{Harness, RepCall, settle};
use db::Backend;
use db::sql::actual_lrps::{ActualLrpFilter, IndexRows, StartInfo};
use db::sql::leases::LeaseType;
use futures::{Stream, StreamExt};
use proto::error::ErrorCode;
use proto::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, CellCapacity, CellId, CellPresence, DesiredLrp,
    DomainName, InstanceGuid, MetricTagValue, NetInfo, PortMapping, Presence, ProcessGuid, SchedulingInfo,
    UpdateStrategy,
};
use proto::pb::models::v1 as pb;

macro_rules! backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(db::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(db::Backend::Postgres).await
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(db::Backend::Mysql).await
                }
            )*
        }
    };
}

backends!(
    list_filters_rows_of_every_presence,
    claim_then_start_are_changes,
    claim_is_fenced_by_the_instance_key,
    start_accepts_any_key_until_running,
    crash_restarts_twice_at_once_then_backs_off,
    crash_is_refused_without_a_live_instance,
    crash_restart_without_a_desired_lrp_requests_no_auction,
    suspect_claim_and_start_are_ignored_and_its_crash_deletes_it,
    fail_records_the_placement_error_and_tolerates_missing_rows,
    remove_is_fenced_by_the_instance_key,
    retire_deletes_rows_without_a_container,
    retire_stops_an_instance_on_a_live_cell,
    retire_deletes_an_instance_whose_cell_is_gone,
    evacuate_running_dances_until_the_replacement_runs,
    evacuate_running_drops_the_copy_once_the_desired_lrp_is_gone,
    evacuate_running_keeps_one_evacuating_copy_per_index,
    evacuate_running_turns_a_suspect_into_the_evacuating_copy,
    evacuate_running_recreate_replaces_one_instance_at_a_time,
    evacuate_claimed_unclaims_and_auctions,
    evacuate_stopped_removes_the_instance_row,
    evacuate_crashed_crashes_without_an_auction,
    remove_evacuating_needs_an_evacuating_row,
    standby_refuses_every_write_and_still_lists,
);

// ----------------------------------------------------------------------------------------------
// Fixtures

const DOMAIN: &str = "cf-apps";

fn guid(s: &str) -> ProcessGuid {
    ProcessGuid::parse(s).unwrap()
}

fn lrp_key(process_guid: &str, index: i32) -> ActualLrpKey {
    ActualLrpKey { process_guid: guid(process_guid), index, domain: DomainName::parse(DOMAIN).unwrap() }
}

fn instance(instance_guid: &str, cell: &str) -> ActualLrpInstanceKey {
    ActualLrpInstanceKey {
        instance_guid: InstanceGuid::parse(instance_guid).unwrap(),
        cell_id: CellId::parse(cell).unwrap(),
    }
}

fn start_info(address: &str) -> StartInfo {
    StartInfo {
        net_info: NetInfo {
            address: address.into(),
            ports: vec![PortMapping { container_port: 8080, host_port: 61000, ..Default::default() }],
            instance_address: "10.255.0.2".into(),
            ..Default::default()
        },
        internal_routes: vec!["app.apps.internal".into()],
        metric_tags: [("source_id".to_owned(), "app".to_owned())].into(),
        routable: true,
        availability_zone: "z1".into(),
    }
}

fn desired(process_guid: &str, instances: i32, strategy: UpdateStrategy) -> DesiredLrp {
    let run_action = pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/home/vcap/app/start".into(),
            user: "vcap".into(),
            ..Default::default()
        })),
    };
    let run_info = proto::convert::run_info_from_pb(pb::DesiredLrpRunInfo {
        desired_lrp_key: Some(pb::DesiredLrpKey {
            process_guid: process_guid.into(),
            domain: DOMAIN.into(),
            log_guid: "log-guid".into(),
        }),
        action: Some(run_action),
        ports: vec![8080],
        start_timeout_ms: 60_000,
        ..Default::default()
    })
    .unwrap();
    DesiredLrp {
        scheduling: SchedulingInfo {
            process_guid: guid(process_guid),
            domain: DomainName::parse(DOMAIN).unwrap(),
            log_guid: "log-guid".into(),
            annotation: String::new(),
            instances,
            memory_mb: 256,
            disk_mb: 1024,
            max_pids: 100,
            rootfs: "preloaded:cflinuxfs4".into(),
            routes: Default::default(),
            modification_tag: Default::default(),
            volume_placement: vec![],
            placement_tags: vec!["zone-a".into()],
            update_strategy: strategy,
        },
        run_info,
        metric_tags: [("source_id".to_owned(), MetricTagValue::Static("app".into()))].into(),
    }
}

/// Stores a desired LRP and its UNCLAIMED instances directly (no events, no auction).
async fn desire(h: &Harness, process_guid: &str, instances: i32, strategy: UpdateStrategy) {
    let store = h.ctx.writer().unwrap();
    store.desire_lrp(&desired(process_guid, instances, strategy), h.ctx.now_ns()).await.unwrap();
}

async fn index_rows(h: &Harness, process_guid: &str, index: i32) -> IndexRows {
    h.db.store.actual_lrp_index(&guid(process_guid), index).await.unwrap()
}

async fn ordinary(h: &Harness, process_guid: &str, index: i32) -> Option<ActualLrp> {
    index_rows(h, process_guid, index).await.ordinary
}

/// Claims and starts `index` as `key` through the controller.
async fn run_instance(h: &Harness, process_guid: &str, index: i32, key: &ActualLrpInstanceKey) {
    let lrps = ActualLrps(&h.ctx);
    lrps.claim(&guid(process_guid), index, key).await.unwrap();
    lrps.start(&lrp_key(process_guid, index), key, &start_info("10.0.0.1")).await.unwrap();
}

/// Registers a live cell whose rep listens on `rep_address`.
async fn live_cell(h: &Harness, cell: &str, rep_address: &str) {
    let presence = CellPresence {
        cell_id: CellId::parse(cell).unwrap(),
        rep_address: rep_address.into(),
        rep_url: String::new(),
        zone: "z1".into(),
        capacity: CellCapacity { memory_mb: 4096, disk_mb: 8192, containers: 100 },
        rootfs_providers: vec![],
        placement_tags: vec![],
        optional_placement_tags: vec![],
        annotations: Default::default(),
    };
    let value = serde_json::to_string(&presence).unwrap();
    h.db.store.acquire_lease(cell, cell, &value, LeaseType::Presence, Duration::from_secs(60)).await.unwrap();
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::InstanceEvent, tonic::Status>> + Send>>;

/// Subscribes to every instance event (call before the write under test).
fn subscribe(h: &Harness) -> Events {
    Box::pin(h.ctx.events.subscribe_instances(String::new()))
}

/// The kinds of the events published so far, in order.
async fn kinds(events: &mut Events) -> Vec<&'static str> {
    let mut out = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
        let event = item.expect("the event stream stays open").event;
        out.push(match event {
            Some(pb::instance_event::Event::ActualLrpInstanceCreated(_)) => "created",
            Some(pb::instance_event::Event::ActualLrpInstanceChanged(_)) => "changed",
            Some(pb::instance_event::Event::ActualLrpInstanceRemoved(_)) => "removed",
            Some(pb::instance_event::Event::ActualLrpCrashed(_)) => "crashed",
            _ => "other",
        });
    }
    out
}

fn code<T: std::fmt::Debug>(result: bbs::Result<T>) -> ErrorCode {
    result.expect_err("the call must fail").code()
}

// ----------------------------------------------------------------------------------------------
// ActualLrps

async fn list_filters_rows_of_every_presence(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app-a", 2, UpdateStrategy::Rolling).await;
    desire(&h, "app-b", 1, UpdateStrategy::Rolling).await;
    let a0 = instance("a0", "cell-1");
    run_instance(&h, "app-a", 0, &a0).await;
    Evacuation(&h.ctx).evacuate_running(&lrp_key("app-a", 0), &a0, &start_info("10.0.0.1")).await.unwrap();

    let lrps = ActualLrps(&h.ctx);
    assert_eq!(lrps.list(&ActualLrpFilter::default()).await.unwrap().len(), 4);
    let by_guid =
        lrps.list(&ActualLrpFilter { process_guid: Some(guid("app-a")), ..Default::default() }).await.unwrap();
    let shape: Vec<(i32, Presence)> = by_guid.iter().map(|l| (l.key.index, l.presence)).collect();
    assert_eq!(shape, [(0, Presence::Ordinary), (0, Presence::Evacuating), (1, Presence::Ordinary)]);
    let by_cell = lrps
        .list(&ActualLrpFilter { cell_id: Some(CellId::parse("cell-1").unwrap()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_cell.len(), 1);
    assert_eq!(by_cell[0].presence, Presence::Evacuating);
    let by_index = lrps
        .list(&ActualLrpFilter { process_guid: Some(guid("app-a")), index: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_index.len(), 1);
}

async fn claim_then_start_are_changes(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(1));
    lrps.claim(&guid("app"), 0, &key).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let claimed = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!(claimed.state, ActualLrpState::Claimed);
    assert_eq!(claimed.instance_key.as_ref(), Some(&key));
    assert_eq!(claimed.since, h.ctx.now_ns());

    // Claiming again with the same key is a no-op.
    lrps.claim(&guid("app"), 0, &key).await.unwrap();
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap(), claimed);

    lrps.start(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let running = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!(running.state, ActualLrpState::Running);
    assert_eq!(running.net_info.as_ref().map(|n| n.address.as_str()), Some("10.0.0.1"));
    assert!(running.routable);
    assert_eq!(running.internal_routes, ["app.apps.internal"]);

    // The rep's periodic re-assert writes nothing and publishes nothing.
    lrps.start(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap();
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap(), running);
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn claim_is_fenced_by_the_instance_key(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (mine, theirs) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    lrps.claim(&guid("app"), 0, &mine).await.unwrap();
    let mut events = subscribe(&h);

    assert_eq!(code(lrps.claim(&guid("app"), 0, &theirs).await), ErrorCode::ActualLrpCannotBeClaimed);
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap().instance_key.as_ref(), Some(&mine));
    assert_eq!(code(lrps.claim(&guid("app"), 7, &mine).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(lrps.claim(&guid("nope"), 0, &mine).await), ErrorCode::ResourceNotFound);

    // A CRASHED row cannot be claimed.
    let victim = instance("ig-3", "cell-3");
    for _ in 0..3 {
        run_instance(&h, "app", 1, &victim).await;
        lrps.crash(&lrp_key("app", 1), &victim, "boom").await.unwrap();
    }
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Crashed);
    let mut after_crash = subscribe(&h);
    assert_eq!(code(lrps.claim(&guid("app"), 1, &victim).await), ErrorCode::ActualLrpCannotBeClaimed);
    assert!(kinds(&mut after_crash).await.is_empty());
}

async fn start_accepts_any_key_until_running(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (first, second) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    lrps.claim(&guid("app"), 0, &first).await.unwrap();

    // CLAIMED -> RUNNING does not check the key (bbs.md 3.1).
    let mut events = subscribe(&h);
    lrps.start(&lrp_key("app", 0), &second, &start_info("10.0.0.2")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let row = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!((row.state, row.instance_key.as_ref()), (ActualLrpState::Running, Some(&second)));

    // RUNNING by another key is refused.
    let result = lrps.start(&lrp_key("app", 0), &first, &start_info("10.0.0.1")).await;
    assert_eq!(code(result), ErrorCode::ActualLrpCannotBeStarted);
    assert!(kinds(&mut events).await.is_empty());

    // A start with no row recreates it RUNNING.
    let lost = instance("ig-9", "cell-9");
    lrps.start(&lrp_key("lost", 3), &lost, &start_info("10.0.0.9")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["created"]);
    let row = ordinary(&h, "lost", 3).await.unwrap();
    assert_eq!((row.state, row.instance_key.as_ref()), (ActualLrpState::Running, Some(&lost)));

    // An empty address is an invalid request.
    let result = lrps.start(&lrp_key("app", 0), &second, &start_info("")).await;
    assert_eq!(code(result), ErrorCode::InvalidRequest);
}

async fn crash_restarts_twice_at_once_then_backs_off(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");

    for crash in 1..=2 {
        run_instance(&h, "app", 1, &key).await;
        let mut events = subscribe(&h);
        h.clock.advance(Duration::from_secs(5));
        lrps.crash(&lrp_key("app", 1), &key, "exit status 1").await.unwrap();
        assert_eq!(kinds(&mut events).await, ["crashed", "removed", "created"], "crash {crash}");
        let row = ordinary(&h, "app", 1).await.unwrap();
        assert_eq!(row.state, ActualLrpState::Unclaimed, "crash {crash}");
        assert_eq!(row.crash_count, crash);
        assert_eq!(row.crash_reason, "exit status 1");
        assert_eq!(row.instance_key, None);
        assert_eq!(row.since, h.ctx.now_ns());
        let calls = h.auctioneer.wait_lrp_calls(crash as usize).await;
        let request = &calls[crash as usize - 1][0];
        assert_eq!((request.process_guid.as_str(), request.indices.as_slice()), ("app", &[1][..]));
        assert_eq!((request.memory_mb, request.disk_mb), (256, 1024));
        assert_eq!(request.placement_tags, ["zone-a"]);
    }

    run_instance(&h, "app", 1, &key).await;
    let mut events = subscribe(&h);
    lrps.crash(&lrp_key("app", 1), &key, "exit status 2").await.unwrap();
    assert_eq!(kinds(&mut events).await, ["crashed", "changed"]);
    let row = ordinary(&h, "app", 1).await.unwrap();
    assert_eq!((row.state, row.crash_count), (ActualLrpState::Crashed, 3));
    settle().await;
    assert_eq!(h.auctioneer.lrp_calls().len(), 2, "the third crash waits for convergence");
}

async fn crash_is_refused_without_a_live_instance(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (key, other) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    let mut events = subscribe(&h);

    assert_eq!(code(lrps.crash(&lrp_key("app", 0), &key, "x").await), ErrorCode::ActualLrpCannotBeCrashed);
    run_instance(&h, "app", 0, &key).await;
    let _ = kinds(&mut events).await;
    assert_eq!(code(lrps.crash(&lrp_key("app", 0), &other, "x").await), ErrorCode::ActualLrpCannotBeCrashed);
    assert_eq!(code(lrps.crash(&lrp_key("app", 5), &key, "x").await), ErrorCode::ResourceNotFound);
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 0).await.unwrap().state, ActualLrpState::Running);
}

async fn crash_restart_without_a_desired_lrp_requests_no_auction(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let store = h.ctx.writer().unwrap();
    let domain = DomainName::parse(DOMAIN).unwrap();
    store.create_unclaimed_actual_lrps(&guid("orphan"), &domain, &[0], h.ctx.now_ns()).await.unwrap();
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "orphan", 0, &key).await;

    ActualLrps(&h.ctx).crash(&lrp_key("orphan", 0), &key, "oom").await.unwrap();
    let row = ordinary(&h, "orphan", 0).await.unwrap();
    assert_eq!((row.state, row.crash_count), (ActualLrpState::Unclaimed, 1));
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn suspect_claim_and_start_are_ignored_and_its_crash_deletes_it(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "app", 0, &key).await;
    h.ctx.writer().unwrap().suspect_and_replace(&guid("app"), 0, h.ctx.now_ns()).await.unwrap();
    let before = index_rows(&h, "app", 0).await;
    assert_eq!(before.suspect.as_ref().map(|s| s.state), Some(ActualLrpState::Running));
    let mut events = subscribe(&h);

    lrps.claim(&guid("app"), 0, &key).await.unwrap();
    lrps.start(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap();
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(index_rows(&h, "app", 0).await, before);

    lrps.crash(&lrp_key("app", 0), &key, "gone").await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let after = index_rows(&h, "app", 0).await;
    assert!(after.suspect.is_none());
    assert_eq!(after.ordinary, before.ordinary, "the replacement is untouched");
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn fail_records_the_placement_error_and_tolerates_missing_rows(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(30));
    lrps.fail(&lrp_key("app", 0), "insufficient resources: memory").await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let row = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!(row.placement_error, "insufficient resources: memory");
    assert_eq!((row.state, row.since), (ActualLrpState::Unclaimed, h.ctx.now_ns()));

    lrps.fail(&lrp_key("app", 9), "whatever").await.unwrap();
    lrps.fail(&lrp_key("gone", 0), "whatever").await.unwrap();
    assert!(kinds(&mut events).await.is_empty());

    lrps.claim(&guid("app"), 1, &instance("ig-1", "cell-1")).await.unwrap();
    let _ = kinds(&mut events).await;
    assert_eq!(code(lrps.fail(&lrp_key("app", 1), "late").await), ErrorCode::ActualLrpCannotBeFailed);
    assert!(kinds(&mut events).await.is_empty());
}

async fn remove_is_fenced_by_the_instance_key(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let (key, other) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-2"));
    run_instance(&h, "app", 0, &key).await;
    let mut events = subscribe(&h);

    assert_eq!(code(lrps.remove(&guid("app"), 0, Some(&other)).await), ErrorCode::ActualLrpCannotBeRemoved);
    assert_eq!(code(lrps.remove(&guid("app"), 1, Some(&key)).await), ErrorCode::ActualLrpCannotBeRemoved);
    assert!(kinds(&mut events).await.is_empty());

    lrps.remove(&guid("app"), 0, Some(&key)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 0).await.is_none());
    assert_eq!(code(lrps.remove(&guid("app"), 0, Some(&key)).await), ErrorCode::ResourceNotFound);

    // Without a key, whatever the state.
    lrps.remove(&guid("app"), 1, None).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 1).await.is_none());
}

async fn retire_deletes_rows_without_a_container(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let lrps = ActualLrps(&h.ctx);
    let key = instance("ig-1", "cell-1");
    for _ in 0..3 {
        run_instance(&h, "app", 1, &key).await;
        lrps.crash(&lrp_key("app", 1), &key, "boom").await.unwrap();
    }
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Crashed);
    let mut events = subscribe(&h);

    lrps.retire(&lrp_key("app", 0)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 0).await.is_none());
    lrps.retire(&lrp_key("app", 1)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 1).await.is_none());

    assert_eq!(code(lrps.retire(&lrp_key("app", 0)).await), ErrorCode::ResourceNotFound);
    // The desired LRP stays: convergence refills the index.
    assert!(h.db.store.scheduling_info(&guid("app")).await.is_ok());
    settle().await;
    assert!(h.reps.calls().is_empty());
}

async fn retire_stops_an_instance_on_a_live_cell(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    live_cell(&h, "cell-1", "10.0.1.1:1801").await;
    let lrps = ActualLrps(&h.ctx);
    let (running, claimed) = (instance("ig-1", "cell-1"), instance("ig-2", "cell-1"));
    run_instance(&h, "app", 0, &running).await;
    lrps.claim(&guid("app"), 1, &claimed).await.unwrap();
    let before = (ordinary(&h, "app", 0).await, ordinary(&h, "app", 1).await);
    let mut events = subscribe(&h);

    lrps.retire(&lrp_key("app", 0)).await.unwrap();
    lrps.retire(&lrp_key("app", 1)).await.unwrap();
    let mut calls = h.reps.wait_calls(2).await;
    calls.sort_by_key(|c| match c {
        RepCall::Stop { index, .. } => *index,
        _ => -1,
    });
    assert_eq!(
        calls,
        [
            RepCall::Stop {
                address: "10.0.1.1:1801".into(),
                process_guid: "app".into(),
                instance_guid: "ig-1".into(),
                index: 0
            },
            RepCall::Stop {
                address: "10.0.1.1:1801".into(),
                process_guid: "app".into(),
                instance_guid: "ig-2".into(),
                index: 1
            },
        ]
    );
    // The rep removes the rows once it stopped the instances.
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!((ordinary(&h, "app", 0).await, ordinary(&h, "app", 1).await), before);
}

async fn retire_deletes_an_instance_whose_cell_is_gone(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    live_cell(&h, "cell-live", "10.0.1.1:1801").await;
    let key = instance("ig-1", "cell-gone");
    run_instance(&h, "app", 0, &key).await;
    let mut events = subscribe(&h);

    ActualLrps(&h.ctx).retire(&lrp_key("app", 0)).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(ordinary(&h, "app", 0).await.is_none());
    settle().await;
    assert!(h.reps.calls().is_empty());
}

// ----------------------------------------------------------------------------------------------
// Evacuation

async fn evacuate_running_dances_until_the_replacement_runs(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let (lrps, evac) = (ActualLrps(&h.ctx), Evacuation(&h.ctx));
    let (old, new) = (instance("ig-old", "cell-draining"), instance("ig-new", "cell-2"));
    run_instance(&h, "app", 0, &old).await;
    let running = ordinary(&h, "app", 0).await.unwrap();
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(10));
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["changed", "created"]);
    let rows = index_rows(&h, "app", 0).await;
    let copy = rows.evacuating.clone().expect("an evacuating copy");
    assert_eq!((copy.state, copy.instance_key.as_ref()), (ActualLrpState::Running, Some(&old)));
    assert_eq!(copy.net_info, running.net_info);
    assert!(copy.routable);
    let replacement = rows.ordinary.clone().unwrap();
    assert_eq!((replacement.state, replacement.instance_key.as_ref()), (ActualLrpState::Unclaimed, None));
    assert_eq!(replacement.since, h.ctx.now_ns());
    let calls = h.auctioneer.wait_lrp_calls(1).await;
    assert_eq!((calls[0][0].process_guid.as_str(), calls[0][0].indices.as_slice()), ("app", &[0][..]));

    // Asking again while the replacement is pending: keep, nothing written, no new auction.
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(index_rows(&h, "app", 0).await, rows);

    lrps.claim(&guid("app"), 0, &new).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed"]);
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());

    // The replacement starts: the evacuating copy goes.
    lrps.start(&lrp_key("app", 0), &new, &start_info("10.0.0.2")).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["changed", "removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.unwrap().instance_key.as_ref(), Some(&new));

    // Now the old container may go.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    settle().await;
    assert_eq!(h.auctioneer.lrp_calls().len(), 1);

    // No rows at all: drop the container.
    assert!(!evac.evacuate_running(&lrp_key("app", 4), &old, &start_info("10.0.0.1")).await.unwrap());
}

async fn evacuate_running_drops_the_copy_once_the_desired_lrp_is_gone(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (a, b) = (instance("ig-a", "cell-draining"), instance("ig-b", "cell-draining"));
    run_instance(&h, "app", 0, &a).await;
    run_instance(&h, "app", 1, &b).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    assert!(evac.evacuate_running(&lrp_key("app", 1), &b, &start_info("10.0.0.1")).await.unwrap());
    h.ctx.writer().unwrap().remove_desired_lrp(&guid("app")).await.unwrap();
    let mut events = subscribe(&h);

    // Desired LRP gone, ordinary row still there: the copy goes, the container too.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));

    // The ordinary row was deleted by the desired LRP's removal.
    ActualLrps(&h.ctx).remove(&guid("app"), 1, None).await.unwrap();
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_running(&lrp_key("app", 1), &b, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(index_rows(&h, "app", 1).await.is_empty());
}

async fn evacuate_running_keeps_one_evacuating_copy_per_index(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (stray, other, claimer) =
        (instance("ig-stray", "cell-draining"), instance("ig-other", "cell-draining-2"), instance("ig-new", "cell-2"));
    ActualLrps(&h.ctx).claim(&guid("app"), 0, &claimer).await.unwrap();
    let mut events = subscribe(&h);

    // An instance with no row gets an evacuating row while the ordinary is not running yet.
    assert!(evac.evacuate_running(&lrp_key("app", 0), &stray, &start_info("10.0.0.7")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["created"]);
    let copy = index_rows(&h, "app", 0).await.evacuating.unwrap();
    assert_eq!(copy.instance_key.as_ref(), Some(&stray));
    assert_eq!(copy.net_info.as_ref().map(|n| n.address.as_str()), Some("10.0.0.7"));

    // A report with new net info refreshes it.
    h.clock.advance(Duration::from_secs(10));
    assert!(evac.evacuate_running(&lrp_key("app", 0), &stray, &start_info("10.0.0.8")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let refreshed = index_rows(&h, "app", 0).await.evacuating.unwrap();
    assert_eq!(refreshed.net_info.as_ref().map(|n| n.address.as_str()), Some("10.0.0.8"));
    assert_eq!(refreshed.modification_tag.epoch, copy.modification_tag.epoch);
    assert_eq!(refreshed.modification_tag.index, copy.modification_tag.index + 1);

    // A second instance cannot take the slot.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &other, &start_info("10.0.0.9")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(index_rows(&h, "app", 0).await.evacuating.unwrap(), refreshed);
}

async fn evacuate_running_turns_a_suspect_into_the_evacuating_copy(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let key = instance("ig-1", "cell-1");
    run_instance(&h, "app", 0, &key).await;
    h.ctx.writer().unwrap().suspect_and_replace(&guid("app"), 0, h.ctx.now_ns()).await.unwrap();
    let before = index_rows(&h, "app", 0).await;
    let mut events = subscribe(&h);

    assert!(Evacuation(&h.ctx).evacuate_running(&lrp_key("app", 0), &key, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["changed"]);
    let after = index_rows(&h, "app", 0).await;
    assert!(after.suspect.is_none());
    let copy = after.evacuating.unwrap();
    assert_eq!((copy.state, copy.instance_key.as_ref()), (ActualLrpState::Running, Some(&key)));
    assert_eq!(after.ordinary, before.ordinary, "the replacement already exists");
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty());
}

async fn evacuate_running_recreate_replaces_one_instance_at_a_time(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Recreate).await;
    let evac = Evacuation(&h.ctx);
    let (a0, a1, b0) =
        (instance("ig-a0", "cell-draining"), instance("ig-a1", "cell-draining"), instance("ig-b0", "cell-2"));
    run_instance(&h, "app", 0, &a0).await;
    run_instance(&h, "app", 1, &a1).await;
    let mut events = subscribe(&h);

    // Every instance runs: index 0 is unclaimed and auctioned, no evacuating copy is kept.
    assert!(!evac.evacuate_running(&lrp_key("app", 0), &a0, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed", "created"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));
    let calls = h.auctioneer.wait_lrp_calls(1).await;
    assert_eq!(calls[0][0].indices, [0]);

    // Index 0 is not running: index 1 must wait.
    assert!(evac.evacuate_running(&lrp_key("app", 1), &a1, &start_info("10.0.0.1")).await.unwrap());
    assert!(kinds(&mut events).await.is_empty());
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Running);

    run_instance(&h, "app", 0, &b0).await;
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_running(&lrp_key("app", 1), &a1, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed", "created"]);
    assert_eq!(ordinary(&h, "app", 1).await.unwrap().state, ActualLrpState::Unclaimed);
    assert_eq!(h.auctioneer.wait_lrp_calls(2).await[1][0].indices, [1]);

    // A suspect is deleted rather than kept as an evacuating copy.
    desire(&h, "sus", 1, UpdateStrategy::Recreate).await;
    let s = instance("ig-s", "cell-draining");
    run_instance(&h, "sus", 0, &s).await;
    h.ctx.writer().unwrap().suspect_and_replace(&guid("sus"), 0, h.ctx.now_ns()).await.unwrap();
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_running(&lrp_key("sus", 0), &s, &start_info("10.0.0.1")).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "sus", 0).await;
    assert!(rows.suspect.is_none() && rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));
}

async fn evacuate_claimed_unclaims_and_auctions(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (claimed, old) = (instance("ig-1", "cell-draining"), instance("ig-old", "cell-draining"));
    ActualLrps(&h.ctx).claim(&guid("app"), 1, &claimed).await.unwrap();
    let mut events = subscribe(&h);

    assert!(!evac.evacuate_claimed(&lrp_key("app", 1), &claimed).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed", "created"]);
    let row = ordinary(&h, "app", 1).await.unwrap();
    assert_eq!((row.state, row.instance_key), (ActualLrpState::Unclaimed, None));
    let calls = h.auctioneer.wait_lrp_calls(1).await;
    assert_eq!(calls[0][0].indices, [1]);

    // No row carries the key.
    assert_eq!(code(evac.evacuate_claimed(&lrp_key("app", 1), &claimed).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(evac.evacuate_claimed(&lrp_key("app", 9), &claimed).await), ErrorCode::ResourceNotFound);

    // An evacuating copy is deleted, the ordinary row left alone, nothing auctioned.
    run_instance(&h, "app", 0, &old).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    h.auctioneer.wait_lrp_calls(2).await;
    let replacement = ordinary(&h, "app", 0).await;
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_claimed(&lrp_key("app", 0), &old).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary, replacement);
    settle().await;
    assert_eq!(h.auctioneer.lrp_calls().len(), 2);
}

async fn evacuate_stopped_removes_the_instance_row(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (a, b) = (instance("ig-a", "cell-draining"), instance("ig-b", "cell-draining"));
    run_instance(&h, "app", 0, &a).await;
    run_instance(&h, "app", 1, &b).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    let mut events = subscribe(&h);

    // The evacuating copy.
    assert!(!evac.evacuate_stopped(&lrp_key("app", 0), &a).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.state), Some(ActualLrpState::Unclaimed));

    // The ordinary row.
    assert!(!evac.evacuate_stopped(&lrp_key("app", 1), &b).await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    assert!(index_rows(&h, "app", 1).await.is_empty());

    assert_eq!(code(evac.evacuate_stopped(&lrp_key("app", 1), &b).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(evac.evacuate_stopped(&lrp_key("app", 0), &b).await), ErrorCode::ResourceNotFound);
}

async fn evacuate_crashed_crashes_without_an_auction(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 2, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (a, b) = (instance("ig-a", "cell-draining"), instance("ig-b", "cell-draining"));
    run_instance(&h, "app", 0, &a).await;
    run_instance(&h, "app", 1, &b).await;
    let mut events = subscribe(&h);

    h.clock.advance(Duration::from_secs(3));
    assert!(!evac.evacuate_crashed(&lrp_key("app", 1), &b, "exit status 137").await.unwrap());
    assert_eq!(kinds(&mut events).await, ["crashed", "removed", "created"]);
    let row = ordinary(&h, "app", 1).await.unwrap();
    assert_eq!((row.state, row.crash_count), (ActualLrpState::Unclaimed, 1));
    assert_eq!((row.crash_reason.as_str(), row.since), ("exit status 137", h.ctx.now_ns()));
    settle().await;
    assert!(h.auctioneer.lrp_calls().is_empty(), "convergence re-auctions it");

    // The evacuating copy is deleted, whatever the reason.
    assert!(evac.evacuate_running(&lrp_key("app", 0), &a, &start_info("10.0.0.1")).await.unwrap());
    let _ = kinds(&mut events).await;
    assert!(!evac.evacuate_crashed(&lrp_key("app", 0), &a, "exit status 1").await.unwrap());
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.map(|o| o.crash_count), Some(0));

    assert_eq!(code(evac.evacuate_crashed(&lrp_key("app", 0), &a, "x").await), ErrorCode::ResourceNotFound);
}

async fn remove_evacuating_needs_an_evacuating_row(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    desire(&h, "app", 1, UpdateStrategy::Rolling).await;
    let evac = Evacuation(&h.ctx);
    let (old, new) = (instance("ig-old", "cell-draining"), instance("ig-new", "cell-2"));
    run_instance(&h, "app", 0, &old).await;
    assert!(evac.evacuate_running(&lrp_key("app", 0), &old, &start_info("10.0.0.1")).await.unwrap());
    ActualLrps(&h.ctx).claim(&guid("app"), 0, &new).await.unwrap();
    let mut events = subscribe(&h);

    // The ordinary row's key is not an evacuating row.
    assert_eq!(code(evac.remove_evacuating(&lrp_key("app", 0), &new).await), ErrorCode::ResourceNotFound);
    assert!(kinds(&mut events).await.is_empty());

    evac.remove_evacuating(&lrp_key("app", 0), &old).await.unwrap();
    assert_eq!(kinds(&mut events).await, ["removed"]);
    let rows = index_rows(&h, "app", 0).await;
    assert!(rows.evacuating.is_none());
    assert_eq!(rows.ordinary.and_then(|o| o.instance_key), Some(new));

    assert_eq!(code(evac.remove_evacuating(&lrp_key("app", 0), &old).await), ErrorCode::ResourceNotFound);
}

async fn standby_refuses_every_write_and_still_lists(backend: Backend) {
    let Some(h) = Harness::standby(backend).await else { return };
    let domain = DomainName::parse(DOMAIN).unwrap();
    h.db.store.create_unclaimed_actual_lrps(&guid("app"), &domain, &[0], h.ctx.now_ns()).await.unwrap();
    let (lrps, evac) = (ActualLrps(&h.ctx), Evacuation(&h.ctx));
    let (key, ikey, start) = (lrp_key("app", 0), instance("ig-1", "cell-1"), start_info("10.0.0.1"));
    let mut events = subscribe(&h);

    assert_eq!(lrps.list(&ActualLrpFilter::default()).await.unwrap().len(), 1);
    let err = lrps.claim(&guid("app"), 0, &ikey).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert!(err.to_string().contains("10.0.0.9:8889"), "names the leader: {err}");
    assert_eq!(code(lrps.start(&key, &ikey, &start).await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.crash(&key, &ikey, "x").await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.fail(&key, "x").await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.remove(&guid("app"), 0, None).await), ErrorCode::Unavailable);
    assert_eq!(code(lrps.retire(&key).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_claimed(&key, &ikey).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_running(&key, &ikey, &start).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_stopped(&key, &ikey).await), ErrorCode::Unavailable);
    assert_eq!(code(evac.evacuate_crashed(&key, &ikey, "x").await), ErrorCode::Unavailable);
    assert_eq!(code(evac.remove_evacuating(&key, &ikey).await), ErrorCode::Unavailable);

    assert!(kinds(&mut events).await.is_empty());
    let row = ordinary(&h, "app", 0).await.unwrap();
    assert_eq!((row.state, row.placement_error.as_str()), (ActualLrpState::Unclaimed, ""));
}
