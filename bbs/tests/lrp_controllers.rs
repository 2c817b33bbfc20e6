//! The actual-LRP and evacuation controllers against the real store, on every backend
//! (bbs.md 3.1–3.4, 4.2 "ActualLRP lifecycle" and "Evacuation", 4.4 events).
//!
//! Each case is a generic `async fn case(backend)` in the module of its behaviour;
//! `on_every_backend!` stamps it out as `<module>::sqlite::case`, `<module>::postgres::case`
//! and `<module>::mysql::case`. Cases on a backend whose URL variable is unset return at once
//! (see `db::testing`).

#[macro_use]
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

#[path = "lrp_controllers/crashes.rs"]
mod crashes;
#[path = "lrp_controllers/evacuation.rs"]
mod evacuation;
#[path = "lrp_controllers/lifecycle.rs"]
mod lifecycle;
#[path = "lrp_controllers/removal.rs"]
mod removal;
#[path = "lrp_controllers/scale_down.rs"]
mod scale_down;

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
