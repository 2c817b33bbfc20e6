//! The proxy over real sockets, with routes from a fixed source: round-robin over every instance,
//! 404 for an unknown host, 502 for a route with no ready instance, a refused connection retried
//! once on another instance, an oversized head refused, `/routes` and `/metrics` on the admin
//! port.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use router::emitter::Sequenced;
use router::table::{Instance, RouteEntry, Snapshot};
use router::{RouteSource, RouterConfig, RouterError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A source with one snapshot and an event stream that never says anything.
struct Fixed(Snapshot);

impl RouteSource for Fixed {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, RouterError>> {
        let snapshot = self.0.clone();
        Box::pin(async move { Ok(snapshot) })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Sequenced, RouterError>>, RouterError>> {
        Box::pin(async move { Ok(Box::pin(futures::stream::pending()) as BoxStream<'static, _>) })
    }
}

/// An HTTP server answering every request with `instance NAME`; returns its port.
async fn upstream(name: &'static str, stop: CancellationToken) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted.expect("accept"),
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("instance {name}\n");
                let response =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

fn instance(guid: &str, index: i32, port: u16) -> Instance {
    Instance {
        process_guid: "web".into(),
        instance_guid: guid.into(),
        index,
        running: true,
        routable: true,
        host: "127.0.0.1".into(),
        instance_address: None,
        ports: vec![(8080, u32::from(port))],
    }
}

/// One request with `host`; the status code and body.
async fn get(router: &str, host: &str, extra: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(router).await.expect("connect to the router");
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn admin_get(admin: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(admin).await.expect("connect to admin");
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await.expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_balances_retries_and_explains_what_it_cannot_route() {
    let stop = CancellationToken::new();
    let (a, b) = (upstream("a", stop.clone()).await, upstream("b", stop.clone()).await);
    let dead = closed_port().await;
    let route = |host: &str| RouteEntry { hostname: host.into(), port: 8080 };
    let snapshot = Snapshot {
        desired: vec![
            ("web".into(), vec![route("web.example.com")]),
            ("none".into(), vec![route("empty.example.com")]),
            ("gone".into(), vec![route("gone.example.com")]),
        ],
        instances: vec![
            instance("a", 0, a),
            instance("b", 1, b),
            instance("dead", 2, dead),
            Instance { process_guid: "gone".into(), ..instance("gone", 0, dead) },
        ],
    };
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (address, admin_address) = (http.local_addr().expect("addr"), admin.local_addr().expect("addr"));
    let config = RouterConfig {
        tls: svc::config::tls::TlsConfig::insecure_plaintext(),
        connect_timeout: Duration::from_secs(2),
        ..RouterConfig::default()
    };
    let task = tokio::spawn(router::run_with(
        config,
        router::Listeners { grpc: http, admin },
        Arc::new(Fixed(snapshot)),
        stop.clone(),
    ));
    let router = address.to_string();
    // The first sync.
    for _ in 0..100 {
        if get(&router, "web.example.com", "").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every request succeeds (the dead instance's refusals are retried) and both live instances
    // answer.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (status, body) = get(&router, "Web.Example.com:80", "").await;
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["instance a\n", "instance b\n"]);

    let (status, body) = get(&router, "nowhere.example.com", "").await;
    assert_eq!((status, body.as_str()), (404, "no route for host \"nowhere.example.com\"\n"));
    let (status, body) = get(&router, "empty.example.com", "").await;
    assert_eq!((status, body.as_str()), (502, "no ready instance for host empty.example.com\n"));
    let (status, body) = get(&router, "gone.example.com", "").await;
    assert_eq!((status, body.as_str()), (502, "the only instance of gone.example.com refused the connection\n"));
    let huge = format!("X-Big: {}\r\n", "x".repeat(100 * 1024));
    assert_eq!(get(&router, "web.example.com", &huge).await.0, 431);

    let routes = admin_get(&admin_address.to_string(), "/routes").await;
    assert!(routes.contains("web.example.com -> 127.0.0.1:"), "{routes}");
    assert!(routes.contains("empty.example.com -> (none ready)"), "{routes}");
    let metrics = admin_get(&admin_address.to_string(), "/metrics").await;
    assert!(metrics.contains("router_requests_total{route=\"web.example.com\",status=\"2xx\"}"), "{metrics}");
    assert!(metrics.contains("router_upstream_errors_total{route=\"web.example.com\",kind=\"connect\"}"), "{metrics}");
    assert!(metrics.contains("router_request_duration_seconds"), "{metrics}");

    stop.cancel();
    assert!(task.await.expect("no panic").is_ok());
}
