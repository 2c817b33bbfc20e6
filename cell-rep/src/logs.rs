//! Application logs (issue 18): every line a container's processes write to stdout or stderr,
//! tagged with its source, stream, container identity and the time the rep read it.
//!
//! - [`LogStore`]: the cell's store. Per container a ring of the latest lines (bounded by
//!   [`LogConfig::buffer_lines`]) and a size-rotated file under the rep's data directory; per LRP
//!   (process guid) or task a broadcast channel that followers subscribe to. A container's lines
//!   stay readable after it stopped or crashed: the last [`LogConfig::retained_per_guid`] stopped
//!   containers of each guid (and at most [`LogConfig::retained_total`] in all) for at most
//!   [`LogConfig::retention`].
//! - [`capture`]: the pump from a process's pipe into the store. It reads lines of at most
//!   [`LogConfig::max_line_bytes`] (longer ones are cut and marked) and never waits on a reader:
//!   a follower whose channel is full misses lines and is told how many.
//! - [`file`]: the rotated file. [`service`]: the `diego.rep.v1.Logs` gRPC service.
//!
//! Writing a line takes one short lock (the ring and the channel) and one append to the
//! container's own file; nothing in it waits for a reader.

pub mod capture;
pub mod file;
pub mod service;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use svc::clock::{Clock, SystemClock};
use tokio::sync::broadcast;

use self::file::RotatingFile;
use crate::workload::Workload;

/// The bounds of the log store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Latest lines kept in memory per container (1000).
    pub buffer_lines: usize,
    /// Longest line kept, in bytes (4096); a longer line is cut and marked truncated.
    pub max_line_bytes: usize,
    /// Size of a container's log file before it is rotated, in bytes (1 MiB); 0 writes no file.
    pub file_bytes: u64,
    /// Rotated files kept per container besides the current one (`.1`, `.2`; 2).
    pub file_rotations: usize,
    /// Stopped or crashed containers whose lines stay readable, per process or task guid (3).
    pub retained_per_guid: usize,
    /// Stopped containers whose lines stay readable, in all (64).
    pub retained_total: usize,
    /// How long a stopped container's lines stay readable (1 h).
    #[serde(with = "svc::config::duration")]
    pub retention: Duration,
    /// Lines a follower may fall behind before it misses lines (1024).
    pub subscriber_lines: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            buffer_lines: 1000,
            max_line_bytes: 4096,
            file_bytes: 1024 * 1024,
            file_rotations: 2,
            retained_per_guid: 3,
            retained_total: 64,
            retention: Duration::from_secs(3600),
            subscriber_lines: 1024,
        }
    }
}

impl LogConfig {
    /// Checks the bounds: every one finite, so a typo cannot make the store unbounded.
    pub fn check(&self) -> Result<(), svc::config::ConfigError> {
        let rules: [(&'static str, usize, usize, usize); 6] = [
            ("logs.buffer_lines", self.buffer_lines, 0, 100_000),
            ("logs.max_line_bytes", self.max_line_bytes, 1, 1024 * 1024),
            ("logs.file_rotations", self.file_rotations, 0, 100),
            ("logs.retained_per_guid", self.retained_per_guid, 0, 100),
            ("logs.retained_total", self.retained_total, 0, 10_000),
            ("logs.subscriber_lines", self.subscriber_lines, 1, 100_000),
        ];
        for (field, value, min, max) in rules {
            if !(min..=max).contains(&value) {
                return Err(svc::config::ConfigError::invalid(field, format!("must be between {min} and {max}")));
            }
        }
        if self.file_bytes > 1024 * 1024 * 1024 {
            return Err(svc::config::ConfigError::invalid("logs.file_bytes", "must be at most 1 GiB"));
        }
        Ok(())
    }
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `STDOUT` or `STDERR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "STDOUT",
            Stream::Stderr => "STDERR",
        }
    }
}

/// Whose lines: an LRP instance, a task, or a bare container (runtime tests, a container the rep
/// found after a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The LRP's process guid (empty for a task).
    pub process_guid: String,
    /// The instance index (LRPs only).
    pub index: Option<i32>,
    /// The container guid: the instance guid of an LRP, the task guid of a task.
    pub instance_guid: String,
    /// The task guid (empty for an LRP).
    pub task_guid: String,
}

impl Identity {
    /// The identity of container `guid` running `workload` (a bare container without one).
    pub fn of(guid: &str, workload: Option<&Workload>) -> Self {
        match workload {
            Some(Workload::Lrp(lrp)) => Identity {
                process_guid: lrp.key.process_guid.as_str().to_owned(),
                index: Some(lrp.key.index),
                instance_guid: guid.to_owned(),
                task_guid: String::new(),
            },
            Some(Workload::Task(task)) => Identity {
                process_guid: String::new(),
                index: None,
                instance_guid: guid.to_owned(),
                task_guid: task.task_guid.as_str().to_owned(),
            },
            None => Identity { instance_guid: guid.to_owned(), ..Identity::default() },
        }
    }

    /// The group followers subscribe to: `lrp:<process guid>`, `task:<task guid>` or
    /// `container:<guid>`.
    fn group(&self) -> String {
        if !self.process_guid.is_empty() {
            format!("lrp:{}", self.process_guid)
        } else if !self.task_guid.is_empty() {
            format!("task:{}", self.task_guid)
        } else {
            format!("container:{}", self.instance_guid)
        }
    }

    /// How a line names its writer: `web/0`, or the task guid.
    pub fn label(&self) -> String {
        match self.index {
            Some(index) if !self.process_guid.is_empty() => format!("{}/{index}", self.process_guid),
            _ if !self.task_guid.is_empty() => self.task_guid.clone(),
            _ => self.instance_guid.clone(),
        }
    }
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Order of capture on this cell.
    pub seq: u64,
    /// When the rep read it, in nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Who wrote it.
    pub identity: Arc<Identity>,
    /// The process's log source (`APP`, `HEALTH`, a run action's own).
    pub source: Arc<str>,
    /// Which pipe.
    pub stream: Stream,
    /// The line without its newline (invalid UTF-8 replaced).
    pub text: String,
    /// Whether it was cut at [`LogConfig::max_line_bytes`].
    pub truncated: bool,
}

impl LogLine {
    /// `2026-12-04T03:20:01.123Z [web/0 APP/STDOUT] hello`, the format of files and the CLI.
    pub fn display(&self) -> String {
        let cut = if self.truncated { " [truncated]" } else { "" };
        format!(
            "{} [{} {}/{}] {}{cut}",
            proto::time::rfc3339_millis(self.timestamp_ns.div_euclid(1_000_000)),
            self.identity.label(),
            self.source,
            self.stream.as_str(),
            self.text
        )
    }
}

/// What a reader asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The instances of an LRP, or one index of it.
    Lrp {
        /// The process guid.
        process_guid: String,
        /// Only this index.
        index: Option<i32>,
    },
    /// A task.
    Task {
        /// The task guid.
        task_guid: String,
    },
}

impl Filter {
    fn group(&self) -> String {
        match self {
            Filter::Lrp { process_guid, .. } => format!("lrp:{process_guid}"),
            Filter::Task { task_guid } => format!("task:{task_guid}"),
        }
    }

    /// Whether `line` is one this filter asks for.
    pub fn matches(&self, line: &LogLine) -> bool {
        match self {
            Filter::Lrp { process_guid, index } => {
                line.identity.process_guid == *process_guid && index.is_none_or(|i| line.identity.index == Some(i))
            }
            Filter::Task { task_guid } => line.identity.task_guid == *task_guid,
        }
    }
}

/// The cell's log store. Cloning shares it.
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: LogConfig,
    clock: Arc<dyn Clock>,
    /// Where the rotated files go; `None` keeps lines in memory only.
    dir: Option<PathBuf>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("config", &self.config).field("dir", &self.dir).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    containers: HashMap<String, ContainerLog>,
    groups: HashMap<String, broadcast::Sender<Arc<LogLine>>>,
}

#[derive(Debug)]
struct ContainerLog {
    identity: Arc<Identity>,
    group: String,
    lines: VecDeque<Arc<LogLine>>,
    file: Option<Arc<Mutex<RotatingFile>>>,
    /// When it stopped (nanoseconds since the epoch), and the store's sequence then (orders
    /// stops made in the same instant); `None` while it runs.
    stopped: Option<(i64, u64)>,
}

impl LogStore {
    /// A store writing its files under `dir` (created; files a previous rep left are removed,
    /// since nothing indexes them), or in memory only.
    pub fn new(config: LogConfig, dir: Option<&Path>) -> Self {
        Self::with_clock(config, dir, Arc::new(SystemClock))
    }

    /// [`LogStore::new`] with the clock that stamps lines and times retention.
    pub fn with_clock(config: LogConfig, dir: Option<&Path>, clock: Arc<dyn Clock>) -> Self {
        let dir = dir.and_then(|dir| {
            let _ = std::fs::remove_dir_all(dir);
            match std::fs::create_dir_all(dir) {
                Ok(()) => Some(dir.to_owned()),
                Err(error) => {
                    tracing::warn!(path = %dir.display(), %error, "cannot create the log directory; logs stay in memory");
                    None
                }
            }
        });
        Self { inner: Arc::new(Inner { config, clock, dir, state: Mutex::default() }) }
    }

    /// A store in memory only, with the default bounds.
    pub fn in_memory() -> Self {
        Self::new(LogConfig::default(), None)
    }

    /// The bounds.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Now, by the store's clock.
    pub fn now_ns(&self) -> i64 {
        self.inner.clock.now_ns()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts (or restarts) the log of container `guid`.
    pub fn open(&self, guid: &str, identity: Identity) {
        let file = match &self.inner.dir {
            Some(dir) if self.inner.config.file_bytes > 0 => {
                let file = RotatingFile::new(
                    dir.join(format!("{guid}.log")),
                    self.inner.config.file_bytes,
                    self.inner.config.file_rotations,
                );
                Some(Arc::new(Mutex::new(file)))
            }
            _ => None,
        };
        let mut state = self.lock();
        let identity = Arc::new(identity);
        let group = identity.group();
        let lines = state.containers.remove(guid).map(|c| c.lines).unwrap_or_default();
        state.containers.insert(guid.to_owned(), ContainerLog { identity, group, lines, file, stopped: None });
        self.prune(&mut state);
    }

    /// Marks container `guid` stopped: its lines stay readable for a while (see [`LogConfig`]).
    pub fn close(&self, guid: &str) {
        let now = self.now_ns();
        let mut state = self.lock();
        state.seq += 1;
        let seq = state.seq;
        if let Some(container) = state.containers.get_mut(guid) {
            container.stopped.get_or_insert((now, seq));
        }
        self.prune(&mut state);
    }

    /// Appends one line of container `guid`. A container never opened (one the rep found after
    /// a restart) or already forgotten (a line read after its retention ended) is kept as a
    /// bare, stopped one, in memory only, so retention bounds it like any stopped container.
    pub fn push(&self, guid: &str, source: &Arc<str>, stream: Stream, text: String, truncated: bool) {
        let now = self.now_ns();
        let file = {
            let mut state = self.lock();
            state.seq += 1;
            let seq = state.seq;
            if !state.containers.contains_key(guid) {
                let identity = Arc::new(Identity::of(guid, None));
                let group = identity.group();
                let bare =
                    ContainerLog { identity, group, lines: VecDeque::new(), file: None, stopped: Some((now, seq)) };
                state.containers.insert(guid.to_owned(), bare);
                self.prune(&mut state);
            }
            let Some(container) = state.containers.get_mut(guid) else { return };
            let line = Arc::new(LogLine {
                seq,
                timestamp_ns: now,
                identity: Arc::clone(&container.identity),
                source: Arc::clone(source),
                stream,
                text,
                truncated,
            });
            if container.lines.len() >= self.inner.config.buffer_lines {
                container.lines.pop_front();
            }
            if self.inner.config.buffer_lines > 0 {
                container.lines.push_back(Arc::clone(&line));
            }
            let file = container.file.clone();
            let group = container.group.clone();
            if let Some(sender) = state.groups.get(&group) {
                // Never waits: a lagging receiver loses the oldest lines and learns how many.
                let _ = sender.send(Arc::clone(&line));
            }
            file.map(|file| (file, line))
        };
        if let Some((file, line)) = file {
            file.lock().unwrap_or_else(PoisonError::into_inner).write_line(&line.display());
        }
    }

    /// The latest `recent` lines matching `filter`, oldest first, and (when `follow`) a receiver
    /// of every later line of the filter's LRP or task, with no gap or repeat between the two.
    pub fn subscribe(
        &self,
        filter: &Filter,
        recent: usize,
        follow: bool,
    ) -> (Vec<Arc<LogLine>>, Option<broadcast::Receiver<Arc<LogLine>>>) {
        let mut state = self.lock();
        self.prune(&mut state);
        let group = filter.group();
        let mut lines: Vec<Arc<LogLine>> = Vec::new();
        if recent > 0 {
            for container in state.containers.values().filter(|c| c.group == group) {
                let skip = container.lines.len().saturating_sub(recent);
                lines.extend(container.lines.iter().skip(skip).filter(|l| filter.matches(l)).cloned());
            }
            lines.sort_by_key(|l| l.seq);
            let skip = lines.len().saturating_sub(recent);
            lines.drain(..skip);
        }
        let receiver = follow.then(|| {
            let capacity = self.inner.config.subscriber_lines.max(1);
            state.groups.entry(group).or_insert_with(|| broadcast::channel(capacity).0).subscribe()
        });
        (lines, receiver)
    }

    /// Whether container `guid` runs a task.
    pub fn is_task(&self, guid: &str) -> bool {
        self.lock().containers.get(guid).is_some_and(|c| !c.identity.task_guid.is_empty())
    }

    /// Whether any container of `filter` has (or recently had) a log on this cell.
    pub fn knows(&self, filter: &Filter) -> bool {
        let group = filter.group();
        let mut state = self.lock();
        self.prune(&mut state);
        state.containers.values().any(|c| c.group == group)
    }

    /// The last `count` lines of container `guid`, at most `max_bytes` in all (older lines go
    /// first; a single line longer than that is cut), oldest first.
    pub fn tail(&self, guid: &str, count: usize, max_bytes: usize) -> Vec<String> {
        let state = self.lock();
        let Some(container) = state.containers.get(guid) else { return Vec::new() };
        let mut out = Vec::new();
        let mut used = 0;
        for line in container.lines.iter().rev().take(count) {
            let left = max_bytes.saturating_sub(used);
            if left == 0 {
                break;
            }
            let text = cut(&line.text, left);
            used += text.len();
            out.push(text.to_owned());
        }
        out.reverse();
        out
    }

    /// Drops stopped containers beyond the retention bounds, and channels nobody follows.
    fn prune(&self, state: &mut State) {
        let config = &self.inner.config;
        let now = self.now_ns();
        let retention = i64::try_from(config.retention.as_nanos()).unwrap_or(i64::MAX);
        let mut stopped: Vec<((i64, u64), String, String)> = state
            .containers
            .iter()
            .filter_map(|(guid, c)| c.stopped.map(|at| (at, guid.clone(), c.group.clone())))
            .collect();
        // Newest first: the ones to keep come first.
        stopped.sort_by_key(|s| std::cmp::Reverse(s.0.1));
        let mut per_group: HashMap<&str, usize> = HashMap::new();
        let mut kept = 0;
        let mut gone = Vec::new();
        for ((at, _), guid, group) in &stopped {
            let n = per_group.entry(group.as_str()).or_default();
            *n += 1;
            let expired = now.saturating_sub(*at) > retention;
            if expired || *n > config.retained_per_guid || kept >= config.retained_total {
                gone.push(guid.clone());
            } else {
                kept += 1;
            }
        }
        for guid in gone {
            if let Some(container) = state.containers.remove(&guid)
                && let Some(file) = container.file
            {
                file.lock().unwrap_or_else(PoisonError::into_inner).remove();
            }
        }
        let State { groups, containers, .. } = state;
        groups.retain(|group, sender| sender.receiver_count() > 0 || containers.values().any(|c| c.group == *group));
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
