//! The `Rep` service: `State` and `Perform` on a sim cell with a fake BBS, the instance and task
//! RPCs, and one round trip through a real tonic client against `run_with` on 127.0.0.1:0.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::executor::ContainerState;
use cell_rep::runtime::sim::{SimConfig, SimRuntime};
use cell_rep::testing::{
    BbsCall, FakeBbs, TestCell, TestCellOptions, desired_lrp, eventually, lrp_work, task, task_work,
};
use cell_rep::{Deps, Listeners, RepConfig, RuntimeKind};
use proto::error::ErrorCode;
use proto::models::{ActualLrpState, Presence};
use proto::pb::rep::v1 as rep_pb;
use proto::pb::rep::v1::rep_server::Rep;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(10);

fn small_cell(bbs: Arc<FakeBbs>) -> TestCell {
    TestCell::start_with(
        "cell-1",
        bbs,
        TestCellOptions { total: cell_rep::executor::Resources::new(1024, 1024, 3), ..TestCellOptions::default() },
    )
}

#[tokio::test]
async fn perform_reserves_what_fits_and_refuses_the_rest() {
    let bbs = Arc::new(FakeBbs::new());
    let (small, large) = (desired_lrp("small", 2, 256), desired_lrp("large", 1, 600));
    bbs.desire_lrp(small.clone());
    bbs.desire_lrp(large.clone());
    let cell = small_cell(bbs.clone());
    let big_task = task("big-task", 2048);
    bbs.desire_task(big_task.clone());

    // 256 + 256 + 600 > 1024: the largest goes first, so one small instance is refused.
    let response =
        cell.perform(vec![lrp_work(&small, 0), lrp_work(&small, 1), lrp_work(&large, 0)], vec![task_work(&big_task)]);
    assert_eq!(response.failed_lrps.len(), 1);
    let refused = response.failed_lrps[0].actual_lrp_key.clone().expect("key");
    assert_eq!(refused.process_guid, "small");
    assert_eq!(response.failed_tasks.len(), 1, "a 2048 MB task does not fit a 1024 MB cell");

    let state = cell.service.state();
    assert_eq!(state.cell_id, "cell-1");
    assert_eq!(state.zone, "z1");
    assert_eq!(state.lrps.len(), 2);
    assert!(state.tasks.is_empty());
    let available = state.available_resources.expect("available");
    assert_eq!(available.memory_mb, 1024 - 256 - 600);
    assert_eq!(available.containers, 1);
    assert_eq!(state.total_resources.expect("total").memory_mb, 1024);
    assert_eq!(state.rootfs_providers[0].name, "preloaded");
    assert_eq!(state.rootfs_providers[0].properties, vec!["busybox".to_owned()]);
    assert!(!state.evacuating);
    let large_lrp = state
        .lrps
        .iter()
        .find(|l| l.actual_lrp_key.as_ref().is_some_and(|k| k.process_guid == "large"))
        .expect("large instance listed");
    assert_eq!(large_lrp.resource.expect("resource").memory_mb, 600);
    assert_eq!(large_lrp.placement_constraint.clone().expect("constraint").rootfs, "preloaded:busybox");

    // Both accepted instances end up RUNNING on this cell.
    timeout(
        PATIENCE,
        eventually(|| bbs.actual_lrps().iter().filter(|l| l.state == ActualLrpState::Running).count() == 2),
    )
    .await
    .expect("accepted instances never ran");
    assert_eq!(cell.service.state().starting_container_count, 0);
}

#[tokio::test]
async fn perform_refuses_unknown_rootfses_and_malformed_work() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = small_cell(bbs.clone());
    let desired = desired_lrp("web", 1, 64);
    let mut docker = lrp_work(&desired, 0);
    docker.placement_constraint.as_mut().expect("constraint").rootfs = "docker:///busybox".into();
    let mut other_stack = lrp_work(&desired, 0);
    other_stack.placement_constraint.as_mut().expect("constraint").rootfs = "preloaded:cflinuxfs4".into();
    let no_key = rep_pb::Lrp { actual_lrp_key: None, ..lrp_work(&desired, 0) };
    let mut negative = lrp_work(&desired, 0);
    negative.actual_lrp_key.as_mut().expect("key").index = -1;
    let bad_task = rep_pb::Task { task_guid: "not a guid!".into(), ..task_work(&task("t", 1)) };

    let response = cell.perform(vec![docker, other_stack, no_key, negative], vec![bad_task]);
    assert_eq!(response.failed_lrps.len(), 4);
    assert_eq!(response.failed_tasks.len(), 1);
    assert!(cell.containers().is_empty());
}

#[tokio::test]
async fn a_refused_claim_releases_the_reservation() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 512);
    bbs.desire_lrp(desired.clone());
    bbs.fail("ClaimActualLRP", ErrorCode::ActualLrpCannotBeClaimed);
    let cell = small_cell(bbs.clone());

    let response = cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
    assert!(response.failed_lrps.is_empty(), "the reservation itself succeeds");
    timeout(PATIENCE, eventually(|| cell.containers().is_empty())).await.expect("the reservation was never released");
    assert_eq!(cell.executor.available(), cell.executor.total());
    assert!(bbs.calls().iter().any(|c| matches!(c, BbsCall::Claim(_))));
    assert!(!bbs.calls().iter().any(|c| matches!(c, BbsCall::DesiredLrp(_))), "nothing runs after a refused claim");
}

#[tokio::test]
async fn an_unreachable_bbs_keeps_the_reservation_for_a_retry() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 512);
    bbs.desire_lrp(desired.clone());
    bbs.set_unreachable(true);
    let cell = small_cell(bbs.clone());
    cell.perform(vec![lrp_work(&desired, 0)], Vec::new());
    timeout(PATIENCE, bbs.wait_until(|b| b.calls().iter().any(|c| matches!(c, BbsCall::Claim(_)))))
        .await
        .expect("no claim attempted");
    assert_eq!(cell.containers().len(), 1);
    assert_eq!(cell.containers()[0].state, ContainerState::Reserved);

    // The next pass claims and runs it.
    bbs.set_unreachable(false);
    cell.bulk_sync.tick().await.expect("bulk sync");
    timeout(
        PATIENCE,
        eventually(|| bbs.actual_lrp("web", 0, Presence::Ordinary).is_some_and(|l| l.state == ActualLrpState::Running)),
    )
    .await
    .expect("the instance never ran after the bbs came back");
}

#[tokio::test]
async fn an_evacuating_cell_refuses_all_work_and_says_so() {
    let bbs = Arc::new(FakeBbs::new());
    let cell = small_cell(bbs.clone());
    cell.service.evacuate(tonic::Request::new(rep_pb::EvacuateRequest {})).await.expect("evacuate");
    let desired = desired_lrp("web", 1, 64);
    let response = cell.perform(vec![lrp_work(&desired, 0)], vec![task_work(&task("t1", 64))]);
    assert_eq!((response.failed_lrps.len(), response.failed_tasks.len()), (1, 1));
    assert!(cell.service.state().evacuating);
    let ping = cell.service.ping(tonic::Request::new(rep_pb::PingRequest {})).await.expect("ping");
    assert!(ping.into_inner().available);
}

#[tokio::test]
async fn stop_cancel_and_update_act_on_the_named_container() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 64);
    bbs.desire_lrp(desired.clone());
    let long_task = task("long", 64);
    bbs.desire_task(long_task.clone());
    let cell = TestCell::start_with(
        "cell-1",
        bbs.clone(),
        TestCellOptions {
            sim: SimConfig {
                healthy_after: Duration::from_millis(10),
                task_duration: Duration::from_secs(3600),
                ..SimConfig::default()
            },
            ..TestCellOptions::default()
        },
    );
    cell.perform(vec![lrp_work(&desired, 0)], vec![task_work(&long_task)]);
    timeout(
        PATIENCE,
        eventually(|| {
            bbs.actual_lrp("web", 0, Presence::Ordinary).is_some_and(|l| l.state == ActualLrpState::Running)
                && cell.containers().iter().any(|c| c.guid == "long" && c.state == ContainerState::Running)
        }),
    )
    .await
    .expect("lrp and task never ran");
    let instance_guid = bbs
        .actual_lrp("web", 0, Presence::Ordinary)
        .and_then(|l| l.instance_key)
        .expect("claimed")
        .instance_guid
        .to_string();

    // Update: the next start report carries the new routes and tags.
    cell.service
        .update_lrp_instance(tonic::Request::new(rep_pb::UpdateLrpInstanceRequest {
            process_guid: "web".into(),
            instance_guid: instance_guid.clone(),
            internal_routes: vec![proto::pb::models::v1::ActualLrpInternalRoute { hostname: "web.internal".into() }],
            metric_tags: [("team".to_owned(), "a".to_owned())].into(),
        }))
        .await
        .expect("update");
    timeout(
        PATIENCE,
        eventually(|| {
            bbs.actual_lrp("web", 0, Presence::Ordinary)
                .is_some_and(|l| l.internal_routes == vec!["web.internal".to_owned()])
        }),
    )
    .await
    .expect("the update was never re-asserted");

    // Unknown or mismatching instances are not found; missing guids are invalid.
    let missing = cell
        .service
        .stop_lrp_instance(tonic::Request::new(rep_pb::StopLrpInstanceRequest {
            process_guid: "other".into(),
            instance_guid: instance_guid.clone(),
            index: 0,
        }))
        .await
        .expect_err("wrong process guid");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let invalid = cell
        .service
        .stop_lrp_instance(tonic::Request::new(rep_pb::StopLrpInstanceRequest::default()))
        .await
        .expect_err("no guids");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // Stop: the instance is removed and its container deleted.
    cell.service
        .stop_lrp_instance(tonic::Request::new(rep_pb::StopLrpInstanceRequest {
            process_guid: "web".into(),
            instance_guid: instance_guid.clone(),
            index: 0,
        }))
        .await
        .expect("stop");
    timeout(
        PATIENCE,
        eventually(|| {
            bbs.actual_lrp("web", 0, Presence::Ordinary).is_none() && cell.executor.get(&instance_guid).is_none()
        }),
    )
    .await
    .expect("stopped instance not removed");

    // Cancel: answered at once, the container goes; unknown tasks are fine.
    for guid in ["long", "no-such-task"] {
        cell.service
            .cancel_task(tonic::Request::new(rep_pb::CancelTaskRequest { task_guid: guid.into() }))
            .await
            .expect("cancel");
    }
    timeout(PATIENCE, eventually(|| cell.containers().is_empty())).await.expect("cancelled task container not deleted");
}

/// Binds 127.0.0.1:0 twice.
async fn listeners() -> Listeners {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    Listeners { grpc: bind().await.expect("bind grpc"), admin: bind().await.expect("bind admin") }
}

#[tokio::test]
async fn state_and_perform_work_through_a_real_grpc_client() {
    let bbs = Arc::new(FakeBbs::new());
    let desired = desired_lrp("web", 1, 128);
    bbs.desire_lrp(desired.clone());
    let listeners = listeners().await;
    let grpc_address = listeners.grpc.local_addr().expect("addr");
    let admin_address = listeners.admin.local_addr().expect("addr");
    let data_dir = std::env::temp_dir().join(format!("cell-rep-grpc-{}", uuid::Uuid::new_v4()));
    let config = RepConfig {
        cell_id: "grpc-cell".into(),
        runtime: RuntimeKind::Sim,
        data_dir: data_dir.clone(),
        memory_mb: 1024,
        presence_retry_interval: Duration::from_millis(50),
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        ..RepConfig::default()
    };
    let deps = Deps {
        bbs: bbs.clone(),
        runtime: Arc::new(SimRuntime::new(SimConfig {
            healthy_after: Duration::from_millis(10),
            ..SimConfig::default()
        })),
        stop: CancellationToken::new(),
    };
    let stop = deps.stop.clone();
    let rep = tokio::spawn(cell_rep::run_with(config, listeners, deps, CancellationToken::new()));

    let mut client = rep_pb::rep_client::RepClient::connect(format!("http://{grpc_address}")).await.expect("connect");
    let response = client
        .perform(rep_pb::Work { lrps: vec![lrp_work(&desired, 0)], tasks: Vec::new() })
        .await
        .expect("perform")
        .into_inner();
    assert!(response.failed_lrps.is_empty());
    let state = client.state(rep_pb::StateRequest {}).await.expect("state").into_inner();
    assert_eq!(state.cell_id, "grpc-cell");
    assert_eq!(state.rep_url, format!("http://{grpc_address}"));
    assert_eq!(state.lrps.len(), 1);
    assert_eq!(state.available_resources.expect("available").memory_mb, 1024 - 128);

    timeout(
        PATIENCE,
        eventually(|| bbs.actual_lrp("web", 0, Presence::Ordinary).is_some_and(|l| l.state == ActualLrpState::Running)),
    )
    .await
    .expect("never ran");
    timeout(PATIENCE, eventually(|| bbs.presence("grpc-cell").is_some())).await.expect("no presence");
    let presence: proto::models::CellPresence =
        serde_json::from_str(&bbs.presence("grpc-cell").expect("presence").value).expect("presence json");
    assert_eq!(presence.rep_address, grpc_address.to_string());
    assert_eq!(presence.capacity.memory_mb, 1024);

    // Health and the admin endpoints answer too.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_address}"))
        .expect("uri")
        .connect()
        .await
        .expect("channel");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: "diego.rep.v1.Rep".into() })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(health.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let metrics = http_get(admin_address, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let healthz = http_get(admin_address, "/healthz").await;
    assert!(healthz.contains("accepting work"), "{healthz}");

    stop.cancel();
    timeout(PATIENCE, rep).await.expect("rep did not stop").expect("join").expect("rep failed");
    assert!(bbs.presence("grpc-cell").is_none(), "the presence is released on the way out");
    let _ = std::fs::remove_dir_all(data_dir);
}

async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}
