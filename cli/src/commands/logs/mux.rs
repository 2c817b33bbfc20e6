//! The multiplexer behind `diego logs`: one `Logs/Stream` call per cell, merged. The library
//! form of the command ([`recent`], [`follow`]), so tests read what arrives when.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;
use proto::pb::rep::v1 as rep_pb;
use proto::pb::rep::v1::logs_client::LogsClient;
use svc::connect::ChannelOptions;
use svc::identity::Role;
use svc::tls::Security;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::Target;
use crate::client::{Bbs, CALL_TIMEOUT};
use crate::error::Error;

/// How often `--follow` asks the BBS for new cells and whether the LRP or task is gone.
pub const POLL: Duration = Duration::from_secs(2);
/// How long connecting to a rep may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Recent lines asked of a cell that joined while following (its instances' lines are new).
const LATE_RECENT: u32 = 1000;

/// One message of one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The cell whose rep sent it.
    pub cell_id: String,
    /// The line (or dropped-lines marker).
    pub message: rep_pb::LogMessage,
}

/// What [`follow`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A line.
    Line(Line),
    /// A cell could not be read (for standard error).
    Warning(String),
    /// The LRP or task is gone: following ends (for standard error).
    Gone(String),
}

fn not_found(message: String) -> Error {
    Error::Refused { kind: "ResourceNotFound".into(), message }
}

fn is_not_found(result: &Result<impl Sized, Error>) -> bool {
    matches!(result, Err(Error::Refused { kind, .. }) if kind == "ResourceNotFound")
}

/// Why the target is gone, or `None` while it is desired, has instances, or runs.
async fn gone(bbs: &Bbs, target: &Target) -> Result<Option<String>, Error> {
    match target {
        Target::Lrp { process_guid, .. } => {
            let desired = bbs
                .unary(bbs.raw().desired_lrp_by_process_guid(api::DesiredLrpByProcessGuidRequest {
                    process_guid: process_guid.clone(),
                }))
                .await;
            if !is_not_found(&desired) {
                return desired.map(|_| None);
            }
            let request = api::ActualLrPsRequest { process_guid: process_guid.clone(), ..Default::default() };
            let actual = bbs.all(request, |mut c, r| async move { c.actual_lr_ps(r).await }).await?;
            Ok(actual.is_empty().then(|| format!("lrp {process_guid} is not desired and has no instances")))
        }
        Target::Task { task_guid } => {
            let request = api::TaskByGuidRequest { task_guid: task_guid.clone() };
            let task = bbs.unary(bbs.raw().task_by_guid(request)).await;
            if is_not_found(&task) {
                return Ok(Some(format!("task {task_guid} is gone")));
            }
            let state = task?.task.map_or(0, |t| t.state);
            let done = state == pb::task::State::Completed as i32 || state == pb::task::State::Resolving as i32;
            Ok(done.then(|| format!("task {task_guid} completed")))
        }
    }
}

/// Refuses an unknown guid (exit 1): an LRP neither desired nor with instances, an unknown task.
pub async fn check_exists(bbs: &Bbs, target: &Target) -> Result<(), Error> {
    match target {
        Target::Lrp { process_guid, .. } => match gone(bbs, target).await? {
            Some(_) => Err(not_found(format!("no desired lrp {process_guid:?}; see 'diego lrps'"))),
            None => Ok(()),
        },
        Target::Task { task_guid } => {
            let request = api::TaskByGuidRequest { task_guid: task_guid.clone() };
            match bbs.unary(bbs.raw().task_by_guid(request)).await {
                Err(Error::Refused { kind, .. }) if kind == "ResourceNotFound" => {
                    Err(not_found(format!("no task {task_guid:?}; see 'diego tasks'")))
                }
                other => other.map(drop),
            }
        }
    }
}

/// Every live cell's id and rep address.
async fn cells(bbs: &Bbs) -> Result<Vec<(String, String)>, Error> {
    let cells = bbs.all(api::CellsRequest::default(), |mut c, r| async move { c.cells(r).await }).await?;
    Ok(cells.into_iter().map(|c| (c.cell_id, c.rep_address)).collect())
}

/// A `Logs` client of the rep at `address`, checked to be a cell.
async fn connect(address: &str, security: &Security) -> Result<LogsClient<Channel>, String> {
    let options =
        ChannelOptions { timeout: None, ..ChannelOptions::new(CONNECT_TIMEOUT, security.clone()) }.expect(Role::Cell);
    let channel = svc::connect::connect(address, &options).await.map_err(|e| crate::error::root_cause(&e))?;
    Ok(LogsClient::new(channel))
}

fn failed(cell_id: &str, address: &str, what: impl std::fmt::Display) -> String {
    format!("cannot read the logs of cell {cell_id} (rep at {address}): {what}")
}

/// The lines one cell sends for `request` (not following).
async fn fetch(
    cell_id: String,
    address: String,
    security: Security,
    request: rep_pb::LogsRequest,
) -> Result<Vec<Line>, String> {
    let read = async {
        let mut client = connect(&address, &security).await?;
        let mut stream = client.stream(request).await.map_err(|s| s.message().to_owned())?.into_inner();
        let mut lines = Vec::new();
        while let Some(message) = stream.message().await.map_err(|s| s.message().to_owned())? {
            lines.push(Line { cell_id: cell_id.clone(), message });
        }
        Ok(lines)
    };
    match tokio::time::timeout(CALL_TIMEOUT, read).await {
        Ok(result) => result.map_err(|e: String| failed(&cell_id, &address, e)),
        Err(_) => Err(failed(&cell_id, &address, "no answer in time")),
    }
}

/// The latest `recent` lines of `target` over every cell, oldest first, and a warning per cell
/// that could not be read.
pub async fn recent(
    bbs: &Bbs,
    security: &Security,
    target: &Target,
    recent: u32,
) -> Result<(Vec<Line>, Vec<String>), Error> {
    if recent == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let request = target.request(recent, false);
    let fetches =
        cells(bbs).await?.into_iter().map(|(id, address)| fetch(id, address, security.clone(), request.clone()));
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for result in join_all(fetches).await {
        match result {
            Ok(mut cell) => lines.append(&mut cell),
            Err(warning) => warnings.push(warning),
        }
    }
    lines.sort_by_key(|l| l.message.timestamp_unix_nanos);
    let skip = lines.len().saturating_sub(usize::try_from(recent).unwrap_or(usize::MAX));
    lines.drain(..skip);
    Ok((lines, warnings))
}

/// Follows one cell until its stream ends or `tx` closes.
async fn follow_cell(
    cell_id: String,
    address: String,
    security: Security,
    request: rep_pb::LogsRequest,
    tx: mpsc::Sender<Event>,
) {
    let mut stream = match connect(&address, &security).await {
        Ok(mut client) => match client.stream(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) => return drop(tx.send(Event::Warning(failed(&cell_id, &address, status.message()))).await),
        },
        Err(e) => return drop(tx.send(Event::Warning(failed(&cell_id, &address, e))).await),
    };
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            () = tx.closed() => return,
        };
        match message {
            Ok(Some(message)) => {
                if tx.send(Event::Line(Line { cell_id: cell_id.clone(), message })).await.is_err() {
                    return;
                }
            }
            // The rep stopped; the next poll reconnects while the cell is present.
            Ok(None) => return,
            Err(status) => return drop(tx.send(Event::Warning(failed(&cell_id, &address, status.message()))).await),
        }
    }
}

/// Aborts the per-cell tasks when following ends, however it ends.
struct Streams(HashMap<String, JoinHandle<()>>);

impl Drop for Streams {
    fn drop(&mut self) {
        for handle in self.0.values() {
            handle.abort();
        }
    }
}

/// Follows `target` on every cell into `tx`: the `recent` lines of each cell first, then new
/// lines; new cells are picked up and broken streams reopened every [`POLL`]. Returns once
/// `tx` is closed, or (after one more [`POLL`] for the last lines) once the target is gone.
pub async fn follow(
    bbs: Bbs,
    security: Security,
    target: Target,
    recent: u32,
    tx: mpsc::Sender<Event>,
) -> Result<(), Error> {
    let mut streams = Streams(HashMap::new());
    let mut seen: HashSet<String> = HashSet::new();
    let mut first = true;
    loop {
        match cells(&bbs).await {
            Ok(cells) => {
                for (cell_id, address) in cells {
                    if streams.0.get(&cell_id).is_some_and(|h| !h.is_finished()) {
                        continue;
                    }
                    let recent = match (seen.insert(cell_id.clone()), first) {
                        (true, true) => recent,
                        (true, false) => LATE_RECENT,
                        (false, _) => 0,
                    };
                    let task = follow_cell(
                        cell_id.clone(),
                        address,
                        security.clone(),
                        target.request(recent, true),
                        tx.clone(),
                    );
                    streams.0.insert(cell_id, tokio::spawn(task));
                }
            }
            Err(e) if first => return Err(e),
            Err(e) => drop(tx.send(Event::Warning(format!("cannot list the cells: {e}"))).await),
        }
        first = false;
        let gone = gone(&bbs, &target).await;
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tx.closed() => return Ok(()),
        }
        if let Ok(Some(why)) = gone {
            let _ = tx.send(Event::Gone(why)).await;
            return Ok(());
        }
    }
}
