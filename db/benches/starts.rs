//! StartActualLRPs' store side: the wall time of one `Store::start_actual_lrps` call of
//! `BENCH_START_BATCH` (250) starts, each turning an UNCLAIMED ordinary row RUNNING (one changed
//! row per start), as a cell reports its instances while benchmark-bbs seeds.
//!
//! For each backend (SQLite always; PostgreSQL / MySQL when `DIEGO_TEST_POSTGRES_URL` /
//! `DIEGO_TEST_MYSQL_URL` is set) it creates a throw-away database with `BENCH_START_ROWS`
//! (50,000) UNCLAIMED rows, then makes `BENCH_START_CALLS` (20) calls one after another, each
//! on rows no earlier call touched, and prints the median, fastest and slowest call. One call at
//! a time: this measures the statements of one batch, not the database under load.
//!
//! Run: `cargo bench -p db --bench starts`.

#![allow(missing_docs, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use db::Backend;
use db::sql::actual_lrps::StartInfo;
use db::testing::TestDb;
use proto::models::{
    ActualLrpInstanceKey, ActualLrpKey, CellId, DomainName, InstanceGuid, NetInfo, PortMapping, PreferredAddress,
    ProcessGuid,
};

/// Same instant the conformance suite uses.
const NOW_NS: i64 = 1_767_225_600_000_000_000;

/// Instances per process guid of the seed.
const PER_GUID: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn start_info(n: usize) -> StartInfo {
    StartInfo {
        net_info: NetInfo {
            address: format!("10.0.{}.{}", n / 250 % 250, n % 250),
            ports: vec![PortMapping { container_port: 8080, host_port: 61000, ..Default::default() }],
            instance_address: "10.255.0.7".into(),
            preferred_address: PreferredAddress::Host,
            instance_ipv6_address: String::new(),
        },
        internal_routes: Vec::new(),
        metric_tags: BTreeMap::from([("app_name".to_owned(), "bench".to_owned())]),
        routable: true,
        availability_zone: "z1".into(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let batch = env_usize("BENCH_START_BATCH", 250).max(1);
    let calls = env_usize("BENCH_START_CALLS", 20).max(1);
    let rows = env_usize("BENCH_START_ROWS", 50_000).max(batch * calls);
    println!("start_actual_lrps: {calls} calls of {batch} starts, one at a time, over {rows} seeded rows");
    println!("{:<9} {:>12} {:>12} {:>12} {:>14}", "backend", "median", "fastest", "slowest", "starts/s");
    for backend in Backend::ALL {
        let Some(db) = TestDb::create(backend).await else {
            println!("{:<9} skipped: its URL is not set", backend.name());
            continue;
        };
        let domain = DomainName::parse("bench").unwrap();
        let indices: Vec<i32> = (0..PER_GUID as i32).collect();
        for g in 0..rows.div_ceil(PER_GUID) {
            let guid = ProcessGuid::parse(format!("bench-{g:05}")).unwrap();
            db.store.create_unclaimed_actual_lrps(&guid, &domain, &indices, NOW_NS).await.expect("seed");
        }
        let mut times: Vec<Duration> = Vec::with_capacity(calls);
        for call in 0..calls {
            let cell = CellId::parse(format!("cell-{call}")).unwrap();
            let starts: Vec<_> = (call * batch..(call + 1) * batch)
                .map(|n| {
                    let key = ActualLrpKey {
                        process_guid: ProcessGuid::parse(format!("bench-{:05}", n / PER_GUID)).unwrap(),
                        index: (n % PER_GUID) as i32,
                        domain: domain.clone(),
                    };
                    let instance = ActualLrpInstanceKey {
                        instance_guid: InstanceGuid::parse(format!("i-{n}")).unwrap(),
                        cell_id: cell.clone(),
                    };
                    (key, instance, start_info(n))
                })
                .collect();
            let began = Instant::now();
            let outcomes = db.store.start_actual_lrps(&starts, NOW_NS + 1).await.expect("start batch");
            times.push(began.elapsed());
            assert!(
                outcomes.iter().all(|o| o.as_ref().is_ok_and(|c| c.as_ref().is_some_and(|c| c.changed()))),
                "every start writes"
            );
        }
        times.sort_unstable();
        let median = times[times.len() / 2];
        println!(
            "{:<9} {:>9.1} ms {:>9.1} ms {:>9.1} ms {:>14.0}",
            backend.name(),
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            batch as f64 / median.as_secs_f64(),
        );
    }
}
