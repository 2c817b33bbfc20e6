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
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// Lines the queue holds before it drops new ones: at a few hundred bytes a line, a few MiB.
pub const QUEUED_LINES: usize = 8_192;

/// What the writer thread is handed, each with the number of lines dropped before it was
/// queued: the writer reports a drop where it happened, after the lines queued before it.
enum Message {
    /// One formatted event.
    Line(Vec<u8>, u64),
    /// Everything queued before this has been written once the sender hears back.
    Flush(SyncSender<()>, u64),
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
        let mut message = Message::Flush(done, self.dropped());
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
        match self.tx.try_send(Message::Line(line, self.dropped())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer thread is gone (it only ends when its output fails): nowhere to write.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The writer thread: writes each line, and how many lines were dropped where they were: before
/// the first line queued after the drop, or, when the queue runs empty, after everything.
fn write_lines<W: Write>(rx: Receiver<Message>, mut output: W, dropped: &AtomicU64) {
    let mut reported = 0u64;
    let mut report = |output: &mut W, until: u64| {
        if until <= reported {
            return Ok(());
        }
        let note =
            format!("{} log lines dropped: the log output was slower than the process wrote to it\n", until - reported);
        reported = until;
        output.write_all(note.as_bytes())
    };
    loop {
        let message = match rx.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                // Everything queued is written: a drop counted by now came after all of it.
                if report(&mut output, dropped.load(Ordering::Relaxed)).and_then(|()| output.flush()).is_err() {
                    return;
                }
                match rx.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => return,
        };
        match message {
            Message::Line(line, dropped_before) => {
                let written = report(&mut output, dropped_before)
                    .and_then(|()| output.write_all(&line))
                    .and_then(|()| output.flush());
                if written.is_err() {
                    return;
                }
            }
            Message::Flush(done, dropped_before) => {
                let _ = report(&mut output, dropped_before);
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
        // Whether or not the writer took the first line before the queue filled, the lines
        // queued come out in order and the drop is reported after them, where it happened.
        let lines: Vec<&str> = text.lines().collect();
        let (last, queued) = lines.split_last().unwrap();
        let expected: Vec<String> = (0..queued.len()).map(|i| i.to_string()).collect();
        assert_eq!(queued, &expected, "the queued lines, in order");
        assert!(queued.len() >= QUEUED_LINES, "{} lines written", queued.len());
        let note = format!("{} log lines dropped", queue.dropped());
        assert!(last.starts_with(&note), "the drop is reported after the lines before it: {last:?}");
    }

    #[test]
    fn a_drop_is_reported_before_the_lines_queued_after_it() {
        let output = Gated { gate: Arc::default(), written: Arc::default() };
        let queue = NonBlocking::spawn("test-log", output.clone()).unwrap();
        let held = output.gate.lock().unwrap();
        let write_line = |i: usize| {
            let mut writer = tracing_subscriber::fmt::MakeWriter::make_writer(&queue);
            writeln!(writer, "{i}").unwrap();
        };
        for i in 0..QUEUED_LINES + 3 {
            write_line(i);
        }
        let dropped = queue.dropped();
        assert!(dropped >= 2, "dropped {dropped}");
        drop(held);
        assert!(queue.flush(Duration::from_secs(5)));
        write_line(1_000_000);
        assert!(queue.flush(Duration::from_secs(5)));
        let text = written(&output);
        let lines: Vec<&str> = text.lines().collect();
        let note = lines.iter().position(|l| l.contains("log lines dropped")).expect("the drop is reported");
        assert!(lines[note].starts_with(&format!("{dropped} log lines dropped")), "{}", lines[note]);
        assert_eq!(lines[note - 1], (note - 1).to_string(), "after every line queued before the drop");
        assert_eq!(lines[note + 1..], ["1000000"], "before the lines queued after it");
    }
}
