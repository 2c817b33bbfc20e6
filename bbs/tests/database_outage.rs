//! A BBS whose database becomes unreachable answers at once (issue 12): requests, Locket
//! included, fail with UNAVAILABLE naming "database unreachable since" instead of each waiting
//! for the pool's acquire timeout, and the same process serves again once the database is back.
//! PostgreSQL and MySQL are reached through a loopback TCP proxy the test stops and restarts
//! (the shared servers are never stopped); SQLite is a local file with no network to lose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bbs::config::BbsConfig;
use db::Backend;
use db::testing::TestDb;
use proto::pb::bbs::v1 as api;
use proto::pb::bbs::v1::bbs_client::BbsClient;
use proto::pb::locket::v1 as locket;
use proto::pb::locket::v1::locket_client::LocketClient;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// A loopback TCP proxy to `upstream` that can be stopped (closing every proxied connection)
/// and started again on the same port.
struct Proxy {
    address: SocketAddr,
    upstream: SocketAddr,
    tasks: Option<JoinSet<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let mut proxy = Proxy { address: "127.0.0.1:0".parse().unwrap(), upstream, tasks: None };
        proxy.resume().await;
        proxy
    }

    async fn resume(&mut self) {
        let listener = TcpListener::bind(self.address).await.expect("bind the proxy");
        self.address = listener.local_addr().unwrap();
        let upstream = self.upstream;
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let accepted = connections.clone();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                accepted.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        // Aborting this task drops the set, which aborts (and closes) every connection.
        tasks.spawn(async move {
            let _keep = connections;
            std::future::pending::<()>().await
        });
        self.tasks = Some(tasks);
    }

    async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// `url` with its `host:port` replaced by `address`, and the `host:port` it had.
async fn through(url: &str, address: Option<SocketAddr>) -> (String, SocketAddr) {
    let start = url.find("://").unwrap() + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host_start = url[start..authority_end].rfind('@').map_or(start, |i| start + i + 1);
    let upstream = tokio::net::lookup_host(&url[host_start..authority_end]).await.unwrap().next().unwrap();
    let address = address.unwrap_or(upstream);
    (format!("{}{address}{}", &url[..host_start], &url[authority_end..]), upstream)
}

fn unreachable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().contains("database unreachable since")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bbs_fails_fast_while_its_database_is_unreachable_and_serves_again_when_it_is_back() {
    for backend in [Backend::Postgres, Backend::Mysql] {
        let Some(db) = TestDb::create(backend).await else { continue };
        let (_, upstream) = through(&db.url, None).await;
        let mut proxy = Proxy::start(upstream).await;
        let (url, _) = through(&db.url, Some(proxy.address)).await;

        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", grpc.local_addr().unwrap());
        let config = BbsConfig {
            encryption_keys_file: db::testing::test_key_file(),
            database_url: url,
            lock_ttl: Duration::from_secs(2),
            lock_retry_interval: Duration::from_millis(500),
            tls: svc::config::tls::TlsConfig::insecure_plaintext(),
            ..BbsConfig::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(bbs::run(
            config.validate().unwrap(),
            bbs::Listeners { grpc, admin },
            bbs::Overrides::default(),
            shutdown.clone(),
        ));
        let channel = Channel::from_shared(endpoint).unwrap().connect_lazy();
        let mut client = BbsClient::new(channel.clone());
        let mut locket = LocketClient::new(channel);
        let fetch_all = || locket::FetchAllRequest { type_code: locket::TypeCode::Presence as i32 };
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.domains(api::DomainsRequest::default()).await.is_err() {
            assert!(Instant::now() < deadline, "{backend:?}: the bbs never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        proxy.stop().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match client.domains(api::DomainsRequest::default()).await {
                Err(status) if unreachable(&status) => break,
                _ => assert!(Instant::now() < deadline, "{backend:?}: the bbs never noticed its database is gone"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every request now fails at once, well inside the 10 s acquire timeout: reads and
        // Locket (reps' presences) alike.
        for _ in 0..5 {
            let started = Instant::now();
            let read = client.domains(api::DomainsRequest::default()).await.unwrap_err();
            let presences = locket.fetch_all(fetch_all()).await.unwrap_err();
            for status in [&read, &presences] {
                assert!(unreachable(status), "{backend:?}: {status:?}");
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{backend:?}: requests waited {:?}", started.elapsed());
        }

        // The database comes back: the same process serves again, writes included.
        proxy.resume().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let upsert = api::UpsertDomainRequest { domain: "back".into(), ttl: 0 };
            let read = client.domains(api::DomainsRequest::default()).await;
            let presences = locket.fetch_all(fetch_all()).await;
            let write = client.upsert_domain(upsert).await;
            if read.is_ok() && presences.is_ok() && write.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{backend:?}: the bbs never recovered: {read:?} {presences:?} {write:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(15), server).await.expect("bbs did not shut down");
        stopped.expect("bbs task panicked").expect("bbs run failed");
        proxy.stop().await;
    }
}
