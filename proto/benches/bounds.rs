//! What bounding a request costs next to decoding it: the codec walks every request's wire bytes
//! once ([`proto::bounds::check_message`]) before prost decodes them. Prints, for a few request
//! shapes, the time per request of the walk, of the decode, and their ratio, measured in one run.
//!
//!     cargo bench -p proto --bench bounds
//!
//! `BENCH_ITERATIONS` (default 20 000) sets the repetitions per shape.

#![allow(clippy::disallowed_types, missing_docs)] // a bench times with the wall clock on purpose

use std::hint::black_box;
use std::time::Instant;

use prost::Message;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

fn run(path: &str, env: usize) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: path.into(),
            args: vec!["-c".into(), "exec ./app --port $PORT".into()],
            env: (0..env)
                .map(|i| pb::EnvironmentVariable { name: format!("VAR_{i}"), value: "value".repeat(8) })
                .collect(),
            ..Default::default()
        })),
    }
}

/// A desired LRP as Cloud Foundry sends one: download, run, health check, routes, env.
fn desired() -> api::DesireLrpRequest {
    let setup = pb::Action {
        action: Some(pb::action::Action::SerialAction(pb::SerialAction {
            actions: (0..3)
                .map(|i| pb::Action {
                    action: Some(pb::action::Action::DownloadAction(pb::DownloadAction {
                        from: format!("http://file-server/v1/static/buildpack-{i}.zip"),
                        to: "/tmp/lifecycle".into(),
                        cache_key: format!("bp-{i}"),
                        ..Default::default()
                    })),
                })
                .collect(),
            ..Default::default()
        })),
    };
    let mut lrp = pb::DesiredLrp {
        process_guid: "6f1c2b8e-4a1d-4a47-9e0e-2f1bd7c4a0a1-5d2b0c".into(),
        domain: "cf-apps".into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances: 4,
        memory_mb: 1024,
        disk_mb: 1024,
        cpu_weight: 10,
        ports: vec![8080, 2222],
        log_guid: "6f1c2b8e-4a1d-4a47-9e0e-2f1bd7c4a0a1".into(),
        setup: Some(setup),
        action: Some(run("/tmp/lifecycle/launcher", 4)),
        monitor: Some(run("/tmp/lifecycle/healthcheck", 0)),
        environment_variables: (0..20)
            .map(|i| pb::EnvironmentVariable { name: format!("ENV_{i}"), value: "x".repeat(64) })
            .collect(),
        placement_tags: vec!["isolation-segment-a".into()],
        annotation: "x".repeat(512),
        ..Default::default()
    };
    lrp.routes.insert("cf-router".into(), br#"[{"hostnames":["app.example.com"],"port":8080}]"#.to_vec());
    api::DesireLrpRequest { desired_lrp: Some(lrp) }
}

fn time<F: FnMut()>(iterations: u32, mut f: F) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    started.elapsed().as_secs_f64() / f64::from(iterations)
}

fn bench<M: Message + prost::Name + Default>(label: &str, message: &M, iterations: u32) {
    let bytes = message.encode_to_vec();
    let name = M::full_name();
    assert_eq!(proto::bounds::check_message(&name, &bytes), Ok(()), "{label} must be within the limits");
    let walk = time(iterations, || {
        black_box(proto::bounds::check_message(black_box(&name), black_box(&bytes))).ok();
    });
    let decode = time(iterations, || {
        black_box(M::decode(black_box(bytes.as_slice())).ok());
    });
    println!(
        "{label:<28} {:>7} bytes  walk {:>8.2} us  decode {:>8.2} us  walk/decode {:.2}",
        bytes.len(),
        walk * 1e6,
        decode * 1e6,
        walk / decode
    );
}

fn main() {
    let iterations: u32 = std::env::var("BENCH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    bench("DesireLRP (typical CF app)", &desired(), iterations);
    bench("TasksRequest (a read)", &api::TasksRequest { domain: "cf-tasks".into(), ..Default::default() }, iterations);
    let start = api::StartActualLrpRequest {
        actual_lrp_key: Some(pb::ActualLrpKey { process_guid: "app".into(), index: 3, domain: "cf-apps".into() }),
        actual_lrp_instance_key: Some(pb::ActualLrpInstanceKey {
            instance_guid: "i-1".into(),
            cell_id: "cell-7".into(),
        }),
        actual_lrp_net_info: Some(pb::ActualLrpNetInfo {
            address: "10.0.0.7".into(),
            ports: vec![pb::PortMapping { container_port: 8080, host_port: 61001, ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    };
    bench("StartActualLRP (rep hot path)", &start, iterations);
    let auction = proto::pb::auctioneer::v1::RequestLrpAuctionsRequest {
        lrp_start_requests: (0..1000)
            .map(|i| proto::pb::auctioneer::v1::LrpStartRequest {
                process_guid: format!("app-{i}"),
                domain: "cf-apps".into(),
                indices: (0..4).collect(),
                ..Default::default()
            })
            .collect(),
    };
    bench("RequestLRPAuctions (1000)", &auction, iterations / 100);
}
