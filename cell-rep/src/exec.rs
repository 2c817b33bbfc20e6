//! The `Exec` gRPC service (issue 18, `diego ssh`): a command, or an interactive shell on a
//! terminal, inside a running LRP instance's container.
//!
//! The first message names the instance and the command ([`target`] finds the container and
//! builds the context: the main process's environment, working directory and user); the
//! runtime starts it (`ContainerRuntime::exec`: `runtime/process/exec.rs`,
//! `runtime/runc/exec.rs`; the sim has none). Then [`pump`] copies standard input, terminal
//! resizes and output both ways, in bounded chunks through bounded queues, until the command
//! exits; the exit code is the last message. A client that goes away has its command killed.
//!
//! Operators only (the role table in `svc::authz`). Every session is audited: an `info` event
//! naming who (the peer's `diego://` identity), what (the command line), where (the instance)
//! and, at the end, how it ended, and the [`EXEC_SESSIONS`] counter. At most
//! [`DEFAULT_MAX_CONCURRENT`] sessions run on a cell at once; more are refused with
//! RESOURCE_EXHAUSTED.

pub mod pty;
pub mod pump;
pub mod session;
pub mod target;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use proto::pb::rep::v1::exec_input::Input;
use proto::pb::rep::v1::{ExecInput, ExecOutput};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use self::session::{ExecIo, ExecSession, ExecSpec, Launch, TtySize, launch};
use crate::context::RepContext;
use crate::runtime::RuntimeError;

/// Sessions a cell runs at once unless configured otherwise.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;
/// Sessions started, by outcome; labels `cell_id`, `outcome` (`started`, `refused`, `failed`).
pub const EXEC_SESSIONS: &str = "rep_exec_sessions_total";
/// Output messages queued for a slow client before the command's output waits.
pub const OUTPUT_QUEUE: usize = 16;

/// The `Exec` service of one cell.
#[derive(Debug, Clone)]
pub struct ExecService {
    ctx: Arc<RepContext>,
    slots: Arc<Semaphore>,
}

impl ExecService {
    /// The service over the rep's shared state, running at most `max_concurrent` sessions.
    pub fn new(ctx: Arc<RepContext>, max_concurrent: usize) -> Self {
        Self { ctx, slots: Arc::new(Semaphore::new(max_concurrent.max(1))) }
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!(EXEC_SESSIONS, "cell_id" => self.ctx.cell.cell_id.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

/// The status a runtime's refusal maps to.
fn runtime_status(error: &RuntimeError) -> Status {
    match error {
        RuntimeError::Unsupported { .. } => Status::unimplemented(error.to_string()),
        RuntimeError::NotFound { .. } => Status::not_found(error.to_string()),
        RuntimeError::Refused { .. } | RuntimeError::InvalidGuid { .. } => {
            Status::failed_precondition(error.to_string())
        }
        _ => Status::internal(error.to_string()),
    }
}

/// A command line for the audit log: arguments quoted when they need it, at most 1000 chars.
pub fn command_line(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    let line = quoted.join(" ");
    match line.char_indices().nth(1000) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[tonic::async_trait]
impl proto::pb::rep::v1::exec_server::Exec for ExecService {
    type RunStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

    async fn run(&self, request: Request<Streaming<ExecInput>>) -> Result<Response<Self::RunStream>, Status> {
        let who = svc::identity::Peer::of(&request).to_string();
        let mut input = request.into_inner();
        let start = match input.message().await? {
            Some(ExecInput { input: Some(Input::Start(start)) }) => start,
            _ => return Err(Status::invalid_argument("the first message of an exec must be `start`")),
        };
        let tty = start.tty.then(|| {
            let size = start.size.unwrap_or_default();
            TtySize {
                columns: u16::try_from(size.columns).unwrap_or(u16::MAX),
                rows: u16::try_from(size.rows).unwrap_or(u16::MAX),
            }
        });
        let containers = self.ctx.executor.list();
        let container = target::find(&containers, &start).map_err(|e| match e {
            target::TargetError::Missing => Status::invalid_argument(e.to_string()),
            target::TargetError::NotFound(_) => Status::not_found(e.to_string()),
            target::TargetError::NotRunning { .. } => Status::failed_precondition(e.to_string()),
        })?;
        let spec = target::spec_for(container, start.command, tty, &start.term);
        let command = command_line(&spec.argv);
        let guid = container.guid.clone();
        let instance = match &container.workload {
            crate::workload::Workload::Lrp(lrp) => format!("{}/{}", lrp.key.process_guid, lrp.key.index),
            crate::workload::Workload::Task(_) => guid.clone(),
        };
        let cell_id = self.ctx.cell.cell_id.to_string();
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.count("refused");
            tracing::warn!(cell_id, who, instance, instance_guid = %guid, command, "exec refused: too many sessions on this cell");
            return Err(Status::resource_exhausted("too many exec sessions on this cell; try again later"));
        };
        let session = match self.ctx.executor.runtime().exec(&guid, spec.clone()).await {
            Ok(session) => session,
            Err(error) => {
                self.count("failed");
                tracing::warn!(cell_id, who, instance, instance_guid = %guid, command, %error, "exec failed to start");
                return Err(runtime_status(&error));
            }
        };
        self.count("started");
        tracing::info!(cell_id, who, instance, instance_guid = %guid, command, tty = spec.tty.is_some(), "exec started");
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        tokio::spawn(async move {
            let code = pump::run(session, input, tx).await;
            match code {
                Some(code) => {
                    tracing::info!(cell_id, who, instance, instance_guid = %guid, command, code, "exec ended")
                }
                None => {
                    tracing::info!(cell_id, who, instance, instance_guid = %guid, command, "exec killed: the client went away")
                }
            }
            drop(permit);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_the_audit_log() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(command_line(&argv(&["cat", "/proc/1/cmdline"])), "cat /proc/1/cmdline");
        assert_eq!(command_line(&argv(&["sh", "-c", "echo 'a b'"])), r"sh -c 'echo '\''a b'\'''");
        assert_eq!(command_line(&argv(&[""])), "''");
        assert_eq!(command_line(&argv(&[&"x".repeat(2000)])).chars().count(), 1001);
    }
}
