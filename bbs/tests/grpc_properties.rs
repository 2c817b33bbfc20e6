//! A property test of the wire contract: a live leader BBS on each backend is driven with
//! generated requests, valid and hostile (NUL and control characters, megabyte strings,
//! extreme numbers, duplicate ports, huge lists, bytes that are not protobuf). After every
//! request: the server still runs and leads, the status is one the contract allows for that
//! call (RESOURCE_EXHAUSTED exactly when the message is over the server's size limit), and a
//! refusal left the store exactly as it was.
//!
//! `DIEGO_PROPTEST_CASES` sets the case count per backend (default 40, for CI); the long runs
//! reported in the closing notes use 100 000.

mod common;

use std::time::Duration;

use common::wire::{Server, raw_call};
use db::Backend;
use db::testing::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::models::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

/// The BBS's request size limit in these runs: one of the generated megabyte strings in a
/// request is within it (and reaches the field checks), two are over it.
const MAX_REQUEST_BYTES: usize = 2 * proto::limits::MIN_REQUEST_BYTES_LIMIT;

/// Strings a client might send: plausible names, empties, any Unicode (controls and NUL
/// included), and sizes around and far past the limits.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,2}",
        1 => Just(String::new()),
        2 => any::<String>(),
        1 => Just("\u{0}".to_owned()),
        1 => "[a-z]{0,3}[\\x00-\\x1f][a-z]{0,3}",
        1 => (0_usize..4).prop_map(|k| "g".repeat([4096, 4097, 70_000, 1 << 20][k])),
    ]
}

fn number() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0_i32..4, 1 => Just(-1), 1 => Just(i32::MAX), 1 => Just(i32::MIN), 1 => any::<i32>()]
}

fn port() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 1_u32..10, 1 => Just(0_u32), 1 => Just(65_536_u32), 1 => any::<u32>()]
}

fn env() -> impl Strategy<Value = Vec<pb::EnvironmentVariable>> {
    prop::collection::vec((text(), text()).prop_map(|(name, value)| pb::EnvironmentVariable { name, value }), 0..3)
}

fn action() -> impl Strategy<Value = Option<pb::Action>> {
    let run = (text(), prop::collection::vec(text(), 0..3), env()).prop_map(|(path, args, env)| pb::Action {
        action: Some(pb::action::Action::RunAction(pb::RunAction { path, args, env, ..Default::default() })),
    });
    let leaf = prop_oneof![4 => run.prop_map(Some), 1 => Just(None), 1 => Just(Some(pb::Action { action: None }))];
    leaf.prop_recursive(3, 12, 4, |inner| {
        (prop::collection::vec(inner, 0..4), any::<bool>(), number()).prop_map(|(children, parallel, timeout)| {
            let actions: Vec<pb::Action> = children.into_iter().flatten().collect();
            let node = if parallel {
                pb::action::Action::ParallelAction(pb::ParallelAction { actions, ..Default::default() })
            } else if timeout == 3 {
                pb::action::Action::TimeoutAction(Box::new(pb::TimeoutAction {
                    action: actions.into_iter().next().map(Box::new),
                    timeout_ms: i64::from(timeout) - 5,
                    ..Default::default()
                }))
            } else {
                pb::action::Action::SerialAction(pb::SerialAction { actions, ..Default::default() })
            };
            Some(pb::Action { action: Some(node) })
        })
    })
}

fn desired_lrp() -> impl Strategy<Value = pb::DesiredLrp> {
    (
        (text(), text(), prop_oneof![3 => Just("preloaded:busybox".to_owned()), 1 => text()]),
        (number(), number(), number(), number()),
        (prop::collection::vec(port(), 0..4), prop::collection::vec(text(), 0..3), env(), action()),
    )
        .prop_map(|((guid, domain, rootfs), (instances, memory, disk, cpu), (ports, tags, env, action))| {
            pb::DesiredLrp {
                process_guid: guid,
                domain,
                rootfs,
                instances,
                memory_mb: memory,
                disk_mb: disk,
                cpu_weight: cpu as u32,
                ports,
                placement_tags: tags,
                environment_variables: env,
                action,
                ..Default::default()
            }
        })
}

/// One request.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // generated test inputs, built and dropped one at a time
enum Op {
    Desire(pb::DesiredLrp),
    Scale(String, i32),
    Remove(String),
    DesireTask(String, String, Option<pb::Action>, i32),
    Tasks(String, String),
    DesiredLrps(String, Vec<String>),
    ActualLrps(String, String, Option<i32>),
    UpsertDomain(String, u32),
    Garbage(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => desired_lrp().prop_map(Op::Desire),
        1 => (text(), number()).prop_map(|(g, n)| Op::Scale(g, n)),
        1 => text().prop_map(Op::Remove),
        2 => (text(), text(), action(), number()).prop_map(|(g, d, a, m)| Op::DesireTask(g, d, a, m)),
        1 => (text(), text()).prop_map(|(d, c)| Op::Tasks(d, c)),
        1 => (text(), prop::collection::vec(text(), 0..3)).prop_map(|(d, g)| Op::DesiredLrps(d, g)),
        1 => (text(), text(), prop::option::of(number())).prop_map(|(d, g, i)| Op::ActualLrps(d, g, i)),
        1 => (text(), any::<u32>()).prop_map(|(d, t)| Op::UpsertDomain(d, t)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Op::Garbage),
    ]
}

/// What the store holds, as a client sees it.
async fn snapshot(client: &mut BbsClient<Channel>) -> Vec<String> {
    let mut out = Vec::new();
    let desired = client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    out.extend(desired.desired_lrps.iter().map(|d| format!("lrp {} {} {}", d.process_guid, d.instances, d.domain)));
    let actual = client.actual_lr_ps(api::ActualLrPsRequest::default()).await.unwrap().into_inner();
    out.push(format!("actual {}", actual.actual_lrps.len()));
    let tasks = client.tasks(api::TasksRequest::default()).await.unwrap().into_inner();
    out.extend(tasks.tasks.iter().map(|t| format!("task {} {}", t.task_guid, t.state)));
    out.extend(client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains);
    out.sort();
    out
}

/// What the server answered one request.
struct Answer {
    code: Code,
    /// Whether the call could have written.
    writes: bool,
    /// The size of the request message on the wire, without its frame prefix.
    bytes: usize,
}

/// Sends `op`.
async fn send(client: &mut BbsClient<Channel>, address: &str, op: Op) -> Answer {
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let (code, writes, bytes) = match op {
        Op::Desire(lrp) => {
            let request = api::DesireLrpRequest { desired_lrp: Some(lrp) };
            let bytes = request.encoded_len();
            (code(client.desire_lrp(request).await.map(drop)), true, bytes)
        }
        Op::Scale(guid, instances) => {
            let update = pb::DesiredLrpUpdate { instances: Some(instances), ..Default::default() };
            let request = api::UpdateDesiredLrpRequest { process_guid: guid, update: Some(update) };
            let bytes = request.encoded_len();
            (code(client.update_desired_lrp(request).await.map(drop)), true, bytes)
        }
        Op::Remove(guid) => {
            let request = api::RemoveDesiredLrpRequest { process_guid: guid };
            let bytes = request.encoded_len();
            (code(client.remove_desired_lrp(request).await.map(drop)), true, bytes)
        }
        Op::DesireTask(guid, domain, action, memory) => {
            let definition = pb::TaskDefinition {
                root_fs: "preloaded:busybox".into(),
                action,
                memory_mb: memory,
                ..Default::default()
            };
            let request = api::DesireTaskRequest { task_guid: guid, domain, task_definition: Some(definition) };
            let bytes = request.encoded_len();
            (code(client.desire_task(request).await.map(drop)), true, bytes)
        }
        Op::Tasks(domain, cell_id) => {
            let request = api::TasksRequest { domain, cell_id, ..Default::default() };
            let bytes = request.encoded_len();
            (code(client.tasks(request).await.map(drop)), false, bytes)
        }
        Op::DesiredLrps(domain, process_guids) => {
            let request = api::DesiredLrPsRequest { domain, process_guids, ..Default::default() };
            let bytes = request.encoded_len();
            (code(client.desired_lr_ps(request).await.map(drop)), false, bytes)
        }
        Op::ActualLrps(domain, process_guid, index) => {
            let request = api::ActualLrPsRequest { domain, process_guid, index, ..Default::default() };
            let bytes = request.encoded_len();
            (code(client.actual_lr_ps(request).await.map(drop)), false, bytes)
        }
        Op::UpsertDomain(domain, ttl) => {
            let request = api::UpsertDomainRequest { domain, ttl };
            let bytes = request.encoded_len();
            (code(client.upsert_domain(request).await.map(drop)), true, bytes)
        }
        Op::Garbage(bytes) => {
            let len = bytes.len();
            (code(raw_call(address, "/diego.bbs.v1.Bbs/DesireLRP", bytes).await), true, len)
        }
    };
    Answer { code, writes, bytes }
}

/// Whether the contract allows `answer` to `op`: a message over the server's size limit is
/// RESOURCE_EXHAUSTED whatever the call; one within it is a success, a refusal of the input, or
/// one of the record-state answers of that call.
fn allowed(op: &Op, answer: &Answer) -> bool {
    if answer.bytes > MAX_REQUEST_BYTES {
        return answer.code == Code::ResourceExhausted;
    }
    let state_answers: &[Code] = match op {
        Op::Desire(_) | Op::DesireTask(..) | Op::Garbage(_) => &[Code::AlreadyExists],
        Op::Scale(..) | Op::Remove(_) => &[Code::NotFound],
        _ => &[],
    };
    matches!(answer.code, Code::Ok | Code::InvalidArgument) || state_answers.contains(&answer.code)
}

fn cases() -> u32 {
    std::env::var("DIEGO_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

fn run_properties(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(db) = runtime.block_on(TestDb::create(backend)) else { return };
    // Few instances per LRP keep a long run fast; the limit itself is one of the properties.
    let server = runtime.block_on(Server::start(&db.url, |c| {
        c.max_lrp_instances = 8;
        c.max_request_bytes = MAX_REQUEST_BYTES;
        c.lock_ttl = Duration::from_secs(15);
        c.lock_retry_interval = Duration::from_secs(1);
    }));
    let client = runtime.block_on(server.leader_client());
    // The store as it was after the previous case: a refusal must leave it so.
    let last = std::sync::Mutex::new(runtime.block_on(snapshot(&mut client.clone())));
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let started = tokio::time::Instant::now();
    let result = runner.run(&op(), |op| {
        // Tonic clients are cheap handles on one channel.
        let mut client = client.clone();
        runtime.block_on(async {
            let answer = send(&mut client, &server.address, op.clone()).await;
            let code = answer.code;
            prop_assert!(server.is_running(), "the server exited after {op:?}");
            prop_assert!(allowed(&op, &answer), "{code:?} is not in the contract for {} bytes of {op:?}", answer.bytes);
            if code == Code::Ok && !answer.writes {
                return Ok(());
            }
            let after = snapshot(&mut client).await;
            let mut last = last.lock().unwrap();
            if code != Code::Ok {
                prop_assert_eq!(&after, &*last, "{:?} answered {:?} but changed the store", op, code);
            }
            *last = after;
            Ok::<(), TestCaseError>(())
        })
    });
    eprintln!("{backend:?}: {} cases in {:?}", cases(), started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
    runtime.block_on(server.stop());
    drop(db);
}

#[test]
fn sqlite_wire_contract_holds_for_generated_requests() {
    run_properties(Backend::Sqlite);
}

#[test]
fn postgres_wire_contract_holds_for_generated_requests() {
    run_properties(Backend::Postgres);
}

#[test]
fn mysql_wire_contract_holds_for_generated_requests() {
    run_properties(Backend::Mysql);
}
