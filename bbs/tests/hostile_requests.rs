//! Requests an attacker or a careless client sends, over the wire, to a leader and a standby
//! sharing one database on every backend: each is refused with INVALID_ARGUMENT naming the field
//! and the limit, nothing is written, and neither server steps down or exits. Regressions of the
//! cases found by probing (a NUL in a read took down a PostgreSQL pair; 2^31-1 instances aborted
//! the BBS; unbounded fields; undecodable bodies answered INTERNAL). A request over the server's
//! `max_request_bytes` is RESOURCE_EXHAUSTED naming the limit.

#[macro_use]
mod common;

use common::wire::{Server, raw_call};
use db::Backend;
use db::testing::TestDb;
use prost::Message;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tonic::transport::Channel;

on_every_backend!(
    hostile_reads_are_refused_by_leader_and_standby_alike,
    hostile_desires_are_refused_naming_field_and_limit,
    undecodable_and_too_deep_bodies_are_invalid_argument,
    only_a_lost_table_makes_the_bbs_step_down,
    event_streams_are_bounded,
    requests_over_the_size_limit_are_resource_exhausted,
);

fn run(path: &str) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction { path: path.into(), ..Default::default() })),
    }
}

fn desired(guid: &str) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 1,
        memory_mb: 128,
        disk_mb: 256,
        action: Some(run("/bin/app")),
        ports: vec![8080],
        ..Default::default()
    }
}

/// Asserts `result` is INVALID_ARGUMENT whose message contains `want`.
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, want: &str) {
    let status = result.expect_err(want);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{want}: {status:?}");
    assert!(status.message().contains(want), "expected {want:?} in {:?}", status.message());
    let diego_error = status.metadata().get(proto::error::ERROR_METADATA_KEY).and_then(|v| v.to_str().ok());
    assert_eq!(diego_error, Some("InvalidRequest"), "{want}: the Diego error type travels in the metadata");
}

/// The store as a client sees it: every desired LRP, actual LRP, task and domain.
async fn snapshot(client: &mut BbsClient<Channel>) -> (usize, usize, usize, Vec<String>) {
    let desired = client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    let actual = client.actual_lr_ps(api::ActualLrPsRequest::default()).await.unwrap().into_inner();
    let tasks = client.tasks(api::TasksRequest::default()).await.unwrap().into_inner();
    let mut domains = client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains;
    domains.sort();
    (desired.desired_lrps.len(), actual.actual_lrps.len(), tasks.tasks.len(), domains)
}

async fn pair(db: &TestDb) -> (Server, BbsClient<Channel>, Server, BbsClient<Channel>) {
    let leader = Server::start(&db.url, |_| {}).await;
    let leader_client = leader.leader_client().await;
    let standby = Server::start(&db.url, |_| {}).await;
    let standby_client = standby.client().await;
    (leader, leader_client, standby, standby_client)
}

async fn hostile_reads_are_refused_by_leader_and_standby_alike(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (leader, mut leader_client, standby, mut standby_client) = pair(&db).await;
    let before = snapshot(&mut leader_client).await;
    for client in [&mut leader_client, &mut standby_client] {
        let nul = "\u{0}".to_owned();
        assert_invalid(
            client.tasks(api::TasksRequest { domain: nul.clone(), ..Default::default() }).await,
            "domain must not contain NUL",
        );
        assert_invalid(
            client.tasks(api::TasksRequest { cell_id: "c\u{0}".into(), ..Default::default() }).await,
            "cell_id must not contain NUL",
        );
        assert_invalid(
            client.desired_lr_ps(api::DesiredLrPsRequest { domain: nul.clone(), ..Default::default() }).await,
            "domain must not contain NUL",
        );
        assert_invalid(
            client
                .desired_lr_ps(api::DesiredLrPsRequest { process_guids: vec![nul.clone()], ..Default::default() })
                .await,
            "process_guids[0] must not contain NUL",
        );
        assert_invalid(
            client.actual_lr_ps(api::ActualLrPsRequest { domain: nul.clone(), ..Default::default() }).await,
            "domain must not contain NUL",
        );
        assert_invalid(
            client.desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest { process_guid: nul.clone() }).await,
            "process_guid must not contain NUL",
        );
        assert_invalid(
            client.task_by_guid(api::TaskByGuidRequest { task_guid: nul.clone() }).await,
            "task_guid must not contain NUL",
        );
        assert_invalid(
            client.upsert_domain(api::UpsertDomainRequest { domain: nul.clone(), ttl: 10 }).await,
            "domain must not contain NUL",
        );
        assert_invalid(
            client
                .desired_lr_ps(api::DesiredLrPsRequest { app_guids: vec!["a".repeat(1 << 20)], ..Default::default() })
                .await,
            "app_guids[0] must be at most 4096 bytes",
        );
        assert_invalid(
            client.actual_lr_ps(api::ActualLrPsRequest { index: Some(-1), ..Default::default() }).await,
            "index must be between 0 and 999999",
        );
    }
    assert!(leader.is_running() && standby.is_running(), "a hostile read stopped a server");
    assert_eq!(snapshot(&mut leader_client).await, before);
    assert_eq!(snapshot(&mut standby_client).await, before);
    standby.stop().await;
    leader.stop().await;
}

async fn hostile_desires_are_refused_naming_field_and_limit(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (leader, mut client, standby, _) = pair(&db).await;
    let before = snapshot(&mut client).await;
    let big = "x".repeat(1 << 20);
    let rule = pb::SecurityGroupRule {
        protocol: "tcp".into(),
        destinations: vec!["10.0.0.0/8".into()],
        ports: vec![443],
        ..Default::default()
    };
    let cases: Vec<(pb::DesiredLrp, &str)> = vec![
        (
            pb::DesiredLrp { instances: i32::MAX, ..desired("max") },
            "desired_lrp.instances must be between 0 and 1000000",
        ),
        (pb::DesiredLrp { instances: 1_000_000, ..desired("million") }, "desired_lrp.instances must be at most 100000"),
        (
            pb::DesiredLrp { instances: -1, ..desired("negative") },
            "desired_lrp.instances must be between 0 and 1000000",
        ),
        (pb::DesiredLrp { ports: vec![0], ..desired("port0") }, "desired_lrp.ports[0] must be between 1 and 65535"),
        (
            pb::DesiredLrp { ports: vec![70_000], ..desired("port70k") },
            "desired_lrp.ports[0] must be between 1 and 65535",
        ),
        (pb::DesiredLrp { ports: vec![8080, 8080], ..desired("dup") }, "ports[1] duplicates ports[0]"),
        (
            pb::DesiredLrp { ports: (1..=10_000).collect(), ..desired("many") },
            "desired_lrp.ports must have at most 100 elements",
        ),
        (
            pb::DesiredLrp { process_guid: big.clone(), ..desired("") },
            "desired_lrp.process_guid must be at most 255 bytes",
        ),
        (
            pb::DesiredLrp { rootfs: format!("preloaded:{big}"), ..desired("rootfs") },
            "desired_lrp.rootfs must be at most 1024 bytes",
        ),
        (
            pb::DesiredLrp { placement_tags: vec![big.clone()], ..desired("tag") },
            "desired_lrp.placement_tags[0] must be at most 4096 bytes",
        ),
        (
            pb::DesiredLrp { placement_tags: (0..10_000).map(|i| format!("t{i}")).collect(), ..desired("tags") },
            "desired_lrp.placement_tags must have at most 64 elements",
        ),
        (
            pb::DesiredLrp { egress_rules: vec![rule; 10_000], ..desired("egress") },
            "desired_lrp.egress_rules must have at most 1024 elements",
        ),
        (
            pb::DesiredLrp {
                environment_variables: vec![pb::EnvironmentVariable { name: "BIG".into(), value: big.clone() }],
                ..desired("env")
            },
            "desired_lrp.environment_variables[0].value must be at most",
        ),
        (
            pb::DesiredLrp {
                environment_variables: vec![pb::EnvironmentVariable { name: "A=B".into(), value: "c".into() }],
                ..desired("envname")
            },
            "desired_lrp.environment_variables[0].name must not contain '='",
        ),
        (
            pb::DesiredLrp {
                environment_variables: (0..8)
                    .map(|i| pb::EnvironmentVariable { name: format!("V{i}"), value: "v".repeat(100_000) })
                    .collect(),
                ..desired("envtotal")
            },
            "environment_variables must total at most 524288 bytes",
        ),
        (
            pb::DesiredLrp { start_timeout_ms: -1, ..desired("timeout") },
            "desired_lrp.start_timeout_ms must be between 0 and",
        ),
        (pb::DesiredLrp { memory_mb: -1, ..desired("memory") }, "desired_lrp.memory_mb must be between 0 and"),
        (pb::DesiredLrp { cpu_weight: 1000, ..desired("cpu") }, "desired_lrp.cpu_weight must be between 0 and 100"),
        (
            pb::DesiredLrp {
                action: Some(pb::Action {
                    action: Some(pb::action::Action::ParallelAction(pb::ParallelAction {
                        actions: (0..200).map(|_| run("/bin/sleep")).collect(),
                        ..Default::default()
                    })),
                }),
                ..desired("forkbomb")
            },
            "desired_lrp.action.parallel_action.actions must have at most 100 elements",
        ),
        (
            pb::DesiredLrp {
                action: Some(pb::Action {
                    action: Some(pb::action::Action::TimeoutAction(Box::new(pb::TimeoutAction {
                        action: Some(Box::new(run("/bin/app"))),
                        timeout_ms: -5,
                        ..Default::default()
                    }))),
                }),
                ..desired("negtimeout")
            },
            "desired_lrp.action.timeout_action.timeout_ms must be between 0 and",
        ),
    ];
    for (lrp, want) in cases {
        assert_invalid(client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await, want);
    }
    let update = api::UpdateDesiredLrpRequest {
        process_guid: "web".into(),
        update: Some(pb::DesiredLrpUpdate { instances: Some(i32::MAX), ..Default::default() }),
    };
    assert_invalid(client.update_desired_lrp(update).await, "update.instances must be between 0 and 1000000");
    let task = api::DesireTaskRequest {
        task_guid: "t\u{0}".into(),
        domain: "apps".into(),
        task_definition: Some(pb::TaskDefinition {
            root_fs: "preloaded:busybox".into(),
            action: Some(run("/bin/true")),
            ..Default::default()
        }),
    };
    assert_invalid(client.desire_task(task).await, "task_guid must not contain NUL");
    assert!(leader.is_running() && standby.is_running(), "a hostile write stopped a server");
    assert_eq!(snapshot(&mut client).await, before, "a refused request wrote something");
    // The server still takes good work afterwards.
    client.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(desired("good")) }).await.unwrap();
    standby.stop().await;
    leader.stop().await;
}

/// `levels` nested serial actions in a DesireLRPRequest, encoded by hand.
fn nested(levels: usize) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let wrap = |number: u32, inner: &[u8]| {
        let mut out = Vec::new();
        encode_key(number, WireType::LengthDelimited, &mut out);
        encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(inner);
        out
    };
    let mut action = run("/bin/app").encode_to_vec();
    for _ in 1..levels {
        action = wrap(8, &wrap(1, &action));
    }
    let mut lrp = desired("deep").encode_to_vec();
    // DesiredLRP.action is field 7: a later occurrence replaces the first.
    lrp.extend(wrap(7, &action));
    wrap(1, &lrp)
}

async fn undecodable_and_too_deep_bodies_are_invalid_argument(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let (leader, mut client, standby, _) = pair(&db).await;
    let before = snapshot(&mut client).await;
    for address in [&leader.address, &standby.address] {
        for (path, body) in [
            ("/diego.bbs.v1.Bbs/DesireLRP", vec![0xff; 32]),
            ("/diego.bbs.v1.Bbs/DesireLRP", vec![0x0a, 0x7f, 0x01]),
            ("/diego.bbs.v1.Bbs/Tasks", vec![0x0a, 0x02, 0xc3, 0x28]),
            ("/diego.locket.v1.Locket/Lock", vec![0x0a]),
            ("/diego.bbs.v1.Bbs/DesireLRP", nested(200)),
            ("/diego.bbs.v1.Bbs/DesireLRP", nested(10_000)),
        ] {
            let status = raw_call(address, path, body).await.expect_err("garbage must be refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{path}: {status:?}");
        }
    }
    let status = raw_call(&leader.address, "/diego.bbs.v1.Bbs/DesireLRP", nested(33)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("desired_lrp.action must not nest more than 32 actions deep"), "{status:?}");
    // 32 levels is reachable: the request decodes and is stored.
    raw_call(&leader.address, "/diego.bbs.v1.Bbs/DesireLRP", nested(32)).await.expect("32 levels are accepted");
    assert!(leader.is_running() && standby.is_running(), "a body stopped a server");
    let after = snapshot(&mut client).await;
    assert_eq!(after.0, before.0 + 1, "only the 32-level LRP was stored");
    standby.stop().await;
    leader.stop().await;
}

async fn only_a_lost_table_makes_the_bbs_step_down(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |_| {}).await;
    let mut client = server.leader_client().await;
    // Everything above refused input without stepping down; a broken schema is different.
    sqlx::query("DROP TABLE tasks").execute(db.store.pool()).await.unwrap();
    let status = client.tasks(api::TasksRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    let ended = server.exited(std::time::Duration::from_secs(15)).await;
    assert!(matches!(ended, Err(bbs::RunError::Unrecoverable)), "{ended:?}");
}

async fn event_streams_are_bounded(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let server = Server::start(&db.url, |c| c.max_event_subscribers = 2).await;
    let mut client = server.leader_client().await;
    let first = client.subscribe_to_instance_events(api::SubscribeToInstanceEventsRequest::default()).await.unwrap();
    let second = client.subscribe_to_task_events(api::SubscribeToTaskEventsRequest {}).await.unwrap();
    let status = client.subscribe_to_task_events(api::SubscribeToTaskEventsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("max_event_subscribers"), "{status:?}");
    drop(first);
    // The server notices the closed stream once its next send fails or the stream is dropped.
    let mut admitted = false;
    for _ in 0..100 {
        client.upsert_domain(api::UpsertDomainRequest { domain: "nudge".into(), ttl: 0 }).await.unwrap();
        if client.subscribe_to_task_events(api::SubscribeToTaskEventsRequest {}).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(admitted, "a closed stream's place was never given back");
    drop(second);
    server.stop().await;
}

async fn requests_over_the_size_limit_are_resource_exhausted(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    const MIB: usize = 1024 * 1024;
    let small = Server::start(&db.url, |c| c.max_request_bytes = MIB).await;
    let mut client = small.leader_client().await;
    let default = Server::start(&db.url, |_| {}).await;
    let before = snapshot(&mut client).await;
    for (server, limit) in [(&small, MIB), (&default, svc::server::DEFAULT_MAX_REQUEST_BYTES)] {
        for path in ["/diego.bbs.v1.Bbs/DesireLRP", "/diego.locket.v1.Locket/Lock", "/diego.bbs.v1.Bbs/Tasks"] {
            let status = raw_call(&server.address, path, vec![0x0a; limit + 1]).await.expect_err("over the limit");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{path}: {status:?}");
            let want = format!(
                "request message of {} bytes is over this server's limit of {limit} bytes (max_request_bytes)",
                limit + 1
            );
            assert_eq!(status.message(), want, "{path}");
        }
        // At the limit the size passes, and the bytes (not protobuf) are refused as input.
        let status = raw_call(&server.address, "/diego.bbs.v1.Bbs/DesireLRP", vec![0xff; limit]).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    // A real client's request over the limit is refused for its size, before any field check.
    let mut lrp = desired("big");
    lrp.annotation = "a".repeat(MIB);
    let request = api::DesireLrpRequest { desired_lrp: Some(lrp) };
    let status = client.desire_lrp(request).await.expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().ends_with(&format!("limit of {MIB} bytes (max_request_bytes)")), "{status:?}");
    assert!(small.is_running() && default.is_running(), "a request over the limit stopped a server");
    assert_eq!(snapshot(&mut client).await, before, "nothing was written");
    default.stop().await;
    small.stop().await;
}
