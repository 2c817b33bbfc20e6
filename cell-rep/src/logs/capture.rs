//! The pump from a process's stdout or stderr into the [`LogStore`]: lines of at most
//! [`LogConfig::max_line_bytes`](super::LogConfig::max_line_bytes) (the rest of a longer line is
//! read and dropped, the kept part marked truncated), never more than that held in memory, and
//! never a wait on a reader of the store, so the process never blocks on its pipe because of one.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use super::{LogStore, Stream};
use crate::runtime::ProcessRole;

/// The source a process's lines are tagged with: its run action's (or its step context's)
/// log source, else by its role: `HEALTH` for a monitor, `SETUP` for a setup action, `TASK`
/// for a task's action and `APP` for an LRP's.
pub fn source_for(store: &LogStore, guid: &str, log_source: &str, role: Option<ProcessRole>) -> Arc<str> {
    if !log_source.trim().is_empty() {
        return Arc::from(log_source);
    }
    let source = match role {
        Some(ProcessRole::Monitor) => "HEALTH",
        Some(ProcessRole::Setup) => "SETUP",
        _ if store.is_task(guid) => "TASK",
        _ => "APP",
    };
    Arc::from(source)
}

/// How long a process's exit waits for its pipes' last lines (see [`drained`]).
pub const DRAIN: Duration = Duration::from_millis(250);

/// Waits until `pumps` read their pipes to the end, at most [`DRAIN`]: a runtime reports a
/// process's exit after this, so what it printed just before exiting is in the store when the
/// crash is reported (a child it left running may keep a pipe open: hence the bound).
pub async fn drained(pumps: Vec<JoinHandle<()>>) {
    let _ = tokio::time::timeout(DRAIN, futures::future::join_all(pumps)).await;
}

/// Spawns the pump of one pipe of container `guid`'s process; it ends at EOF. Unless `quiet`,
/// each line is also logged (target `cell_rep::app`).
pub fn capture<R>(
    reader: R,
    store: LogStore,
    guid: String,
    source: Arc<str>,
    stream: Stream,
    quiet: bool,
) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let max = store.config().max_line_bytes.max(1);
        read_lines(reader, max, |text, truncated| {
            if !quiet {
                tracing::info!(target: "cell_rep::app", container_guid = %guid, source = %source, stream = stream.as_str(), "{text}");
            }
            store.push(&guid, &source, stream, text, truncated);
        })
        .await;
    })
}

/// Calls `each` with every line of `reader` (without its `\n` or `\r\n`), cut to `max` bytes
/// (`true` when cut), until EOF or a read error. A last line without a newline counts too.
pub async fn read_lines<R: AsyncRead + Unpin>(reader: R, max: usize, mut each: impl FnMut(String, bool)) {
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut emit = |line: &mut Vec<u8>, truncated: &mut bool| {
        if line.last() == Some(&b'\r') && !*truncated {
            line.pop();
        }
        each(String::from_utf8_lossy(line).into_owned(), *truncated);
        line.clear();
        *truncated = false;
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(error) => {
                tracing::debug!(%error, "output stream ended");
                break;
            }
        };
        if buf.is_empty() {
            if !line.is_empty() || truncated {
                emit(&mut line, &mut truncated);
            }
            break;
        }
        let newline = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            line.extend_from_slice(&chunk[..room]);
            truncated = true;
        } else {
            line.extend_from_slice(chunk);
        }
        let used = newline.map_or(buf.len(), |n| n + 1);
        reader.consume(used);
        if newline.is_some() {
            emit(&mut line, &mut truncated);
        }
    }
}
