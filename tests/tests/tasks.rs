//! End to end, on every backend: tasks return results and can be cancelled (D28, D29), completion
//! callbacks are retried and resolve the task (D30), a pending task with no cell expires (D31), an
//! unplaceable task fails with the reason (A7), and the CRUD rules hold through a whole cluster
//! (D32).
//!
//! Timings are shortened by config (convergence every 1 s, stale unclaimed after 2 s, crash backoff
//! from 1 s, presence TTL 3 s); each test names the checklist items of docs/reference/auction-rep.md §5
//! it covers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::fixtures::plain_lrp;
use tests::scratch::{Scratch, process_gone};
use tests::steps::{PATIENCE, desire, desire_task, diego_error, wait_task};
use tests::{fixtures, probe};

tests::on_every_backend!(
    d28_d29_tasks_return_results_and_cancel_stops_them,
    d31_a_pending_task_with_no_cell_expires,
    a7_an_oversized_task_fails_with_the_placement_reason,
    d30_a_completion_callback_is_retried_past_503s_then_resolves_and_deletes_the_task,
    d32_crud_rules_hold_through_a_whole_cluster,
);

async fn d28_d29_tasks_return_results_and_cancel_stops_them(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut client = cluster.bbs();
    let mut definition = fixtures::task("echo -n \"answer $((6*7))\" > result.txt");
    definition.result_file = "result.txt".into();
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "compute".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let done = eventually("the task to complete", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "compute").await.filter(|t| t.state == pb::task::State::Completed as i32) }
    })
    .await;
    assert!(!done.failed, "{}", done.failure_reason);
    assert_eq!(done.result, "answer 42");

    let scratch = Scratch::new();
    let mut forever = fixtures::task("echo $$ > \"$SCRATCH/pid\"; exec sleep 1000");
    forever.environment_variables = scratch.env();
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(forever),
            task_guid: "forever".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    eventually("the long task to run", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "forever").await.filter(|t| t.state == pb::task::State::Running as i32) }
    })
    .await;
    client.cancel_task(api::TaskGuidRequest { task_guid: "forever".into() }).await.unwrap();
    let cancelled = probe::task(&client, "forever").await.unwrap();
    assert_eq!(cancelled.state, pb::task::State::Completed as i32);
    assert!(cancelled.failed);
    assert_eq!(cancelled.failure_reason, "task was cancelled");
    let status = client.cancel_task(api::TaskGuidRequest { task_guid: "forever".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "cancelling a completed task errors");
    // And the process really stops.
    let pid = scratch.pid("pid").expect("the task wrote its pid");
    eventually("the cancelled task's process to stop", PATIENCE, || async move { process_gone(pid).then_some(()) })
        .await;
    cluster.shutdown().await;
}

async fn d31_a_pending_task_with_no_cell_expires(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 0, RuntimeKind::Sim, |spec| {
        spec.bbs = Box::new(|c| c.expire_pending_task = Duration::from_secs(2));
    })
    .await
    else {
        return;
    };
    let mut client = cluster.bbs();
    client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("true")),
            task_guid: "lonely".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let task = eventually("the pending task to fail", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "lonely").await.filter(|t| t.state == pb::task::State::Completed as i32) }
    })
    .await;
    assert!(task.failed);
    assert!(
        task.failure_reason.contains("insufficient resources")
            || task.failure_reason.contains("not started within time limit")
            || task.failure_reason.contains("unable to communicate"),
        "{}",
        task.failure_reason
    );
    cluster.shutdown().await;
}

async fn a7_an_oversized_task_fails_with_the_placement_reason(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Sim, |_| {}).await else { return };
    let mut definition = fixtures::task("true");
    definition.memory_mb = 1_000_000;
    cluster
        .bbs()
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "big".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    // Rejected, re-kicked by convergence, rejected again until the retries run out.
    let task = wait_task(&cluster, "big", pb::task::State::Completed).await;
    assert!(task.failed);
    assert!(task.failure_reason.contains("insufficient resources"), "{}", task.failure_reason);
    // A stack no cell offers fails the same way, with the compatibility reason.
    let mut alien = fixtures::task("true");
    alien.root_fs = "preloaded:no-such-stack".into();
    cluster
        .bbs()
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(alien),
            task_guid: "alien".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let task = wait_task(&cluster, "alien", pb::task::State::Completed).await;
    assert!(task.failed);
    assert!(task.failure_reason.contains("found no compatible cell"), "{}", task.failure_reason);
    cluster.shutdown().await;
}

/// A callback receiver on 127.0.0.1:0 that records the bodies it receives and answers the
/// first `unavailable` requests with 503, the rest with 200.
async fn callback_server(unavailable: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let count = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(String::from_utf8_lossy(&body).into_owned());
                            seen.len()
                        };
                        let mut response =
                            hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from("ok")));
                        if count <= unavailable {
                            *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, bodies)
}

async fn d30_a_completion_callback_is_retried_past_503s_then_resolves_and_deletes_the_task(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    // Two 503s first: the callback is retried until it gets its 200.
    let (address, bodies) = callback_server(2).await;
    let mut definition = fixtures::task("echo -n done > out");
    definition.result_file = "out".into();
    definition.completion_callback_url = format!("http://{address}/done");
    cluster
        .bbs()
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(definition),
            task_guid: "cb".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let body = eventually("the completion callback", PATIENCE, || {
        let bodies = bodies.clone();
        async move { bodies.lock().unwrap().first().cloned() }
    })
    .await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON callback body");
    assert_eq!(json["task_guid"], "cb");
    assert_eq!(json["failed"], false);
    assert_eq!(json["result"], "done");
    let client = cluster.bbs();
    eventually("the resolved task to be deleted", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "cb").await.is_none().then_some(()) }
    })
    .await;
    let bodies = bodies.lock().unwrap().clone();
    assert!(bodies.len() >= 3, "two 503s, then the 200: {} calls", bodies.len());
    assert!(bodies.iter().all(|b| b == &body), "every attempt carries the same task");
    cluster.shutdown().await;
}

async fn d32_crud_rules_hold_through_a_whole_cluster(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut client = cluster.bbs();
    // Duplicate guids are refused, for LRPs and tasks.
    desire(&cluster, plain_lrp("unique", 1, fixtures::shell("exec sleep 1000"))).await;
    let status = client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(plain_lrp("unique", 1, fixtures::shell("true"))) })
        .await
        .expect_err("duplicate lrp");
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    desire_task(&cluster, "long", "d1", fixtures::task("exec sleep 1000")).await;
    let status = client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("true")),
            task_guid: "long".into(),
            domain: "d1".into(),
        })
        .await
        .expect_err("duplicate task");
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    // Malformed guids are refused and nothing is written.
    let status = client
        .desire_lrp(api::DesireLrpRequest { desired_lrp: Some(plain_lrp("bad guid/x", 1, fixtures::shell("true"))) })
        .await
        .expect_err("malformed lrp guid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let status = client
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("true")),
            task_guid: String::new(),
            domain: "d1".into(),
        })
        .await
        .expect_err("empty task guid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let lrps = client.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner().desired_lrps;
    assert_eq!(lrps.iter().map(|d| d.process_guid.as_str()).collect::<Vec<_>>(), vec!["unique"]);

    // A task is deleted only once completed and resolving.
    desire_task(&cluster, "quick", "d2", fixtures::task("true")).await;
    let running = eventually("the long task RUNNING", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "long").await.filter(|t| t.state == pb::task::State::Running as i32) }
    })
    .await;
    assert_eq!(running.domain, "d1");
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "long".into() }).await.expect_err("running");
    assert_eq!(diego_error(&status), "InvalidStateTransition", "{status:?}");
    eventually("the quick task COMPLETED", PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, "quick").await.filter(|t| t.state == pb::task::State::Completed as i32) }
    })
    .await;
    // Tasks list by domain.
    for (domain, guid) in [("d1", "long"), ("d2", "quick")] {
        let tasks =
            client.tasks(api::TasksRequest { domain: domain.into(), ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(tasks.tasks.iter().map(|t| t.task_guid.as_str()).collect::<Vec<_>>(), vec![guid], "{domain}");
    }
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect_err("completed");
    assert_eq!(diego_error(&status), "InvalidStateTransition", "{status:?}");
    client.resolving_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect("resolving");
    client.delete_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect("delete");
    assert!(probe::task(&client, "quick").await.is_none());
    let status = client.delete_task(api::TaskGuidRequest { task_guid: "quick".into() }).await.expect_err("gone");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // A domain is fresh for its TTL, then drops out of the list.
    client.upsert_domain(api::UpsertDomainRequest { domain: "fleeting".into(), ttl: 1 }).await.expect("upsert");
    client.upsert_domain(api::UpsertDomainRequest { domain: "lasting".into(), ttl: 0 }).await.expect("upsert");
    let domains = client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.contains(&"fleeting".to_owned()) && domains.contains(&"lasting".to_owned()), "{domains:?}");
    eventually("the 1 s domain to expire", PATIENCE, || {
        let mut client = client.clone();
        async move {
            let domains = client.domains(api::DomainsRequest {}).await.ok()?.into_inner().domains;
            (!domains.contains(&"fleeting".to_owned())).then_some(domains)
        }
    })
    .await;
    let domains = client.domains(api::DomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.contains(&"lasting".to_owned()), "a TTL of 0 never expires: {domains:?}");
    cluster.shutdown().await;
}
