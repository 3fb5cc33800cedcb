//! The event writer: the data path appends each event line to a shared batch, and one
//! thread takes the batch every few milliseconds and writes it to stdout or a file with one
//! write, so emitting never blocks a connection on I/O and costs no allocation of its own.
//! When the writer falls behind (the batch is full), or cannot write (disk full), events are
//! dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// Most bytes waiting for the writer; beyond, events are dropped (about 64,000 events).
const BATCH_MAX: usize = 64 << 20;

/// The handle the data path emits through. Cheap to clone; never blocks on I/O.
#[derive(Clone)]
pub struct Sink {
    queue: Arc<Queue>,
}

struct Queue {
    batch: Mutex<Batch>,
    dropped: AtomicU64,
}

/// Lines waiting for the writer, and what it has been asked to do.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    /// Close and reopen the event file (log rotation), then say so.
    reopen: Option<SyncSender<()>>,
    /// Write what is here, then stop; later events are dropped.
    finish: bool,
}

/// Owns the writer thread; `finish` writes every queued event and joins it.
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
        let queue = Arc::new(Queue {
            batch: Mutex::new(Batch::default()),
            dropped: AtomicU64::new(0),
        });
        let handle = std::thread::Builder::new()
            .name("portcullis-events".into())
            .spawn({
                let target = target.clone();
                let queue = Arc::clone(&queue);
                move || write_loop(&queue, out, &target)
            })
            .map_err(SinkError::Thread)?;
        Ok((Sink { queue }, Writer { handle }))
    }

    /// Queues one event line; drops (and counts) it when the writer is behind.
    pub fn emit(&self, line: String) {
        self.emit_with(|out| {
            out.extend_from_slice(line.as_bytes());
            true
        });
    }

    /// Queues the event line `write` appends to the batch (without its newline); `write`
    /// returns false when it could not write the line, and whatever it appended is taken
    /// back. Drops (and counts) the line when the writer is behind.
    pub fn emit_with(&self, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        let mut batch = self.queue.lock();
        if batch.finish || batch.bytes.len() >= BATCH_MAX {
            drop(batch);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let start = batch.bytes.len();
        if write(&mut batch.bytes) {
            batch.bytes.push(b'\n');
            batch.lines += 1;
        } else {
            batch.bytes.truncate(start);
        }
    }

    /// Asks the writer to reopen the event file and waits (a few milliseconds) until it has:
    /// every event emitted before goes to the old file, every one after to the new.
    pub fn reopen(&self) {
        let (done, reopened) = mpsc::sync_channel(1);
        {
            let mut batch = self.queue.lock();
            if batch.finish {
                return;
            }
            batch.reopen = Some(done);
        }
        let _ = reopened.recv_timeout(Duration::from_secs(10));
    }

    /// Events dropped so far because the writer could not keep up or could not write them.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Writer {
    /// Writes every event queued so far and stops the writer; later events are dropped.
    pub fn finish(self, sink: &Sink) {
        sink.queue.lock().finish = true;
        let _ = self.handle.join();
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

/// The most batch capacity kept between bursts.
const KEEP: usize = 1 << 20;

/// How long the writer sleeps when nothing is queued. Emitting never wakes the writer (a
/// wake-up per event costs a futex call and a context switch on the data path); events reach
/// the sink within this tick instead.
const TICK: Duration = Duration::from_millis(5);

/// Takes the batch, writes it with one write, and sleeps a tick when there was nothing, so
/// events reach the file promptly without a system call per event under load. A write that
/// fails (disk full, a closed pipe) counts the batch's lines as dropped: one failure is not
/// retried forever, and the count is what the gateway reports every 10 s and in
/// `portcullis_events_dropped_total`.
fn write_loop(queue: &Queue, mut out: Box<dyn Write + Send>, target: &Target) {
    let mut taken: Vec<u8> = Vec::new();
    loop {
        let (lines, reopen, finish) = {
            let mut batch = queue.lock();
            std::mem::swap(&mut batch.bytes, &mut taken);
            (
                std::mem::take(&mut batch.lines),
                batch.reopen.take(),
                batch.finish,
            )
        };
        if !taken.is_empty() && out.write_all(&taken).and_then(|()| out.flush()).is_err() {
            queue.dropped.fetch_add(lines, Ordering::Relaxed);
        }
        let wrote = !taken.is_empty();
        taken.clear();
        // A burst's buffer is not kept for good.
        if taken.capacity() > KEEP {
            taken = Vec::new();
        }
        if let Some(done) = reopen {
            if let Target::File(path) = target {
                match open_append(path) {
                    Ok(file) => out = Box::new(file),
                    Err(err) => eprintln!("portcullis: {err}; still writing the old file"),
                }
            }
            let _ = done.send(());
        }
        if finish {
            return;
        }
        if !wrote {
            std::thread::sleep(TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_whole_in_order_and_reopen_splits_them_between_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (sink, writer) = Sink::start(&Target::File(path.clone())).unwrap();
        for i in 0..3 {
            sink.emit(format!("{{\"n\":{i}}}"));
        }
        // A line that fails half-way is taken back whole.
        sink.emit_with(|out| {
            out.extend_from_slice(b"{\"half");
            false
        });
        let rotated = dir.path().join("events.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen();
        for i in 3..5 {
            sink.emit_with(|out| {
                out.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes());
                true
            });
        }
        writer.finish(&sink);
        sink.emit("after finish".into());
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":3}\n{\"n\":4}\n"
        );
        assert_eq!(sink.dropped(), 1, "the line emitted after finish");
    }

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
