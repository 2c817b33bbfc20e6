//! One `diego ssh` session over the rep's `Exec/Run`: standard input (and terminal resizes) to
//! the rep in chunks of at most [`STDIN_CHUNK`] bytes through a bounded queue, its output to
//! the local streams, and its exit code.

use proto::pb::rep::v1::exec_client::ExecClient;
use proto::pb::rep::v1::exec_input::Input;
use proto::pb::rep::v1::exec_output::Output;
use proto::pb::rep::v1::{ExecInput, ExecStart, TerminalSize};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::error::Error;

/// Largest standard-input chunk sent in one message (the rep refuses more than 64 KiB).
pub const STDIN_CHUNK: usize = 16 * 1024;
/// Messages queued towards the rep before reading standard input waits.
const INPUT_QUEUE: usize = 8;

/// Local standard input as chunks, read on a thread of its own: a blocking read of a terminal
/// cannot be cancelled, and must not hold up the end of the command. The channel closes at the
/// end of input.
pub fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let spawned = std::thread::Builder::new().name("diego-ssh-stdin".into()).spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    if spawned.is_err() {
        // No thread, no input: the command sees the end of its input at once.
        let (_, rx) = mpsc::channel(1);
        return rx;
    }
    rx
}

/// A failed call or stream of the rep at `address` as the CLI's error.
pub fn status_error(status: &tonic::Status, address: &str) -> Error {
    let message = status.message();
    match status.code() {
        tonic::Code::Unimplemented => Error::Refused {
            kind: "Unsupported".into(),
            message: if message.is_empty() {
                format!("the rep at {address} serves no Exec service (an older rep)")
            } else {
                format!("the cell at {address} cannot run commands in its containers: {message}")
            },
        },
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => Error::Refused {
            kind: "Unavailable".into(),
            message: format!("lost the session with the rep at {address}: {message}"),
        },
        code => Error::Refused { kind: format!("{code:?}"), message: message.to_owned() },
    }
}

/// Runs `start` on the rep behind `channel` (at `address`, for messages): sends `stdin` (its
/// end is the end of input) and `resizes`, writes the output to `stdout` and `stderr`, and
/// returns the exit code.
pub async fn exec<O, E>(
    channel: Channel,
    address: &str,
    start: ExecStart,
    mut stdin: mpsc::Receiver<Vec<u8>>,
    resizes: Option<mpsc::Receiver<TerminalSize>>,
    stdout: &mut O,
    stderr: &mut E,
) -> Result<i32, Error>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let first = ExecInput { input: Some(Input::Start(start)) };
    let _ = tx.send(first).await;
    let forwarder = tokio::spawn(async move {
        let mut resizes = resizes;
        let mut input_open = true;
        loop {
            let message = tokio::select! {
                chunk = stdin.recv(), if input_open => match chunk {
                    Some(chunk) => Input::Stdin(chunk),
                    None => {
                        input_open = false;
                        Input::StdinEof(true)
                    }
                },
                size = async { match resizes.as_mut() { Some(r) => r.recv().await, None => None } }, if resizes.is_some() => match size {
                    Some(size) => Input::Resize(size),
                    None => {
                        resizes = None;
                        continue;
                    }
                },
                // Nothing more to send: keep the call's input open until the session ends.
                () = std::future::pending::<()>(), if !input_open && resizes.is_none() => continue,
            };
            // Chunks of at most STDIN_CHUNK bytes, whatever the caller queued.
            let messages = match message {
                Input::Stdin(chunk) if chunk.len() > STDIN_CHUNK => {
                    chunk.chunks(STDIN_CHUNK).map(|part| Input::Stdin(part.to_vec())).collect()
                }
                message => vec![message],
            };
            for message in messages {
                if tx.send(ExecInput { input: Some(message) }).await.is_err() {
                    return;
                }
            }
        }
    });
    // Dropped with this future too (a caller's timeout): the input ends and the call is reset.
    let _forwarder = AbortOnDrop(forwarder);
    receive(channel, address, rx, stdout, stderr).await
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn receive<O, E>(
    channel: Channel,
    address: &str,
    rx: mpsc::Receiver<ExecInput>,
    stdout: &mut O,
    stderr: &mut E,
) -> Result<i32, Error>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut client = ExecClient::new(channel);
    let response = client.run(ReceiverStream::new(rx)).await.map_err(|s| status_error(&s, address))?;
    let mut output = response.into_inner();
    loop {
        match output.message().await {
            Ok(Some(message)) => match message.output {
                Some(Output::Stdout(data)) => {
                    stdout.write_all(&data).await.map_err(Error::Output)?;
                    stdout.flush().await.map_err(Error::Output)?;
                }
                Some(Output::Stderr(data)) => {
                    // Standard error that cannot be written is no reason to stop the command.
                    let _ = stderr.write_all(&data).await;
                    let _ = stderr.flush().await;
                }
                Some(Output::Exit(exit)) => return Ok(exit.code),
                None => {}
            },
            Ok(None) => {
                return Err(Error::Refused {
                    kind: "Unavailable".into(),
                    message: format!("the rep at {address} ended the session without an exit status"),
                });
            }
            Err(status) => return Err(status_error(&status, address)),
        }
    }
}
