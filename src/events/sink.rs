//! The event writer: the data path appends each event line to a shared batch, and one
//! thread takes the batch every 5 ms and writes it to stdout or a file with one write, so
//! emitting never blocks a connection on I/O and costs no allocation of its own.
//! After a second without events the writer sleeps until the next one (an idle gateway does
//! not wake up 200 times a second); that first event wakes it.
//! When the writer falls behind (the batch is full), or cannot write (disk full), events are
//! dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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
    /// Wakes a parked writer.
    wake: Condvar,
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
    /// The writer is asleep until something is asked of it (`Queue::wake`).
    parked: bool,
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
            wake: Condvar::new(),
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
        self.emit_with(|out| out.extend_from_slice(line.as_bytes()));
    }

    /// Queues the event line `write` appends to the batch (without its newline). Drops (and
    /// counts) the line when the writer is behind.
    pub fn emit_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut batch = self.queue.lock();
        if batch.finish || batch.bytes.len() >= BATCH_MAX {
            drop(batch);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        write(&mut batch.bytes);
        batch.bytes.push(b'\n');
        batch.lines += 1;
        self.queue.unpark(batch);
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
            self.queue.unpark(batch);
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

    /// Wakes the writer if it is parked: a futex call only for the first request after an
    /// idle second, none under load (the writer is not parked then).
    fn unpark(&self, mut batch: MutexGuard<'_, Batch>) {
        let parked = std::mem::take(&mut batch.parked);
        drop(batch);
        if parked {
            self.wake.notify_one();
        }
    }

    /// Parks the writer until a request comes, unless one is waiting already.
    fn park(&self) {
        let mut batch = self.lock();
        if !batch.bytes.is_empty() || batch.reopen.is_some() || batch.finish {
            return;
        }
        batch.parked = true;
        while batch.parked {
            batch = self
                .wake
                .wait(batch)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Writer {
    /// Writes every event queued so far and stops the writer; later events are dropped.
    pub fn finish(self, sink: &Sink) {
        let mut batch = sink.queue.lock();
        batch.finish = true;
        sink.queue.unpark(batch);
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

/// How long the writer sleeps between batches. Emitting does not wake a writer that is
/// only sleeping a tick (a wake-up per event costs a futex call and a context switch on the
/// data path); events reach the sink within this tick instead.
const TICK: Duration = Duration::from_millis(5);
/// Empty ticks in a row (one second) after which the writer parks until the next request.
const PARK_AFTER: u32 = 200;

/// Takes the batch, writes it with one write, and sleeps a tick (and parks after
/// `PARK_AFTER` empty ticks), so events reach the file within a tick and with one system
/// call per tick under load. A write that fails (disk full, a closed pipe) counts the
/// batch's lines as dropped: one failure is not retried forever, and the count is what the
/// gateway reports every 10 s and in `portcullis_events_dropped_total`.
fn write_loop(queue: &Queue, mut out: Box<dyn Write + Send>, target: &Target) {
    let mut taken: Vec<u8> = Vec::new();
    let mut idle = 0;
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
        let wrote = taken.len();
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
        if wrote > 0 {
            idle = 0;
            // One write per tick under load, not one every few events: a write to a file
            // costs about as much as 20 events do to format. Only a writer that is behind
            // (a megabyte or more a tick) goes straight on.
            if wrote < KEEP {
                std::thread::sleep(TICK);
            }
        } else if idle < PARK_AFTER {
            idle += 1;
            std::thread::sleep(TICK);
        } else {
            queue.park();
            idle = 0;
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
        let rotated = dir.path().join("events.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen();
        for i in 3..5 {
            sink.emit_with(|out| out.extend_from_slice(format!("{{\"n\":{i}}}").as_bytes()));
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

    /// Waits up to 10 s for `done`.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_parked_writer_wakes_for_an_event_a_reopen_and_the_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (sink, writer) = Sink::start(&Target::File(path.clone())).unwrap();
        let parked = || sink.queue.lock().parked;
        let file = |path: &PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        eventually("parked after an idle second", parked);
        sink.emit("{\"n\":1}".into());
        eventually("the event written", || file(&path) == "{\"n\":1}\n");
        eventually("parked again", parked);
        let rotated = dir.path().join("events.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen();
        sink.emit("{\"n\":2}".into());
        eventually("parked once more", parked);
        // Finishing wakes it too (a writer left asleep would hang the join: bounded here).
        let (done, finished) = mpsc::channel();
        let finishing = sink.clone();
        std::thread::spawn(move || {
            writer.finish(&finishing);
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer finished");
        assert_eq!(file(&rotated), "{\"n\":1}\n");
        assert_eq!(file(&path), "{\"n\":2}\n");
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
