//! Completion callbacks against a local HTTP server: which statuses finish a task, retries on
//! refused, closed and slow connections, the worker pool's bound, and https receivers verified
//! against the callback CA (or the cluster CA).

use super::*;

on_every_backend!(
    callback_200_deletes_the_task,
    callback_statuses_other_than_503_504_count_as_handled,
    callback_503_or_504_leaves_the_task_resolving,
    callback_to_a_refused_connection_is_tried_three_times,
    callback_connections_closed_early_are_retried,
    callback_timeouts_are_retried,
    callback_skips_a_task_another_resolver_has,
    callback_to_an_https_url_without_a_ca_is_unsupported,
    https_callback_verified_against_the_cluster_ca_is_delivered,
    https_callback_verified_against_callback_ca_file_is_delivered,
    https_callback_to_a_server_of_another_ca_is_not_posted,
    callback_pool_runs_at_most_workers_callbacks_at_once,
);

// ---------------------------------------------------------------------------------------------
// Callback server

/// One request the callback server received.
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: serde_json::Value,
}

/// A local HTTP server answering every request with one status; requests are reported on
/// `received`. With a `gate`, each request waits for a permit before it is answered.
struct CallbackServer {
    url: String,
    received: mpsc::UnboundedReceiver<Received>,
    in_flight_max: Arc<AtomicUsize>,
}

async fn callback_server(status: u16, gate: Option<Arc<Semaphore>>) -> CallbackServer {
    callback_server_with(status, gate, None).await
}

/// [`callback_server`], over TLS with `tls` when given (an `https://` URL).
async fn callback_server_with(
    status: u16,
    gate: Option<Arc<Semaphore>>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> CallbackServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/internal/v4/tasks/done", listener.local_addr().unwrap());
    let (tx, received) = mpsc::unbounded_channel();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_max = Arc::new(AtomicUsize::new(0));
    let max = in_flight_max.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, gate, in_flight, max) = (tx.clone(), gate.clone(), in_flight.clone(), max.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (tx, gate, in_flight, max) = (tx.clone(), gate.clone(), in_flight.clone(), max.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let content_type = parts
                            .headers
                            .get(hyper::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let _ = tx.send(Received {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            content_type,
                            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                        });
                        if let Some(gate) = gate {
                            gate.acquire().await.unwrap().forget();
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                    }
                    Some(tls) => {
                        // A handshake the client refuses ends here: nothing is reported.
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await else { return };
                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    CallbackServer { url, received, in_flight_max }
}

impl CallbackServer {
    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.received.recv()).await.expect("callback never arrived").expect("server stopped")
    }
}

/// A listener that accepts connections and reports each; `hold` keeps them open without an
/// answer (the client times out), otherwise they are closed at once.
async fn broken_server(hold: bool) -> (String, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let _ = tx.send(());
            if hold {
                held.push(stream);
            } else {
                drop(stream);
            }
        }
    });
    (url, accepted)
}

/// A TLS server configuration presenting a certificate for 127.0.0.1 issued by `ca` (no client
/// certificate asked for), speaking only `versions`.
fn server_tls(
    ca: &svc::certs::Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let identity = svc::identity::Identity::new(svc::identity::Role::Bbs, "").unwrap();
    let issued = ca.issue(&identity, &["127.0.0.1".into()], svc::certs::Validity::Days(1)).unwrap();
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Runs the pool over `tasks` until it has handled them all (the queue is closed first).
async fn run_pool(ctx: &Context, tasks: Vec<Task>, workers: usize, timeout: Duration) {
    run_pool_with(ctx, tasks, workers, timeout, http_client()).await;
}

/// [`run_pool`] sending with `client`.
async fn run_pool_with(ctx: &Context, tasks: Vec<Task>, workers: usize, timeout: Duration, client: HttpClient) {
    let (tx, rx) = mpsc::unbounded_channel();
    for task in tasks {
        tx.send(task).unwrap();
    }
    drop(tx);
    let pool = spawn_workers(ctx.clone(), rx, workers, timeout, client, CancellationToken::new());
    tokio::time::timeout(WAIT, pool).await.expect("callback never arrived").expect("the pool panicked");
}

// ---------------------------------------------------------------------------------------------
// Callback cases

async fn callback_200_deletes_the_task(backend: Backend) {
    let Some((h, queued)) = leader(backend).await else { return };
    let mut server = callback_server(200, None).await;
    let shutdown = CancellationToken::new();
    let pool = spawn_workers(h.ctx.clone(), queued, 4, Duration::from_secs(5), http_client(), shutdown.clone());
    let mut events = subscribe(&h.ctx);

    desire(&h.ctx, "t-1", &server.url).await;
    assert!(Tasks(&h.ctx).start(&guid("t-1"), &cell(CELL)).await.unwrap());
    Tasks(&h.ctx).complete(&guid("t-1"), &cell(CELL), true, "exit status 3", "partial output").await.unwrap();

    let request = server.next().await;
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/internal/v4/tasks/done"));
    assert_eq!(request.content_type, "application/json");
    assert_eq!(
        request.body,
        serde_json::json!({
            "task_guid": "t-1",
            "failed": true,
            "failure_reason": "exit status 3",
            "result": "partial output",
            "annotation": "{\"app\":\"migrations\"}",
            "created_at": START_NS,
        })
    );

    // Created, started, completed, resolving, removed.
    let mut kinds = Vec::new();
    loop {
        let (_, event) = next_event(&mut events).await;
        match event {
            Event::Created(_) => kinds.push("created".to_owned()),
            Event::Changed(before, after) => kinds.push(format!("changed {}->{}", before.state, after.state)),
            Event::Removed(task) => {
                assert_eq!(task.task_guid, "t-1");
                kinds.push("removed".to_owned());
                break;
            }
        }
    }
    assert_eq!(kinds, ["created", "changed 1->2", "changed 2->3", "changed 3->4", "removed"]);
    assert_eq!(code(Tasks(&h.ctx).get(&guid("t-1")).await), ErrorCode::ResourceNotFound);

    shutdown.cancel();
    tokio::time::timeout(WAIT, pool).await.expect("the pool stops on shutdown").unwrap();
}

async fn callback_statuses_other_than_503_504_count_as_handled(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    for (i, status) in [201_u16, 404, 500].into_iter().enumerate() {
        let mut server = callback_server(status, None).await;
        let name = format!("t-{i}");
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        run_pool(&h.ctx, vec![task], 4, Duration::from_secs(5)).await;
        assert_eq!(server.next().await.body["task_guid"], name.as_str());
        assert_eq!(code(Tasks(&h.ctx).get(&guid(&name)).await), ErrorCode::ResourceNotFound, "status {status}");
    }
}

async fn callback_503_or_504_leaves_the_task_resolving(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    for status in [503_u16, 504] {
        let mut server = callback_server(status, None).await;
        let name = format!("t-{status}");
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        run_pool(&h.ctx, vec![task.clone()], 4, Duration::from_secs(5)).await;
        assert_eq!(server.next().await.body["task_guid"], name.as_str());
        assert!(server.received.try_recv().is_err(), "a {status} is not retried");
        assert_eq!(state_of(&h.ctx, &name).await, TaskState::Resolving, "status {status}");

        // The same, called directly, reports the outcome.
        Tasks(&h.ctx).delete(&guid(&name)).await.unwrap();
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::Unavailable { status, attempts: 1 });
        server.next().await;
    }
}

async fn callback_to_a_refused_connection_is_tried_three_times(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", closed.local_addr().unwrap());
    drop(closed);

    let task = completed(&h.ctx, &mut queued, "t-1", &url).await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: MAX_ATTEMPTS });
    assert_eq!(MAX_ATTEMPTS, 3);
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);

    // Through the pool as well.
    let task = completed(&h.ctx, &mut queued, "t-2", &url).await;
    run_pool(&h.ctx, vec![task], 4, Duration::from_secs(5)).await;
    assert_eq!(state_of(&h.ctx, "t-2").await, TaskState::Resolving);
}

async fn callback_connections_closed_early_are_retried(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let (url, mut accepted) = broken_server(false).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &url).await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: 3 });
    for _ in 0..3 {
        tokio::time::timeout(WAIT, accepted.recv()).await.expect("callback never arrived").unwrap();
    }
    assert!(accepted.try_recv().is_err(), "no fourth attempt");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
}

async fn callback_timeouts_are_retried(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let (url, mut accepted) = broken_server(true).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &url).await;
    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_millis(200)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: 3 });
    for _ in 0..3 {
        tokio::time::timeout(WAIT, accepted.recv()).await.expect("callback never arrived").unwrap();
    }
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
}

async fn callback_skips_a_task_another_resolver_has(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let mut server = callback_server(200, None).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &server.url).await;
    Tasks(&h.ctx).resolving(&guid("t-1")).await.unwrap(); // e.g. the CC polling

    let outcome = handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Skipped);
    assert!(server.received.try_recv().is_err(), "nothing is posted");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);

    // A task deleted meanwhile is skipped too.
    Tasks(&h.ctx).delete(&guid("t-1")).await.unwrap();
    assert_eq!(handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await, Outcome::Skipped);
}

async fn callback_to_an_https_url_without_a_ca_is_unsupported(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    // A plaintext BBS without callback_ca_file has no CA to verify a receiver with.
    let config =
        bbs::config::BbsConfig { tls: svc::config::tls::TlsConfig::insecure_plaintext(), ..Default::default() };
    let client = HttpClient::new(&CallbackTls::from_config(&config).unwrap());
    assert!(!client.supports_https());
    let mut server =
        callback_server_with(200, None, Some(server_tls(svc::pki::Pki::for_tests().ca(), DEFAULT_TLS))).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &server.url).await;
    let outcome = handle_completed_task(&h.ctx, &client, &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Unsupported);
    assert!(server.received.try_recv().is_err(), "nothing is posted");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);
    let task = completed(&h.ctx, &mut queued, "t-2", "https://127.0.0.1:1/cb").await;
    assert_eq!(
        handle_completed_task(&h.ctx, &http_client(), &task, Duration::from_secs(5)).await,
        Outcome::Unsupported
    );
}

const DEFAULT_TLS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

async fn https_callback_verified_against_the_cluster_ca_is_delivered(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let pki = svc::pki::Pki::for_tests();
    // A mutual-TLS BBS without callback_ca_file verifies receivers against its cluster CA.
    let config = bbs::config::BbsConfig { tls: pki.test_tls(svc::identity::Role::Bbs, ""), ..Default::default() };
    let client = HttpClient::new(&CallbackTls::from_config(&config).unwrap());
    assert!(client.supports_https());
    // Receivers speaking only TLS 1.2, and only TLS 1.3.
    let versions: [&[&rustls::SupportedProtocolVersion]; 2] = [&[&rustls::version::TLS12], &[&rustls::version::TLS13]];
    for (i, versions) in versions.into_iter().enumerate() {
        let mut server = callback_server_with(200, None, Some(server_tls(pki.ca(), versions))).await;
        let name = format!("t-{i}");
        let task = completed(&h.ctx, &mut queued, &name, &server.url).await;
        run_pool_with(&h.ctx, vec![task], 4, Duration::from_secs(5), client.clone()).await;
        let request = server.next().await;
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/internal/v4/tasks/done"));
        assert_eq!(request.body["task_guid"], name.as_str());
        assert_eq!(code(Tasks(&h.ctx).get(&guid(&name)).await), ErrorCode::ResourceNotFound, "{versions:?}");
    }
}

async fn https_callback_verified_against_callback_ca_file_is_delivered(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let pki = svc::pki::Pki::for_tests();
    // callback_ca_file works without mutual TLS, and wins over the cluster CA.
    let config = bbs::config::BbsConfig {
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        callback_ca_file: pki.ca_path(),
        ..Default::default()
    };
    let client = HttpClient::new(&CallbackTls::from_config(&config).unwrap());
    let mut server = callback_server_with(201, None, Some(server_tls(pki.ca(), DEFAULT_TLS))).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &server.url).await;
    let outcome = handle_completed_task(&h.ctx, &client, &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Delivered { status: 201, attempts: 1 });
    assert_eq!(server.next().await.body["task_guid"], "t-1");
}

async fn https_callback_to_a_server_of_another_ca_is_not_posted(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let pki = svc::pki::Pki::for_tests();
    let client = HttpClient::new(&CallbackTls::with_ca(&pki.ca_path(), None).unwrap());
    let other = svc::certs::Ca::generate().unwrap();
    let mut server = callback_server_with(200, None, Some(server_tls(&other, DEFAULT_TLS))).await;
    let task = completed(&h.ctx, &mut queued, "t-1", &server.url).await;
    let outcome = handle_completed_task(&h.ctx, &client, &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::RetriesExhausted { attempts: MAX_ATTEMPTS });
    assert!(server.received.try_recv().is_err(), "a receiver the CA does not vouch for is sent nothing");
    assert_eq!(state_of(&h.ctx, "t-1").await, TaskState::Resolving);

    // Through the pool as well, from a mutual-TLS BBS with a callback_ca_file.
    let wrong = bbs::config::BbsConfig {
        tls: pki.test_tls(svc::identity::Role::Bbs, ""),
        callback_ca_file: pki.ca_path(),
        ..Default::default()
    };
    let task = completed(&h.ctx, &mut queued, "t-2", &server.url).await;
    run_pool_with(
        &h.ctx,
        vec![task],
        4,
        Duration::from_secs(5),
        HttpClient::new(&CallbackTls::from_config(&wrong).unwrap()),
    )
    .await;
    assert!(server.received.try_recv().is_err(), "nothing is posted through the pool either");
    assert_eq!(state_of(&h.ctx, "t-2").await, TaskState::Resolving);

    // The receiver itself is fine: a client trusting its CA delivers to it.
    let other_ca = std::env::temp_dir().join(format!("bbs-callback-other-ca-{}-{backend:?}.pem", std::process::id()));
    std::fs::write(&other_ca, other.cert_pem()).unwrap();
    let trusting = HttpClient::new(&CallbackTls::with_ca(&other_ca, None).unwrap());
    let _ = std::fs::remove_file(&other_ca);
    let task = completed(&h.ctx, &mut queued, "t-3", &server.url).await;
    let outcome = handle_completed_task(&h.ctx, &trusting, &task, Duration::from_secs(5)).await;
    assert_eq!(outcome, Outcome::Delivered { status: 200, attempts: 1 });
    assert_eq!(server.next().await.body["task_guid"], "t-3");
}

async fn callback_pool_runs_at_most_workers_callbacks_at_once(backend: Backend) {
    let Some((h, mut queued)) = leader(backend).await else { return };
    let gate = Arc::new(Semaphore::new(0));
    let mut server = callback_server(200, Some(gate.clone())).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(completed(&h.ctx, &mut queued, &format!("t-{i}"), &server.url).await);
    }

    let (tx, rx) = mpsc::unbounded_channel();
    for task in tasks {
        tx.send(task).unwrap();
    }
    drop(tx);
    let pool = spawn_workers(h.ctx.clone(), rx, 2, Duration::from_secs(30), http_client(), CancellationToken::new());

    // Two callbacks arrive and are held; the other two wait for a worker.
    server.next().await;
    server.next().await;
    assert!(server.received.try_recv().is_err(), "a third callback ran while two were held");
    gate.add_permits(4);
    server.next().await;
    server.next().await;
    tokio::time::timeout(WAIT, pool).await.expect("callback never arrived").unwrap();

    assert!(server.in_flight_max.load(Ordering::SeqCst) <= 2, "more than two callbacks at once");
    for i in 0..4 {
        assert_eq!(code(Tasks(&h.ctx).get(&guid(&format!("t-{i}"))).await), ErrorCode::ResourceNotFound);
    }
}
