//! The admin server over a real socket: `/healthz`, a component's route, and `/metrics` showing
//! what anything in the process recorded through the `metrics` facade.

use hyper::StatusCode;
use svc::admin::Admin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn serves_health_routes_and_the_process_metrics() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let admin = Admin::new()
        .healthz(|| "ok (testing)\n".into())
        .route("/leader", || (StatusCode::SERVICE_UNAVAILABLE, "standby\n".into()));
    let server = tokio::spawn(admin.serve(listener, shutdown.clone()));
    // Recorded after the server installed the recorder: a component's series.
    let _ = svc::admin::metrics_handle();
    metrics::counter!("svc_test_requests_total", "kind" => "probe").increment(3);

    let healthz = get(address, "/healthz").await;
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(healthz.ends_with("ok (testing)\n"), "{healthz}");
    let leader = get(address, "/leader").await;
    assert!(leader.starts_with("HTTP/1.1 503"), "{leader}");
    let metrics = get(address, "/metrics").await;
    assert!(metrics.contains("svc_test_requests_total{kind=\"probe\"} 3"), "{metrics}");
    let missing = get(address, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(missing.ends_with("not found: try /healthz, /leader or /metrics\n"), "{missing}");

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.expect("stops on shutdown").unwrap();
}
