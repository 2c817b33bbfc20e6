//! End to end, on every backend: the cluster speaks mutual TLS and each identity may do only what
//! its role needs (issue "Secure by default"). Over real sockets, a client with no certificate,
//! with a certificate of another CA, or with an expired one is refused on the BBS, auctioneer and
//! rep ports alike; a cell's certificate cannot act on another cell's instances nor desire; an
//! operator cannot call a rep's `Perform`; a read-only operator cannot desire. Every refusal
//! leaves the database as it was.

use std::sync::Arc;
use std::time::Duration;

use cell_rep::RuntimeKind;
use db::Backend;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::rep::v1 as rep;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use svc::certs::{Ca, Issued, Validity};
use svc::identity::{Identity, Role};
use tests::cluster::Cluster;
use tests::steps::{desire, wait_running};
use tests::{fixtures, probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

tests::on_every_backend!(
    no_certificate_another_ca_or_an_expired_one_is_refused_on_every_port,
    each_identity_may_do_only_what_its_role_needs_and_a_refusal_writes_nothing,
);

/// The HTTP/2 client preface: what a gRPC client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A bare TLS 1.3 client trusting `ca_pem`, presenting `client` when given.
fn raw_client(ca_pem: &str, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes()).map(|c| c.expect("cert")).collect();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
            builder.with_client_auth_cert(chain, key).expect("client certificate")
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Whether the server at `address` serves HTTP/2 to this client: it completes the handshake,
/// takes the preface and answers with a SETTINGS frame. A refused client gets an alert or a
/// closed connection instead.
async fn served(address: &str, config: Arc<rustls::ClientConfig>) -> bool {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
        let name = ServerName::try_from("127.0.0.1").ok()?;
        let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.ok()?;
        tls.write_all(PREFACE).await.ok()?;
        // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
        tls.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.ok()?;
        tls.flush().await.ok()?;
        let mut header = [0u8; 9];
        tls.read_exact(&mut header).await.ok()?;
        // The server's first frame is its SETTINGS.
        Some(header[3] == 4)
    };
    tokio::time::timeout(Duration::from_secs(10), attempt).await.ok().flatten().unwrap_or(false)
}

async fn no_certificate_another_ca_or_an_expired_one_is_refused_on_every_port(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 1, RuntimeKind::Sim, |_| {}).await else { return };
    let dir = cluster.tls_dir().expect("the cluster speaks TLS").to_owned();
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem");
    let cluster_ca = Ca::load(&dir).expect("the cluster CA");
    let other_ca = Ca::generate().expect("another CA");
    let operator = Identity::new(Role::Operator, "operator").expect("identity");
    let good = cluster_ca.issue(&operator, &[], Validity::Days(1)).expect("issue");
    let foreign = other_ca.issue(&operator, &[], Validity::Days(1)).expect("issue");
    let expired = cluster_ca.issue(&operator, &[], Validity::expired()).expect("issue");
    let auctioneer = cluster.auctioneer_address.clone().expect("the auctioneer runs");
    for (port, address) in
        [("bbs", cluster.bbs_address.as_str()), ("auctioneer", auctioneer.as_str()), ("rep", &cluster.reps[0].address)]
    {
        // The probe itself works: a certificate of the cluster CA is served.
        assert!(served(address, raw_client(&ca_pem, Some(&good))).await, "{port}: a valid certificate is served");
        assert!(!served(address, raw_client(&ca_pem, None)).await, "{port}: no certificate is refused");
        assert!(!served(address, raw_client(&ca_pem, Some(&foreign))).await, "{port}: another CA is refused");
        assert!(!served(address, raw_client(&ca_pem, Some(&expired))).await, "{port}: an expired one is refused");
    }
    // And plaintext gRPC gets nowhere either.
    let plaintext = svc::connect::ChannelOptions::new(Duration::from_secs(5), svc::tls::Security::Plaintext);
    let channel = svc::connect::lazy(&cluster.bbs_address, &plaintext).expect("channel");
    let refused = BbsClient::new(channel).ping(api::PingRequest::default()).await;
    assert!(refused.is_err(), "a plaintext call to the TLS port: {refused:?}");
    cluster.shutdown().await;
}

/// A channel to the server of role `server` at `address` as the identity of `role` named `name`,
/// certified by the cluster.
fn channel_as(cluster: &Cluster, address: &str, server: Role, role: Role, name: &str) -> Channel {
    let security = cluster.tls_for(role, name).expect("certificate").security().expect("loads");
    let options = svc::connect::ChannelOptions::new(Duration::from_secs(10), security).expect(server);
    svc::connect::lazy(address, &options).expect("channel")
}

fn assert_denied<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>, names: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{what}: {status:?}");
            assert!(status.message().contains(names), "{what}: the refusal names {names}: {status:?}");
        }
        Ok(response) => panic!("{what} was allowed: {response:?}"),
    }
}

/// What the database holds that a refused call could change: every instance (key, instance key,
/// state, since) and every desired LRP (guid, instances, tag).
async fn snapshot(cluster: &Cluster) -> Vec<String> {
    let client = cluster.bbs();
    let mut rows: Vec<String> = probe::instances(&client, "web")
        .await
        .into_iter()
        .map(|a| format!("{:?} {:?} {} {}", a.actual_lrp_key, a.actual_lrp_instance_key, a.state, a.since))
        .collect();
    let desired = cluster
        .bbs()
        .desired_lr_ps(api::DesiredLrPsRequest::default())
        .await
        .expect("list desired")
        .into_inner()
        .desired_lrps;
    rows.extend(desired.iter().map(|d| format!("{} {} {:?}", d.process_guid, d.instances, d.modification_tag)));
    rows.sort();
    rows
}

async fn each_identity_may_do_only_what_its_role_needs_and_a_refusal_writes_nothing(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 2, RuntimeKind::Sim, |_| {}).await else { return };
    desire(&cluster, fixtures::http_lrp("web", 2)).await;
    let running = wait_running(&cluster, "web", 2).await;
    // An instance the other cell runs, as cell-0 sees the world.
    let theirs = running.iter().find(|a| probe::cell(a) != "cell-0").cloned();
    let theirs = match theirs {
        Some(instance) => instance,
        None => {
            // Both landed on cell-0: act as cell-1 against cell-0's instance instead.
            running[0].clone()
        }
    };
    let owner = probe::cell(&theirs).to_owned();
    let intruder = if owner == "cell-0" { "cell-1" } else { "cell-0" };
    let before = snapshot(&cluster).await;

    let mut cell = BbsClient::new(channel_as(&cluster, &cluster.bbs_address, Role::Bbs, Role::Cell, intruder));
    let key = theirs.actual_lrp_key.clone();
    let instance_key = theirs.actual_lrp_instance_key.clone();
    let who = format!("diego://cell/{intruder}");
    assert_denied(
        "claiming another cell's instance",
        cell.claim_actual_lrp(api::ClaimActualLrpRequest {
            process_guid: "web".into(),
            index: key.as_ref().map_or(0, |k| k.index),
            actual_lrp_instance_key: instance_key.clone(),
        })
        .await,
        &who,
    );
    assert_denied(
        "starting another cell's instance",
        cell.start_actual_lrp(api::StartActualLrpRequest {
            actual_lrp_key: key.clone(),
            actual_lrp_instance_key: instance_key.clone(),
            actual_lrp_net_info: theirs.actual_lrp_net_info.clone(),
            ..Default::default()
        })
        .await,
        &who,
    );
    assert_denied(
        "crashing another cell's instance",
        cell.crash_actual_lrp(api::CrashActualLrpRequest {
            actual_lrp_key: key.clone(),
            actual_lrp_instance_key: instance_key.clone(),
            error_message: "forged".into(),
        })
        .await,
        &who,
    );
    assert_denied(
        "a cell desiring",
        cell.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(fixtures::http_lrp("forged", 1)) }).await,
        &who,
    );

    // An operator may not make a rep run anything: only the auctioneer may.
    let mut to_rep = rep::rep_client::RepClient::new(channel_as(
        &cluster,
        &cluster.reps[0].address,
        Role::Cell,
        Role::Operator,
        "operator",
    ));
    assert_denied("an operator calling Perform", to_rep.perform(rep::Work::default()).await, "Perform");

    // A read-only operator reads, and may not desire.
    let mut reader = BbsClient::new(channel_as(&cluster, &cluster.bbs_address, Role::Bbs, Role::Reader, "auditor"));
    reader.actual_lr_ps(api::ActualLrPsRequest::default()).await.expect("a reader reads");
    assert_denied(
        "a reader desiring",
        reader.desire_lrp(api::DesireLrpRequest { desired_lrp: Some(fixtures::http_lrp("forged", 1)) }).await,
        "diego://reader/auditor",
    );

    // Nothing the refused calls named was written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(snapshot(&cluster).await, before, "a refusal left the database as it was");
    assert!(probe::instances(&cluster.bbs(), "forged").await.is_empty(), "no instance of a refused desire");
    cluster.shutdown().await;
}
