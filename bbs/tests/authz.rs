//! Authorization: the role table against an explicit expectation for every role and every RPC
//! the descriptor set declares (a new RPC without a rule fails here), and the BBS handlers'
//! own-record checks: a `cell-1` peer cannot act on `cell-2`'s instances or tasks, and each
//! refusal leaves the database as it was. Locket leases are their holders' own, held as their
//! own identities: in-process, and over real sockets with mutual TLS, where one auctioneer cannot
//! release another's lock by naming its owner. Handlers are otherwise called in-process with the
//! [`Peer`] in the request extensions, as the server's layer leaves it.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bbs::grpc::BbsService;
use bbs::locket::LocketService;
use common::Harness;
use db::Backend;
use futures::StreamExt;
use prost::Message;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_server::Bbs;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::locket::v1::locket_server::{Locket, LocketServer};
use proto::pb::models::v1 as pb;
use svc::authz::{Rule, check, rule};
use svc::identity::{Identity, Peer, Role};
use svc::pki::Pki;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
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
    ("/diego.bbs.v1.Bbs/DesireLRPs", "---A-"),
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
    ("/diego.bbs.v1.Bbs/StreamActualLRPs", "--CAA"),
    ("/diego.bbs.v1.Bbs/StreamDesiredLRPSchedulingInfos", "---AA"),
    ("/diego.bbs.v1.Bbs/StartActualLRP", "--C--"),
    ("/diego.bbs.v1.Bbs/StartActualLRPs", "--C--"),
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
    ("/diego.rep.v1.Exec/Run", "---A-"),
    ("/diego.rep.v1.Logs/Stream", "---AA"),
    ("/diego.rep.v1.Recovery/Report", "A--A-"),
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

fn lock_request(key: &str, owner: &str, type_code: locket::TypeCode) -> locket::LockRequest {
    locket::LockRequest {
        resource: Some(locket::Resource {
            key: key.into(),
            owner: owner.into(),
            value: String::new(),
            type_code: type_code as i32,
        }),
        ttl_in_seconds: 10,
    }
}

fn release_request(key: &str, owner: &str, type_code: locket::TypeCode) -> locket::ReleaseRequest {
    locket::ReleaseRequest { resource: lock_request(key, owner, type_code).resource }
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
        // As its own owner: the key alone is refused.
        let owner = format!("{peer}#1");
        let status = service.lock(as_peer(lock_request(key, &owner, type_code), peer)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{peer} locking {key}: {status:?}");
        let status = service.release(as_peer(release_request(key, &owner, type_code), peer)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{peer} releasing {key}: {status:?}");
    }
    assert_eq!(h.db.store.fetch_lease("bbs").await.unwrap(), before, "the leader's lease is untouched");
    assert!(h.db.store.fetch_lease("auctioneer").await.is_err(), "nobody took the auctioneer lock");
    service.lock(as_peer(lock_request("cell-1", "diego://cell/cell-1#1", Presence), CELL_1)).await.unwrap();
    let auctioneer = "diego://auctioneer";
    service.lock(as_peer(lock_request("auctioneer", "diego://auctioneer#1", Lock), auctioneer)).await.unwrap();
    let fetch = locket::FetchRequest { key: "auctioneer".into() };
    service.fetch(as_peer(fetch, "diego://reader/bob")).await.unwrap();
    service.release(as_peer(release_request("cell-1", "diego://cell/cell-1#1", Presence), CELL_1)).await.unwrap();
}

/// The BBS's Locket over mutual TLS as `diego://bbs` on 127.0.0.1, behind the layers every
/// server has (the peer of each connection, then authorization), until the token is cancelled.
async fn serve_tls(h: &Harness) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let security = Pki::for_tests().test_tls(Role::Bbs, "").security().unwrap();
    let (_health, router) =
        svc::server::grpc_server(&["diego.locket.v1.Locket"], svc::server::DEFAULT_MAX_REQUEST_BYTES);
    let router = router.add_service(LocketServer::new(LocketService::new(h.db.store.clone())));
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    tokio::spawn(async move { svc::server::serve(router, listener, &security, shutdown).await });
    (address, stop)
}

/// A Locket client at `address` under the certificate of `role` named `name`, and the owner a
/// process of that identity holds its leases as.
async fn locket_as(address: &str, role: Role, name: &str) -> (LocketClient<Channel>, String) {
    let security = Pki::for_tests().test_tls(role, name).security().unwrap();
    let owner = svc::lease::owner_for(&security);
    let options = svc::connect::ChannelOptions::new(Duration::from_secs(5), security);
    let channel = svc::connect::connect(address, &options).await.unwrap();
    (LocketClient::new(channel), owner)
}

async fn fetch_owner(client: &mut LocketClient<Channel>, key: &str) -> String {
    let response = client.fetch(locket::FetchRequest { key: key.into() }).await.unwrap().into_inner();
    response.resource.unwrap().owner
}

/// Over real sockets: auctioneer `a` holds the `auctioneer` lock; auctioneer `b`, another named
/// identity of the same role, sees a's owner through Fetch but can neither release nor renew the
/// lock as that owner. Leader election between them still works: b's own Lock is refused while a
/// holds it and succeeds once a releases.
async fn an_auctioneer_cannot_release_another_auctioneers_lock(backend: Backend) {
    let Some(h) = Harness::leader(backend).await else { return };
    let (address, stop) = serve_tls(&h).await;
    use locket::TypeCode::Lock;
    let (mut a, a_owner) = locket_as(&address, Role::Auctioneer, "a").await;
    let (mut b, b_owner) = locket_as(&address, Role::Auctioneer, "b").await;
    assert!(a_owner.starts_with("diego://auctioneer/a#"), "{a_owner}");
    let term = a.lock(lock_request("auctioneer", &a_owner, Lock)).await.unwrap().into_inner().term;
    assert_eq!(fetch_owner(&mut b, "auctioneer").await, a_owner, "Fetch shows the holder's owner");

    let status = b.release(release_request("auctioneer", &a_owner, Lock)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "diego://auctioneer/b may not hold the lease \"auctioneer\" as {a_owner:?}: a lease's owner is its \
             holder's identity, diego://auctioneer/b or diego://auctioneer/b#<instance>"
        )
    );
    let status = b.lock(lock_request("auctioneer", &a_owner, Lock)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "renewing as a: {status:?}");
    assert_eq!(fetch_owner(&mut b, "auctioneer").await, a_owner, "a still holds the lock");
    let lease = h.db.store.fetch_lease("auctioneer").await.unwrap();
    assert_eq!((lease.owner.as_str(), lease.term), (a_owner.as_str(), term), "nothing was written");

    // The election between the two still works, each as itself.
    let status = b.lock(lock_request("auctioneer", &b_owner, Lock)).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "a holds it: {status:?}");
    a.release(release_request("auctioneer", &a_owner, Lock)).await.unwrap();
    b.lock(lock_request("auctioneer", &b_owner, Lock)).await.unwrap();
    assert_eq!(fetch_owner(&mut a, "auctioneer").await, b_owner);
    stop.cancel();
}

on_every_backend!(
    a_cell_cannot_act_on_another_cells_records,
    subscribers_are_limited_per_identity,
    locket_leases_are_their_holders_own,
    an_auctioneer_cannot_release_another_auctioneers_lock,
);
