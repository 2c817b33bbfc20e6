//! Mutual TLS over real sockets: who gets in, what the server sees, what a refused client is
//! told, and certificate rotation without a restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use svc::certs::{Ca, Issued, Validity};
use svc::connect::{ChannelOptions, ConnectError, connect, describe};
use svc::identity::{Identity, Peer, Role};
use svc::tls::{Security, TlsError, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A directory under the temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("svc-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn identity(uri: &str) -> Identity {
    Identity::parse_uri(uri).unwrap()
}

/// Issues `uri` for `hosts` by `ca` into `dir` and returns its files (trusting `ca_dir/ca.pem`).
fn issue(ca: &Ca, ca_dir: &Path, dir: &Path, uri: &str, hosts: &[&str], validity: Validity) -> TlsFiles {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let issued = ca.issue(&identity(uri), &hosts, validity).unwrap();
    let name = uri.rsplit('/').next().unwrap();
    let (cert, key) = issued.write(dir, name).unwrap();
    TlsFiles { ca: ca_dir.join("ca.pem"), cert, key }
}

/// A cluster: a CA in `dir` and its files.
fn cluster(dir: &Path) -> Ca {
    let ca = Ca::generate().unwrap();
    ca.write(dir).unwrap();
    ca
}

/// A test service mounted as `diego.bbs.v1.Bbs` (its `Ping` is open to every verified role, so
/// the authorization layer lets it through): every call fails with NOT_FOUND carrying the caller's
/// [`Peer`] as its message, which is how the test sees what the server saw.
#[derive(Clone)]
struct PeerEcho;

impl NamedService for PeerEcho {
    const NAME: &'static str = "diego.bbs.v1.Bbs";
}

impl tower::Service<http::Request<tonic::body::Body>> for PeerEcho {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let peer = request.extensions().get::<Peer>().map(|p| p.to_string()).unwrap_or_else(|| "none".into());
        std::future::ready(Ok(tonic::Status::not_found(peer).into_http()))
    }
}

/// What the server saw of the caller on `channel`.
async fn peer_seen(channel: Channel) -> Result<String, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckRequest>::default();
    let path = http::uri::PathAndQuery::from_static("/diego.bbs.v1.Bbs/Ping");
    match grpc.unary(tonic::Request::new(HealthCheckRequest::default()), path, codec).await {
        Err(status) if status.code() == tonic::Code::NotFound => Ok(status.message().to_owned()),
        Err(status) => Err(status),
        Ok(_) => panic!("the echo never answers OK"),
    }
}

/// A server with the echo service on a free port under `security`.
async fn server(security: Security) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let (_health, router) = svc::server::grpc_server(&[], svc::server::DEFAULT_MAX_REQUEST_BYTES);
    let router = router.add_service(PeerEcho);
    let stop = shutdown.clone();
    tokio::spawn(async move { svc::server::serve(router, listener, &security, stop).await });
    (address, shutdown)
}

fn options(security: Security) -> ChannelOptions {
    ChannelOptions::new(Duration::from_secs(5), security)
}

async fn health(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.map(drop)
}

/// A bare rustls client trusting `ca_pem`, presenting `client` if any.
fn raw_client(ca_pem: &str, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes()).map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Handshakes with `address` as `config` and reads what the server sends: a served client gets
/// the server's HTTP/2 SETTINGS; a refused one an alert (or the connection closed). Returns the
/// server's identity and the first read.
async fn raw_session(address: SocketAddr, config: Arc<rustls::ClientConfig>) -> (Identity, std::io::Result<usize>) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("handshake");
    let server = svc::tls::identity_of(&stream.get_ref().1.peer_certificates().unwrap()[0]).unwrap();
    let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("an answer");
    (server, read)
}

fn is_alert(read: &std::io::Result<usize>, alert: rustls::AlertDescription) -> bool {
    match read {
        Err(e) => {
            matches!(e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()), Some(rustls::Error::AlertReceived(a)) if *a == alert)
        }
        Ok(_) => false,
    }
}

#[tokio::test]
async fn a_mutual_tls_call_carries_the_verified_identity() {
    let dir = TempDir::new("verified");
    let ca = cluster(&dir.0);
    let server_files = issue(&ca, &dir.0, &dir.0, "diego://bbs/bbs-0", &["127.0.0.1"], Validity::Days(1));
    let client_files = issue(&ca, &dir.0, &dir.0, "diego://cell/cell-1", &[], Validity::Days(1));
    let (address, shutdown) = server(Security::mutual(server_files).unwrap()).await;

    let channel = connect(&address.to_string(), &options(Security::mutual(client_files).unwrap())).await.unwrap();
    health(channel.clone()).await.expect("health over mutual TLS");
    assert_eq!(peer_seen(channel).await.unwrap(), "diego://cell/cell-1");
    shutdown.cancel();
}

#[tokio::test]
async fn a_plaintext_server_sees_a_plaintext_peer_and_refuses_nothing() {
    let (address, shutdown) = server(Security::Plaintext).await;
    let channel = connect(&address.to_string(), &options(Security::Plaintext)).await.unwrap();
    assert_eq!(peer_seen(channel).await.unwrap(), Peer::Plaintext.to_string());
    shutdown.cancel();
}

#[tokio::test]
async fn clients_without_a_good_certificate_are_refused() {
    let dir = TempDir::new("refused");
    let ca = cluster(&dir.0);
    let server_files = issue(&ca, &dir.0, &dir.0, "diego://bbs", &["127.0.0.1"], Validity::Days(1));
    let (address, shutdown) = server(Security::mutual(server_files).unwrap()).await;
    let ca_pem = ca.cert_pem();

    // A client of the cluster is served (the control: the server answers SETTINGS).
    let good = ca.issue(&identity("diego://cell/cell-1"), &[], Validity::Days(1)).unwrap();
    let (_, read) = raw_session(address, raw_client(&ca_pem, Some(&good))).await;
    assert!(matches!(read, Ok(n) if n > 0), "a good client is served: {read:?}");

    // No certificate at all.
    let (_, read) = raw_session(address, raw_client(&ca_pem, None)).await;
    assert!(is_alert(&read, rustls::AlertDescription::CertificateRequired), "no certificate: {read:?}");

    // An expired certificate of the right CA.
    let expired = ca.issue(&identity("diego://cell/cell-1"), &[], Validity::expired()).unwrap();
    let (_, read) = raw_session(address, raw_client(&ca_pem, Some(&expired))).await;
    assert!(is_alert(&read, rustls::AlertDescription::CertificateExpired), "expired: {read:?}");

    // A certificate of another CA, through the ordinary client: the call fails and says why.
    let other_dir = TempDir::new("refused-other");
    let other = cluster(&other_dir.0);
    let mut stranger = issue(&other, &other_dir.0, &other_dir.0, "diego://cell/cell-1", &[], Validity::Days(1));
    stranger.ca = dir.0.join("ca.pem"); // it trusts the server, the server does not trust it
    let channel = svc::connect::lazy(&address.to_string(), &options(Security::mutual(stranger).unwrap())).unwrap();
    let error = health(channel).await.expect_err("another CA's client is refused");
    let why = describe(&error);
    // TLS 1.3 lets the client finish its handshake before the server judges its certificate: the
    // alert usually arrives with the first call, but the server's close can win that race.
    let broken = ["connection closed", "broken pipe", "reset", "canceled"].iter().any(|w| why.contains(w));
    assert!(
        why == "the server refused our certificate (it is not signed by a CA the server trusts)" || broken,
        "{why}"
    );

    shutdown.cancel();
}

#[tokio::test]
async fn a_server_certificate_must_name_the_dialed_host_and_come_from_the_cluster_ca() {
    let dir = TempDir::new("server-name");
    let ca = cluster(&dir.0);
    let client =
        Security::mutual(issue(&ca, &dir.0, &dir.0, "diego://operator/alice", &[], Validity::Days(1))).unwrap();

    let wrong_name = issue(&ca, &dir.0, &dir.0, "diego://bbs", &["bbs.example"], Validity::Days(1));
    let (address, shutdown) = server(Security::mutual(wrong_name).unwrap()).await;
    let error = connect(&address.to_string(), &options(client.clone())).await.unwrap_err();
    assert!(error.to_string().contains("is not valid for name 127.0.0.1"), "{error}");
    shutdown.cancel();

    let other_dir = TempDir::new("server-ca");
    let other = cluster(&other_dir.0);
    let foreign = issue(&other, &other_dir.0, &other_dir.0, "diego://bbs", &["127.0.0.1"], Validity::Days(1));
    let (address, shutdown) = server(Security::mutual(foreign).unwrap()).await;
    let error = connect(&address.to_string(), &options(client)).await.unwrap_err();
    let want = format!("server certificate for {address} is not signed by the cluster CA");
    assert!(error.to_string().contains(&want), "{error}");
    shutdown.cancel();
}

#[tokio::test]
async fn plaintext_and_tls_do_not_mix() {
    let dir = TempDir::new("mix");
    let ca = cluster(&dir.0);
    let server_files = issue(&ca, &dir.0, &dir.0, "diego://bbs", &["127.0.0.1"], Validity::Days(1));
    let client = Security::mutual(issue(&ca, &dir.0, &dir.0, "diego://reader/bob", &[], Validity::Days(1))).unwrap();

    // A plaintext client of a TLS server.
    let (address, shutdown) = server(Security::mutual(server_files).unwrap()).await;
    let channel = svc::connect::lazy(&address.to_string(), &options(Security::Plaintext)).unwrap();
    health(channel).await.expect_err("a plaintext client of a TLS server fails");
    shutdown.cancel();

    // A TLS client of a plaintext server.
    let (address, shutdown) = server(Security::Plaintext).await;
    let error = connect(&address.to_string(), &options(client)).await.unwrap_err();
    assert!(error.to_string().contains("plaintext"), "{error}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_rotated_server_certificate_is_served_without_a_restart() {
    let dir = TempDir::new("rotation");
    let ca = cluster(&dir.0);
    let server_files = issue(&ca, &dir.0, &dir.0, "diego://bbs/bbs-0", &["127.0.0.1"], Validity::Days(1));
    let (address, shutdown) = server(Security::mutual(server_files.clone()).unwrap()).await;
    let client = ca.issue(&identity("diego://cell/cell-1"), &[], Validity::Days(1)).unwrap();
    let config = raw_client(&ca.cert_pem(), Some(&client));
    let (seen, _) = raw_session(address, config.clone()).await;
    assert_eq!(seen, identity("diego://bbs/bbs-0"));

    // Half a rotation (a certificate that does not parse) keeps the old certificate.
    std::fs::write(&server_files.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (seen, read) = raw_session(address, config.clone()).await;
    assert_eq!(seen, identity("diego://bbs/bbs-0"));
    assert!(matches!(read, Ok(n) if n > 0), "still served: {read:?}");

    // The new certificate and key, written in place.
    let rotated = ca.issue(&identity("diego://bbs/bbs-1"), &["127.0.0.1".to_owned()], Validity::Days(1)).unwrap();
    std::fs::write(&server_files.key, &rotated.key_pem).unwrap();
    std::fs::write(&server_files.cert, &rotated.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (seen, read) = raw_session(address, config).await;
    assert_eq!(seen, identity("diego://bbs/bbs-1"));
    assert!(matches!(read, Ok(n) if n > 0), "served with the new certificate: {read:?}");
    shutdown.cancel();
}

#[test]
fn bad_files_are_refused_at_start_with_one_line() {
    let dir = TempDir::new("files");
    let ca = cluster(&dir.0);
    let good = issue(&ca, &dir.0, &dir.0, "diego://auctioneer", &[], Validity::Days(1));
    let refused = |files: TlsFiles| Security::mutual(files).unwrap_err();

    let missing = TlsFiles { cert: dir.0.join("missing.pem"), ..good.clone() };
    assert!(matches!(refused(missing), TlsError::Read { what: "certificate", .. }));

    let empty = dir.0.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = refused(TlsFiles { cert: empty.clone(), ..good.clone() });
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
    assert!(error.to_string().contains("empty.pem"), "{error}");
    assert!(matches!(refused(TlsFiles { ca: empty.clone(), ..good.clone() }), TlsError::NoCertificate { .. }));
    assert!(matches!(refused(TlsFiles { key: empty, ..good.clone() }), TlsError::NoKey { .. }));

    let other = issue(&ca, &dir.0, &dir.0, "diego://bbs", &[], Validity::Days(1));
    let error = refused(TlsFiles { key: other.key, ..good.clone() });
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");

    let expired = issue(&ca, &dir.0, &dir.0, "diego://cell/old", &[], Validity::expired());
    let error = refused(expired);
    assert!(matches!(error, TlsError::Expired { .. }), "{error}");

    let day = Duration::from_secs(86_400);
    #[allow(clippy::disallowed_methods)] // a certificate's validity is wall-clock time
    let now = std::time::SystemTime::now();
    let future = issue(&ca, &dir.0, &dir.0, "diego://cell/new", &[], Validity::Between(now + day, now + 2 * day));
    assert!(matches!(refused(future), TlsError::NotYetValid { .. }));

    assert!(!error.to_string().contains('\n'));
    let loaded = Security::mutual(good).unwrap();
    assert_eq!(loaded.clone(), loaded);
    assert_ne!(loaded, Security::Plaintext);
}

#[tokio::test]
async fn a_client_refuses_a_server_of_another_role_and_names_both() {
    let pki = svc::pki::Pki::for_tests();
    let cell = pki.test_tls(Role::Cell, "cell-1").security().unwrap();
    let auctioneer = pki.test_tls(Role::Auctioneer, "").security().unwrap();
    let (address, shutdown) = server(cell).await;
    let address = address.to_string();
    let want = format!("server at {address} is diego://cell/cell-1, not a bbs");

    // A client of the BBS, connecting now: the cell's certificate is of the right CA and host.
    let error = connect(&address, &options(auctioneer.clone())).await.unwrap_err();
    assert_eq!(error.to_string(), format!("cannot connect to {address}: {want}"));
    let ConnectError::Unreachable { source, .. } = &error else { panic!("{error:?}") };
    assert_eq!(svc::tls::tls_failure(source).as_deref(), Some(want.as_str()), "what the CLI shows");

    // The leader-following BBS client, connecting on its first call.
    let bbs = svc::bbs_client::BbsChannels::new(&address, Duration::from_secs(5), auctioneer.clone()).unwrap();
    let error = health(bbs.channel().unwrap()).await.expect_err("a cell is not the bbs");
    assert_eq!(describe(&error), want);

    // The BBS's client of the auctioneer, likewise.
    let to_auctioneer = options(pki.test_tls(Role::Bbs, "").security().unwrap()).expect(Role::Auctioneer);
    let error = connect(&address, &to_auctioneer).await.unwrap_err();
    assert!(error.to_string().ends_with(&format!("server at {address} is diego://cell/cell-1, not an auctioneer")));
    shutdown.cancel();
}

#[tokio::test]
async fn a_client_of_a_cell_accepts_the_cell_it_calls_and_no_other() {
    let pki = svc::pki::Pki::for_tests();
    let (address, shutdown) = server(pki.test_tls(Role::Cell, "cell-1").security().unwrap()).await;
    let address = address.to_string();
    let client = pki.test_tls(Role::Bbs, "").security().unwrap();

    // Any cell, by role.
    let to_cells = options(client.clone()).expect(Role::Cell);
    let channel = connect(&address, &to_cells).await.expect("a cell is a cell");
    assert_eq!(peer_seen(channel).await.unwrap(), "diego://bbs");

    // The cell the connector means to call, by its id.
    let connector = svc::connect::Connector::with_options(to_cells);
    health(connector.cell_channel(&address, "cell-1").unwrap()).await.expect("cell-1 is cell-1");
    let error = health(connector.cell_channel(&address, "cell-2").unwrap()).await.expect_err("cell-1 is not cell-2");
    assert_eq!(describe(&error), format!("server at {address} is diego://cell/cell-1, not diego://cell/cell-2"));

    // Plaintext channels check nobody.
    let (plain, stop) = server(Security::Plaintext).await;
    let plaintext = options(Security::Plaintext).expect(Role::Cell);
    connect(&plain.to_string(), &plaintext).await.expect("plaintext is unaffected");
    stop.cancel();
    shutdown.cancel();
}
