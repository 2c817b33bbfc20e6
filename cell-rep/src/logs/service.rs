//! `diego.rep.v1.Logs`: `Stream` sends the latest lines of an LRP's instances (or of one index,
//! or of a task) on this cell, oldest first, then with `follow` every new line until the client
//! goes away or the rep stops. A follower that falls more than
//! [`LogConfig::subscriber_lines`](super::LogConfig::subscriber_lines) behind gets a message with
//! `dropped` set (how many lines it missed) instead of them; the processes never wait for it.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::error::ErrorCode;
use proto::pb::rep::v1 as rep_pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{Filter, LogLine, LogStore};

/// Messages queued towards one client before the stream task waits for it.
const QUEUE: usize = 64;

/// The `Logs` service over a cell's store.
#[derive(Debug, Clone)]
pub struct LogsService {
    store: LogStore,
    shutdown: CancellationToken,
}

impl LogsService {
    /// The service; its streams end when `shutdown` is cancelled.
    pub fn new(store: LogStore, shutdown: CancellationToken) -> Self {
        Self { store, shutdown }
    }
}

/// What a request asks for, or why it is invalid.
pub fn filter_of(request: &rep_pb::LogsRequest) -> Result<Filter, String> {
    let process_guid = request.process_guid.trim();
    let task_guid = request.task_guid.trim();
    match (process_guid.is_empty(), task_guid.is_empty()) {
        (false, true) => Ok(Filter::Lrp { process_guid: process_guid.to_owned(), index: request.index }),
        (true, false) if request.index.is_none() => Ok(Filter::Task { task_guid: task_guid.to_owned() }),
        (true, false) => Err("index applies to an LRP, not to a task".to_owned()),
        _ => Err("exactly one of process_guid and task_guid is required".to_owned()),
    }
}

/// The wire form of a line.
pub fn message_of(line: &LogLine) -> rep_pb::LogMessage {
    rep_pb::LogMessage {
        timestamp_unix_nanos: line.timestamp_ns,
        process_guid: line.identity.process_guid.clone(),
        index: line.identity.index.unwrap_or(0),
        instance_guid: line.identity.instance_guid.clone(),
        task_guid: line.identity.task_guid.clone(),
        source: line.source.to_string(),
        stream: match line.stream {
            super::Stream::Stdout => rep_pb::LogStream::Stdout,
            super::Stream::Stderr => rep_pb::LogStream::Stderr,
        } as i32,
        text: line.text.clone(),
        truncated: line.truncated,
        dropped: 0,
    }
}

/// The marker telling a reader it missed `n` lines (at `now_ns`).
fn dropped(n: u64, now_ns: i64) -> rep_pb::LogMessage {
    rep_pb::LogMessage { timestamp_unix_nanos: now_ns, dropped: n, ..rep_pb::LogMessage::default() }
}

/// Sends `lines`, then what `receiver` gets that `filter` matches, to `tx` until the client
/// goes away, the receiver closes or `shutdown`.
async fn pump(
    store: LogStore,
    lines: Vec<Arc<LogLine>>,
    receiver: Option<broadcast::Receiver<Arc<LogLine>>>,
    filter: Filter,
    tx: mpsc::Sender<Result<rep_pb::LogMessage, Status>>,
    shutdown: CancellationToken,
) {
    for line in &lines {
        if tx.send(Ok(message_of(line))).await.is_err() {
            return;
        }
    }
    let Some(mut receiver) = receiver else { return };
    loop {
        let received = tokio::select! {
            received = receiver.recv() => received,
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
        };
        let message = match received {
            Ok(line) if filter.matches(&line) => message_of(&line),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => dropped(n, store.now_ns()),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(Ok(message)).await.is_err() {
            return;
        }
    }
}

type LogMessages = Pin<Box<dyn Stream<Item = Result<rep_pb::LogMessage, Status>> + Send>>;

#[tonic::async_trait]
impl rep_pb::logs_server::Logs for LogsService {
    type StreamStream = LogMessages;

    async fn stream(&self, request: Request<rep_pb::LogsRequest>) -> Result<Response<LogMessages>, Status> {
        let request = request.into_inner();
        let filter = filter_of(&request)
            .map_err(|reason| ErrorCode::InvalidRequest.to_status(format!("invalid request: {reason}")))?;
        let recent = usize::try_from(request.recent).unwrap_or(usize::MAX);
        let (lines, receiver) = self.store.subscribe(&filter, recent, request.follow);
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(pump(self.store.clone(), lines, receiver, filter, tx, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
