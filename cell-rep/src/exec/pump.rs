//! The copying of one exec session: the client's standard input, resizes and end of input to
//! the command; its output to the client in chunks of at most [`CHUNK`] bytes through the
//! bounded output queue (a slow client slows the command's output down, nothing piles up); the
//! exit code last. The client going away (its input failing, or the output queue closed) kills
//! the command. After the command exits, output still buffered is forwarded until nothing
//! arrives for [`IDLE_AFTER_EXIT`] (a background child may keep the streams open forever).

use std::time::Duration;

use proto::pb::rep::v1::exec_input::Input;
use proto::pb::rep::v1::exec_output::Output;
use proto::pb::rep::v1::{ExecExit, ExecInput, ExecOutput};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::pty::Pty;
use super::session::{ExecIo, ExecSession, TtySize};
use crate::runtime::StopSignal;

/// Largest output chunk sent in one message.
pub const CHUNK: usize = 32 * 1024;
/// How long output may pause after the command exited before the session ends.
pub const IDLE_AFTER_EXIT: Duration = Duration::from_millis(500);

type Tx = mpsc::Sender<Result<ExecOutput, Status>>;

/// Runs the session to its end; the exit code, or `None` when the client went away first and
/// the command was killed.
pub async fn run(session: ExecSession, input: Streaming<ExecInput>, tx: Tx) -> Option<i32> {
    let ExecSession { io, mut process } = session;
    let gone = CancellationToken::new();
    let exited = CancellationToken::new();
    let (feeder, readers) = match io {
        ExecIo::Pipes { stdin, stdout, stderr } => {
            let feeder = tokio::spawn(feed(input, Sink::Pipe(Some(stdin)), tx.clone(), gone.clone()));
            let out = tokio::spawn(forward(stdout, Output::Stdout, tx.clone(), gone.clone(), exited.clone()));
            let err = tokio::spawn(forward(stderr, Output::Stderr, tx.clone(), gone.clone(), exited.clone()));
            (feeder, vec![out, err])
        }
        ExecIo::Tty(pty) => {
            let feeder = tokio::spawn(feed(input, Sink::Tty(pty.clone()), tx.clone(), gone.clone()));
            let out = tokio::spawn(forward(PtyReader(pty), Output::Stdout, tx.clone(), gone.clone(), exited.clone()));
            (feeder, vec![out])
        }
    };
    let status = tokio::select! {
        status = process.wait() => Some(status),
        () = gone.cancelled() => None,
        () = tx.closed() => None,
    };
    let Some(status) = status else {
        let _ = process.signal(StopSignal::Kill);
        feeder.abort();
        for reader in readers {
            reader.abort();
        }
        return None;
    };
    exited.cancel();
    for reader in readers {
        let _ = reader.await;
    }
    feeder.abort();
    let exit = ExecOutput { output: Some(Output::Exit(ExecExit { code: status.code })) };
    let _ = tx.send(Ok(exit)).await;
    Some(status.code)
}

/// Where standard input goes.
enum Sink {
    /// A pipe; `None` once closed.
    Pipe(Option<ChildStdin>),
    /// The terminal.
    Tty(Pty),
}

/// Copies the client's messages to the command until the input ends; an input that fails
/// (the client went away, or sent a message over the limits) cancels `gone`, telling the
/// client why when it still listens.
async fn feed(mut input: Streaming<ExecInput>, mut sink: Sink, tx: Tx, gone: CancellationToken) {
    loop {
        let message = match input.message().await {
            Ok(Some(message)) => message,
            // The client closed its side: the end of its input, not of the session.
            Ok(None) => {
                close(&mut sink).await;
                return;
            }
            Err(status) => {
                tracing::debug!(%status, "exec input failed; the command is killed");
                let _ = tx.try_send(Err(status));
                gone.cancel();
                return;
            }
        };
        match (message.input, &mut sink) {
            (Some(Input::Stdin(data)), Sink::Pipe(pipe)) => {
                // A command that closed its input no longer reads: drop what follows.
                if let Some(stdin) = pipe
                    && stdin.write_all(&data).await.is_err()
                {
                    *pipe = None;
                }
            }
            (Some(Input::Stdin(data)), Sink::Tty(pty)) => {
                let _ = pty.write_all(&data).await;
            }
            (Some(Input::Resize(size)), Sink::Tty(pty)) => {
                let columns = u16::try_from(size.columns).unwrap_or(u16::MAX);
                let rows = u16::try_from(size.rows).unwrap_or(u16::MAX);
                let _ = pty.resize(TtySize { columns, rows });
            }
            (Some(Input::StdinEof(true)), _) => close(&mut sink).await,
            // A second start, a resize without a terminal, input after the end: ignored.
            _ => {}
        }
    }
}

async fn close(sink: &mut Sink) {
    match sink {
        Sink::Pipe(stdin) => {
            if let Some(mut stdin) = stdin.take() {
                let _ = stdin.shutdown().await;
            }
        }
        // A terminal has no end of input of its own (typing ^D is the user's business): the
        // end of the client's input changes nothing; the session ends when the command does.
        Sink::Tty(_) => {}
    }
}

/// Reads a terminal's output like a pipe.
struct PtyReader(Pty);

/// A source of output: a pipe or a terminal.
trait Source: Send + 'static {
    fn read_chunk<'a>(&'a mut self, buf: &'a mut [u8]) -> futures::future::BoxFuture<'a, std::io::Result<usize>>;
}

impl<R: AsyncRead + Unpin + Send + 'static> Source for R {
    fn read_chunk<'a>(&'a mut self, buf: &'a mut [u8]) -> futures::future::BoxFuture<'a, std::io::Result<usize>> {
        Box::pin(self.read(buf))
    }
}

impl Source for PtyReader {
    fn read_chunk<'a>(&'a mut self, buf: &'a mut [u8]) -> futures::future::BoxFuture<'a, std::io::Result<usize>> {
        Box::pin(self.0.read(buf))
    }
}

/// Sends what `source` yields as `kind` messages until its end, a read error, the client going
/// away (cancels `gone`), or a pause of [`IDLE_AFTER_EXIT`] once `exited`.
async fn forward<S: Source>(
    mut source: S,
    kind: fn(Vec<u8>) -> Output,
    tx: Tx,
    gone: CancellationToken,
    exited: CancellationToken,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = if exited.is_cancelled() {
            match tokio::time::timeout(IDLE_AFTER_EXIT, source.read_chunk(&mut buf)).await {
                Ok(read) => read,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                read = source.read_chunk(&mut buf) => read,
                () = exited.cancelled() => continue,
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if tx.send(Ok(ExecOutput { output: Some(kind(buf[..n].to_vec())) })).await.is_err() {
            gone.cancel();
            return;
        }
    }
}
