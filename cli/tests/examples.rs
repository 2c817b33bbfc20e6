//! The LRP and task files under examples/ do what examples/README.md says, on a cluster like
//! `diego dev`'s (in process, `process` runtime, mutual TLS) through the real `diego` binary:
//! `lrp-web.yaml` runs 3 demo app instances with its route, `task-result.yaml` completes with its
//! result file's contents, `task-callback.yaml` calls a local receiver back. The README's task
//! command (a result file read back) runs here too.

#[path = "support/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_rep::RuntimeKind;
use cli::cluster::{Cluster, ClusterSpec, OPERATOR_NAME};
use harness::Run;
use svc::identity::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where examples/lrp-web.yaml expects the demo app (docs/deploy.md installs it there).
const INSTALLED_DEMO_APP: &str = "/usr/local/bin/diego-demo-app";

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `diego --bbs-address ADDR ARGS...` as the cluster's operator.
struct Diego {
    address: String,
    env: Vec<(&'static str, PathBuf)>,
}

impl Diego {
    async fn run(&self, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(harness::DIEGO);
        command.arg("--bbs-address").arg(&self.address).args(args).env_remove("DIEGO_BBS_ADDRESS");
        command.envs(self.env.iter().map(|(name, value)| (*name, value)));
        // From the repository root, as the README's commands run.
        command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        command.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("diego {args:?} did not finish within 60 s"))
            .expect("cannot run diego");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        harness::assert_no_panic(&run.stderr);
        run
    }

    /// `diego task GUID --json` once the task is COMPLETED.
    async fn completed_task(&self, guid: &str) -> serde_json::Value {
        eventually(&format!("task {guid} COMPLETED"), || async {
            let task = self.run(&["task", guid, "--json"]).await.json();
            (task["state"] == "COMPLETED").then_some(task)
        })
        .await
    }
}

/// Polls `probe` every 200 ms for at most 90 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..450 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("never happened within 90 s: {what}");
}

/// One HTTP/1.0 request; the whole response.
async fn http(address: &str, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("the instance listens");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

/// A callback receiver on 127.0.0.1:0: records each request's body and answers 200.
async fn callback_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head, then as many body bytes as Content-Length says.
            while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        seen.lock().unwrap().push(body.to_owned());
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        }
    });
    (address, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_as_their_readme_says() {
    let dir = harness::scratch("examples-cluster");
    let database_url = format!("sqlite://{}", dir.join("bbs.db").display());
    let cluster = Cluster::start(ClusterSpec::new(database_url, dir.join("cells"), 2, RuntimeKind::Process))
        .await
        .expect("the cluster starts");
    let tls = cluster.tls_for(Role::Operator, OPERATOR_NAME).expect("the operator's certificate");
    let diego = Diego {
        address: cluster.bbs_address.clone(),
        env: vec![("DIEGO_TLS_CA", tls.ca), ("DIEGO_TLS_CERT", tls.cert), ("DIEGO_TLS_KEY", tls.key)],
    };

    the_web_lrp_runs_three_instances_with_its_route(&diego, &dir).await;
    the_result_task_completes_with_its_result(&diego).await;
    the_callback_task_calls_its_receiver_back(&diego, &dir).await;
    the_readme_task_keeps_its_output(&diego).await;
    cluster.shutdown().await;
}

/// examples/README.md: from a checkout, desire a copy of lrp-web.yaml naming the built demo app.
async fn the_web_lrp_runs_three_instances_with_its_route(diego: &Diego, dir: &Path) {
    let text = read(&example("lrp-web.yaml"));
    assert!(text.contains(INSTALLED_DEMO_APP), "lrp-web.yaml runs {INSTALLED_DEMO_APP}");
    let copy = dir.join("lrp-web.yaml");
    std::fs::write(&copy, text.replace(INSTALLED_DEMO_APP, env!("CARGO_BIN_EXE_diego-demo-app"))).unwrap();
    diego.run(&["desire-lrp", "--file", copy.to_str().unwrap()]).await.ok();

    let lrp = eventually("3 RUNNING instances of web", || async {
        let lrp = diego.run(&["lrp", "web", "--json"]).await.json();
        let running =
            lrp["instances"].as_array().map_or(0, |all| all.iter().filter(|i| i["state"] == "RUNNING").count());
        (running == 3).then_some(lrp)
    })
    .await;
    let desired = &lrp["desired_lrp"];
    assert_eq!(desired["routes"]["cf-router"][0]["hostnames"][0], "web.example.com", "{desired}");
    assert_eq!(desired["routes"]["cf-router"][0]["port"], 8080, "{desired}");
    assert_eq!(desired["environment_variables"][0], serde_json::json!({"name": "GREETING", "value": "hello"}));
    assert_eq!(desired["check_definition"]["checks"][0]["http_check"]["path"], "/health");
    // Each instance answers as the demo app, and is healthy.
    for instance in lrp["instances"].as_array().unwrap() {
        let host = instance["address"].as_str().unwrap_or("127.0.0.1");
        let port = instance["ports"][0]["host_port"].as_u64().expect("a host port");
        let address = format!("{host}:{port}");
        let page = http(&address, "GET / HTTP/1.0\r\n\r\n").await;
        assert!(page.contains("diego demo app"), "{page}");
        let health = http(&address, "GET /health HTTP/1.0\r\n\r\n").await;
        assert!(health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"), "{health}");
    }
}

/// examples/task-result.yaml, as the README's walk-through desires it: COMPLETED with the line
/// its command wrote as the result.
async fn the_result_task_completes_with_its_result(diego: &Diego) {
    // diego desire-task --file examples/task-result.yaml
    desire_task_file(diego, Path::new("examples/task-result.yaml")).await;
    let task = diego.completed_task("report").await;
    assert_eq!(task["failed"], false, "{task}");
    assert_eq!(task["result"], "hello from Linux\n", "{task}");
}

/// examples/task-callback.yaml, with the receiver on a free port instead of 9000: the callback
/// body names the task and carries its result and annotation; the task is then deleted.
async fn the_callback_task_calls_its_receiver_back(diego: &Diego, dir: &Path) {
    const EXAMPLE_URL: &str = "http://127.0.0.1:9000/task-done";
    let (address, bodies) = callback_receiver().await;
    let text = read(&example("task-callback.yaml"));
    assert!(text.contains(EXAMPLE_URL), "task-callback.yaml calls {EXAMPLE_URL}");
    let copy = dir.join("task-callback.yaml");
    std::fs::write(&copy, text.replace(EXAMPLE_URL, &format!("http://{address}/task-done"))).unwrap();
    desire_task_file(diego, &copy).await;
    let body = eventually("the completion callback", || async { bodies.lock().unwrap().first().cloned() }).await;
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON callback body");
    assert_eq!(body["task_guid"], "nightly-report", "{body}");
    assert_eq!((body["failed"].as_bool(), body["result"].as_str()), (Some(false), Some("42\n")), "{body}");
    assert_eq!(body["annotation"], "nightly run", "{body}");
    eventually("the called-back task deleted", || async {
        (diego.run(&["task", "nightly-report"]).await.code == 1).then_some(())
    })
    .await;
}

/// The README's walk-through task: its output written to a result file and read back.
async fn the_readme_task_keeps_its_output(diego: &Diego) {
    // diego desire-task --guid hello --command 'echo hi > out' --result-file out && diego task hello
    diego.run(&["desire-task", "--guid", "hello", "--command", "echo hi > out", "--result-file", "out"]).await.ok();
    let shown = diego.run(&["task", "hello"]).await;
    assert!(shown.ok().contains("hello"), "{shown:?}");
    let task = diego.completed_task("hello").await;
    assert_eq!(task["result"], "hi\n", "{task}");
    let shown = diego.run(&["task", "hello"]).await;
    assert!(shown.ok().contains("result:        hi"), "{shown:?}");
}

/// `diego desire-task --file FILE`.
async fn desire_task_file(diego: &Diego, file: &Path) {
    let out = diego.run(&["desire-task", "--file", file.to_str().unwrap()]).await;
    assert!(out.ok().contains("desired task"), "{out:?}");
}

/// The whole LRP, task and state files shown in README.md and docs/files.md (```yaml blocks
/// with a `desired_lrps`, a `process_guid` or a `task_guid`) parse as the CLI reads them.
#[test]
fn the_files_shown_in_the_docs_parse() {
    let mut parsed = 0;
    for document in ["README.md", "docs/files.md"] {
        let text = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(document));
        for block in text.split("```yaml\n").skip(1).filter_map(|rest| rest.split_once("```").map(|(b, _)| b)) {
            let result = if block.contains("desired_lrps:") {
                cli::state_file::parse(block, true).map(drop)
            } else if block.contains("process_guid:") {
                cli::lrp_file::parse(block, true).map(drop)
            } else if block.contains("task_guid:") {
                cli::task_file::parse(block, true).map(drop)
            } else {
                continue;
            };
            result.unwrap_or_else(|e| panic!("a file in {document} does not parse: {e}\n{block}"));
            parsed += 1;
        }
    }
    assert!(parsed >= 3, "only {parsed} files found in the docs");
}
