//! Relaying an established connection both ways after the verdict: half-closes are passed
//! on (a client that shuts its write side still gets the whole response), resets are passed
//! on as resets, and every byte is counted for the close event. One hand-written poll loop
//! drives both directions, the idle timer and the drain signal, so an idle connection's
//! relay is a few words of state: no nested futures, no buffer, no pipe.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant, Sleep};

use crate::events::CloseReason;
use crate::metrics::Traffic;

#[cfg(target_os = "linux")]
use super::splice;

/// Most bytes moved per read: the default pipe capacity (16 pages), and the size of each
/// thread's copy buffer.
const CHUNK: usize = 64 * 1024;
/// A read this large means bulk transfer: the direction switches from copying to splice(2)
/// (one full TLS record). Below it, a read and a write cost less than two splices through
/// a pipe (HAProxy's `splice-auto` makes the same choice).
const BULK: usize = 16 * 1024;

/// send(2) flag: more follows (the FIN), so the kernel holds the bytes until it does.
#[cfg(target_os = "linux")]
const MORE: i32 = nix::libc::MSG_MORE;
#[cfg(not(target_os = "linux"))]
const MORE: i32 = 0;

thread_local! {
    /// Where copied bytes pass through: one buffer per data-path thread, so a connection
    /// holds none of its own unless its destination cannot take a chunk whole.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; CHUNK].into_boxed_slice());
}

/// What one read-and-write of a copying direction did.
enum Copied {
    /// End of stream.
    End,
    /// The source had nothing.
    Nothing,
    /// A chunk was read and written whole; `drained`: the source had nothing more.
    Whole { drained: bool },
    /// A chunk was read and written whole, and its source has ended.
    WholeThenEnd,
    /// A chunk was read and only part of it written: `buf` keeps it.
    Part,
}
// A chunk's length is kept in a u32.
const _: () = assert!(CHUNK <= u32::MAX as usize);

/// What the relay moved and why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub reason: CloseReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Client,
    Upstream,
}

/// Whether a socket's error means the peer reset the connection (passed on as a reset).
pub fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// A failed direction: which socket failed, and whether it was a reset.
#[derive(Debug)]
struct Failure {
    peer: Peer,
    reset: bool,
}

impl Failure {
    fn new(peer: Peer, err: &io::Error) -> Failure {
        Failure {
            peer,
            reset: is_reset(err),
        }
    }

    fn reason(&self) -> CloseReason {
        match (self.peer, self.reset) {
            (Peer::Client, true) => CloseReason::ClientReset,
            (Peer::Client, false) => CloseReason::ClientError,
            (Peer::Upstream, true) => CloseReason::UpstreamReset,
            (Peer::Upstream, false) => CloseReason::UpstreamError,
        }
    }
}

/// Relays until both directions have ended, one side fails, nothing moves for `idle`, or
/// `stop` turns true (the drain period ran out). Bytes are added to `traffic` as they move.
/// `first` is what the gateway read of the server already (the agreement check's bytes):
/// the client gets it before anything else from the server.
/// (A plain function returning the future, so the future holds its state once, not the
/// arguments and the state.)
pub fn relay<'a>(
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    traffic: &'a Traffic,
    first: Option<Box<Held>>,
) -> impl Future<Output = Relayed> + Send + 'a {
    let mut state = Relay::new(client, upstream, idle, traffic);
    state.down.begin_with(first);
    async move {
        let mut timer = pin!(sleep_until(state.last + state.idle));
        let mut stopping = pin!(stopped(&mut stop));
        let outcome = poll_fn(|cx| state.poll(cx, timer.as_mut(), stopping.as_mut())).await;
        let reason = match outcome {
            Ok(reason) => reason,
            Err(failure) => {
                // Pass a reset on as a reset, so the other peer does not take a truncated
                // stream for a complete one.
                if failure.reset {
                    let other = match failure.peer {
                        Peer::Client => state.upstream,
                        Peer::Upstream => state.client,
                    };
                    let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
                }
                failure.reason()
            }
        };
        Relayed {
            client_bytes: state.up.bytes,
            server_bytes: state.down.bytes,
            reason,
        }
    }
}

/// Both directions of one connection, and when a byte last moved either way.
struct Relay<'a> {
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    traffic: &'a Traffic,
    idle: Duration,
    last: Instant,
    /// Client to upstream.
    up: Pump,
    /// Upstream to client.
    down: Pump,
}

/// The two sockets of one direction, in its order, and its live count.
struct Ends<'a> {
    from: &'a TcpStream,
    to: &'a TcpStream,
    reader: Peer,
    writer: Peer,
    /// The connection's live count (`GET /connections`).
    live: &'a AtomicU64,
}

/// Bytes a direction holds between reads, behind one word (`Option<Box<Held>>`): a boxed
/// slice would take two in every connection's task, for bytes that are rarely there.
pub struct Held(pub Vec<u8>);

/// One direction's progress. Between reads it holds neither a pipe nor a buffer. (Kept
/// small: every idle connection holds two.)
#[derive(Default)]
struct Pump {
    bytes: u64,
    /// The bytes last read (at most `CHUNK`), and how many of them are still to be written.
    chunk: u32,
    left: u32,
    /// splice(2)'s pipe while bytes are in flight.
    #[cfg(target_os = "linux")]
    pipe: Option<splice::Pipe>,
    /// The bytes of the chunk not written yet (`left` > 0) while the destination is full, or
    /// (`left` = 0) those read before the relay began, which the first read adds to. One
    /// word, as it is rarely there: with a boxed slice (two words) in each direction and in
    /// the hand-over to the relay, a connection's task grew from 1,048 to 1,064 bytes, past
    /// the 1,152-byte allocation tokio's task cell had fitted in, and an idle connection
    /// cost 200 bytes more (measured).
    buf: Option<Box<Held>>,
    /// No pipe could be had (or the platform has no splice): this direction copies.
    copying: bool,
    /// A read brought `BULK` bytes or more: this direction splices from now on.
    bulk: bool,
    /// The source said it had nothing: wait for it to become readable before reading.
    waiting: bool,
    /// End of stream reached and passed on.
    done: bool,
}

impl<'a> Relay<'a> {
    fn new(
        client: &'a TcpStream,
        upstream: &'a TcpStream,
        idle: Duration,
        traffic: &'a Traffic,
    ) -> Relay<'a> {
        Relay {
            client,
            upstream,
            traffic,
            idle,
            last: Instant::now(),
            up: Pump::default(),
            down: Pump::default(),
        }
    }

    /// Ready when both directions have ended, one has failed, nothing has moved for
    /// `idle` (`timer` fires then), or `stop` resolves.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Sleep>,
        stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Poll<Result<CloseReason, Failure>> {
        for reader in [Peer::Client, Peer::Upstream] {
            if let Poll::Ready(result) = self.poll_direction(reader, cx) {
                result?;
            }
        }
        if self.up.done && self.down.done {
            return Poll::Ready(Ok(CloseReason::Completed));
        }
        while timer.as_mut().poll(cx).is_ready() {
            let due = self.last + self.idle;
            if Instant::now() >= due {
                return Poll::Ready(Ok(CloseReason::IdleTimeout));
            }
            timer.as_mut().reset(due);
        }
        if stop.poll(cx).is_ready() {
            return Poll::Ready(Ok(CloseReason::Shutdown));
        }
        Poll::Pending
    }

    /// Moves bytes from `reader` to the other peer until its source has nothing more or its
    /// destination is full; at end of stream shuts the destination's write side
    /// (half-close). Ready at once for a direction that has ended.
    fn poll_direction(&mut self, reader: Peer, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        let (ends, pump, other) = match reader {
            Peer::Client => (
                Ends {
                    from: self.client,
                    to: self.upstream,
                    reader,
                    writer: Peer::Upstream,
                    live: &self.traffic.upstream,
                },
                &mut self.up,
                &self.down,
            ),
            Peer::Upstream => (
                Ends {
                    from: self.upstream,
                    to: self.client,
                    reader,
                    writer: Peer::Client,
                    live: &self.traffic.downstream,
                },
                &mut self.down,
                &self.up,
            ),
        };
        if pump.done {
            return Poll::Ready(Ok(()));
        }
        ready!(pump.poll(&ends, &mut self.last, cx))?;
        pump.done = true;
        // The direction that ends last skips the shutdown: both sockets are closed as soon
        // as the relay returns, and close() sends the same FIN (its source has been read to
        // the end, so nothing unread turns the close into a reset). One system call less
        // per connection.
        if !other.done {
            // The peer we write to may already have gone: a failed shutdown is not data loss.
            let _ = SockRef::from(ends.to).shutdown(std::net::Shutdown::Write);
        }
        Poll::Ready(Ok(()))
    }
}

impl Pump {
    /// Starts with `first`, bytes read from this direction's source before the relay: the
    /// first read adds to them (so a short answer and its end still leave together), or,
    /// past a chunk, they are sent as one before anything is read.
    fn begin_with(&mut self, first: Option<Box<Held>>) {
        let Some(first) = first.filter(|f| !f.0.is_empty()) else {
            return;
        };
        if first.0.len() > CHUNK {
            self.read(first.0.len());
        }
        self.buf = Some(first);
    }

    /// Ready at end of stream. Copies small exchanges through the thread's scratch buffer
    /// (a read and a write each); once a read shows bulk transfer, uses splice(2) through a
    /// pipe where the platform has it, so the bytes never enter user space.
    fn poll(
        &mut self,
        ends: &Ends<'_>,
        last: &mut Instant,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Failure>> {
        #[cfg(target_os = "linux")]
        if self.bulk && !self.copying {
            return self.poll_splice(ends, last, cx);
        }
        self.poll_copy(ends, last, cx)
    }

    /// `n` bytes (at most `CHUNK`) were read and are to be written.
    fn read(&mut self, n: usize) {
        self.chunk = n as u32;
        self.left = self.chunk;
    }

    /// The chunk has been written whole.
    fn moved(&mut self, ends: &Ends<'_>, last: &mut Instant) {
        let n = u64::from(self.chunk);
        self.bytes += n;
        ends.live.fetch_add(n, Ordering::Relaxed);
        *last = Instant::now();
    }

    /// Writes what is left of the chunk with `write(sent, left)`, a non-blocking write;
    /// Pending while the destination is full.
    fn poll_send(
        &mut self,
        ends: &Ends<'_>,
        last: &mut Instant,
        cx: &mut Context<'_>,
        mut write: impl FnMut(usize, usize) -> io::Result<usize>,
    ) -> Poll<Result<(), Failure>> {
        while self.left > 0 {
            let left = self.left as usize;
            match write(self.chunk as usize - left, left) {
                // At most `left` bytes were written.
                Ok(m) => self.left -= m as u32,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    ready!(ends.to.poll_write_ready(cx))
                        .map_err(|e| Failure::new(ends.writer, &e))?;
                }
                Err(err) => return Poll::Ready(Err(Failure::new(ends.writer, &err))),
            }
        }
        self.moved(ends, last);
        Poll::Ready(Ok(()))
    }

    /// Copies through this thread's scratch buffer: what has arrived is read and written on
    /// at once, and only a chunk the destination cannot take whole is kept (in `buf`) until
    /// it can. A read of `BULK` bytes or more switches the direction to splice(2).
    fn poll_copy(
        &mut self,
        ends: &Ends<'_>,
        last: &mut Instant,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Failure>> {
        loop {
            if self.left > 0 {
                let buf = self.buf.take();
                let bytes = buf.as_deref().map_or(&[][..], |b| b.0.as_slice());
                let sent = self.poll_send(ends, last, cx, |sent, left| {
                    ends.to.try_write(&bytes[sent..sent + left])
                });
                // Kept only while the destination is full.
                self.buf = if self.left > 0 { buf } else { None };
                ready!(sent)?;
            }
            #[cfg(target_os = "linux")]
            if self.bulk && !self.copying {
                return self.poll_splice(ends, last, cx);
            }
            if self.waiting {
                ready!(ends.from.poll_read_ready(cx)).map_err(|e| Failure::new(ends.reader, &e))?;
                self.waiting = false;
            }
            match SCRATCH.with_borrow_mut(|scratch| self.copy_once(ends, scratch))? {
                Copied::End => return Poll::Ready(Ok(())),
                Copied::Nothing => self.waiting = true,
                Copied::Whole { drained } => {
                    self.moved(ends, last);
                    // The source said it had nothing more: no read until it is readable.
                    self.waiting = drained;
                }
                Copied::WholeThenEnd => {
                    self.moved(ends, last);
                    return Poll::Ready(Ok(()));
                }
                Copied::Part => {}
            }
        }
    }

    /// Reads into `scratch` until the source has nothing more, has ended, or the buffer is
    /// full, and writes on as much as the destination takes now. When the source has ended
    /// the bytes are sent with `MSG_MORE`, so they leave in one segment with the FIN that
    /// the shutdown (or close) sends next: a short response and its end cost one segment.
    fn copy_once(&mut self, ends: &Ends<'_>, scratch: &mut [u8]) -> Result<Copied, Failure> {
        let mut n = 0;
        // Bytes read before the relay began (at most a chunk: see `begin_with`).
        if let Some(first) = self.buf.take() {
            n = first.0.len();
            scratch[..n].copy_from_slice(&first.0);
        }
        let mut ended = false;
        let mut drained = false;
        let mut failed = None;
        while n < scratch.len() {
            match ends.from.try_read(&mut scratch[n..]) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(m) => n += m,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(err) => {
                    failed = Some(Failure::new(ends.reader, &err));
                    break;
                }
            }
        }
        if n == 0 {
            return match failed {
                Some(failure) => Err(failure),
                None if ended => Ok(Copied::End),
                None => Ok(Copied::Nothing),
            };
        }
        self.read(n);
        self.bulk |= n >= BULK;
        let flags = if ended { MORE } else { 0 };
        let mut sent = 0;
        while sent < n {
            let send = || SockRef::from(ends.to).send_with_flags(&scratch[sent..n], flags);
            match ends.to.try_io(Interest::WRITABLE, send) {
                Ok(m) => sent += m,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(Failure::new(ends.writer, &err)),
            }
        }
        self.left = (n - sent) as u32;
        // A source that failed after sending bytes: they are passed on (and counted) as far
        // as they go now, then the failure (a reset) is.
        if let Some(failure) = failed {
            self.bytes += sent as u64;
            ends.live.fetch_add(sent as u64, Ordering::Relaxed);
            return Err(failure);
        }
        if sent < n {
            // Kept until the destination takes them; an ended source reads as ended again.
            self.buf = Some(Box::new(Held(scratch[..n].to_vec())));
            return Ok(Copied::Part);
        }
        Ok(if ended {
            Copied::WholeThenEnd
        } else {
            Copied::Whole { drained }
        })
    }

    /// Moves bytes with splice(2); holds a pipe only while bytes are in flight. Falls back
    /// to copying when no pipe can be had.
    #[cfg(target_os = "linux")]
    fn poll_splice(
        &mut self,
        ends: &Ends<'_>,
        last: &mut Instant,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Failure>> {
        loop {
            let Some(pipe) = self.pipe.take() else {
                ready!(ends.from.poll_read_ready(cx)).map_err(|e| Failure::new(ends.reader, &e))?;
                match splice::Pipe::take() {
                    Some(pipe) => self.pipe = Some(pipe),
                    None => {
                        self.copying = true;
                        return self.poll_copy(ends, last, cx);
                    }
                }
                continue;
            };
            if self.left > 0 {
                // The pipe holds the bytes not yet sent, so EAGAIN can only mean the socket
                // is full. On failure the pipe still holds bytes: it is dropped, not pooled.
                let sent = self.poll_send(ends, last, cx, |_, left| {
                    ends.to
                        .try_io(Interest::WRITABLE, || pipe.drain(ends.to, left))
                });
                self.pipe = Some(pipe);
                ready!(sent)?;
                continue;
            }
            // The pipe is empty whenever `fill` runs, so EAGAIN can only mean the socket has
            // nothing: give the empty pipe back and wait.
            match ends
                .from
                .try_io(Interest::READABLE, || pipe.fill(ends.from, CHUNK))
            {
                Ok(0) => {
                    pipe.give_back();
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => {
                    self.read(n);
                    self.pipe = Some(pipe);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => pipe.give_back(),
                Err(err) => return Poll::Ready(Err(Failure::new(ends.reader, &err))),
            }
        }
    }
}

/// Resolves when `stop` becomes true; never, if its sender is gone without saying so.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected loopback pair: (the end a peer holds, the end the gateway holds).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let outside = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (inside, _) = listener.accept().await.unwrap();
        (outside, inside)
    }

    /// The gateway's relay between its two ends, on a task of its own.
    fn spawn_relay(
        gw_client: TcpStream,
        gw_upstream: TcpStream,
        idle: Duration,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Relayed> {
        spawn_relay_from(gw_client, gw_upstream, idle, stop, Vec::new())
    }

    /// As `spawn_relay`, with `first`, the server's bytes the gateway read already.
    fn spawn_relay_from(
        gw_client: TcpStream,
        gw_upstream: TcpStream,
        idle: Duration,
        stop: watch::Receiver<bool>,
        first: Vec<u8>,
    ) -> tokio::task::JoinHandle<Relayed> {
        tokio::spawn(async move {
            let first = Some(Box::new(Held(first)));
            relay(
                &gw_client,
                &gw_upstream,
                idle,
                stop,
                &Traffic::default(),
                first,
            )
            .await
        })
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn half_close_still_delivers_the_whole_response_in_order() {
        let (mut client, gw_client) = pair().await;
        let (mut server, gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let gateway = spawn_relay(gw_client, gw_upstream, Duration::from_secs(30), stop);
        let request = pattern(100_000, 1);
        let response = pattern(3_000_000, 7);
        let expected_response = response.clone();
        let server_side = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&response).await.unwrap();
            server.shutdown().await.unwrap();
            got
        });
        client.write_all(&request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got == expected_response, "response corrupted or truncated");
        assert!(
            server_side.await.unwrap() == request,
            "request corrupted or truncated"
        );
        let relayed = gateway.await.unwrap();
        assert_eq!(relayed.reason, CloseReason::Completed);
        assert_eq!(
            (relayed.client_bytes, relayed.server_bytes),
            (100_000, 3_000_000)
        );
    }

    #[tokio::test]
    async fn bytes_read_before_the_relay_reach_the_client_first_and_are_counted() {
        // Short: the agreement check's few hundred bytes, sent together with the rest of
        // the answer and its end. Long: past a chunk, sent whole before anything is read.
        for (first_len, rest_len) in [(300, 700), (0, 50), (CHUNK + 10, 1000)] {
            let (mut client, gw_client) = pair().await;
            let (mut server, gw_upstream) = pair().await;
            let (_stop_tx, stop) = watch::channel(false);
            let answer = pattern(first_len + rest_len, 3);
            let first = answer[..first_len].to_vec();
            let gateway =
                spawn_relay_from(gw_client, gw_upstream, Duration::from_secs(30), stop, first);
            server.write_all(&answer[first_len..]).await.unwrap();
            server.shutdown().await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert!(
                got == answer,
                "{first_len}: first bytes lost, reordered or doubled"
            );
            let relayed = gateway.await.unwrap();
            assert_eq!(relayed.reason, CloseReason::Completed);
            assert_eq!(relayed.server_bytes, answer.len() as u64);
        }
    }

    #[tokio::test]
    async fn upstream_reset_is_passed_on_as_a_reset() {
        let (mut client, gw_client) = pair().await;
        let (server, gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let gateway = spawn_relay(gw_client, gw_upstream, Duration::from_secs(30), stop);
        SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(server);
        let relayed = gateway.await.unwrap();
        assert_eq!(relayed.reason, CloseReason::UpstreamReset);
        let mut buf = [0u8; 16];
        let err = client.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn idle_connection_is_closed_and_named() {
        let (_client, gw_client) = pair().await;
        let (_server, gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let relayed = relay(
            &gw_client,
            &gw_upstream,
            Duration::from_millis(200),
            stop,
            &Traffic::default(),
            None,
        )
        .await;
        assert_eq!(relayed.reason, CloseReason::IdleTimeout);
    }

    #[tokio::test]
    async fn bytes_moving_either_way_keep_the_connection_from_idling_out() {
        let (mut client, gw_client) = pair().await;
        let (mut server, gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let gateway = spawn_relay(gw_client, gw_upstream, Duration::from_millis(300), stop);
        // A byte every 60 ms for well over the idle timeout, alternating directions.
        let started = Instant::now();
        let mut byte = [0u8; 1];
        for i in 0..15 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            if i % 2 == 0 {
                client.write_all(b"c").await.unwrap();
                server.read_exact(&mut byte).await.unwrap();
            } else {
                server.write_all(b"s").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
        }
        assert!(started.elapsed() > Duration::from_millis(600));
        assert!(!gateway.is_finished(), "closed while bytes were moving");
        let relayed = gateway.await.unwrap();
        assert_eq!(relayed.reason, CloseReason::IdleTimeout);
        assert_eq!((relayed.client_bytes, relayed.server_bytes), (8, 7));
    }

    #[tokio::test]
    async fn drain_expiry_stops_the_relay() {
        let (_client, gw_client) = pair().await;
        let (_server, gw_upstream) = pair().await;
        let (stop_tx, stop) = watch::channel(false);
        let gateway = spawn_relay(gw_client, gw_upstream, Duration::from_secs(30), stop);
        stop_tx.send(true).unwrap();
        assert_eq!(gateway.await.unwrap().reason, CloseReason::Shutdown);
    }

    #[tokio::test]
    async fn small_exchanges_are_copied_and_bulk_switches_to_splice() {
        let (mut client, gw_client) = pair().await;
        let (mut server, gw_upstream) = pair().await;
        let traffic = Traffic::default();
        let mut relay = Relay::new(&gw_client, &gw_upstream, Duration::from_secs(30), &traffic);
        let mut echoed = 0u64;
        // Request and answer, a hundred times, each smaller than `BULK`.
        for i in 0..100u8 {
            let request = pattern(100 + usize::from(i), i);
            client.write_all(&request).await.unwrap();
            let mut got = vec![0u8; request.len()];
            let (moved, read) = tokio::join!(
                poll_fn(|cx| match relay.poll_direction(Peer::Client, cx) {
                    Poll::Ready(done) => Poll::Ready(done),
                    Poll::Pending if relay.up.bytes == echoed + request.len() as u64 => {
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }),
                server.read_exact(&mut got)
            );
            moved.unwrap();
            read.unwrap();
            assert_eq!(got, request);
            echoed += request.len() as u64;
        }
        assert!(!relay.up.bulk, "small reads stay copied");
        assert!(relay.up.buf.is_none(), "no buffer held between reads");
        #[cfg(target_os = "linux")]
        assert!(relay.up.pipe.is_none());

        let data = pattern(4_000_000, 9);
        let got = send_up(&mut relay, client, &mut server, data.clone()).await;
        assert!(got == data, "bulk stream differs");
        assert!(relay.up.bulk, "a large read switched to splice");
        assert_eq!(relay.up.bytes, echoed + 4_000_000);
    }

    /// Writes `data` from `client` and half-closes it while `relay` moves the client's
    /// direction to its end; returns what `server` received.
    async fn send_up(
        relay: &mut Relay<'_>,
        mut client: TcpStream,
        server: &mut TcpStream,
        data: Vec<u8>,
    ) -> Vec<u8> {
        let sender = tokio::spawn(async move {
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let (moved, got) = tokio::join!(
            poll_fn(|cx| relay.poll_direction(Peer::Client, cx)),
            async {
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                got
            }
        );
        moved.unwrap();
        drop(sender.await.unwrap());
        got
    }

    #[tokio::test]
    async fn copy_fallback_relays_in_order_and_half_closes() {
        let (client, gw_client) = pair().await;
        let (mut server, gw_upstream) = pair().await;
        let data = pattern(5_000_000, 3);
        let traffic = Traffic::default();
        let mut relay = Relay::new(&gw_client, &gw_upstream, Duration::from_secs(30), &traffic);
        relay.up.copying = true;
        let got = send_up(&mut relay, client, &mut server, data.clone()).await;
        assert!(got == data, "copied stream differs");
        assert_eq!(relay.up.bytes, 5_000_000);
        assert_eq!(
            traffic.upstream.load(Ordering::Relaxed),
            5_000_000,
            "counted live too"
        );
    }
}
