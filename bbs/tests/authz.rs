//! Authorization: the role table against an explicit expectation for every role and every RPC
//! the descriptor set declares (a new RPC without a rule fails here), and the BBS handlers'
//! own-record checks: a `cell-1` peer cannot act on `cell-2`'s instances or tasks, and each
//! refusal leaves the database as it was. Locket leases are their holders' own. Handlers are
//! called in-process with the [`Peer`] in the request extensions, as the server's layer leaves
//! it.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use bbs::grpc::BbsService;
use bbs::locket::LocketService;
use common::Harness;
use db::Backend;
use futures::StreamExt;
use prost::Message;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_server::Bbs;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_server::Locket;
use proto::pb::models::v1 as pb;
use svc::authz::{Rule, check, rule};
use svc::identity::{Identity, Peer, Role};
use tonic::{Code, Request};

/// Every method of the four diego services, as full gRPC paths.
fn every_method() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(proto::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set.file {
        for service in &file.service {
            for method in &service.method {
                methods.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
            }
        }
    }
    methods.sort();
    methods
}

/// The expected table: for each method, the rules of bbs, auctioneer, cell, operator, reader
/// as `A` (allow), `C` (own cell), `L` (own lease), `-` (deny).
const EXPECTED: &[(&str, &str)] = &[
    ("/diego.auctioneer.v1.Auctioneer/RequestLRPAuctions", "A----"),
    ("/diego.auctioneer.v1.Auctioneer/RequestTaskAuctions", "A----"),
    ("/diego.bbs.v1.Bbs/ActualLRPs", "--CAA"),
    ("/diego.bbs.v1.Bbs/CancelTask", "---A-"),
    ("/diego.bbs.v1.Bbs/Cells", "-A-AA"),
    ("/diego.bbs.v1.Bbs/ClaimActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/CompleteTask", "--C--"),
    ("/diego.bbs.v1.Bbs/CrashActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/DeleteTask", "---A-"),
    ("/diego.bbs.v1.Bbs/DesireLRP", "---A-"),
    ("/diego.bbs.v1.Bbs/DesireTask", "---A-"),
    ("/diego.bbs.v1.Bbs/DesiredLRPByProcessGuid", "--AAA"),
    ("/diego.bbs.v1.Bbs/DesiredLRPRoutingInfos", "---AA"),
    ("/diego.bbs.v1.Bbs/DesiredLRPSchedulingInfoByProcessGuid", "---AA"),
    ("/diego.bbs.v1.Bbs/DesiredLRPSchedulingInfos", "---AA"),
    ("/diego.bbs.v1.Bbs/DesiredLRPs", "---AA"),
    ("/diego.bbs.v1.Bbs/Domains", "---AA"),
    ("/diego.bbs.v1.Bbs/EvacuateClaimedActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/EvacuateCrashedActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/EvacuateRunningActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/EvacuateStoppedActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/FailActualLRP", "-A---"),
    ("/diego.bbs.v1.Bbs/Ping", "AAAAA"),
    ("/diego.bbs.v1.Bbs/RejectTask", "-AC--"),
    ("/diego.bbs.v1.Bbs/RemoveActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/RemoveDesiredLRP", "---A-"),
    ("/diego.bbs.v1.Bbs/RemoveEvacuatingActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/ResolvingTask", "---A-"),
    ("/diego.bbs.v1.Bbs/RetireActualLRP", "---A-"),
    ("/diego.bbs.v1.Bbs/StartActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/StartTask", "--C--"),
    ("/diego.bbs.v1.Bbs/SubscribeToInstanceEvents", "---AA"),
    ("/diego.bbs.v1.Bbs/SubscribeToTaskEvents", "---AA"),
    ("/diego.bbs.v1.Bbs/TaskByGuid", "--AAA"),
    ("/diego.bbs.v1.Bbs/Tasks", "--CAA"),
    ("/diego.bbs.v1.Bbs/UpdateDesiredLRP", "---A-"),
    ("/diego.bbs.v1.Bbs/UpsertDomain", "---A-"),
    ("/diego.locket.v1.Locket/Fetch", "AAAAA"),
    ("/diego.locket.v1.Locket/FetchAll", "AAAAA"),
    ("/diego.locket.v1.Locket/Lock", "LLL--"),
    ("/diego.locket.v1.Locket/Release", "LLL--"),
    ("/diego.rep.v1.Rep/CancelTask", "A----"),
    ("/diego.rep.v1.Rep/Evacuate", "---A-"),
    ("/diego.rep.v1.Rep/Perform", "-A---"),
    ("/diego.rep.v1.Rep/Ping", "AAAAA"),
    ("/diego.rep.v1.Rep/State", "-A-AA"),
    ("/diego.rep.v1.Rep/StopLRPInstance", "A----"),
    ("/diego.rep.v1.Rep/UpdateLRPInstance", "A----"),
];

fn letter(rule: Rule) -> char {
    match rule {
        Rule::Allow => 'A',
        Rule::OwnCell => 'C',
        Rule::OwnLease => 'L',
        Rule::Deny => '-',
    }
}

fn identity_of(role: Role) -> Identity {
    let name = if role.needs_name() { "x" } else { "" };
    Identity::new(role, name).unwrap()
}

#[test]
fn every_role_and_every_rpc_has_the_expected_rule() {
    let methods = every_method();
    let expected: BTreeMap<&str, &str> = EXPECTED.iter().copied().collect();
    assert_eq!(
        methods.iter().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "every RPC of the descriptor set needs a row here (and a rule in svc::authz)"
    );
    for method in &methods {
        let want: Vec<char> = expected[method.as_str()].chars().collect();
        for (role, want) in Role::ALL.into_iter().zip(want) {
            assert_eq!(letter(rule(role, method)), want, "{role} calling {method}");
            let peer = Peer::Verified(identity_of(role));
            match check(&peer, method) {
                Ok(rule) => assert_ne!(rule, Rule::Deny),
                Err(status) => {
                    assert_eq!(want, '-', "{role} {method}");
                    assert_eq!(status.code(), Code::PermissionDenied);
                    assert!(status.message().contains(method.as_str()), "{}", status.message());
                    assert!(status.message().starts_with(&identity_of(role).to_string()), "{}", status.message());
                }
            }
            assert_eq!(check(&Peer::Plaintext, method).unwrap(), Rule::Allow);
        }
    }
}

fn as_peer<T>(message: T, uri: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(Peer::Verified(Identity::parse_uri(uri).unwrap()));
    request
}

const CELL_1: &str = "diego://cell/cell-1";

fn instance_key(guid: &str, cell: &str) -> Option<pb::ActualLrpInstanceKey> {
    Some(pb::ActualLrpInstanceKey { instance_guid: guid.into(), cell_id: cell.into() })
}

fn lrp_key(index: i32) -> Option<pb::ActualLrpKey> {
    Some(pb::ActualLrpKey { process_guid: "app".into(), index, domain: "apps".into() })
}

fn net_info() -> Option<pb::ActualLrpNetInfo> {
    Some(pb::ActualLrpNetInfo {
        address: "10.0.0.2".into(),
        ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
        ..Default::default()
    })
}

fn run_action() -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 1000".into()],
            user: "root".into(),
            ..Default::default()
        })),
    }
}

/// Everything a refusal could have changed: every actual LRP and every task.
async fn snapshot(bbs: &BbsService) -> (Vec<pb::ActualLrp>, Vec<pb::Task>) {
    let lrps = bbs.actual_lr_ps(Request::new(api::ActualLrPsRequest::default())).await.unwrap().into_inner();
    let tasks = bbs.tasks(Request::new(api::TasksRequest::default())).await.unwrap().into_inner();
    (lrps.actual_lrps, tasks.tasks)
}

/// `app` with instance 0 RUNNING and instance 1 CLAIMED on cell-2, task `t2` RUNNING on cell-2.
async fn cell_2_records(bbs: &BbsService) {
    let desired = pb::DesiredLrp {
        process_guid: "app".into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 2,
        memory_mb: 128,
        disk_mb: 256,
        action: Some(run_action()),
        ports: vec![8080],
        ..Default::default()
    };
    bbs.desire_lrp(Request::new(api::DesireLrpRequest { desired_lrp: Some(desired) })).await.unwrap();
    for index in [0, 1] {
        let claim = api::ClaimActualLrpRequest {
            process_guid: "app".into(),
            index,
            actual_lrp_instance_key: instance_key(&format!("i{index}"), "cell-2"),
        };
        bbs.claim_actual_lrp(as_peer(claim, "diego://cell/cell-2")).await.unwrap();
    }
    let start = api::StartActualLrpRequest {
        actual_lrp_key: lrp_key(0),
        actual_lrp_instance_key: instance_key("i0", "cell-2"),
        actual_lrp_net_info: net_info(),
        ..Default::default()
    };
    bbs.start_actual_lrp(as_peer(start, "diego://cell/cell-2")).await.unwrap();
    let definition = pb::TaskDefinition {
        root_fs: "preloaded:busybox".into(),
        action: Some(run_action()),
        memory_mb: 64,
        ..Default::default()
    };
    let desire =
        api::DesireTaskRequest { task_definition: Some(definition), task_guid: "t2".into(), domain: "d".into() };
    bbs.desire_task(as_peer(desire, "diego://operator/alice")).await.unwrap();
    let start = api::StartTaskRequest { task_guid: "t2".into(), cell_id: "cell-2".into() };
    assert!(bbs.start_task(as_peer(start, "diego://cell/cell-2")).await.unwrap().into_inner().should_start);
}

fn denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    assert!(status.message().starts_with("diego://cell/cell-1 may not act on"), "{what}: {}", status.message());
}

async fn a_cell_cannot_act_on_another_cells_records(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let bbs = BbsService::new(h.ctx.clone(), tokio_util::sync::CancellationToken::new());
    cell_2_records(&bbs).await;
    let before = snapshot(&bbs).await;
    assert_eq!(before.0.len(), 2);

    let theirs = |index: i32| instance_key(&format!("i{index}"), "cell-2");
    let claim = api::ClaimActualLrpRequest { process_guid: "app".into(), index: 1, actual_lrp_instance_key: theirs(1) };
    denied(bbs.claim_actual_lrp(as_peer(claim, CELL_1)).await, "claim");
    let start = api::StartActualLrpRequest {
        actual_lrp_key: lrp_key(1),
        actual_lrp_instance_key: theirs(1),
        actual_lrp_net_info: net_info(),
        ..Default::default()
    };
    denied(bbs.start_actual_lrp(as_peer(start, CELL_1)).await, "start");
    let crash = api::CrashActualLrpRequest {
        actual_lrp_key: lrp_key(0),
        actual_lrp_instance_key: theirs(0),
        error_message: "x".into(),
    };
    denied(bbs.crash_actual_lrp(as_peer(crash, CELL_1)).await, "crash");
    for instance in [theirs(0), None] {
        let remove =
            api::RemoveActualLrpRequest { process_guid: "app".into(), index: 0, actual_lrp_instance_key: instance };
        denied(bbs.remove_actual_lrp(as_peer(remove, CELL_1)).await, "remove");
    }
    let evacuate =
        api::EvacuateClaimedActualLrpRequest { actual_lrp_key: lrp_key(1), actual_lrp_instance_key: theirs(1) };
    denied(bbs.evacuate_claimed_actual_lrp(as_peer(evacuate, CELL_1)).await, "evacuate claimed");
    let evacuate = api::EvacuateRunningActualLrpRequest {
        actual_lrp_key: lrp_key(0),
        actual_lrp_instance_key: theirs(0),
        actual_lrp_net_info: net_info(),
        ..Default::default()
    };
    denied(bbs.evacuate_running_actual_lrp(as_peer(evacuate, CELL_1)).await, "evacuate running");
    let evacuate =
        api::EvacuateStoppedActualLrpRequest { actual_lrp_key: lrp_key(0), actual_lrp_instance_key: theirs(0) };
    denied(bbs.evacuate_stopped_actual_lrp(as_peer(evacuate, CELL_1)).await, "evacuate stopped");
    let evacuate = api::EvacuateCrashedActualLrpRequest {
        actual_lrp_key: lrp_key(0),
        actual_lrp_instance_key: theirs(0),
        error_message: "x".into(),
    };
    denied(bbs.evacuate_crashed_actual_lrp(as_peer(evacuate, CELL_1)).await, "evacuate crashed");
    let remove =
        api::RemoveEvacuatingActualLrpRequest { actual_lrp_key: lrp_key(0), actual_lrp_instance_key: theirs(0) };
    denied(bbs.remove_evacuating_actual_lrp(as_peer(remove, CELL_1)).await, "remove evacuating");

    let start = api::StartTaskRequest { task_guid: "t2".into(), cell_id: "cell-2".into() };
    denied(bbs.start_task(as_peer(start, CELL_1)).await, "start task");
    let complete = api::CompleteTaskRequest {
        task_guid: "t2".into(),
        cell_id: "cell-2".into(),
        failed: true,
        failure_reason: "x".into(),
        result: String::new(),
    };
    denied(bbs.complete_task(as_peer(complete, CELL_1)).await, "complete task");
    let reject = api::RejectTaskRequest { task_guid: "t2".into(), rejection_reason: "x".into() };
    denied(bbs.reject_task(as_peer(reject, CELL_1)).await, "reject task");

    // A cell lists only its own cell's records.
    denied(bbs.actual_lr_ps(as_peer(api::ActualLrPsRequest::default(), CELL_1)).await, "list every instance");
    let theirs = api::ActualLrPsRequest { cell_id: "cell-2".into(), ..Default::default() };
    denied(bbs.actual_lr_ps(as_peer(theirs, CELL_1)).await, "list cell-2's instances");
    denied(bbs.tasks(as_peer(api::TasksRequest::default(), CELL_1)).await, "list every task");
    let own = api::ActualLrPsRequest { cell_id: "cell-1".into(), ..Default::default() };
    assert!(bbs.actual_lr_ps(as_peer(own, CELL_1)).await.unwrap().into_inner().actual_lrps.is_empty());
    let own = api::TasksRequest { cell_id: "cell-1".into(), ..Default::default() };
    assert!(bbs.tasks(as_peer(own, CELL_1)).await.unwrap().into_inner().tasks.is_empty());

    assert_eq!(snapshot(&bbs).await, before, "the refusals wrote nothing");

    // The owner still may; and the auctioneer may reject any task.
    let crash = api::CrashActualLrpRequest {
        actual_lrp_key: lrp_key(0),
        actual_lrp_instance_key: instance_key("i0", "cell-2"),
        error_message: "x".into(),
    };
    bbs.crash_actual_lrp(as_peer(crash, "diego://cell/cell-2")).await.unwrap();
    let reject = api::RejectTaskRequest { task_guid: "t2".into(), rejection_reason: "x".into() };
    bbs.reject_task(as_peer(reject, "diego://auctioneer")).await.unwrap();
    assert_ne!(snapshot(&bbs).await, before);
}

async fn subscribers_are_limited_per_identity(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let mut ctx = h.ctx.clone();
    ctx.events = std::sync::Arc::new(bbs::events::EventHub::new(16).with_max_subscribers_per_identity(2));
    let bbs = BbsService::new(ctx.clone(), tokio_util::sync::CancellationToken::new());
    let alice = "diego://operator/alice";
    let first = bbs.subscribe_to_task_events(as_peer(api::SubscribeToTaskEventsRequest {}, alice)).await.unwrap();
    let instances = api::SubscribeToInstanceEventsRequest { cell_id: String::new() };
    let second = bbs.subscribe_to_instance_events(as_peer(instances.clone(), alice)).await.unwrap();
    let Err(status) = bbs.subscribe_to_task_events(as_peer(api::SubscribeToTaskEventsRequest {}, alice)).await else {
        panic!("a third stream of one identity must be refused")
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_event_subscribers_per_identity = 2"), "{}", status.message());
    // Another identity has its own slots; a closed stream frees one.
    bbs.subscribe_to_task_events(as_peer(api::SubscribeToTaskEventsRequest {}, "diego://reader/bob")).await.unwrap();
    drop(first);
    assert_eq!(ctx.events.subscribers_of(alice), 1);
    let mut third = bbs.subscribe_to_instance_events(as_peer(instances, alice)).await.unwrap().into_inner();
    drop(second);
    // The stream still works while it holds its slot.
    bbs.upsert_domain(Request::new(api::UpsertDomainRequest { domain: "d".into(), ttl: 0 })).await.unwrap();
    let desired = pb::DesiredLrp {
        process_guid: "app".into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 1,
        memory_mb: 128,
        disk_mb: 256,
        action: Some(run_action()),
        ..Default::default()
    };
    bbs.desire_lrp(Request::new(api::DesireLrpRequest { desired_lrp: Some(desired) })).await.unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), third.next()).await.unwrap();
    assert!(event.unwrap().is_ok());
    assert_eq!(ctx.events.subscribers_of(alice), 1);
}

fn lock_request(key: &str, type_code: locket::TypeCode) -> locket::LockRequest {
    locket::LockRequest {
        resource: Some(locket::Resource {
            key: key.into(),
            owner: "someone".into(),
            value: String::new(),
            type_code: type_code as i32,
        }),
        ttl_in_seconds: 10,
    }
}

async fn locket_leases_are_their_holders_own(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let service = LocketService::new(h.db.store.clone());
    let before = h.db.store.fetch_lease("bbs").await.unwrap();
    use locket::TypeCode::{Lock, Presence};
    let refused = [
        (CELL_1, "bbs", Lock),
        (CELL_1, "auctioneer", Lock),
        (CELL_1, "cell-2", Presence),
        ("diego://cell/auctioneer", "auctioneer", Lock),
        ("diego://auctioneer", "bbs", Lock),
        ("diego://auctioneer", "cell-1", Presence),
        ("diego://operator/alice", "auctioneer", Lock),
    ];
    for (peer, key, type_code) in refused {
        let status = service.lock(as_peer(lock_request(key, type_code), peer)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{peer} locking {key}: {status:?}");
        let release = locket::ReleaseRequest { resource: lock_request(key, type_code).resource };
        let status = service.release(as_peer(release, peer)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{peer} releasing {key}: {status:?}");
    }
    assert_eq!(h.db.store.fetch_lease("bbs").await.unwrap(), before, "the leader's lease is untouched");
    assert!(h.db.store.fetch_lease("auctioneer").await.is_err(), "nobody took the auctioneer lock");
    service.lock(as_peer(lock_request("cell-1", Presence), CELL_1)).await.unwrap();
    service.lock(as_peer(lock_request("auctioneer", Lock), "diego://auctioneer")).await.unwrap();
    let fetch = locket::FetchRequest { key: "auctioneer".into() };
    service.fetch(as_peer(fetch, "diego://reader/bob")).await.unwrap();
    let release = locket::ReleaseRequest { resource: lock_request("cell-1", Presence).resource };
    service.release(as_peer(release, CELL_1)).await.unwrap();
}

on_every_backend!(
    a_cell_cannot_act_on_another_cells_records,
    subscribers_are_limited_per_identity,
    locket_leases_are_their_holders_own,
);
