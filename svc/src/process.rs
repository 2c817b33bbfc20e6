//! What every component's `main` does the same way besides its configuration: the log set-up, the
//! binding of its two listeners, and the exit codes an operator sees.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | stopped on SIGINT or SIGTERM (or, for the rep, after an evacuation) |
//! | 1 | the component failed while running |
//! | 64 | the configuration was refused (one line on stderr; [`crate::config::EXIT_INVALID_CONFIG`]) |
//! | 69 | a listener could not be bound ([`EXIT_UNAVAILABLE`]) |

use std::fmt::Display;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::config::{ConfigFile, Flags, Valid};
use crate::server::{BindError, bind};

pub mod output;

/// The exit code of a component whose listener could not be bound (sysexits' EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Logs to stdout, filtered by `RUST_LOG` (default `info`), through a writer thread of its own
/// ([`output`]): no runtime worker waits for the output, and a stuck output costs log lines,
/// never progress. [`flush_logs`] (which [`exit`] calls) writes what is queued.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in a file, a pipe or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    // One writer thread per process; a second call (tests running several components) keeps
    // the first subscriber. Without a thread for it, the workers write as they used to.
    let queue = output::STDOUT.get_or_init(|| output::NonBlocking::spawn("log-writer", std::io::stdout()).ok());
    let _ = match queue {
        Some(queue) => builder.with_writer(queue.clone()).try_init(),
        None => builder.try_init(),
    };
}

/// Writes the log lines [`init_logging`]'s queue holds, waiting at most a second: before a
/// process exits, so that its last lines are not lost.
pub fn flush_logs() {
    if let Some(Some(queue)) = output::STDOUT.get() {
        queue.flush(LOG_FLUSH_TIMEOUT);
    }
}

/// How long [`flush_logs`] waits for the queued lines to be written.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A component's gRPC and admin listeners: what its `run()` takes.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC listener.
    pub grpc: TcpListener,
    /// The admin HTTP listener.
    pub admin: TcpListener,
}

/// Binds a component's gRPC and admin listeners, in that order.
pub async fn bind_listeners(grpc: &str, admin: &str) -> Result<Listeners, BindError> {
    Ok(Listeners { grpc: bind("grpc", grpc).await?, admin: bind("admin", admin).await? })
}

impl BindError {
    /// Prints the refusal as one line prefixed by the component and gives [`EXIT_UNAVAILABLE`].
    pub fn exit(&self, component: &str) -> ExitCode {
        flush_logs();
        eprintln!("{component}: {self}");
        ExitCode::from(EXIT_UNAVAILABLE)
    }
}

/// A server component's configuration: where its two listeners go.
pub trait Listens {
    /// The gRPC listen address (`host:port`).
    fn listen_address(&self) -> &str;
    /// The admin HTTP listen address (`host:port`).
    fn admin_address(&self) -> &str;
}

/// Everything a server's `main` does before `run`, the same way in every component: logging, the
/// configuration from the flags and file, checked once (refused: one line, exit 64), and its two
/// listeners (one taken: one line, exit 69). `Err` is the code to exit with.
pub async fn start<C: ConfigFile + Listens>(
    component: &str,
    flags: Flags<C::Overrides>,
) -> Result<(Valid<C>, Listeners), ExitCode> {
    crate::tune_memory();
    init_logging();
    let config = C::from_flags(flags).map_err(|e| e.exit(component))?;
    let bound = bind_listeners(config.listen_address(), config.admin_address()).await.map_err(|e| e.exit(component))?;
    Ok((config, bound))
}

/// The exit of a component's run: 0 when it stopped, else its error on one line and 1.
pub fn exit<E: Display>(component: &str, result: Result<(), E>) -> ExitCode {
    flush_logs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{component}: {e}");
            ExitCode::FAILURE
        }
    }
}
