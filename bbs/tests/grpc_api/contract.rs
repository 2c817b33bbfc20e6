//! The wire contract: every RPC over the wire, status codes, the `x-diego-error` metadata,
//! validation naming the field, tasks through their lifecycle, and reflection.

use super::*;

on_every_backend!(
    desire_read_and_validation_over_the_wire,
    errors_carry_the_diego_error_type,
    tasks_run_their_lifecycle_over_the_wire,
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
        "StreamActualLRPs",
        "StreamDesiredLRPSchedulingInfos",
        "DesireLRPs",
        "StartActualLRPs",
    ] {
        assert!(methods.iter().any(|m| m == expected), "{expected} missing from {methods:?}");
    }
    assert_eq!(methods.len(), 39, "every Bbs RPC of architecture.md: {methods:?}");

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
