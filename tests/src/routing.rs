//! Traffic through the cluster's HTTP router for the end-to-end suite: an LRP routed at a host
//! (busybox httpd naming its index, with a readiness page), requests with a Host header, and a
//! steady load that records every answer ([`Load`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proto::pb::models::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::fixtures;

/// An HTTP LRP serving `instance N` at `/`, with a readiness check on `/ready` (the page
/// `www/ready` in its directory), routed at `host`.
pub fn routed_lrp(guid: &str, host: &str, instances: i32) -> pb::DesiredLrp {
    let script = "mkdir -p www && echo \"instance $INSTANCE_INDEX\" > www/index.html && echo ready > www/ready \
                  && exec /bin/busybox httpd -f -p $PORT -h www";
    let readiness = pb::Check {
        tcp_check: None,
        http_check: Some(pb::HttpCheck {
            port: 8080,
            path: "/ready".into(),
            request_timeout_ms: 500,
            interval_ms: 200,
        }),
    };
    let mut lrp = fixtures::http_lrp(guid, instances);
    lrp.action = Some(fixtures::shell(script));
    if let Some(checks) = lrp.check_definition.as_mut() {
        checks.readiness_checks = vec![readiness];
    }
    let document = format!(r#"[{{"hostnames":["{host}"],"port":8080}}]"#);
    lrp.routes.insert("cf-router".into(), document.into_bytes());
    lrp
}

/// `GET /` through the router with `Host: host`: the status and body (`None`: no answer within
/// 10 s, or the connection broke).
pub async fn get(router: &str, host: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(router).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        Some((status, response.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.ok()?
}

/// The bodies of `count` requests through the router, when every one was a 200.
pub async fn answering(router: &str, host: &str, count: usize) -> Option<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        match get(router, host).await? {
            (200, body) => seen.insert(body),
            _ => return None,
        };
    }
    Some(seen)
}

/// `instance N` for each index.
pub fn names(indices: impl IntoIterator<Item = i32>) -> BTreeSet<String> {
    indices.into_iter().map(|i| format!("instance {i}")).collect()
}

/// A steady load through the router: `workers` clients, each sending a request, then pausing
/// `pause`, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
    started: Instant,
}

/// One request of a [`Load`]: when it ended (since the load started), and its failure if any.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the answer (or the failure) came.
    pub at: Duration,
    /// `None` for a 200; else what came instead.
    pub failure: Option<String>,
}

/// What a [`Load`] saw.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Requests answered with a 200.
    pub answered: usize,
    /// The failures, each with when it came.
    pub failed: Vec<Outcome>,
    /// The longest time without a 200 from any worker.
    pub longest_gap: Duration,
    /// How long the load ran.
    pub ran: Duration,
}

impl Load {
    /// Starts the load.
    pub fn start(router: &str, host: &str, workers: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let workers = (0..workers)
            .map(|_| {
                let (router, host, stop) = (router.to_owned(), host.to_owned(), stop.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let failure = match get(&router, &host).await {
                            Some((200, _)) => None,
                            other => Some(format!("{other:?}")),
                        };
                        outcomes.push(Outcome { at: started.elapsed(), failure });
                        tokio::time::sleep(pause).await;
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, workers, started }
    }

    /// Stops the load and sums up what it saw.
    pub async fn stop(self) -> Figures {
        self.stop.store(true, Ordering::SeqCst);
        let ran = self.started.elapsed();
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.unwrap_or_default());
        }
        all.sort_by_key(|o| o.at);
        let mut last_ok = Duration::ZERO;
        let mut longest_gap = Duration::ZERO;
        for outcome in all.iter().filter(|o| o.failure.is_none()) {
            longest_gap = longest_gap.max(outcome.at.saturating_sub(last_ok));
            last_ok = outcome.at;
        }
        longest_gap = longest_gap.max(ran.saturating_sub(last_ok));
        let answered = all.iter().filter(|o| o.failure.is_none()).count();
        let failed = all.into_iter().filter(|o| o.failure.is_some()).collect();
        Figures { answered, failed, longest_gap, ran }
    }
}
