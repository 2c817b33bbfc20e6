//! What a runtime is asked to run for `diego ssh` ([`ExecSpec`]) and what it hands back
//! ([`ExecSession`]), and the one way both local runtimes start such a command ([`launch`]).
//!
//! Without a terminal the command gets pipes and its own process group. With one, it gets the
//! slave side of a pseudo-terminal opened on the rep (see [`super::pty`]) as its standard input,
//! output and error, in a session of its own with that terminal as its controlling terminal:
//! `setsid -c` does the `setsid()` and `TIOCSCTTY` between fork and exec (the workspace forbids
//! the `unsafe` a pre-exec hook needs). Without `setsid(1)` on the host the command still gets
//! the terminal, but no job control.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use super::pty::Pty;
use crate::runtime::RuntimeProcess;

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TtySize {
    /// Columns.
    pub columns: u16,
    /// Rows.
    pub rows: u16,
}

/// One command to run in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// The program and its arguments; never empty (the service fills in the shell).
    pub argv: Vec<String>,
    /// The instance's environment, in order; a later duplicate wins.
    pub env: Vec<(String, String)>,
    /// The working directory inside the container (the main process's); empty = the default.
    pub dir: String,
    /// The user to run as (the main process's), where the runtime honours users.
    pub user: String,
    /// A terminal of this size, or pipes.
    pub tty: Option<TtySize>,
}

/// The standard streams of a running command.
#[derive(Debug)]
pub enum ExecIo {
    /// Pipes: standard input, output and error apart.
    Pipes {
        /// Its standard input; dropping it is the end of input.
        stdin: ChildStdin,
        /// Its standard output.
        stdout: ChildStdout,
        /// Its standard error.
        stderr: ChildStderr,
    },
    /// The master side of its terminal: input, output (both streams) and the size.
    Tty(Pty),
}

/// A started command: its streams, and the process to signal and wait for.
#[derive(Debug)]
pub struct ExecSession {
    /// Its standard streams.
    pub io: ExecIo,
    /// Signals reach the whole command (its process group or session).
    pub process: RuntimeProcess,
}

/// How to start a command on the host: `program` with `args`, exactly `env`, in `cwd`.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// The program (a path, or a name looked up on the rep's `PATH`).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory; the rep's when `None`.
    pub cwd: Option<PathBuf>,
    /// The uid and gid to run as.
    pub user: Option<(u32, u32)>,
    /// A terminal of this size, or pipes.
    pub tty: Option<TtySize>,
}

/// Starts `launch`. Returns the child (its pid leads its process group, and in terminal mode
/// its session) and its streams.
pub fn launch(launch: Launch) -> std::io::Result<(Child, ExecIo)> {
    let Launch { program, args, env, cwd, user, tty } = launch;
    let setsid = tty.and_then(|_| crate::runtime::process::limits::find_on_path("setsid"));
    let mut command = match &setsid {
        Some(setsid) => {
            let mut command = Command::new(setsid);
            command.arg("-c").arg(&program);
            command
        }
        None => Command::new(&program),
    };
    command.args(&args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(false);
    if let Some(cwd) = &cwd {
        command.current_dir(cwd);
    }
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    match tty {
        None => {
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
            let mut child = command.spawn()?;
            let taken = (child.stdin.take(), child.stdout.take(), child.stderr.take());
            let (Some(stdin), Some(stdout), Some(stderr)) = taken else {
                let _ = child.start_kill();
                return Err(std::io::Error::other("the command's pipes were not created"));
            };
            Ok((child, ExecIo::Pipes { stdin, stdout, stderr }))
        }
        Some(size) => {
            let (pty, slave) = Pty::open(size)?;
            command
                .stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            if setsid.is_none() {
                // No session of its own: at least a process group the signals can reach.
                command.process_group(0);
            }
            let child = command.spawn()?;
            // The command keeps the slave's copies: drop ours, so the master reads end of file
            // once the command and its children are gone.
            drop(command);
            Ok((child, ExecIo::Tty(pty)))
        }
    }
}
