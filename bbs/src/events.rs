//! The event hub: fans out instance and task events to `SubscribeTo*Events` streams.
//!
//! - Controllers publish *after* their transaction commits, while holding the [`KeyLocks`] stripe
//!   of the record they changed, so the events of one key leave in commit order.
//! - Every subscriber has a buffer of `event_buffer` (1024) events. One that falls further behind
//!   is closed with RESOURCE_EXHAUSTED and must re-list, as in Diego; nothing is replayed.
//! - A subscriber filtered to one cell (a cell's route emitter) has a queue of its own, fed only
//!   the events of its cell and the desired-LRP events: the other cells' events neither count
//!   against its buffer nor wake it. (With one shared buffer, 2,000 cells' subscribers each woke
//!   for every event, and under load some fell 1,024 events behind on events they then dropped.)
//! - Each delivered message carries a `sequence` that starts at 1 and increases by one per stream,
//!   so a consumer can tell it missed nothing while its stream stays open.
//! - When this BBS stops leading, [`EventHub::close_all`] ends every stream with UNAVAILABLE.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::Stream;
use proto::pb::models::v1 as pb;
use tokio::sync::{broadcast, mpsc};

/// One published instance event and the cells it concerns (for the cell filter).
#[derive(Debug, Clone)]
pub struct InstanceEnvelope {
    /// The event.
    pub event: pb::instance_event::Event,
    /// Cells of the instance keys involved; empty for desired-LRP events, which every
    /// subscriber receives.
    pub cells: Vec<String>,
}

/// Fans events out to subscribers.
pub struct EventHub {
    buffer: usize,
    /// Most open streams (both kinds together); each holds a task and a place in the buffers.
    max_subscribers: usize,
    /// Most open streams of one verified identity.
    max_per_identity: usize,
    /// Open streams per verified identity.
    per_identity: Arc<Mutex<HashMap<String, usize>>>,
    /// The instance subscribers of every cell.
    instance: Mutex<broadcast::Sender<Arc<InstanceEnvelope>>>,
    /// The instance subscribers of one cell each, by cell.
    cell_subscribers: Mutex<HashMap<String, Vec<CellSubscriber>>>,
    task: Mutex<broadcast::Sender<Arc<pb::task_event::Event>>>,
}

/// The feeding end of one cell-filtered instance stream.
struct CellSubscriber {
    tx: mpsc::Sender<Arc<InstanceEnvelope>>,
    /// Set when its queue was full: the stream ends with RESOURCE_EXHAUSTED, not UNAVAILABLE.
    lagged: Arc<AtomicBool>,
}

impl CellSubscriber {
    /// Queues `envelope`; false when the subscriber is gone or just fell behind (and is dropped).
    fn offer(&self, envelope: &Arc<InstanceEnvelope>) -> bool {
        match self.tx.try_send(envelope.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl EventHub {
    /// A hub whose subscribers may fall `buffer` events behind.
    pub fn new(buffer: usize) -> Self {
        let buffer = buffer.max(1);
        Self {
            buffer,
            max_subscribers: usize::MAX,
            max_per_identity: usize::MAX,
            per_identity: Arc::default(),
            instance: Mutex::new(broadcast::channel(buffer).0),
            cell_subscribers: Mutex::default(),
            task: Mutex::new(broadcast::channel(buffer).0),
        }
    }

    /// Publishes an instance event: to every unfiltered subscriber, and to the subscribers of
    /// each of `cells` (the cells of its instance keys, before and after). An event of an
    /// instance without a cell (UNCLAIMED) has none: it reaches no cell's stream, as in Diego,
    /// where an instance event passes a cell filter only when its instance key names that cell.
    pub fn publish_instance(&self, event: pb::instance_event::Event, cells: Vec<String>) {
        self.publish(Arc::new(InstanceEnvelope { event, cells }), false);
    }

    /// Publishes a desired-LRP event: to every subscriber, whatever its cell filter.
    pub fn publish_desired(&self, event: pb::instance_event::Event) {
        self.publish(Arc::new(InstanceEnvelope { event, cells: Vec::new() }), true);
    }

    /// Sends `envelope` to the unfiltered subscribers, and to every cell's subscribers when
    /// `every_cell`, else to those of its cells.
    fn publish(&self, envelope: Arc<InstanceEnvelope>, every_cell: bool) {
        metrics::counter!("bbs_events_published_total", "stream" => "instance").increment(1);
        let sender = lock(&self.instance).clone();
        // No subscribers is not an error.
        let _ = sender.send(envelope.clone());
        let mut by_cell = lock(&self.cell_subscribers);
        if every_cell {
            for subscribers in by_cell.values_mut() {
                subscribers.retain(|s| s.offer(&envelope));
            }
            by_cell.retain(|_, subscribers| !subscribers.is_empty());
            return;
        }
        for (i, cell) in envelope.cells.iter().enumerate() {
            if envelope.cells[..i].contains(cell) {
                continue;
            }
            if let Some(subscribers) = by_cell.get_mut(cell) {
                subscribers.retain(|s| s.offer(&envelope));
                if subscribers.is_empty() {
                    by_cell.remove(cell);
                }
            }
        }
    }

    /// Publishes a task event.
    pub fn publish_task(&self, event: pb::task_event::Event) {
        metrics::counter!("bbs_events_published_total", "stream" => "task").increment(1);
        let sender = lock(&self.task).clone();
        let _ = sender.send(Arc::new(event));
    }

    /// The same hub, admitting at most `max` open streams.
    pub fn with_max_subscribers(mut self, max: usize) -> Self {
        self.max_subscribers = max;
        self
    }

    /// The same hub, admitting at most `max` open streams per verified identity.
    pub fn with_max_subscribers_per_identity(mut self, max: usize) -> Self {
        self.max_per_identity = max;
        self
    }

    /// Takes one of the stream slots of `peer`'s identity, held until the returned slot drops;
    /// RESOURCE_EXHAUSTED, naming the limit, when the identity holds `max_per_identity` already.
    /// A plaintext peer has no identity and only the overall limit ([`EventHub::admit`]).
    pub fn admit_identity(&self, peer: &svc::identity::Peer) -> Result<Option<SubscriberSlot>, tonic::Status> {
        let Some(identity) = peer.identity() else { return Ok(None) };
        let who = identity.to_string();
        let mut counts = lock(&self.per_identity);
        let open = counts.get(&who).copied().unwrap_or(0);
        if open >= self.max_per_identity {
            metrics::counter!("bbs_event_subscribers_refused_total").increment(1);
            return Err(tonic::Status::resource_exhausted(format!(
                "{who} has {open} event streams open, the most one identity may \
                 (max_event_subscribers_per_identity = {})",
                self.max_per_identity
            )));
        }
        counts.insert(who.clone(), open + 1);
        Ok(Some(SubscriberSlot { counts: self.per_identity.clone(), who }))
    }

    /// Open streams of the identity `who` (its URI).
    pub fn subscribers_of(&self, who: &str) -> usize {
        lock(&self.per_identity).get(who).copied().unwrap_or(0)
    }

    /// Refuses a new stream when `max_subscribers` are open (UNAVAILABLE: retry later), so no
    /// client can open streams without bound.
    pub fn admit(&self) -> crate::Result<()> {
        let open = self.subscribers();
        if open >= self.max_subscribers {
            metrics::counter!("bbs_event_subscribers_refused_total").increment(1);
            return Err(crate::Error::Refused {
                code: proto::error::ErrorCode::Unavailable,
                message: format!(
                    "{open} event streams are open, the most this bbs serves (max_event_subscribers); retry later"
                ),
            });
        }
        Ok(())
    }

    /// Current number of subscribers of both streams.
    pub fn subscribers(&self) -> usize {
        let cells = {
            let mut by_cell = lock(&self.cell_subscribers);
            by_cell.retain(|_, subscribers| {
                subscribers.retain(|s| !s.tx.is_closed());
                !subscribers.is_empty()
            });
            by_cell.values().map(Vec::len).sum::<usize>()
        };
        lock(&self.instance).receiver_count() + cells + lock(&self.task).receiver_count()
    }

    /// Ends every open stream (this BBS stopped leading); new subscriptions start afresh.
    pub fn close_all(&self) {
        *lock(&self.instance) = broadcast::channel(self.buffer).0;
        lock(&self.cell_subscribers).clear();
        *lock(&self.task) = broadcast::channel(self.buffer).0;
    }

    /// A stream of instance events; `cell_id` empty means every cell.
    pub fn subscribe_instances(
        &self,
        cell_id: String,
    ) -> impl Stream<Item = Result<pb::InstanceEvent, tonic::Status>> + Send + 'static {
        let wrap = |sequence, envelope: Arc<InstanceEnvelope>| pb::InstanceEvent {
            sequence,
            event: Some(envelope.event.clone()),
        };
        if cell_id.is_empty() {
            let rx = lock(&self.instance).subscribe();
            return sequenced(Feed::Broadcast(rx), self.buffer, wrap);
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        lock(&self.cell_subscribers).entry(cell_id).or_default().push(CellSubscriber { tx, lagged: lagged.clone() });
        sequenced(Feed::Queue(rx, lagged), self.buffer, wrap)
    }

    /// A stream of task events.
    pub fn subscribe_tasks(&self) -> impl Stream<Item = Result<pb::TaskEvent, tonic::Status>> + Send + 'static {
        let rx = lock(&self.task).subscribe();
        sequenced(Feed::Broadcast(rx), self.buffer, |sequence, event: Arc<pb::task_event::Event>| pb::TaskEvent {
            sequence,
            event: Some((*event).clone()),
        })
    }
}

/// One open stream of an identity, counted until dropped.
#[derive(Debug)]
pub struct SubscriberSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    who: String,
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(open) = counts.get_mut(&self.who) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.who);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while swapping a sender; the sender
    // inside is still usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a stream's events come from: the shared buffer of a kind (every subscriber sees every
/// event) or a queue of its own (fed only what it asked for; the flag says it fell behind).
enum Feed<T> {
    Broadcast(broadcast::Receiver<T>),
    Queue(mpsc::Receiver<T>, Arc<AtomicBool>),
}

impl<T: Clone> Feed<T> {
    /// The next event, or the status that ends the stream.
    async fn next(&mut self, buffer: usize) -> Result<T, tonic::Status> {
        match self {
            Feed::Broadcast(rx) => match rx.recv().await {
                Ok(item) => Ok(item),
                Err(broadcast::error::RecvError::Lagged(missed)) => Err(slow_consumer(buffer, Some(missed))),
                Err(broadcast::error::RecvError::Closed) => Err(stopped_leading()),
            },
            Feed::Queue(rx, lagged) => match rx.recv().await {
                Some(item) => Ok(item),
                None if lagged.load(Ordering::Acquire) => Err(slow_consumer(buffer, None)),
                None => Err(stopped_leading()),
            },
        }
    }
}

/// The status that closes a subscriber that fell more than `buffer` events behind.
fn slow_consumer(buffer: usize, missed: Option<u64>) -> tonic::Status {
    metrics::counter!("bbs_event_subscribers_closed_slow_total").increment(1);
    let missed = missed.map(|m| format!(" ({m} missed)")).unwrap_or_default();
    tonic::Status::resource_exhausted(format!(
        "slow consumer: fell more than {buffer} events behind{missed}; re-list and subscribe again"
    ))
}

/// The status that ends every stream when this BBS stops leading.
fn stopped_leading() -> tonic::Status {
    tonic::Status::unavailable("event stream ended: this bbs stopped leading; subscribe to the leader and re-list")
}

/// Turns a feed into a numbered stream that ends with a status when the subscriber lags or the
/// hub closes.
fn sequenced<T, M, W>(
    feed: Feed<T>,
    buffer: usize,
    wrap: W,
) -> impl Stream<Item = Result<M, tonic::Status>> + Send + 'static
where
    T: Clone + Send + 'static,
    M: Send + 'static,
    W: Fn(u64, T) -> M + Send + 'static,
{
    struct State<T, W> {
        feed: Feed<T>,
        sequence: u64,
        done: bool,
        wrap: W,
    }
    let gauge = metrics::gauge!("bbs_event_subscribers");
    gauge.increment(1.0);
    let guard = SubscriberGuard(gauge);
    let state = State { feed, sequence: 0, done: false, wrap };
    futures::stream::unfold((state, guard), move |(mut state, guard)| async move {
        if state.done {
            return None;
        }
        match state.feed.next(buffer).await {
            Ok(item) => {
                state.sequence += 1;
                let message = (state.wrap)(state.sequence, item);
                Some((Ok(message), (state, guard)))
            }
            Err(status) => {
                state.done = true;
                Some((Err(status), (state, guard)))
            }
        }
    })
}

/// Decrements the subscriber gauge when a stream is dropped.
struct SubscriberGuard(metrics::Gauge);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Striped async locks by key: a controller holds the stripe of the record it changes from
/// before its transaction until its events are published, so per-key event order is commit order.
pub struct KeyLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl KeyLocks {
    /// `n` stripes.
    pub fn new(n: usize) -> Self {
        Self { stripes: (0..n.max(1)).map(|_| tokio::sync::Mutex::new(())).collect() }
    }

    /// Locks the stripe of `key`.
    pub async fn lock(&self, key: impl Hash) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripes[self.stripe_of(key)].lock().await
    }

    /// The stripe of `key`, for [`KeyLocks::under_stripes`].
    pub fn stripe_of(&self, key: impl Hash) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.stripes.len() as u64) as usize
    }

    /// Runs `each` on every item of a batch under the stripe given with it
    /// ([`KeyLocks::stripe_of`] its key): each stripe is taken once, for its items in the order
    /// given, and the stripes are waited for together, each handled as soon as it is free. One
    /// after the other, a thousand-item batch waited for the sum of the single writes holding
    /// its stripes (2 s in the smoke benchmark, behind the cells' claims); together, for the
    /// longest of them. Items of different stripes run in no fixed order.
    pub async fn under_stripes<T>(&self, items: Vec<(usize, T)>, mut each: impl FnMut(T)) {
        use futures::StreamExt;
        let mut groups: HashMap<usize, Vec<T>> = HashMap::new();
        for (stripe, item) in items {
            groups.entry(stripe % self.stripes.len()).or_default().push(item);
        }
        let mut free: futures::stream::FuturesUnordered<_> = groups
            .into_iter()
            .map(|(stripe, items)| async move { (self.stripes[stripe].lock().await, items) })
            .collect();
        while let Some((_guard, items)) = free.next().await {
            items.into_iter().for_each(&mut each);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_batch_handles_its_free_stripes_while_another_is_held() {
        let locks = Arc::new(KeyLocks::new(8));
        let (busy, free) = (locks.stripe_of("busy"), (0..8).find(|s| *s != locks.stripe_of("busy")).unwrap());
        let held = locks.lock("busy").await;
        let done = Arc::new(Mutex::new(Vec::new()));
        let items = vec![(busy, "b1"), (free, "f1"), (busy, "b2"), (free, "f2")];
        let batch = {
            let (locks, done) = (locks.clone(), done.clone());
            tokio::spawn(async move { locks.under_stripes(items, |item| done.lock().unwrap().push(item)).await })
        };
        // The free stripe's items are handled although the busy stripe, first in the batch, is
        // held by another writer.
        for _ in 0..100 {
            if done.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(*done.lock().unwrap(), ["f1", "f2"]);
        drop(held);
        batch.await.unwrap();
        assert_eq!(*done.lock().unwrap(), ["f1", "f2", "b1", "b2"], "each stripe's items in the order given");
    }

    #[test]
    fn streams_beyond_the_maximum_are_refused_until_one_closes() {
        let hub = EventHub::new(4).with_max_subscribers(2);
        let first = hub.subscribe_instances(String::new());
        assert!(hub.admit().is_ok());
        let second = hub.subscribe_tasks();
        let refused = hub.admit().unwrap_err();
        assert_eq!(refused.code(), proto::error::ErrorCode::Unavailable);
        assert!(refused.to_string().contains("max_event_subscribers"), "{refused}");
        drop(first);
        assert!(hub.admit().is_ok());
        drop(second);
    }

    #[test]
    fn one_identity_holds_at_most_its_slots_until_one_drops() {
        use svc::identity::{Identity, Peer};
        let hub = EventHub::new(4).with_max_subscribers_per_identity(2);
        let alice = Peer::Verified(Identity::parse_uri("diego://operator/alice").unwrap());
        let bob = Peer::Verified(Identity::parse_uri("diego://reader/bob").unwrap());
        let first = hub.admit_identity(&alice).unwrap();
        let _second = hub.admit_identity(&alice).unwrap();
        let refused = hub.admit_identity(&alice).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "diego://operator/alice has 2 event streams open, the most one identity may \
             (max_event_subscribers_per_identity = 2)"
        );
        assert!(hub.admit_identity(&bob).unwrap().is_some(), "another identity has its own slots");
        assert_eq!(hub.subscribers_of("diego://operator/alice"), 2);
        drop(first);
        assert_eq!(hub.subscribers_of("diego://operator/alice"), 1);
        assert!(hub.admit_identity(&alice).is_ok());
        for _ in 0..10 {
            assert!(hub.admit_identity(&Peer::Plaintext).unwrap().is_none(), "plaintext peers have no identity");
        }
    }

    fn removed(guid: &str) -> pb::instance_event::Event {
        pb::instance_event::Event::DesiredLrpRemoved(pb::DesiredLrpRemovedEvent {
            desired_lrp: Some(pb::DesiredLrp { process_guid: guid.into(), ..Default::default() }),
            trace_id: String::new(),
        })
    }

    #[tokio::test]
    async fn sequences_start_at_one_and_increase_per_stream() {
        let hub = EventHub::new(16);
        let mut stream = Box::pin(hub.subscribe_instances(String::new()));
        for i in 0..3 {
            hub.publish_instance(removed(&format!("p{i}")), vec![]);
        }
        for expected in 1..=3u64 {
            let event = stream.next().await.unwrap().unwrap();
            assert_eq!(event.sequence, expected);
        }
    }

    #[tokio::test]
    async fn cell_filter_passes_desired_events_and_matching_cells_only() {
        let hub = EventHub::new(16);
        let mut stream = Box::pin(hub.subscribe_instances("cell-a".into()));
        let mut everyone = Box::pin(hub.subscribe_instances(String::new()));
        hub.publish_instance(removed("other-cell"), vec!["cell-b".into()]);
        hub.publish_instance(removed("no-cell"), vec![]);
        hub.publish_instance(removed("mine"), vec!["cell-a".into()]);
        hub.publish_desired(removed("desired"));
        hub.publish_instance(removed("no-cell-again"), vec![]);
        hub.publish_desired(removed("last"));
        let guids = removed_guids(&mut stream, 3).await;
        assert_eq!(guids, ["mine", "desired", "last"], "an instance event without a cell passes no cell filter");
        let all = removed_guids(&mut everyone, 6).await;
        assert_eq!(all, ["other-cell", "no-cell", "mine", "desired", "no-cell-again", "last"]);
    }

    /// The guids of the next `n` events of `stream`, each a [`removed`] event.
    async fn removed_guids(
        stream: &mut (impl Stream<Item = Result<pb::InstanceEvent, tonic::Status>> + Unpin),
        n: usize,
    ) -> Vec<String> {
        let mut guids = Vec::with_capacity(n);
        for _ in 0..n {
            match stream.next().await.unwrap().unwrap().event {
                Some(pb::instance_event::Event::DesiredLrpRemoved(r)) => {
                    guids.push(r.desired_lrp.unwrap().process_guid)
                }
                other => panic!("not a removal: {other:?}"),
            }
        }
        guids
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_closed_with_resource_exhausted() {
        let hub = EventHub::new(4);
        let mut stream = Box::pin(hub.subscribe_tasks());
        for _ in 0..10 {
            hub.publish_task(pb::task_event::Event::TaskRemoved(pb::TaskRemovedEvent::default()));
        }
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("slow consumer"));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_cell_stream_does_not_fall_behind_on_other_cells_events() {
        let hub = EventHub::new(4);
        let mut mine = Box::pin(hub.subscribe_instances("cell-a".into()));
        for i in 0..20 {
            hub.publish_instance(removed(&format!("other-{i}")), vec!["cell-b".into()]);
        }
        hub.publish_instance(removed("mine"), vec!["cell-a".into(), "cell-a".into()]);
        let event = mine.next().await.unwrap().expect("not closed by the other cell's events");
        assert_eq!(event.sequence, 1);
        assert_eq!(hub.subscribers(), 1);
        // Its own cell's events still count: five more than its buffer close it.
        for i in 0..5 {
            hub.publish_instance(removed(&format!("mine-{i}")), vec!["cell-a".into()]);
        }
        for _ in 0..4 {
            assert!(mine.next().await.unwrap().is_ok());
        }
        let err = mine.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("slow consumer"), "{}", err.message());
        assert!(mine.next().await.is_none());
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn close_all_ends_cell_streams_with_unavailable() {
        let hub = EventHub::new(4);
        let mut stream = Box::pin(hub.subscribe_instances("cell-a".into()));
        hub.close_all();
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn close_all_ends_streams_with_unavailable() {
        let hub = EventHub::new(4);
        let mut stream = Box::pin(hub.subscribe_tasks());
        hub.close_all();
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(stream.next().await.is_none());
    }
}
