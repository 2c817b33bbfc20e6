//! The local terminal of an interactive `diego ssh`: whether standard input is one, its size,
//! its resizes (`SIGWINCH`), and raw mode for the session, restored when [`RawMode`] drops, so
//! every way out of the command (exit, error, panic) gives the terminal back as it was.

use proto::pb::rep::v1::TerminalSize;
use rustix::termios::{OptionalActions, Termios, isatty, tcgetattr, tcgetwinsize, tcsetattr};
use tokio::sync::mpsc;

/// Whether standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    isatty(std::io::stdin())
}

/// The terminal's `(columns, rows)`, from standard output or standard input.
pub fn size() -> Option<(u16, u16)> {
    let size = tcgetwinsize(std::io::stdout()).or_else(|_| tcgetwinsize(std::io::stdin())).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// The terminal in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal of standard input in raw mode; `None` when it is not a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The terminal's new size after each `SIGWINCH`; `None` when the signal cannot be caught.
pub fn resizes() -> Option<mpsc::Receiver<TerminalSize>> {
    let mut signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while signal.recv().await.is_some() {
            if let Some((columns, rows)) = size()
                && tx.send(TerminalSize { columns: columns.into(), rows: rows.into() }).await.is_err()
            {
                return;
            }
        }
    });
    Some(rx)
}
