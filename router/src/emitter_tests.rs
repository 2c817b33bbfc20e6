use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::*;
use crate::table::{Instance, RouteEntry};

/// A source whose snapshot is set by the test and whose streams the test feeds and drops.
#[derive(Default)]
struct FakeSource {
    snapshot: Mutex<Snapshot>,
    syncs: AtomicUsize,
    streams: Mutex<Vec<mpsc::Sender<Result<Sequenced, RouterError>>>>,
}

impl RouteSource for FakeSource {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, RouterError>> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let snapshot = self.snapshot.lock().expect("lock").clone();
        Box::pin(async move { Ok(snapshot) })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<BoxStream<'static, Result<Sequenced, RouterError>>, RouterError>> {
        let (tx, rx) = mpsc::channel(16);
        self.streams.lock().expect("lock").push(tx);
        Box::pin(async move { Ok(tokio_stream_of(rx)) })
    }
}

fn tokio_stream_of(
    mut rx: mpsc::Receiver<Result<Sequenced, RouterError>>,
) -> BoxStream<'static, Result<Sequenced, RouterError>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn instance(guid: &str, port: u32) -> Instance {
    Instance {
        process_guid: "web".into(),
        instance_guid: guid.into(),
        running: true,
        routable: true,
        host: "127.0.0.1".into(),
        ports: vec![(8080, port)],
        ..Instance::default()
    }
}

fn web_routes() -> Vec<(String, Vec<RouteEntry>)> {
    vec![("web".into(), vec![RouteEntry { hostname: "web".into(), port: 8080 }])]
}

fn endpoints(routes: &RouteHandle) -> Vec<String> {
    routes.current().get("web").unwrap_or_default().iter().map(|e| e.address.clone()).collect()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test]
async fn events_apply_and_a_dropped_stream_means_subscribing_and_syncing_again() {
    let source = Arc::new(FakeSource::default());
    *source.snapshot.lock().expect("lock") = Snapshot { desired: web_routes(), instances: vec![instance("a", 1)] };
    let routes = RouteHandle::default();
    let status = EmitterStatus::default();
    let emitter = Emitter::new(
        source.clone(),
        routes.clone(),
        status.clone(),
        Duration::from_secs(3600),
        Duration::from_millis(10),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(emitter.run(stop.clone()));
    until("the first sync", || endpoints(&routes) == ["127.0.0.1:1"]).await;

    // An event adds an instance.
    let stream = source.streams.lock().expect("lock")[0].clone();
    stream.send(Ok((1, Some(Change::Instance(instance("b", 2)))))).await.expect("send");
    until("the event applied", || endpoints(&routes).len() == 2).await;

    // The stream drops; meanwhile the BBS forgot "a": the next sync finds out.
    *source.snapshot.lock().expect("lock") = Snapshot { desired: web_routes(), instances: vec![instance("b", 2)] };
    drop(stream);
    source.streams.lock().expect("lock").clear();
    until("a new subscription and sync", || {
        !source.streams.lock().expect("lock").is_empty() && endpoints(&routes) == ["127.0.0.1:2"]
    })
    .await;
    assert_eq!(source.syncs.load(Ordering::SeqCst), 2);
    assert!(status.problem().is_none());

    // A gap in the sequence numbers syncs again.
    let stream = source.streams.lock().expect("lock")[0].clone();
    stream.send(Ok((1, None))).await.expect("send");
    stream.send(Ok((5, None))).await.expect("send");
    until("the gap's sync", || source.syncs.load(Ordering::SeqCst) == 3).await;

    stop.cancel();
    task.await.expect("stops");
}

#[tokio::test]
async fn every_periodic_sync_renews_the_subscription_and_drops_the_old_stream() {
    let source = Arc::new(FakeSource::default());
    *source.snapshot.lock().expect("lock") = Snapshot { desired: web_routes(), instances: vec![instance("a", 1)] };
    let routes = RouteHandle::default();
    let emitter = Emitter::new(
        source.clone(),
        routes.clone(),
        EmitterStatus::default(),
        Duration::from_millis(50),
        Duration::from_millis(10),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(emitter.run(stop.clone()));
    until("three subscriptions", || source.streams.lock().expect("lock").len() >= 3).await;
    {
        let streams = source.streams.lock().expect("lock");
        // Every stream but the newest was dropped by the emitter.
        assert!(streams[..streams.len() - 1].iter().all(|tx| tx.is_closed()));
    }
    assert!(source.syncs.load(Ordering::SeqCst) >= 3);
    assert_eq!(endpoints(&routes), ["127.0.0.1:1"]);
    stop.cancel();
    task.await.expect("stops");
}
