//! Small valid inputs for every target, written to `corpus/<target>/seed-*` by
//! `examples/gen_corpus.rs` (and replayed by `tests/regressions.rs`).

use pb::action::Action as A;
use prost::Message;
use proto::pb::auctioneer::v1 as auction;
use proto::pb::bbs::v1 as api;
use proto::pb::locket::v1 as locket;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep;

/// A run action.
pub fn run(path: &str) -> pb::Action {
    pb::Action {
        action: Some(A::RunAction(pb::RunAction {
            path: path.into(),
            args: vec!["-c".into(), "./start".into()],
            user: "vcap".into(),
            env: vec![pb::EnvironmentVariable { name: "PORT".into(), value: "8080".into() }],
            ..Default::default()
        })),
    }
}

/// An action tree `depth` actions deep: serial, parallel, timeout, try, emit-progress and
/// codependent actions in turn around a run action.
pub fn nested(depth: usize) -> pb::Action {
    let mut action = run("/bin/app");
    for level in 1..depth {
        action = pb::Action {
            action: Some(match level % 6 {
                0 => A::SerialAction(pb::SerialAction { actions: vec![action], log_source: String::new() }),
                1 => A::ParallelAction(pb::ParallelAction {
                    actions: vec![action, run("/bin/side")],
                    log_source: String::new(),
                }),
                2 => A::TimeoutAction(Box::new(pb::TimeoutAction {
                    action: Some(Box::new(action)),
                    timeout_ms: 60_000,
                    log_source: String::new(),
                })),
                3 => {
                    A::TryAction(Box::new(pb::TryAction { action: Some(Box::new(action)), log_source: String::new() }))
                }
                4 => A::EmitProgressAction(Box::new(pb::EmitProgressAction {
                    action: Some(Box::new(action)),
                    start_message: "starting".into(),
                    ..Default::default()
                })),
                _ => A::CodependentAction(pb::CodependentAction { actions: vec![action], log_source: String::new() }),
            }),
        };
    }
    action
}

/// A valid desired LRP whose action is `depth` actions deep.
pub fn desired_lrp(guid: &str, depth: usize) -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: guid.into(),
        domain: "diego".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 2,
        memory_mb: 128,
        disk_mb: 256,
        ports: vec![8080],
        action: Some(nested(depth)),
        setup: Some(nested(3)),
        routes: [("cf-router".to_owned(), br#"[{"hostnames":["web.example.com"],"port":8080}]"#.to_vec())].into(),
        check_definition: Some(pb::CheckDefinition {
            checks: vec![pb::Check {
                tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 1000, interval_ms: 500 }),
                http_check: None,
            }],
            log_source: "HEALTH".into(),
            readiness_checks: vec![],
        }),
        metric_tags: [("source_id".to_owned(), pb::MetricTagValue { r#static: "web".into(), dynamic: 0 })].into(),
        log_guid: "web".into(),
        metrics_guid: "web".into(),
        ..Default::default()
    }
}

/// A valid task definition whose action is `depth` actions deep.
pub fn task_definition(depth: usize) -> pb::TaskDefinition {
    pb::TaskDefinition {
        root_fs: "preloaded:busybox".into(),
        action: Some(nested(depth)),
        memory_mb: 64,
        disk_mb: 64,
        log_guid: "task".into(),
        result_file: "/tmp/result".into(),
        completion_callback_url: "http://callback.example.com/done".into(),
        ..Default::default()
    }
}

fn key() -> Option<pb::ActualLrpKey> {
    Some(pb::ActualLrpKey { process_guid: "web".into(), index: 0, domain: "diego".into() })
}

fn instance_key() -> Option<pb::ActualLrpInstanceKey> {
    Some(pb::ActualLrpInstanceKey { instance_guid: "inst-1".into(), cell_id: "cell-1".into() })
}

fn net_info() -> Option<pb::ActualLrpNetInfo> {
    Some(pb::ActualLrpNetInfo {
        address: "10.0.0.1".into(),
        ports: vec![pb::PortMapping { container_port: 8080, host_port: 61000, ..Default::default() }],
        instance_address: "10.255.0.1".into(),
        ..Default::default()
    })
}

fn constraint() -> Option<pb::PlacementConstraint> {
    Some(pb::PlacementConstraint {
        rootfs: "preloaded:busybox".into(),
        placement_tags: vec!["a".into()],
        volume_drivers: vec![],
    })
}

fn resource() -> Option<pb::Resource> {
    Some(pb::Resource { memory_mb: 128, disk_mb: 256, max_pids: 100 })
}

/// One request body per RPC path (several for some): `(path, body)`.
pub fn request_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let presence = r#"{"cell_id":"cell-1","rep_address":"http://10.0.0.1:1800","zone":"z1","capacity":{"memory_mb":1024,"disk_mb":1024,"containers":10}}"#;
    vec![
        ("/diego.bbs.v1.Bbs/Ping", vec![]),
        (
            "/diego.bbs.v1.Bbs/UpsertDomain",
            api::UpsertDomainRequest { domain: "diego".into(), ttl: 60 }.encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/ActualLRPs",
            api::ActualLrPsRequest {
                domain: "diego".into(),
                cell_id: "cell-1".into(),
                process_guid: "web".into(),
                index: Some(0),
                page_size: 10,
                page_token: bbs::paging::encode_token(&db::sql::page::ActualLrpCursor {
                    process_guid: "web".into(),
                    index: 1,
                    presence: 0,
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/ClaimActualLRP",
            api::ClaimActualLrpRequest {
                process_guid: "web".into(),
                index: 0,
                actual_lrp_instance_key: instance_key(),
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/StartActualLRP",
            api::StartActualLrpRequest {
                actual_lrp_key: key(),
                actual_lrp_instance_key: instance_key(),
                actual_lrp_net_info: net_info(),
                actual_lrp_internal_routes: vec![pb::ActualLrpInternalRoute { hostname: "web.internal".into() }],
                metric_tags: [("app".to_owned(), "web".to_owned())].into(),
                routable: Some(true),
                availability_zone: "z1".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/CrashActualLRP",
            api::CrashActualLrpRequest {
                actual_lrp_key: key(),
                actual_lrp_instance_key: instance_key(),
                error_message: "é".repeat(1100),
            }
            .encode_to_vec(),
        ),
        ("/diego.bbs.v1.Bbs/RetireActualLRP", api::RetireActualLrpRequest { actual_lrp_key: key() }.encode_to_vec()),
        (
            "/diego.bbs.v1.Bbs/EvacuateRunningActualLRP",
            api::EvacuateRunningActualLrpRequest {
                actual_lrp_key: key(),
                actual_lrp_instance_key: instance_key(),
                actual_lrp_net_info: net_info(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/DesiredLRPs",
            api::DesiredLrPsRequest {
                domain: "diego".into(),
                process_guids: vec!["web".into()],
                page_size: 5,
                page_token: bbs::paging::encode_token(&bbs::paging::DesiredCursor("web".into())),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/DesireLRP",
            api::DesireLrpRequest { desired_lrp: Some(desired_lrp("web", 4)) }.encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/UpdateDesiredLRP",
            api::UpdateDesiredLrpRequest {
                process_guid: "web".into(),
                update: Some(pb::DesiredLrpUpdate {
                    instances: Some(3),
                    annotation: Some("v2".into()),
                    has_routes: true,
                    routes: [("cf-router".to_owned(), b"[]".to_vec())].into(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/Tasks",
            api::TasksRequest {
                domain: "diego".into(),
                page_size: 1,
                page_token: bbs::paging::encode_token(&bbs::paging::TaskCursor("t1".into())),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/DesireTask",
            api::DesireTaskRequest {
                task_guid: "t1".into(),
                domain: "diego".into(),
                task_definition: Some(task_definition(3)),
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/CompleteTask",
            api::CompleteTaskRequest {
                task_guid: "t1".into(),
                cell_id: "cell-1".into(),
                failed: true,
                failure_reason: "exit status 1".into(),
                result: String::new(),
            }
            .encode_to_vec(),
        ),
        (
            "/diego.locket.v1.Locket/Lock",
            locket::LockRequest {
                resource: Some(locket::Resource {
                    key: "cell-1".into(),
                    owner: "rep-1".into(),
                    value: presence.into(),
                    type_code: locket::TypeCode::Presence as i32,
                }),
                ttl_in_seconds: 15,
            }
            .encode_to_vec(),
        ),
        (
            "/diego.locket.v1.Locket/Lock",
            locket::LockRequest {
                resource: Some(locket::Resource {
                    key: "auctioneer".into(),
                    owner: "auctioneer-1".into(),
                    value: "10.0.0.1:8889".into(),
                    type_code: locket::TypeCode::Lock as i32,
                }),
                ttl_in_seconds: 15,
            }
            .encode_to_vec(),
        ),
        (
            "/diego.locket.v1.Locket/FetchAll",
            locket::FetchAllRequest { type_code: locket::TypeCode::Presence as i32 }.encode_to_vec(),
        ),
        (
            "/diego.rep.v1.Rep/Perform",
            rep::Work {
                lrps: vec![rep::Lrp {
                    actual_lrp_key: key(),
                    resource: resource(),
                    placement_constraint: constraint(),
                }],
                tasks: vec![rep::Task {
                    task_guid: "t1".into(),
                    domain: "diego".into(),
                    resource: resource(),
                    placement_constraint: constraint(),
                    failed: false,
                }],
            }
            .encode_to_vec(),
        ),
        (
            "/diego.rep.v1.Rep/UpdateLRPInstance",
            rep::UpdateLrpInstanceRequest {
                process_guid: "web".into(),
                instance_guid: "inst-1".into(),
                internal_routes: vec![pb::ActualLrpInternalRoute { hostname: "web.internal".into() }],
                metric_tags: [("app".to_owned(), "web".to_owned())].into(),
            }
            .encode_to_vec(),
        ),
        (
            "/diego.auctioneer.v1.Auctioneer/RequestLRPAuctions",
            auction::RequestLrpAuctionsRequest {
                lrp_start_requests: vec![auction::LrpStartRequest {
                    process_guid: "web".into(),
                    domain: "diego".into(),
                    indices: vec![0, 1, 2],
                    resource: resource(),
                    placement_constraint: constraint(),
                }],
            }
            .encode_to_vec(),
        ),
        (
            "/diego.auctioneer.v1.Auctioneer/RequestTaskAuctions",
            auction::RequestTaskAuctionsRequest {
                task_start_requests: vec![auction::TaskStartRequest {
                    task_guid: "t1".into(),
                    domain: "diego".into(),
                    resource: resource(),
                    placement_constraint: constraint(),
                }],
            }
            .encode_to_vec(),
        ),
        // The batch calls (last, so the earlier seeds keep their names).
        (
            "/diego.bbs.v1.Bbs/StartActualLRPs",
            api::StartActualLrPsRequest {
                starts: vec![
                    api::StartActualLrpRequest {
                        actual_lrp_key: key(),
                        actual_lrp_instance_key: instance_key(),
                        actual_lrp_net_info: net_info(),
                        ..Default::default()
                    },
                    api::StartActualLrpRequest::default(),
                ],
            }
            .encode_to_vec(),
        ),
        (
            "/diego.bbs.v1.Bbs/DesireLRPs",
            api::DesireLrPsRequest {
                desired_lrps: vec![desired_lrp("web", 4), desired_lrp("web", 2), pb::DesiredLrp::default()],
            }
            .encode_to_vec(),
        ),
    ]
}

/// The seed inputs of `target`: `(file name, bytes)`.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "requests" => {
            let mut out = Vec::new();
            for (n, (path, body)) in request_bodies().into_iter().enumerate() {
                let selector = crate::RPCS.iter().position(|r| r.path == path).expect("a known RPC path");
                let mut input = vec![u8::try_from(selector).expect("fewer than 256 RPCs")];
                input.extend(body);
                let method = path.rsplit('/').next().unwrap_or(path);
                out.push((format!("seed-{n:02}-{method}"), input));
            }
            out
        }
        "desired_lrp" => [1, 8, 31, 32, 33, 40]
            .into_iter()
            .map(|depth| (format!("seed-depth-{depth:02}"), desired_lrp("web", depth).encode_to_vec()))
            .collect(),
        "task_definition" => [1, 8, 32, 40]
            .into_iter()
            .map(|depth| (format!("seed-depth-{depth:02}"), task_definition(depth).encode_to_vec()))
            .collect(),
        "cli_files" => {
            let json = br#"{"process_guid":"web","instances":2,"memory_mb":128,"ports":[8080],"environment_variables":[{"name":"GREETING","value":"hello"}],"action":{"timeout_action":{"timeout_ms":60000,"action":{"serial_action":{"actions":[{"run_action":{"path":"/bin/sh","args":["-c","./app"],"user":"root"}}]}}}},"check_definition":{"checks":[{"http_check":{"port":8080,"path":"/health"}}]},"routes":{"cf-router":[{"hostnames":["web.example.com"],"port":8080}]},"metric_tags":{"source_id":{"fixed":"web"}},"update_strategy":"RECREATE"}"#;
            let yaml = b"process_guid: web\ninstances: 2\nmemory_mb: 128\nports: [8080]\naction:\n  parallel_action:\n    actions:\n      - run_action: {path: /bin/sh, args: [-c, ./app], user: root}\n      - try_action:\n          action:\n            run_action: {path: /bin/true}\nroutes:\n  cf-router: &r\n    - hostnames: [web.example.com]\n      port: 8080\n  other: *r\n";
            let with_flag = |flag: u8, body: &[u8]| {
                let mut v = vec![flag];
                v.extend_from_slice(body);
                v
            };
            vec![
                ("seed-json".to_owned(), with_flag(0, json)),
                ("seed-yaml".to_owned(), with_flag(1, yaml)),
                ("seed-json-minimal".to_owned(), with_flag(0, br#"{"process_guid":"p"}"#)),
                ("seed-yaml-non-utf8".to_owned(), with_flag(1, b"process_guid: \xff\xfe\n")),
            ]
        }
        _ => Vec::new(),
    }
}

/// The fuzz targets.
pub const TARGETS: [&str; 4] = ["requests", "desired_lrp", "task_definition", "cli_files"];
