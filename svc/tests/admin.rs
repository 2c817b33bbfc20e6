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

/// `GET path` over HTTPS, trusting only the cluster CA at `ca` and presenting no certificate.
async fn get_https(address: std::net::SocketAddr, ca: &std::path::Path, path: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A peer that closes without close_notify still gave us the whole response.
    let _ = stream.read_to_end(&mut response).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn the_admin_port_serves_https_with_the_component_certificate_when_asked() {
    use svc::config::tls::TlsConfig;
    use svc::identity::Role;
    let pki = svc::pki::Pki::for_tests();
    let tls = TlsConfig { admin: true, ..pki.test_tls(Role::Bbs, "") };
    let security = tls.security().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let admin = Admin::new().healthz(|| "ok (over tls)\n".into()).tls(tls.admin_tls(&security));
    let server = tokio::spawn(admin.serve(listener, shutdown.clone()));

    let healthz = get_https(address, &pki.ca_path(), "/healthz").await.expect("an HTTPS client without a certificate");
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(healthz.ends_with("ok (over tls)\n"), "{healthz}");
    let metrics = get_https(address, &pki.ca_path(), "/metrics").await.unwrap();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    // Plain HTTP gets no answer: the bytes are not a TLS handshake.
    let plain = get(address, "/healthz").await;
    assert!(!plain.contains("200"), "plain HTTP must not be served: {plain:?}");

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.expect("stops on shutdown").unwrap();
}
