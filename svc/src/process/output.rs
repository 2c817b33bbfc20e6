//! Log output written by a thread of its own, so that no runtime worker ever waits for it.
//!
//! A runtime worker that writes a log line itself stops running tasks for as long as the write
//! takes, and every other thread that logs meanwhile waits for the stream's lock. Appending to a
//! file usually takes microseconds, but on a machine whose disk is busy (a database checkpoint
//! flushing gigabytes on the same filesystem) one append can wait seconds for the filesystem's
//! journal. In the fourth and fifth benchmark sweeps to 1M LRPs the BBS's runtime stood still for
//! up to 9.9 s at such moments (`svc::lag`), long enough for the database to end transactions
//! left idle between two statements. Here the workers only hand the formatted line to a bounded
//! queue; the writer thread does the writing. When the queue is full the line is dropped, counted,
//! and the count is written as soon as the output catches up: a slow disk costs log lines, never
//! the process's progress.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Lines the queue holds before it drops new ones: at a few hundred bytes a line, a few MiB.
pub const QUEUED_LINES: usize = 8_192;

/// What the writer thread is handed.
enum Message {
    /// One formatted event.
    Line(Vec<u8>),
    /// Everything queued before this has been written once the sender hears back.
    Flush(SyncSender<()>),
}

/// The queue to the writer thread of one output stream.
#[derive(Clone)]
pub struct NonBlocking {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl NonBlocking {
    /// A queue to a new thread that writes each line to `output` (one `write_all` and a flush
    /// per line, so a line is never split between two writers).
    pub fn spawn<W: Write + Send + 'static>(name: &str, output: W) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        std::thread::Builder::new().name(name.to_owned()).spawn(move || write_lines(rx, output, &counter))?;
        Ok(Self { tx, dropped })
    }

    /// Waits until every line queued before this call has been written, at most `timeout`;
    /// false if it was not (the writer is stuck or gone).
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, heard) = sync_channel(1);
        let deadline = Instant::now() + timeout;
        // The queue may be full: keep offering until the deadline.
        let mut message = Message::Flush(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        heard.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer thread is gone (it only ends when its output fails): nowhere to write.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The writer thread: writes each line, and before the next line written after some were
/// dropped, how many.
fn write_lines<W: Write>(rx: Receiver<Message>, mut output: W, dropped: &AtomicU64) {
    let mut reported = 0u64;
    while let Ok(message) = rx.recv() {
        let now_dropped = dropped.load(Ordering::Relaxed);
        if now_dropped > reported {
            let note = format!(
                "{} log lines dropped: the log output was slower than the process wrote to it\n",
                now_dropped - reported
            );
            reported = now_dropped;
            if output.write_all(note.as_bytes()).is_err() {
                return;
            }
        }
        match message {
            Message::Line(line) => {
                if output.write_all(&line).and_then(|()| output.flush()).is_err() {
                    return;
                }
            }
            Message::Flush(done) => {
                let _ = output.flush();
                let _ = done.send(());
            }
        }
    }
}

/// One event's writer: collects what the formatter writes and queues it as one line when the
/// formatter is done with it.
pub struct LineWriter {
    line: Vec<u8>,
    queue: NonBlocking,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.queue.send(std::mem::take(&mut self.line));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { line: Vec::with_capacity(256), queue: self.clone() }
    }
}

/// The process's log queue, once [`super::init_logging`] has set it up (`None`: no thread could
/// be started for it).
pub(super) static STDOUT: OnceLock<Option<NonBlocking>> = OnceLock::new();

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An output whose writes block while `gate` is held, recording what was written.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn written(output: &Gated) -> String {
        String::from_utf8(output.written.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_are_written_whole_and_in_order() {
        let output = Gated { gate: Arc::default(), written: Arc::default() };
        let queue = NonBlocking::spawn("test-log", output.clone()).unwrap();
        for i in 0..100 {
            let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(&queue);
            write!(writer, "line ").unwrap();
            writeln!(writer, "{i}").unwrap();
        }
        assert!(queue.flush(Duration::from_secs(5)));
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(written(&output), expected);
    }

    #[test]
    fn a_stuck_output_costs_lines_not_the_logger() {
        let output = Gated { gate: Arc::default(), written: Arc::default() };
        let queue = NonBlocking::spawn("test-log", output.clone()).unwrap();
        let held = output.gate.lock().unwrap();
        // The writer thread blocks on the first line; the queue fills, then lines are dropped,
        // and none of these calls waits.
        let extra = 10;
        for i in 0..QUEUED_LINES + 1 + extra {
            let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(&queue);
            writeln!(writer, "{i}").unwrap();
        }
        assert!(queue.dropped() >= extra as u64, "dropped {}", queue.dropped());
        assert!(!queue.flush(Duration::from_millis(50)), "the output is stuck");
        drop(held);
        assert!(queue.flush(Duration::from_secs(5)));
        let text = written(&output);
        assert!(text.starts_with("0\n"), "{}", &text[..20]);
        assert!(text.contains(&format!("{} log lines dropped", queue.dropped())), "the drop is reported");
    }
}
