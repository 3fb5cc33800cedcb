//! The event writer: a bounded queue and one thread that writes lines to stdout or a file,
//! so emitting never blocks a connection; when the writer falls behind, or cannot write
//! (disk full), events are dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// Queue depth between the data path and the writer thread.
const QUEUE: usize = 65_536;

/// The handle the data path emits through. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Sink {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    Line(String),
    /// Close and reopen the event file (log rotation).
    Reopen,
    /// Write everything queued before this, then exit.
    Finish,
}

/// Owns the writer thread; `finish` flushes every queued event and joins it.
pub struct Writer {
    handle: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open event file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot start the event writer thread: {0}")]
    Thread(io::Error),
}

impl Sink {
    /// Opens the target and starts the writer thread.
    pub fn start(target: &Target) -> Result<(Sink, Writer), SinkError> {
        let out: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(io::stdout()),
            Target::File(path) => Box::new(open_append(path)?),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let handle = std::thread::Builder::new()
            .name("portcullis-events".into())
            .spawn({
                let target = target.clone();
                let dropped = Arc::clone(&dropped);
                move || write_loop(rx, out, &target, &dropped)
            })
            .map_err(SinkError::Thread)?;
        let sink = Sink { tx, dropped };
        Ok((sink, Writer { handle }))
    }

    /// Queues one event line; drops (and counts) it when the writer is behind.
    pub fn emit(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Asks the writer to reopen the event file: every event queued before goes to the old
    /// file, every one after to the new. Blocks only while the queue is full.
    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }

    /// Events dropped so far because the writer could not keep up or could not write them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// Writes every event queued so far and stops the writer; later events are dropped.
    pub fn finish(self, sink: &Sink) {
        if sink.tx.send(Msg::Finish).is_ok() {
            let _ = self.handle.join();
        }
    }
}

fn open_append(path: &PathBuf) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.clone(),
            source,
        })
}

/// How long the writer sleeps when the queue is empty. Emitting never wakes the writer (a
/// wake-up per event costs a futex call and a context switch on the data path); events reach
/// the sink within this tick instead.
const TICK: Duration = Duration::from_millis(5);

/// Writes whatever is queued, flushes, and sleeps a tick when there was nothing, so events
/// reach the file promptly without a syscall per event under load.
fn write_loop(rx: Receiver<Msg>, out: Box<dyn Write + Send>, target: &Target, dropped: &AtomicU64) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    // Lines written since the last successful flush: lost, and counted, if writing fails.
    let mut unflushed = 0u64;
    loop {
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(line)) => {
                    unflushed += 1;
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .is_err()
                    {
                        out = lose(out, &mut unflushed, dropped);
                    }
                    wrote = true;
                }
                Ok(Msg::Reopen) => {
                    if out.flush().is_err() {
                        dropped.fetch_add(unflushed, Ordering::Relaxed);
                    }
                    unflushed = 0;
                    if let Target::File(path) = target {
                        match open_append(path) {
                            Ok(file) => out = BufWriter::with_capacity(64 * 1024, Box::new(file)),
                            Err(err) => eprintln!("portcullis: {err}; still writing the old file"),
                        }
                    }
                }
                Ok(Msg::Finish) | Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if wrote {
            match out.flush() {
                Ok(()) => unflushed = 0,
                Err(_) => out = lose(out, &mut unflushed, dropped),
            }
        } else {
            std::thread::sleep(TICK);
        }
    }
}

/// A write failed (disk full, a closed pipe): counts the lines not known to be written as
/// dropped and discards what is buffered, so one failure is not retried forever. The drop
/// count is what the gateway reports every 10 s and in `portcullis_events_dropped_total`.
fn lose<W: Write>(out: BufWriter<W>, unflushed: &mut u64, dropped: &AtomicU64) -> BufWriter<W> {
    dropped.fetch_add(*unflushed, Ordering::Relaxed);
    *unflushed = 0;
    let (inner, _discarded) = out.into_parts();
    BufWriter::with_capacity(64 * 1024, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_that_cannot_be_written_are_counted_as_dropped() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let (sink, writer) = Sink::start(&Target::File(PathBuf::from("/dev/full"))).unwrap();
        for i in 0..10 {
            sink.emit(format!("{{\"n\":{i}}}"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.dropped() < 10 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} dropped",
                sink.dropped()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        writer.finish(&sink);
        assert_eq!(sink.dropped(), 10);
    }
}
