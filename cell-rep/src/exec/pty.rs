//! A pseudo-terminal opened on the rep for a `diego ssh` session: the master side, read and
//! written without blocking through tokio's reactor, and resized with `TIOCSWINSZ` (the kernel
//! then signals `SIGWINCH` to the terminal's foreground process group). Safe wrappers only
//! (`rustix`): the workspace forbids `unsafe`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::pty::{OpenptFlags, grantpt, ioctl_tiocgptpeer, openpt, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use tokio::io::unix::AsyncFd;

use super::session::TtySize;

/// The master side of a pseudo-terminal. Cheap to clone: clones share the descriptor.
#[derive(Debug, Clone)]
pub struct Pty {
    master: Arc<AsyncFd<OwnedFd>>,
}

impl Pty {
    /// Opens a pseudo-terminal of `size`; returns the master and the slave (for the command).
    pub fn open(size: TtySize) -> io::Result<(Pty, OwnedFd)> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave = ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        let flags = fcntl_getfl(&master)?;
        fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
        // `AsyncFd::new` is deprecated for types that could close the descriptor while it is
        // registered; the `OwnedFd` is owned by the `AsyncFd` and closed only when it drops
        // (deregistered first), and its safe replacement `register` is `unsafe`.
        #[allow(deprecated)]
        let master = AsyncFd::new(master)?;
        let pty = Pty { master: Arc::new(master) };
        pty.resize(size)?;
        Ok((pty, slave))
    }

    /// Sets the terminal's size; a zero dimension is ignored (the client does not know it).
    pub fn resize(&self, size: TtySize) -> io::Result<()> {
        if size.columns == 0 || size.rows == 0 {
            return Ok(());
        }
        let winsize = Winsize { ws_row: size.rows, ws_col: size.columns, ws_xpixel: 0, ws_ypixel: 0 };
        Ok(tcsetwinsize(self.master.get_ref(), winsize)?)
    }

    /// Reads what the command wrote; `Ok(0)` once every holder of the slave side is gone (the
    /// kernel reports that as `EIO`).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| rustix::io::read(fd.get_ref().as_fd(), &mut *buf).map_err(io::Error::from)) {
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data` to the command's terminal input.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref().as_fd(), data).map_err(io::Error::from)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_slave_sees_what_the_master_writes_and_its_size() {
        let (pty, slave) = Pty::open(TtySize { columns: 100, rows: 30 }).expect("pty");
        let size = rustix::termios::tcgetwinsize(&slave).expect("size");
        assert_eq!((size.ws_col, size.ws_row), (100, 30));
        pty.resize(TtySize { columns: 0, rows: 5 }).expect("a zero size is ignored");
        pty.resize(TtySize { columns: 120, rows: 40 }).expect("resize");
        let size = rustix::termios::tcgetwinsize(&slave).expect("size");
        assert_eq!((size.ws_col, size.ws_row), (120, 40));
        // The line discipline echoes input back to the master.
        pty.write_all(b"hi\n").await.expect("write");
        let mut buf = [0u8; 64];
        // The echo may come in pieces (one read gave only the `h` under load).
        let mut echoed = Vec::new();
        while echoed.len() < 2 {
            let n = pty.read(&mut buf).await.expect("read");
            assert!(n > 0, "the pty closed after {echoed:?}");
            echoed.extend_from_slice(&buf[..n]);
        }
        assert!(echoed.starts_with(b"hi"), "{echoed:?}");
        drop(slave);
        let mut rest = Vec::new();
        loop {
            match pty.read(&mut buf).await.expect("read") {
                0 => break,
                n => rest.extend_from_slice(&buf[..n]),
            }
        }
    }
}
