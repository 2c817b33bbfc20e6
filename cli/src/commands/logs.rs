//! `diego logs GUID [--index N] [--recent[=N]] [--follow|-f]` and `diego logs --task GUID`: the
//! application logs the cells captured (issue 18), one line each:
//! `2026-12-04T03:20:01.123Z [web/0 APP/STDOUT] hello` (`[TASK_GUID TASK/STDERR]` for a task),
//! one JSON object per line with `--json`.
//!
//! The BBS says which cells there are (their presences carry the reps' addresses); the CLI asks
//! every cell's rep (`diego.rep.v1.Logs/Stream`, with its own TLS identity) for the lines of the
//! LRP or task, since a crashed instance's cell is no longer on its actual LRP. Without
//! `--follow` it prints the latest lines of all cells merged by time (100, or `--recent N`).
//! With `--follow` it prints the `--recent` lines first (none by default), then new lines as
//! they come, polling the BBS every [`mux::POLL`] for cells that joined and reconnecting to a
//! cell whose stream broke; it ends at Ctrl-C or a closed pipe, or once the LRP is gone (no
//! longer desired and no instance left) or the task completed. An unknown guid exits 1.

pub mod mux;

use clap::Args;
use proto::pb::rep::v1 as rep_pb;
use serde_json::json;

use crate::client::Bbs;
use crate::error::Error;
use crate::output::{self, Format};

/// Lines printed without `--follow` when `--recent` gives no count.
pub const DEFAULT_RECENT: u32 = 100;

/// `diego logs`'s arguments.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  diego logs web               # the latest 100 lines of every instance\n  \
                        diego logs web --index 2 -f  # follow index 2\n  \
                        diego logs web --recent=20 -f\n  diego logs --task build-42")]
pub struct LogsArgs {
    /// The desired LRP's process guid.
    #[arg(required_unless_present = "task", conflicts_with = "task", value_name = "GUID")]
    pub guid: Option<String>,
    /// Only this instance index.
    #[arg(long, short = 'i', value_name = "N", value_parser = super::validate::index, conflicts_with = "task")]
    pub index: Option<i32>,
    /// The latest N lines first (100 when N is not given; the default without --follow).
    #[arg(long, value_name = "N", num_args = 0..=1, require_equals = true,
          default_missing_value = "100", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub recent: Option<u32>,
    /// Keep printing new lines until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// A task's logs instead of an LRP's.
    #[arg(long, value_name = "TASK_GUID")]
    pub task: Option<String>,
}

/// Whose logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An LRP's instances, or one index.
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

impl LogsArgs {
    /// The target and how many recent lines to print first.
    pub fn target(&self) -> Result<(Target, u32), Error> {
        let recent = self.recent.unwrap_or(if self.follow { 0 } else { DEFAULT_RECENT });
        let target = match (&self.guid, &self.task) {
            (Some(guid), None) => Target::Lrp { process_guid: guid.clone(), index: self.index },
            (None, Some(task)) => Target::Task { task_guid: task.clone() },
            _ => {
                return Err(Error::InvalidFlag {
                    flag: "--task",
                    reason: "give either an LRP's process guid or --task TASK_GUID".into(),
                });
            }
        };
        Ok((target, recent))
    }
}

impl Target {
    /// The request for a rep.
    pub fn request(&self, recent: u32, follow: bool) -> rep_pb::LogsRequest {
        match self {
            Target::Lrp { process_guid, index } => rep_pb::LogsRequest {
                process_guid: process_guid.clone(),
                index: *index,
                recent,
                follow,
                ..Default::default()
            },
            Target::Task { task_guid } => {
                rep_pb::LogsRequest { task_guid: task_guid.clone(), recent, follow, ..Default::default() }
            }
        }
    }
}

/// `STDOUT`, `STDERR` or `-`.
fn stream_name(stream: i32) -> &'static str {
    match rep_pb::LogStream::try_from(stream) {
        Ok(rep_pb::LogStream::Stdout) => "STDOUT",
        Ok(rep_pb::LogStream::Stderr) => "STDERR",
        _ => "-",
    }
}

/// Who wrote a line: `web/0`, or the task guid.
fn label(message: &rep_pb::LogMessage) -> String {
    if message.task_guid.is_empty() {
        format!("{}/{}", message.process_guid, message.index)
    } else {
        message.task_guid.clone()
    }
}

/// One line as printed: `TIME [web/0 APP/STDOUT] text`, or a JSON object; a dropped-lines
/// marker as `TIME [cell CELL] N lines dropped: this reader was too slow`.
pub fn render(line: &mux::Line, format: Format) -> String {
    let m = &line.message;
    let time = output::rfc3339(m.timestamp_unix_nanos);
    match format {
        Format::Table if m.dropped > 0 => {
            format!("{time} [cell {}] {} lines dropped: this reader was too slow", line.cell_id, m.dropped)
        }
        Format::Table => {
            let cut = if m.truncated { " [truncated]" } else { "" };
            format!("{time} [{} {}/{}] {}{cut}", label(m), m.source, stream_name(m.stream), m.text)
        }
        Format::Json if m.dropped > 0 => {
            json!({ "time": time, "cell_id": line.cell_id, "dropped": m.dropped }).to_string()
        }
        Format::Json => json!({
            "time": time,
            "process_guid": m.process_guid,
            "index": if m.task_guid.is_empty() { Some(m.index) } else { None },
            "instance_guid": m.instance_guid,
            "task_guid": m.task_guid,
            "cell_id": line.cell_id,
            "source": m.source,
            "stream": stream_name(m.stream),
            "text": m.text,
            "truncated": m.truncated,
        })
        .to_string(),
    }
}

/// Runs `diego logs`.
pub async fn run(bbs: &Bbs, security: svc::tls::Security, args: &LogsArgs, format: Format) -> Result<(), Error> {
    let (target, recent) = args.target()?;
    mux::check_exists(bbs, &target).await?;
    if !args.follow {
        let (lines, warnings) = mux::recent(bbs, &security, &target, recent).await?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        for line in &lines {
            output::print(&render(line, format))?;
        }
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let follower = mux::follow(bbs.clone(), security, target, recent, tx);
    tokio::pin!(follower);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ended: Option<Result<(), Error>> = None;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            result = &mut follower, if ended.is_none() => ended = Some(result),
            event = rx.recv() => match event {
                Some(mux::Event::Line(line)) => output::print(&render(&line, format))?,
                Some(mux::Event::Warning(warning)) => eprintln!("warning: {warning}"),
                Some(mux::Event::Gone(why)) => eprintln!("{why}"),
                None => return ended.unwrap_or(Ok(())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: rep_pb::LogMessage) -> mux::Line {
        mux::Line { cell_id: "cell-1".into(), message }
    }

    #[test]
    fn lines_name_the_instance_source_and_stream() {
        let message = rep_pb::LogMessage {
            timestamp_unix_nanos: 1_796_354_401_123_000_000,
            process_guid: "web".into(),
            index: 0,
            instance_guid: "i-1".into(),
            source: "APP".into(),
            stream: rep_pb::LogStream::Stdout as i32,
            text: "hello".into(),
            ..Default::default()
        };
        let text = render(&line(message.clone()), Format::Table);
        assert!(text.ends_with("Z [web/0 APP/STDOUT] hello"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&render(&line(message), Format::Json)).expect("json");
        assert_eq!(json["index"], 0);
        assert_eq!(json["stream"], "STDOUT");
        assert_eq!(json["cell_id"], "cell-1");
        let task = rep_pb::LogMessage {
            task_guid: "t-1".into(),
            source: "TASK".into(),
            stream: rep_pb::LogStream::Stderr as i32,
            text: "x".into(),
            truncated: true,
            ..Default::default()
        };
        assert!(render(&line(task), Format::Table).ends_with(" [t-1 TASK/STDERR] x [truncated]"));
        let dropped = rep_pb::LogMessage { dropped: 7, ..Default::default() };
        assert!(render(&line(dropped), Format::Table).contains("7 lines dropped"));
    }

    #[test]
    fn recent_defaults_to_100_without_follow_and_to_none_with_it() {
        let args = |recent, follow| LogsArgs { guid: Some("web".into()), index: None, recent, follow, task: None };
        assert_eq!(args(None, false).target().expect("target").1, DEFAULT_RECENT);
        assert_eq!(args(None, true).target().expect("target").1, 0);
        assert_eq!(args(Some(5), true).target().expect("target").1, 5);
    }
}
