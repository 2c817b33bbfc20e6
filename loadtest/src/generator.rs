//! The simulated world, generated from the seed: desired LRP records as heavy as Diego's
//! benchmark generator made them, the cells' presences, and where each LRP's single instance
//! runs. Everything here is a pure function of the seed, so two runs with the same seed desire
//! the same records on the same cells and make the same claim decisions.

use std::collections::HashMap;

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// The domain every benchmark LRP lives in (Diego's `benchmark-bbs`).
pub const DOMAIN: &str = "benchmark-bbs";

/// Diego's process guid pattern `BENCHMARK-BBS-GUID-%06d`.
pub fn process_guid(i: usize) -> String {
    format!("BENCHMARK-BBS-GUID-{i:06}")
}

/// The simulated cell `c` (`cell-0` .. `cell-(N-1)`, as Diego names them).
pub fn cell_id(c: usize) -> String {
    format!("cell-{c}")
}

/// An independent, reproducible random stream for one purpose of one run: `seed` mixed with
/// `parts` (e.g. trial and cell) through SplitMix64, so the stream does not depend on the order
/// in which concurrent tasks ask for it.
pub fn stream(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    let mut state = seed ^ 0x5EED_BB55_D1E6_0000;
    for part in parts {
        state = splitmix(state ^ splitmix(*part));
    }
    ChaCha8Rng::seed_from_u64(state)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where every LRP's instance runs, chosen from the seed: one cell per LRP, uniformly at
/// random (Diego's seeding starts each LRP's index 0 "on a random cell").
#[derive(Debug, Clone)]
pub struct Placement {
    /// `cell_of[i]` is the cell index of LRP `i`.
    pub cell_of: Vec<usize>,
    /// `lrps_of[c]` lists the LRPs on cell `c`, ascending.
    pub lrps_of: Vec<Vec<usize>>,
    /// The instance guid of LRP `i`'s instance.
    pub instance_guid: Vec<String>,
}

impl Placement {
    /// Places `desired` LRPs on `cells` cells.
    pub fn new(seed: u64, cells: usize, desired: usize) -> Self {
        let mut rng = stream(seed, &[1]);
        let mut cell_of = Vec::with_capacity(desired);
        let mut lrps_of = vec![Vec::new(); cells];
        let mut instance_guid = Vec::with_capacity(desired);
        for i in 0..desired {
            let c = rng.random_range(0..cells.max(1));
            cell_of.push(c);
            lrps_of[c].push(i);
            let bytes: [u8; 16] = rng.random();
            instance_guid.push(uuid::Builder::from_random_bytes(bytes).into_uuid().to_string());
        }
        Self { cell_of, lrps_of, instance_guid }
    }

    /// How many LRPs each cell runs, by cell id.
    pub fn counts_by_cell(&self) -> HashMap<String, usize> {
        self.lrps_of.iter().enumerate().map(|(c, lrps)| (cell_id(c), lrps.len())).collect()
    }
}

/// The cell presence of simulated cell `c` (Diego's: 1000 MB / 2000 MB / 300 containers, z1).
pub fn cell_presence(c: usize) -> proto::models::CellPresence {
    proto::models::CellPresence {
        cell_id: proto::models::CellId::parse(cell_id(c)).unwrap_or_else(|e| unreachable!("cell ids are valid: {e}")),
        rep_address: format!("{}:1801", cell_address(c)),
        rep_url: format!("http://{}:1801", cell_address(c)),
        zone: "z1".into(),
        capacity: proto::models::CellCapacity { memory_mb: 1000, disk_mb: 2000, containers: 300 },
        rootfs_providers: vec![proto::models::RootfsProvider {
            name: "preloaded".into(),
            properties: vec!["cflinuxfs4".into()],
        }],
        placement_tags: vec![],
        optional_placement_tags: vec![],
        annotations: Default::default(),
    }
}

/// The host address of cell `c` (a private IP, unique per cell).
pub fn cell_address(c: usize) -> String {
    format!("10.{}.{}.{}", 1 + c / 65_536, (c / 256) % 256, c % 256)
}

/// What the rep of LRP `i`'s cell reports when the instance runs. A pure function of `i` and
/// its cell, so the periodic re-assert of a RUNNING instance is a no-op in the BBS.
pub fn start_request(i: usize, cell: usize, instance_guid: &str) -> api::StartActualLrpRequest {
    // Two ports per instance from Diego's host port range: 61000-64999, below 65535.
    let host_port = 61_000 + (i % 2_000) as u32 * 2;
    api::StartActualLrpRequest {
        actual_lrp_key: Some(actual_key(i)),
        actual_lrp_instance_key: Some(instance_key(cell, instance_guid)),
        actual_lrp_net_info: Some(pb::ActualLrpNetInfo {
            address: cell_address(cell),
            ports: vec![
                pb::PortMapping { container_port: 8080, host_port, ..Default::default() },
                pb::PortMapping { container_port: 2222, host_port: host_port + 1, ..Default::default() },
            ],
            instance_address: format!("10.255.{}.{}", (i / 256) % 256, i % 256),
            preferred_address: pb::actual_lrp_net_info::PreferredAddress::Host as i32,
            ..Default::default()
        }),
        availability_zone: "z1".into(),
        ..Default::default()
    }
}

/// The claim a rep makes for LRP `i`'s instance.
pub fn claim_request(i: usize, cell: usize, instance_guid: &str) -> api::ClaimActualLrpRequest {
    api::ClaimActualLrpRequest {
        process_guid: process_guid(i),
        index: 0,
        actual_lrp_instance_key: Some(instance_key(cell, instance_guid)),
    }
}

/// The key of LRP `i`'s single instance.
pub fn actual_key(i: usize) -> pb::ActualLrpKey {
    pb::ActualLrpKey { process_guid: process_guid(i), index: 0, domain: DOMAIN.into() }
}

fn instance_key(cell: usize, instance_guid: &str) -> pb::ActualLrpInstanceKey {
    pb::ActualLrpInstanceKey { instance_guid: instance_guid.into(), cell_id: cell_id(cell) }
}

/// A desired LRP as heavy as Diego's benchmark generator's: setup (download + cached
/// dependencies), action and monitor trees, two route providers (`cf-router` and `diego-ssh`,
/// whose JSON carries a private key), egress rules, environment, health checks, 1 GB memory and
/// 512 MB disk, one instance. The contents vary with `i` and the seed.
pub fn desired_lrp(seed: u64, i: usize) -> pb::DesiredLrp {
    let mut rng = stream(seed, &[2, i as u64]);
    let guid = process_guid(i);
    let app = format!("app-{i:06}");
    let host = format!("{app}.apps.benchmark.example.com");
    let router =
        format!(r#"[{{"hostnames":["{host}"],"port":8080,"route_service_url":null,"isolation_segment":null}}]"#);
    let ssh = format!(
        r#"{{"container_port":2222,"host_fingerprint":"{}","private_key":"{}","user":"vcap"}}"#,
        fingerprint(&mut rng),
        private_key(&mut rng)
    );
    let mut routes = HashMap::new();
    routes.insert("cf-router".to_owned(), router.into_bytes());
    routes.insert("diego-ssh".to_owned(), ssh.into_bytes());
    let env = |name: &str, value: String| pb::EnvironmentVariable { name: name.into(), value };
    let environment = vec![
        env("LANG", "en_US.UTF-8".into()),
        env("VCAP_APPLICATION", vcap_application(&app, &host, i)),
        env("VCAP_SERVICES", r#"{"p-mysql":[{"name":"db","credentials":{"uri":"mysql://u:p@db:3306/app"}}]}"#.into()),
        env("MEMORY_LIMIT", "1024m".into()),
        env("CF_INSTANCE_INDEX", "0".into()),
        env("SECRET_TOKEN", hex(&mut rng, 32)),
    ];
    let download = |artifact: &str, from: String, to: &str| pb::Action {
        action: Some(pb::action::Action::DownloadAction(pb::DownloadAction {
            artifact: artifact.into(),
            from,
            to: to.into(),
            cache_key: format!("{artifact}-{}", hex(&mut stream(seed, &[3, i as u64]), 8)),
            user: "vcap".into(),
            checksum_algorithm: "sha256".into(),
            checksum_value: hex(&mut stream(seed, &[4, i as u64]), 32),
            ..Default::default()
        })),
    };
    let setup = serial(vec![
        download(
            "droplet",
            format!("http://cloud-controller-ng.service.cf.internal:9022/droplets/{app}/download"),
            ".",
        ),
        download(
            "lifecycle",
            "http://file-server.service.cf.internal:8080/v1/static/buildpack_app_lifecycle.tgz".into(),
            "/tmp/lifecycle",
        ),
    ]);
    let run = pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction {
            path: "/tmp/lifecycle/launcher".into(),
            args: vec!["app".into(), "bundle exec rackup config.ru -p $PORT".into(), "{}".into()],
            dir: "/home/vcap/app".into(),
            env: vec![env("PORT", "8080".into())],
            resource_limits: Some(pb::ResourceLimits { nofile: Some(16_384), nproc: None }),
            user: "vcap".into(),
            log_source: "APP/PROC/WEB".into(),
            ..Default::default()
        })),
    };
    let action = codependent(vec![
        run,
        pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction {
                path: "/tmp/lifecycle/diego-sshd".into(),
                args: vec!["-address=0.0.0.0:2222".into(), "-inheritDaemonEnv".into(), "-logLevel=fatal".into()],
                user: "vcap".into(),
                log_source: "SSHD".into(),
                ..Default::default()
            })),
        },
    ]);
    let monitor = pb::Action {
        action: Some(pb::action::Action::TimeoutAction(Box::new(pb::TimeoutAction {
            action: Some(Box::new(pb::Action {
                action: Some(pb::action::Action::RunAction(pb::RunAction {
                    path: "/tmp/lifecycle/healthcheck".into(),
                    args: vec!["-port=8080".into()],
                    user: "vcap".into(),
                    log_source: "HEALTH".into(),
                    suppress_log_output: true,
                    ..Default::default()
                })),
            })),
            timeout_ms: 30_000,
            log_source: "HEALTH".into(),
        }))),
    };
    let egress = |protocol: &str, destination: &str, ports: Vec<u32>| pb::SecurityGroupRule {
        protocol: protocol.into(),
        destinations: vec![destination.into()],
        ports,
        ..Default::default()
    };
    pb::DesiredLrp {
        process_guid: guid,
        domain: DOMAIN.into(),
        rootfs: "preloaded:cflinuxfs4".into(),
        instances: 1,
        environment_variables: environment,
        setup: Some(setup),
        action: Some(action),
        start_timeout_ms: 60_000,
        monitor: Some(monitor),
        disk_mb: 512,
        memory_mb: 1024,
        cpu_weight: 42,
        ports: vec![8080, 2222],
        routes,
        log_source: "CELL".into(),
        log_guid: format!("log-{app}"),
        metrics_guid: format!("metrics-{app}"),
        annotation: format!("{}-{}", hex(&mut rng, 16), hex(&mut rng, 16)),
        egress_rules: vec![
            egress("tcp", "10.0.0.0-10.255.255.255", vec![3306, 5432]),
            egress("udp", "0.0.0.0/0", vec![53]),
            egress("all", "0.0.0.0-9.255.255.255", vec![]),
        ],
        legacy_download_user: "vcap".into(),
        trusted_system_certificates_path: "/etc/cf-system-certificates".into(),
        check_definition: Some(port_8080_check()),
        network: Some(pb::Network {
            properties: [("policy_group_id".to_owned(), app.clone()), ("app_id".to_owned(), app)].into(),
        }),
        ..Default::default()
    }
}

/// The health check of every generated app: TCP on port 8080, one-second connect timeout.
pub fn port_8080_check() -> pb::CheckDefinition {
    pb::CheckDefinition {
        checks: vec![pb::Check {
            tcp_check: Some(pb::TcpCheck { port: 8080, connect_timeout_ms: 1_000, interval_ms: 0 }),
            http_check: None,
        }],
        log_source: "HEALTH".into(),
        readiness_checks: vec![],
    }
}

fn serial(actions: Vec<pb::Action>) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::SerialAction(pb::SerialAction { actions, log_source: String::new() })),
    }
}

fn codependent(actions: Vec<pb::Action>) -> pb::Action {
    pb::Action {
        action: Some(pb::action::Action::CodependentAction(pb::CodependentAction {
            actions,
            log_source: String::new(),
        })),
    }
}

fn vcap_application(app: &str, host: &str, i: usize) -> String {
    format!(
        r#"{{"application_id":"{app}","application_name":"{app}","application_uris":["{host}"],"cf_api":"https://api.benchmark.example.com","limits":{{"fds":16384,"mem":1024,"disk":512}},"organization_name":"org-{}","space_name":"space-{}","process_type":"web"}}"#,
        i % 97,
        i % 13
    )
}

fn hex(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

fn fingerprint(rng: &mut ChaCha8Rng) -> String {
    (0..16).map(|_| format!("{:02x}", rng.random::<u8>())).collect::<Vec<_>>().join(":")
}

/// A PEM-shaped private key (random base64, as long as the 1024-bit RSA key in Diego's
/// benchmark records); escaped newlines, as it appears inside the route JSON.
fn private_key(rng: &mut ChaCha8Rng) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let body: String = (0..812).map(|_| B64[rng.random_range(0..64)] as char).collect();
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN RSA PRIVATE KEY-----\\n{}\\n-----END RSA PRIVATE KEY-----\\n", lines.join("\\n"))
}

/// The desire request of LRP `i`.
pub fn desire_request(seed: u64, i: usize) -> api::DesireLrpRequest {
    api::DesireLrpRequest { desired_lrp: Some(desired_lrp(seed, i)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_valid_heavy_and_reproducible() {
        let lrp = desired_lrp(7, 42);
        assert_eq!(lrp, desired_lrp(7, 42));
        assert_ne!(lrp, desired_lrp(8, 42));
        let model = proto::models::DesiredLrp::try_from(lrp.clone()).expect("the record is valid");
        assert_eq!(model.scheduling.process_guid.as_str(), "BENCHMARK-BBS-GUID-000042");
        let size = prost::Message::encoded_len(&lrp);
        assert!(size > 2_500, "a realistic record is a few KB, got {size}");
        let routes: usize = lrp.routes.values().map(Vec::len).sum();
        assert!(routes > 900, "the diego-ssh route carries a key, got {routes} bytes");
        for (_, value) in lrp.routes {
            serde_json::from_slice::<serde_json::Value>(&value).expect("routes are JSON");
        }
    }

    #[test]
    fn placement_is_reproducible_and_complete() {
        let a = Placement::new(3, 10, 1_000);
        let b = Placement::new(3, 10, 1_000);
        assert_eq!(a.cell_of, b.cell_of);
        assert_eq!(a.instance_guid, b.instance_guid);
        assert_eq!(a.lrps_of.iter().map(Vec::len).sum::<usize>(), 1_000);
        assert!(a.lrps_of.iter().all(|l| !l.is_empty()));
        assert_ne!(a.cell_of, Placement::new(4, 10, 1_000).cell_of);
    }

    #[test]
    fn presences_and_starts_are_valid() {
        let presence = cell_presence(300);
        assert_eq!(presence.cell_id.as_str(), "cell-300");
        assert_eq!(cell_address(300), "10.1.1.44");
        let start = start_request(5, 300, "ig");
        assert_eq!(start.actual_lrp_net_info.unwrap().address, "10.1.1.44");
    }

    #[test]
    fn every_start_request_passes_the_wire_bounds() {
        let name = <api::StartActualLrpRequest as prost::Name>::full_name();
        for i in 0..10_000 {
            let start = start_request(i, i % 50, "instance-guid");
            let bytes = prost::Message::encode_to_vec(&start);
            if let Err(e) = proto::bounds::check_request(&name, &bytes) {
                panic!("LRP {i}'s start is refused: {e}");
            }
        }
    }
}
