//! The BBS through a real tonic client: an in-process `bbs::run` on 127.0.0.1:0 over a fresh
//! test database, on every configured backend. Covers the wire contract (status codes, the
//! `x-diego-error` and `x-diego-leader` metadata, validation naming the field), event streams,
//! Locket, health and reflection, standbys, and fencing of a deposed leader.

#[macro_use]
mod common;

use std::time::Duration;

use common::wire::Server;
use db::Backend;
use db::testing::TestDb;
use futures::StreamExt;
use proto::error::{ERROR_METADATA_KEY, LEADER_METADATA_KEY};
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use proto::pb::models::v1 as pb;
use tonic::transport::Channel;

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

fn desired(guid: &str, instances: i32) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances,
        memory_mb: 128,
        disk_mb: 256,
        action: Some(run_action()),
        ports: vec![8080],
        ..Default::default()
    }
}

fn diego_error(status: &tonic::Status) -> String {
    status.metadata().get(ERROR_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn instance_key(guid: &str, cell: &str) -> pb::ActualLrpInstanceKey {
    pb::ActualLrpInstanceKey { instance_guid: guid.into(), cell_id: cell.into() }
}

fn lrp_key(guid: &str, index: i32) -> pb::ActualLrpKey {
    pb::ActualLrpKey { process_guid: guid.into(), index, domain: "apps".into() }
}

fn net_info() -> pb::ActualLrpNetInfo {
    pb::ActualLrpNetInfo {
        address: "10.0.0.1".into(),
        ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
        ..Default::default()
    }
}

on_every_backend!(
    desire_read_and_validation_over_the_wire,
    errors_carry_the_diego_error_type,
    lifecycle_events_arrive_in_order_with_increasing_sequences,
    a_lagging_subscriber_is_closed,
    tasks_run_their_lifecycle_over_the_wire,
    locket_locks_presences_and_cells,
    a_standby_serves_reads_and_names_the_leader,
);

async fn desire_read_and_validation_over_the_wire(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;

    // A bad request is refused naming the field and leaves nothing behind.
    let bad = desired("bad/guid", 2);
    let status = client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(bad) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(diego_error(&status), "InvalidRequest");
    assert!(status.message().contains("process_guid must match [A-Za-z0-9_-]+"), "{}", status.message());
    // A request breaking a limit of the request table is refused the same way, before decoding.
    let negative = pb::DesiredLrp { memory_mb: -1, ..desired("negative", 2) };
    let status = client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(negative) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(diego_error(&status), "InvalidRequest");
    assert!(status.message().contains("desired_lrp.memory_mb must be between 0 and"), "{}", status.message());
    let missing_action = pb::DesiredLrp { action: None, ..desired("no-action", 1) };
    let status = client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(missing_action) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("action"), "{}", status.message());
    let oversized = pb::DesiredLrp { annotation: "x".repeat(10 * 1024 + 1), ..desired("too-big", 1) };
    let status = client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(oversized) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("annotation"), "{}", status.message());
    let all = client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert!(all.desired_lrps.is_empty(), "a refused desire wrote something");

    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("web", 3)) }).await.unwrap();
    let got = client
        .desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: "web".into() })
        .await
        .unwrap()
        .into_inner()
        .desired_lrp
        .unwrap();
    assert_eq!((got.instances, got.memory_mb, got.rootfs.as_str()), (3, 128, "preloaded:busybox"));
    assert!(got.action.is_some());
    let infos = client.desired_lrp_scheduling_infos(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert_eq!(infos.desired_lrp_scheduling_infos.len(), 1);
    let actual = client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: "web".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .actual_lrps;
    assert_eq!(actual.len(), 3);
    assert!(actual.iter().all(|a| a.state == pb::ActualLrpState::Unclaimed as i32));
    let calls = server.auctioneer.wait_lrp_calls(1).await;
    assert_eq!(calls[0][0].indices, vec![0, 1, 2], "one batched start request with every index");

    let status = client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("web", 1)) }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(diego_error(&status), "ResourceExists");
    server.stop().await;
}

async fn errors_carry_the_diego_error_type(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    let status = client
        .desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(diego_error(&status), "ResourceNotFound");
    assert!(status.message().contains("nope"), "{}", status.message());

    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("app", 1)) }).await.unwrap();
    let claim = |guid: &str| api::ClaimActualLrpRequest {
        process_guid: "app".into(),
        index: 0,
        actual_lrp_instance_key: Some(instance_key(guid, "cell-1")),
    };
    client.claim_actual_lrp(claim("ig-1")).await.unwrap();
    let status = client.claim_actual_lrp(claim("ig-2")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(diego_error(&status), "ActualLRPCannotBeClaimed");
    let status = client
        .claim_actual_lrp(api::ClaimActualLrpRequest {
            process_guid: "app".into(),
            index: -1,
            actual_lrp_instance_key: Some(instance_key("x", "c")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("index"), "{}", status.message());
    server.stop().await;
}

fn kind(event: &pb::InstanceEvent) -> &'static str {
    use pb::instance_event::Event;
    match event.event {
        Some(Event::DesiredLrpCreated(_)) => "desired_created",
        Some(Event::DesiredLrpChanged(_)) => "desired_changed",
        Some(Event::DesiredLrpRemoved(_)) => "desired_removed",
        Some(Event::ActualLrpInstanceCreated(_)) => "created",
        Some(Event::ActualLrpInstanceChanged(_)) => "changed",
        Some(Event::ActualLrpInstanceRemoved(_)) => "removed",
        Some(Event::ActualLrpCrashed(_)) => "crashed",
        None => "none",
    }
}

async fn lifecycle_events_arrive_in_order_with_increasing_sequences(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    let mut stream = client
        .subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default())
        .await
        .unwrap()
        .into_inner();

    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("ev", 1)) }).await.unwrap();
    client
        .claim_actual_lrp(api::ClaimActualLrpRequest {
            process_guid: "ev".into(),
            index: 0,
            actual_lrp_instance_key: Some(instance_key("ig", "cell-1")),
        })
        .await
        .unwrap();
    client
        .start_actual_lrp(api::StartActualLrpRequest {
            actual_lrp_key: Some(lrp_key("ev", 0)),
            actual_lrp_instance_key: Some(instance_key("ig", "cell-1")),
            actual_lrp_net_info: Some(net_info()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .crash_actual_lrp(api::CrashActualLrpRequest {
            actual_lrp_key: Some(lrp_key("ev", 0)),
            actual_lrp_instance_key: Some(instance_key("ig", "cell-1")),
            error_message: "exit status 1".into(),
        })
        .await
        .unwrap();
    client.remove_desired_lrp(api::RemoveDesiredLrpRequest { process_guid: "ev".into() }).await.unwrap();

    let expected = [
        "desired_created",
        "created",
        "changed", // claimed
        "changed", // running
        "crashed", // first crash restarts at once:
        "removed", // the old instance is gone,
        "created", // a new one waits for a cell
        "desired_removed",
        "removed", // the UNCLAIMED instance is deleted with its desired LRP
    ];
    let mut kinds = Vec::new();
    let mut last = 0;
    while kinds.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("events stopped after {kinds:?}"))
            .expect("stream ended")
            .expect("stream failed");
        assert_eq!(event.sequence, last + 1, "sequences increase by one");
        last = event.sequence;
        kinds.push(kind(&event));
    }
    assert_eq!(kinds, expected);
    server.stop().await;
}

async fn a_lagging_subscriber_is_closed(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |c| c.event_buffer = 8).await;
    let mut client = server.leader_client().await;
    // The subscriber has its own connection with small HTTP/2 windows (hyper's client default is
    // 2 MiB per stream, which would swallow the whole burst), so the server's stream blocks soon.
    let small_window = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .connect()
        .await
        .unwrap();
    let mut stream = BbsClient::new(small_window)
        .subscribe_to_task_events(api::SubscribeToTaskEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Far more than the transport buffers plus 8 events: each event carries a 10 KiB annotation.
    for i in 0..200 {
        let definition = pb::TaskDefinition {
            root_fs: "preloaded:busybox".into(),
            action: Some(run_action()),
            annotation: "a".repeat(10 * 1024),
            ..Default::default()
        };
        client
            .desire_task(api::DesireTaskRequest {
                task_definition: Some(definition),
                task_guid: format!("t{i}"),
                domain: "d".into(),
            })
            .await
            .unwrap();
    }
    let mut received = 0;
    let status = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let next = next.unwrap_or_else(|_| panic!("stream stalled after {received} events"));
        match next {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break status,
            None => panic!("stream ended without a status after {received} events"),
        }
    };
    assert!(received < 200, "the subscriber received everything; it never lagged");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("slow consumer"), "{}", status.message());
    server.stop().await;
}

async fn tasks_run_their_lifecycle_over_the_wire(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    let definition = pb::TaskDefinition {
        root_fs: "preloaded:busybox".into(),
        action: Some(run_action()),
        memory_mb: 64,
        ..Default::default()
    };
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "t1".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let start = client
        .start_task(api::StartTaskRequest { task_guid: "t1".into(), cell_id: "cell-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(start.should_start);
    let again = client
        .start_task(api::StartTaskRequest { task_guid: "t1".into(), cell_id: "cell-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.should_start, "a second start on the same cell must not start it twice");
    let status = client
        .complete_task(api::CompleteTaskRequest {
            task_guid: "t1".into(),
            cell_id: "cell-2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(diego_error(&status), "RunningOnDifferentCell");
    client
        .complete_task(api::CompleteTaskRequest {
            task_guid: "t1".into(),
            cell_id: "cell-1".into(),
            result: "42".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let task = client
        .task_by_guid(api::TaskByGuidRequest { task_guid: "t1".into() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!((task.state, task.result.as_str()), (pb::task::State::Completed as i32, "42"));
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "t1".into() }).await.unwrap_err();
    assert_eq!(diego_error(&status), "InvalidStateTransition");
    client.resolving_task(api::TaskGuidRequest { task_guid: "t1".into() }).await.unwrap();
    client.delete_task(api::TaskGuidRequest { task_guid: "t1".into() }).await.unwrap();
    let status = client.task_by_guid(api::TaskByGuidRequest { task_guid: "t1".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    server.stop().await;
}

async fn locket_locks_presences_and_cells(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let channel = Channel::from_shared(format!("http://{}", server.address)).unwrap().connect_lazy();
    let mut locket = LocketClient::new(channel);
    let presence = proto::models::CellPresence {
        cell_id: proto::models::CellId::parse("cell-1").unwrap(),
        rep_address: "127.0.0.1:1801".into(),
        rep_url: String::new(),
        zone: "z1".into(),
        capacity: proto::models::CellCapacity { memory_mb: 1024, disk_mb: 1024, containers: 10 },
        rootfs_providers: vec![],
        placement_tags: vec![],
        optional_placement_tags: vec![],
        annotations: Default::default(),
    };
    let resource = |owner: &str| locket::Resource {
        key: "cell-1".into(),
        owner: owner.into(),
        value: serde_json::to_string(&presence).unwrap(),
        type_code: locket::TypeCode::Presence as i32,
    };
    let mut term = 0;
    for _ in 0..100 {
        match locket.lock(locket::LockRequest { resource: Some(resource("rep-a")), ttl_in_seconds: 30 }).await {
            Ok(response) => {
                term = response.into_inner().term;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(term, 1);
    let status =
        locket.lock(locket::LockRequest { resource: Some(resource("rep-b")), ttl_in_seconds: 30 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(diego_error(&status), "LockCollision");
    let all = locket
        .fetch_all(locket::FetchAllRequest { type_code: locket::TypeCode::Presence as i32 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.resources.len(), 1);

    let mut client = server.client().await;
    let cells = client.cells(api::CellsRequest::default()).await.unwrap().into_inner().cells;
    assert_eq!(cells.len(), 1);
    assert_eq!((cells[0].cell_id.as_str(), cells[0].zone.as_str()), ("cell-1", "z1"));

    locket.release(locket::ReleaseRequest { resource: Some(resource("rep-a")) }).await.unwrap();
    let status = locket.fetch(locket::FetchRequest { key: "cell-1".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status =
        locket.lock(locket::LockRequest { resource: Some(resource("rep-a")), ttl_in_seconds: 0 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    server.stop().await;
}

async fn a_standby_serves_reads_and_names_the_leader(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let leader = Server::start(&db.url, |_| {}).await;
    let mut leader_client = leader.leader_client().await;
    leader_client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("kept", 1)) }).await.unwrap();
    let standby = Server::start(&db.url, |_| {}).await;
    let mut standby_client = standby.client().await;
    // Reads work on the standby.
    let all = standby_client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.desired_lrps.len(), 1);
    // Writes are refused with the leader's address, as soon as the standby knows it.
    let mut status = None;
    for _ in 0..100 {
        let err = standby_client
            .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("refused", 1)) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        if err.metadata().get(LEADER_METADATA_KEY).is_some() {
            status = Some(err);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the standby never named the leader");
    assert_eq!(status.metadata().get(LEADER_METADATA_KEY).unwrap().to_str().unwrap(), leader.address);
    // Event streams need the leader too.
    let status =
        standby_client.subscribe_to_task_events(api::SubscribeToTaskEventsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    standby.stop().await;
    leader.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_bbs_service_and_its_methods() {
    use prost::Message;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let server = Server::start(&db.url, |_| {}).await;
    let _ = server.client().await;
    let channel = Channel::from_shared(format!("http://{}", server.address)).unwrap().connect().await.unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = |request: MessageRequest| {
        futures::stream::iter(vec![ServerReflectionRequest { host: String::new(), message_request: Some(request) }])
    };
    let mut responses =
        reflection.server_reflection_info(ask(MessageRequest::ListServices(String::new()))).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["diego.bbs.v1.Bbs", "diego.locket.v1.Locket", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("Auctioneer") || n.contains("Rep")),
        "the bbs port advertises services it does not serve: {names:?}"
    );
    let mut responses = reflection
        .server_reflection_info(ask(MessageRequest::FileContainingSymbol("diego.bbs.v1.Bbs".into())))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    let methods: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .filter_map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok())
        .flat_map(|file| file.service)
        .filter(|service| service.name() == "Bbs")
        .flat_map(|service| service.method)
        .map(|method| method.name().to_owned())
        .collect();
    for expected in [
        "DesireLRP",
        "ActualLRPs",
        "StartActualLRP",
        "EvacuateRunningActualLRP",
        "SubscribeToInstanceEvents",
        "CompleteTask",
    ] {
        assert!(methods.iter().any(|m| m == expected), "{expected} missing from {methods:?}");
    }
    assert_eq!(methods.len(), 35, "every Bbs RPC of architecture.md: {methods:?}");

    let health_channel = Channel::from_shared(format!("http://{}", server.address)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(health_channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest { service: "diego.bbs.v1.Bbs".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_commit() {
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else { continue };
        // A leader that won the lease with a 1 s TTL and then "paused": it never renews.
        let leadership = bbs::leader::Leadership::new(
            db.store.clone(),
            "paused-leader".into(),
            "10.0.0.1:8889".into(),
            Duration::from_secs(1),
            Duration::from_millis(500),
        );
        assert!(matches!(leadership.tick().await, Some(bbs::leader::LeaderState::Leading { .. })));
        let writer = leadership.writer().expect("it believes it leads");
        // While it still holds the lease, its writes commit.
        writer.upsert_domain(&proto::models::DomainName::parse("before").unwrap(), Duration::ZERO, 1).await.unwrap();
        // The lease expires and another BBS steals it.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let stolen = db
            .store
            .acquire_lease(
                bbs::leader::BBS_LOCK_KEY,
                "new-leader",
                "10.0.0.2:8889",
                db::sql::leases::LeaseType::Lock,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(stolen.term, 2);
        // The paused leader still believes it leads, but every write is refused by the fence.
        assert!(leadership.is_leader());
        let err = writer
            .upsert_domain(&proto::models::DomainName::parse("after").unwrap(), Duration::ZERO, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, db::Error::Fenced { .. }), "{err}");
        assert_eq!(err.code(), proto::error::ErrorCode::Unavailable);
        let domains = db.store.fresh_domains(0).await.unwrap();
        assert_eq!(
            domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["before"],
            "the fenced write must not commit"
        );
        eprintln!("{}: deposed leader fenced", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_the_lease_so_a_standby_takes_over_at_once() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let server = Server::start(&db.url, |c| c.lock_ttl = Duration::from_secs(60)).await;
    let _ = server.leader_client().await;
    assert!(db.store.fetch_lease(bbs::leader::BBS_LOCK_KEY).await.is_ok());
    server.stop().await;
    // With a 60 s TTL, only an explicit release frees the lease this quickly.
    let err = db.store.fetch_lease(bbs::leader::BBS_LOCK_KEY).await.unwrap_err();
    assert!(matches!(err, db::Error::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cell_presence_is_noticed_without_waiting_for_convergence() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let lost_cells = tokio::sync::broadcast::channel(1024).0;
    let mut lost = lost_cells.subscribe();
    let server = Server::start_with(&db.url, |c| c.presence_check_interval = Duration::from_millis(200), |o| {
        o.lost_cells = Some(lost_cells.clone())
    })
    .await;
    let _ = server.leader_client().await;
    db.store
        .acquire_lease("doomed-cell", "rep-x", "{}", db::sql::leases::LeaseType::Presence, Duration::from_secs(1))
        .await
        .unwrap();
    // The rep stops renewing; the leader notices the expiry on its next presence check.
    let cell = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match lost.recv().await {
                Ok(cell) if cell == "doomed-cell" => return cell,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("lost-cell channel closed: {e}"),
            }
        }
    })
    .await
    .expect("the expired presence was never noticed");
    assert_eq!(cell, "doomed-cell");
    assert!(db.store.fetch_lease("doomed-cell").await.is_err());
    server.stop().await;
}

/// Every remaining Bbs RPC once over the wire, with an error case each where one exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remaining_rpcs_work_over_the_wire() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    assert!(client.ping(api::PingRequest {}).await.unwrap().into_inner().available);
    client.upsert_domain(api::UpsertDomainRequest { domain: "apps".into(), ttl: 60 }).await.unwrap();
    let domains = client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.contains(&"apps".to_owned()), "{domains:?}");
    let status = client.upsert_domain(api::UpsertDomainRequest { domain: String::new(), ttl: 1 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // Desired LRP reads and update.
    let mut lrp = desired("app", 2);
    lrp.routes.insert("cf-router".into(), br#"[{"hostnames":["app.example.com"],"port":8080}]"#.to_vec());
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.unwrap();
    let info = client
        .desired_lrp_scheduling_info_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: "app".into() })
        .await
        .unwrap()
        .into_inner()
        .desired_lrp_scheduling_info
        .unwrap();
    assert_eq!(info.instances, 2);
    let routing =
        client.desired_lrp_routing_infos(api::DesiredLrPsRequest::default()).await.unwrap().into_inner().desired_lrps;
    assert_eq!(routing.len(), 1);
    assert!(routing[0].routes.contains_key("cf-router"));
    let update = pb::DesiredLrpUpdate { instances: Some(3), annotation: Some("v2".into()), ..Default::default() };
    client
        .update_desired_lrp(api::UpdateDesiredLrpRequest { process_guid: "app".into(), update: Some(update) })
        .await
        .unwrap();
    let actual = client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: "app".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actual.actual_lrps.len(), 3, "scale-up created index 2");
    let bad = pb::DesiredLrpUpdate { instances: Some(-1), ..Default::default() };
    let status = client
        .update_desired_lrp(api::UpdateDesiredLrpRequest { process_guid: "app".into(), update: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let status = client
        .update_desired_lrp(api::UpdateDesiredLrpRequest {
            process_guid: "nope".into(),
            update: Some(pb::DesiredLrpUpdate::default()),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Fail (auctioneer), then claim, remove and retire.
    client
        .fail_actual_lrp(api::FailActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 2)),
            error_message: "insufficient resources: memory".into(),
        })
        .await
        .unwrap();
    let failed = client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: "app".into(), index: Some(2), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.actual_lrps[0].placement_error, "insufficient resources: memory");
    let claim = |index: i32, guid: &str| api::ClaimActualLrpRequest {
        process_guid: "app".into(),
        index,
        actual_lrp_instance_key: Some(instance_key(guid, "cell-1")),
    };
    client.claim_actual_lrp(claim(2, "ig-2")).await.unwrap();
    let status = client
        .fail_actual_lrp(api::FailActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 2)),
            error_message: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(diego_error(&status), "ActualLRPCannotBeFailed");
    let status = client
        .remove_actual_lrp(api::RemoveActualLrpRequest {
            process_guid: "app".into(),
            index: 2,
            actual_lrp_instance_key: Some(instance_key("other", "cell-1")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    client
        .remove_actual_lrp(api::RemoveActualLrpRequest {
            process_guid: "app".into(),
            index: 2,
            actual_lrp_instance_key: Some(instance_key("ig-2", "cell-1")),
        })
        .await
        .unwrap();
    client.retire_actual_lrp(api::RetireActualLrpRequest { actual_lrp_key: Some(lrp_key("app", 1)) }).await.unwrap();
    let status = client
        .retire_actual_lrp(api::RetireActualLrpRequest { actual_lrp_key: Some(lrp_key("app", 1)) })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Evacuation: index 0 runs on cell-1, which evacuates it.
    client.claim_actual_lrp(claim(0, "ig-0")).await.unwrap();
    let running = api::StartActualLrpRequest {
        actual_lrp_key: Some(lrp_key("app", 0)),
        actual_lrp_instance_key: Some(instance_key("ig-0", "cell-1")),
        actual_lrp_net_info: Some(net_info()),
        ..Default::default()
    };
    client.start_actual_lrp(running).await.unwrap();
    let keep = client
        .evacuate_running_actual_lrp(api::EvacuateRunningActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 0)),
            actual_lrp_instance_key: Some(instance_key("ig-0", "cell-1")),
            actual_lrp_net_info: Some(net_info()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .keep_container;
    assert!(keep, "the evacuating copy keeps serving until its replacement runs");
    let rows = client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: "app".into(), index: Some(0), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .actual_lrps;
    assert_eq!(rows.len(), 2, "an evacuating copy plus an unclaimed replacement: {rows:?}");
    let keep = client
        .evacuate_stopped_actual_lrp(api::EvacuateStoppedActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 0)),
            actual_lrp_instance_key: Some(instance_key("ig-0", "cell-1")),
        })
        .await
        .unwrap()
        .into_inner()
        .keep_container;
    assert!(!keep);
    let status = client
        .remove_evacuating_actual_lrp(api::RemoveEvacuatingActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 0)),
            actual_lrp_instance_key: Some(instance_key("ig-0", "cell-1")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "the evacuating row is already gone");
    // A claimed instance on an evacuating cell is handed back; a crash is recorded.
    client.claim_actual_lrp(claim(0, "ig-0b")).await.unwrap();
    let keep = client
        .evacuate_claimed_actual_lrp(api::EvacuateClaimedActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 0)),
            actual_lrp_instance_key: Some(instance_key("ig-0b", "cell-1")),
        })
        .await
        .unwrap()
        .into_inner()
        .keep_container;
    assert!(!keep);
    client.claim_actual_lrp(claim(0, "ig-0c")).await.unwrap();
    client
        .evacuate_crashed_actual_lrp(api::EvacuateCrashedActualLrpRequest {
            actual_lrp_key: Some(lrp_key("app", 0)),
            actual_lrp_instance_key: Some(instance_key("ig-0c", "cell-1")),
            error_message: "oom".into(),
        })
        .await
        .unwrap();
    let rows = client
        .actual_lr_ps(api::ActualLrPsRequest { process_guid: "app".into(), index: Some(0), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .actual_lrps;
    assert_eq!(rows[0].crash_count, 1);

    // Tasks: reject (retried) and cancel.
    let definition =
        pb::TaskDefinition { root_fs: "preloaded:busybox".into(), action: Some(run_action()), ..Default::default() };
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "t".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    client
        .reject_task(api::RejectTaskRequest { task_guid: "t".into(), rejection_reason: "no room".into() })
        .await
        .unwrap();
    let task =
        client.task_by_guid(api::TaskByGuidRequest { task_guid: "t".into() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!((task.state, task.rejection_count), (pb::task::State::Pending as i32, 1));
    client.cancel_task(api::TaskGuidRequest { task_guid: "t".into() }).await.unwrap();
    let task =
        client.task_by_guid(api::TaskByGuidRequest { task_guid: "t".into() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.failure_reason, "task was cancelled");
    let status = client
        .reject_task(api::RejectTaskRequest { task_guid: "t".into(), rejection_reason: "late".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let tasks =
        client.tasks(api::TasksRequest { domain: "d".into(), ..Default::default() }).await.unwrap().into_inner().tasks;
    assert_eq!(tasks.len(), 1);
    server.stop().await;
}
