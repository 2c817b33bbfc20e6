//! The request bounds, applied to encoded requests exactly as the codec applies them: every case
//! found by probing the API from outside, and the other members of each class.

use prost::Message;
use proto::bounds::{check_message, check_request};
use proto::limits::{MAX_ACTION_DEPTH, MAX_ACTIONS_PER_LIST, MAX_MESSAGE_DEPTH};
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

/// A change to a desired LRP that breaks one limit.
type Edit = fn(&mut pb::DesiredLrp);
/// [`Edit`], capturing its values.
type BoxedEdit<'a> = Box<dyn Fn(&mut pb::DesiredLrp) + 'a>;

fn run(path: &str) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction { path: path.into(), ..Default::default() })),
    }
}

fn desired() -> pb::DesiredLrp {
    pb::DesiredLrp {
        process_guid: "app-1".into(),
        domain: "apps".into(),
        rootfs: "preloaded:busybox".into(),
        instances: 3,
        memory_mb: 128,
        disk_mb: 256,
        ports: vec![8080],
        action: Some(run("/bin/app")),
        ..Default::default()
    }
}

/// The error text the codec would send for `request`, or `None` when it passes.
fn refusal<M: Message + prost::Name>(request: &M) -> Option<String> {
    check_request(&M::full_name(), &request.encode_to_vec()).err().map(|e| e.to_string())
}

fn desire(lrp: pb::DesiredLrp) -> Option<String> {
    refusal(&api::DesireLrpRequest { desired_lrp: Some(lrp) })
}

#[test]
fn a_realistic_request_passes() {
    let mut lrp = desired();
    lrp.environment_variables = vec![pb::EnvironmentVariable { name: "CERT".into(), value: "a\nb\tc\r\n".into() }];
    lrp.routes.insert("cf-router".into(), br#"[{"hostnames":["a.example"],"port":8080}]"#.to_vec());
    assert_eq!(desire(lrp), None);
}

#[test]
fn nul_is_refused_in_every_string_even_of_reads() {
    let read = api::TasksRequest { domain: "\u{0}".into(), ..Default::default() };
    assert_eq!(refusal(&read).as_deref(), Some("domain must not contain NUL characters"));
    let mut lrp = desired();
    lrp.environment_variables = vec![pb::EnvironmentVariable { name: "A".into(), value: "x\u{0}y".into() }];
    assert_eq!(
        desire(lrp).as_deref(),
        Some("desired_lrp.environment_variables[0].value must not contain NUL characters")
    );
    let complete = api::CompleteTaskRequest { result: "ok\u{0}".into(), ..Default::default() };
    assert_eq!(refusal(&complete).as_deref(), Some("result must not contain NUL characters"));
}

#[test]
fn control_characters_are_refused_except_in_process_output() {
    let mut lrp = desired();
    lrp.process_guid = "app\u{1b}[31m".into();
    assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.process_guid must not contain control characters"));
    let complete = api::CompleteTaskRequest { result: "\u{1b}[32mgreen\u{7}".into(), ..Default::default() };
    assert_eq!(refusal(&complete), None);
}

#[test]
fn instances_are_bounded() {
    for instances in [i32::MAX, 1_000_001, -1] {
        let mut lrp = desired();
        lrp.instances = instances;
        assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.instances must be between 0 and 1000000"), "{instances}");
    }
    let mut lrp = desired();
    lrp.instances = 1_000_000;
    assert_eq!(desire(lrp), None);
    let update = api::UpdateDesiredLrpRequest {
        process_guid: "app-1".into(),
        update: Some(pb::DesiredLrpUpdate { instances: Some(i32::MAX), ..Default::default() }),
    };
    assert_eq!(refusal(&update).as_deref(), Some("update.instances must be between 0 and 1000000"));
}

#[test]
fn ports_are_real_ports_and_few() {
    for (port, at) in [(0, 1), (65_536, 1), (u32::MAX, 1)] {
        let mut lrp = desired();
        lrp.ports = vec![8080, port];
        assert_eq!(
            desire(lrp).as_deref(),
            Some(format!("desired_lrp.ports[{at}] must be between 1 and 65535").as_str())
        );
    }
    let mut lrp = desired();
    lrp.ports = (1..=10_000).collect();
    assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.ports must have at most 100 elements"));
}

#[test]
fn resources_and_timeouts_have_ranges() {
    let cases: Vec<(Edit, &str)> = vec![
        (|l| l.memory_mb = -1, "desired_lrp.memory_mb must be between 0 and 16777216"),
        (|l| l.disk_mb = -5, "desired_lrp.disk_mb must be between 0 and 67108864"),
        (|l| l.cpu_weight = 101, "desired_lrp.cpu_weight must be between 0 and 100"),
        (|l| l.max_pids = -1, "desired_lrp.max_pids must be between 0 and 4194304"),
        (|l| l.start_timeout_ms = -1, "desired_lrp.start_timeout_ms must be between 0 and 604800000"),
    ];
    for (mutate, message) in cases {
        let mut lrp = desired();
        mutate(&mut lrp);
        assert_eq!(desire(lrp).as_deref(), Some(message));
    }
    let mut lrp = desired();
    lrp.action = Some(pb::Action {
        action: Some(pb::action::Action::TimeoutAction(Box::new(pb::TimeoutAction {
            action: Some(Box::new(run("/bin/app"))),
            timeout_ms: -1,
            ..Default::default()
        }))),
    });
    assert_eq!(
        desire(lrp).as_deref(),
        Some("desired_lrp.action.timeout_action.timeout_ms must be between 0 and 604800000")
    );
}

#[test]
fn megabyte_strings_are_refused_with_their_limit() {
    let big = "a".repeat(1024 * 1024);
    let cases: Vec<(BoxedEdit<'_>, &str)> = vec![
        (Box::new(|l| l.process_guid = big.clone()), "desired_lrp.process_guid must be at most 255 bytes"),
        (Box::new(|l| l.rootfs = big.clone()), "desired_lrp.rootfs must be at most 1024 bytes"),
        (
            Box::new(|l| l.placement_tags = vec![big.clone()]),
            "desired_lrp.placement_tags[0] must be at most 4096 bytes",
        ),
        (Box::new(|l| l.annotation = big.clone()), "desired_lrp.annotation must be at most 10240 bytes"),
        (
            Box::new(|l| {
                l.environment_variables = vec![pb::EnvironmentVariable { name: "BIG".into(), value: big.clone() }]
            }),
            "desired_lrp.environment_variables[0].value must be at most 130046 bytes",
        ),
        (
            Box::new(|l| {
                l.routes.insert("cf-router".into(), big.clone().into_bytes());
            }),
            "desired_lrp.routes[0].value must be at most 131072 bytes",
        ),
    ];
    for (mutate, message) in cases {
        let mut lrp = desired();
        mutate(&mut lrp);
        assert_eq!(desire(lrp).as_deref(), Some(message));
    }
}

#[test]
fn repeated_fields_are_counted() {
    let mut lrp = desired();
    lrp.placement_tags = (0..10_000).map(|i| format!("tag-{i}")).collect();
    assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.placement_tags must have at most 64 elements"));
    let mut lrp = desired();
    let rule = pb::SecurityGroupRule {
        protocol: "tcp".into(),
        destinations: vec!["10.0.0.0/8".into()],
        ports: vec![443],
        ..Default::default()
    };
    lrp.egress_rules = vec![rule; 10_000];
    assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.egress_rules must have at most 1024 elements"));
    let mut lrp = desired();
    lrp.environment_variables =
        (0..2000).map(|i| pb::EnvironmentVariable { name: format!("V{i}"), value: "x".into() }).collect();
    assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.environment_variables must have at most 1024 elements"));
}

#[test]
fn an_env_name_cannot_hold_an_equals_sign() {
    let mut lrp = desired();
    lrp.environment_variables = vec![pb::EnvironmentVariable { name: "A=B".into(), value: "c".into() }];
    assert_eq!(desire(lrp).as_deref(), Some("desired_lrp.environment_variables[0].name must not contain '='"));
}

#[test]
fn a_parallel_action_cannot_fork_hundreds_of_processes() {
    let mut lrp = desired();
    let runs = |n: usize| (0..n).map(|_| run("/bin/sleep")).collect::<Vec<_>>();
    lrp.action = Some(pb::Action {
        action: Some(pb::action::Action::ParallelAction(pb::ParallelAction {
            actions: runs(200),
            ..Default::default()
        })),
    });
    assert_eq!(
        desire(lrp.clone()).as_deref(),
        Some(
            format!("desired_lrp.action.parallel_action.actions must have at most {MAX_ACTIONS_PER_LIST} elements")
                .as_str()
        )
    );
    lrp.action = Some(pb::Action {
        action: Some(pb::action::Action::ParallelAction(pb::ParallelAction {
            actions: runs(MAX_ACTIONS_PER_LIST),
            ..Default::default()
        })),
    });
    assert_eq!(desire(lrp), None);
}

/// `levels` nested serial actions around a run, encoded by hand so no recursion is needed.
fn nested_action_bytes(levels: usize) -> Vec<u8> {
    let mut action = run("/bin/app").encode_to_vec();
    for _ in 1..levels {
        // SerialAction { actions: [action] } is field 1; Action { serial_action } is field 8.
        let mut serial = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut serial);
        prost::encoding::encode_varint(action.len() as u64, &mut serial);
        serial.extend_from_slice(&action);
        action.clear();
        prost::encoding::encode_key(8, prost::encoding::WireType::LengthDelimited, &mut action);
        prost::encoding::encode_varint(serial.len() as u64, &mut action);
        action.extend_from_slice(&serial);
    }
    // DesireLRPRequest { desired_lrp: DesiredLRP { process_guid, action } }.
    let mut lrp = pb::DesiredLrp { process_guid: "deep".into(), ..Default::default() }.encode_to_vec();
    let action_field = 7; // DesiredLRP.action
    prost::encoding::encode_key(action_field, prost::encoding::WireType::LengthDelimited, &mut lrp);
    prost::encoding::encode_varint(action.len() as u64, &mut lrp);
    lrp.extend_from_slice(&action);
    let mut request = Vec::new();
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut request);
    prost::encoding::encode_varint(lrp.len() as u64, &mut request);
    request.extend_from_slice(&lrp);
    request
}

#[test]
fn the_action_depth_limit_is_reached_before_the_decoder_s() {
    let name = "diego.bbs.v1.DesireLRPRequest";
    let at_limit = nested_action_bytes(MAX_ACTION_DEPTH);
    assert_eq!(check_message(name, &at_limit), Ok(()));
    // The decoder accepts what the walk accepts.
    let decoded = api::DesireLrpRequest::decode(at_limit.as_slice()).expect("decodes");
    assert!(decoded.desired_lrp.is_some_and(|l| l.action.is_some()));
    let too_deep = nested_action_bytes(MAX_ACTION_DEPTH + 1);
    assert_eq!(
        check_message(name, &too_deep).map_err(|e| e.to_string()),
        Err(format!("desired_lrp.action must not nest more than {MAX_ACTION_DEPTH} actions deep"))
    );
    // A hostile tree far past prost's recursion limit is refused without recursing into it.
    let hostile = nested_action_bytes(10_000);
    assert!(check_message(name, &hostile).is_err());
    const { assert!(2 * MAX_ACTION_DEPTH + 4 < MAX_MESSAGE_DEPTH) };
}

#[test]
fn bytes_that_are_not_protobuf_are_refused_naming_where() {
    let name = "diego.bbs.v1.DesireLRPRequest";
    for garbage in [vec![0xff; 16], vec![0x0a, 0x05, 0x01], vec![0x00], vec![0x0b]] {
        let err = check_message(name, &garbage).expect_err("refused").to_string();
        assert!(err.contains("is not valid protobuf"), "{err}");
    }
    // A field of the wrong wire type: desired_lrp sent as a varint.
    assert_eq!(
        check_message(name, &[0x08, 0x01]).map_err(|e| e.to_string()),
        Err("desired_lrp is not valid protobuf (truncated or wrong wire type)".to_owned())
    );
}

#[test]
fn responses_and_unknown_messages_are_not_request_checked() {
    let response = api::DesiredLrPsResponse { desired_lrps: vec![desired(); 2000], ..Default::default() };
    assert_eq!(refusal(&response), None);
    assert_eq!(check_request("grpc.health.v1.HealthCheckRequest", &[0xff]), Ok(()));
}

#[test]
fn unknown_fields_are_skipped_but_still_well_formed() {
    let mut bytes = api::TasksRequest { domain: "apps".into(), ..Default::default() }.encode_to_vec();
    prost::encoding::encode_key(999, prost::encoding::WireType::Varint, &mut bytes);
    prost::encoding::encode_varint(7, &mut bytes);
    assert_eq!(check_message("diego.bbs.v1.TasksRequest", &bytes), Ok(()));
    prost::encoding::encode_key(998, prost::encoding::WireType::LengthDelimited, &mut bytes);
    prost::encoding::encode_varint(100, &mut bytes);
    assert!(check_message("diego.bbs.v1.TasksRequest", &bytes).is_err());
}

#[test]
fn packed_indices_are_counted_and_ranged() {
    let start = |indices: Vec<i32>| proto::pb::auctioneer::v1::RequestLrpAuctionsRequest {
        lrp_start_requests: vec![proto::pb::auctioneer::v1::LrpStartRequest {
            process_guid: "app".into(),
            indices,
            ..Default::default()
        }],
    };
    assert_eq!(refusal(&start((0..1000).collect())), None);
    assert_eq!(
        refusal(&start(vec![0, -1])).as_deref(),
        Some("lrp_start_requests[0].indices[1] must be between 0 and 999999")
    );
}

#[test]
fn batches_split_into_requests_every_server_accepts() {
    use proto::pb::auctioneer::v1 as auction;
    let start = |i: usize| auction::LrpStartRequest {
        process_guid: format!("app-{i}"),
        domain: "apps".into(),
        indices: (0..1000).collect(),
        placement_constraint: Some(pb::PlacementConstraint {
            rootfs: "preloaded:busybox".into(),
            placement_tags: (0..60).map(|t| format!("tag-{t}-{}", "x".repeat(200))).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let all: Vec<_> = (0..300).map(start).collect();
    let whole = auction::RequestLrpAuctionsRequest { lrp_start_requests: all.clone() };
    assert!(whole.encoded_len() > proto::limits::MAX_REQUEST_BYTES, "the unsplit batch is over the default limit");
    let chunks = proto::bounds::chunk_by_size(
        all,
        proto::bounds::CHUNK_BYTES,
        ("RequestLRPAuctionsRequest", "lrp_start_requests"),
    );
    assert!(chunks.len() > 1);
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 300);
    for chunk in chunks {
        let request = auction::RequestLrpAuctionsRequest { lrp_start_requests: chunk };
        assert!(request.encoded_len() <= proto::limits::MIN_REQUEST_BYTES_LIMIT, "within the smallest limit");
        assert_eq!(refusal(&request), None);
    }
    assert!(proto::bounds::chunk_by_size(Vec::<pb::Action>::new(), 10, ("SerialAction", "actions")).is_empty());
    let counted =
        proto::bounds::chunk_by_size(vec![pb::Action::default(); 250], usize::MAX, ("SerialAction", "actions"));
    assert_eq!(counted.iter().map(Vec::len).collect::<Vec<_>>(), vec![100, 100, 50]);
}
