//! More of the auction-rep.md section 5 checklist end to end, on every backend: A7 (an oversized
//! task, and one for a stack no cell offers, fail with the placement reason), A8 (placement
//! tags), B16 (the instance environment matches the actual LRP), D30 (completion callbacks resolve
//! and delete the task), E34 (a task whose cell disappears fails).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use tests::cluster::Cluster;
use tests::eventually::eventually;
use tests::{fixtures, probe};

const PATIENCE: Duration = Duration::from_secs(60);

tests::on_every_backend!(
    a7_an_oversized_task_fails_with_the_placement_reason,
    a8_placement_tags_pick_the_cell,
    b16_the_instance_environment_matches_the_actual_lrp,
    d30_a_completion_callback_is_retried_past_503s_then_resolves_and_deletes_the_task,
    e34_a_task_whose_cell_disappears_fails,
);

async fn wait_task(cluster: &Cluster, guid: &str, state: pb::task::State) -> pb::Task {
    let client = cluster.bbs();
    eventually(&format!("task {guid} {state:?}"), PATIENCE, || {
        let client = client.clone();
        async move { probe::task(&client, guid).await.filter(|t| t.state == state as i32) }
    })
    .await
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

async fn a8_placement_tags_pick_the_cell(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Sim, |spec| {
        spec.rep = Arc::new(|config| {
            if config.cell_id == "cell-1" {
                config.placement_tags = vec!["gpu".into()];
            }
        });
    })
    .await
    else {
        return;
    };
    let mut tagged = fixtures::http_lrp("trainer", 2);
    tagged.placement_tags = vec!["gpu".into()];
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(tagged) }).await.unwrap();
    let client = cluster.bbs();
    let running = eventually("2 tagged instances RUNNING", PATIENCE, || {
        let client = client.clone();
        async move {
            let r = probe::running(&client, "trainer").await;
            (r.len() == 2).then_some(r)
        }
    })
    .await;
    assert!(running.iter().all(|a| probe::cell(a) == "cell-1"), "tagged work runs on the tagged cell: {running:?}");
    let mut untaggable = fixtures::http_lrp("tpu-job", 1);
    untaggable.placement_tags = vec!["tpu".into()];
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(untaggable) }).await.unwrap();
    let error = eventually("a placement error for the tpu job", PATIENCE, || {
        let client = client.clone();
        async move {
            probe::instances(&client, "tpu-job")
                .await
                .into_iter()
                .find(|a| !a.placement_error.is_empty())
                .map(|a| a.placement_error)
        }
    })
    .await;
    assert!(error.contains("found no compatible cell"), "{error}");
    cluster.shutdown().await;
}

async fn http_get(address: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}

async fn b16_the_instance_environment_matches_the_actual_lrp(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Process, |_| {}).await else { return };
    let mut lrp = fixtures::http_lrp("envy", 2);
    lrp.environment_variables = vec![pb::EnvironmentVariable { name: "GREETING".into(), value: "hello".into() }];
    let script = "mkdir -p www && echo \"index=$INSTANCE_INDEX guid=$INSTANCE_GUID port=$CF_INSTANCE_PORT addr=$CF_INSTANCE_ADDR greeting=$GREETING\" > www/index.html && exec /bin/busybox httpd -f -p $PORT -h www";
    lrp.action = Some(fixtures::shell(script));
    cluster.bbs().desire_lrp(api::DesireLrpRequest { desired_lrp: Some(lrp) }).await.unwrap();
    let client = cluster.bbs();
    let running = eventually("2 RUNNING instances of envy", PATIENCE, || {
        let client = client.clone();
        async move {
            let r = probe::running(&client, "envy").await;
            (r.len() == 2).then_some(r)
        }
    })
    .await;
    for instance in running {
        let net = instance.actual_lrp_net_info.clone().unwrap();
        let port = net.ports[0].host_port;
        let body = http_get(&format!("{}:{port}", net.address)).await.expect("it answers");
        let index = instance.actual_lrp_key.as_ref().unwrap().index;
        let expected = format!(
            "index={index} guid={} port={port} addr={}:{port} greeting=hello",
            probe::instance_guid(&instance),
            net.address
        );
        assert!(body.contains(&expected), "expected {expected:?} in {body:?}");
    }
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

async fn e34_a_task_whose_cell_disappears_fails(backend: Backend) {
    // Two cells: losing the only cell would empty the cell set, which the converger's guard
    // treats as an outage of its own view, not as a lost cell.
    let Some(mut cluster) = Cluster::start(backend, 2, RuntimeKind::Sim, |spec| {
        spec.rep = Arc::new(|config| config.sim_start_delay = Duration::from_secs(3600));
    })
    .await
    else {
        return;
    };
    cluster
        .bbs()
        .desire_task(api::DesireTaskRequest {
            task_definition: Some(fixtures::task("sleep 1000")),
            task_guid: "orphan".into(),
            domain: "d".into(),
        })
        .await
        .unwrap();
    let running = wait_task(&cluster, "orphan", pb::task::State::Running).await;
    let index = cluster.reps.iter().position(|r| r.cell_id == running.cell_id).expect("the task's cell");
    cluster.kill_rep(index).await;
    let task = wait_task(&cluster, "orphan", pb::task::State::Completed).await;
    assert!(task.failed);
    assert_eq!(task.failure_reason, "cell disappeared before completion");
    cluster.shutdown().await;
}
