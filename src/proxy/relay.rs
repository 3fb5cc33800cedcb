//! Relaying an established connection both ways after the verdict: half-closes are passed
//! on (a client that shuts its write side still gets the whole response), resets are passed
//! on as resets, and every byte is counted for the close event.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::events::CloseReason;
use crate::metrics::Traffic;

#[cfg(target_os = "linux")]
use super::splice;

/// Most bytes moved per read: the default pipe capacity (16 pages).
const CHUNK: usize = 64 * 1024;

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

/// A failed direction: which socket failed, and whether it was a reset.
#[derive(Debug)]
struct Failure {
    peer: Peer,
    reset: bool,
}

impl Failure {
    fn new(peer: Peer, err: &io::Error) -> Failure {
        let reset = matches!(
            err.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
        );
        Failure { peer, reset }
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

/// One direction of the relay: where bytes come from and go to, and its counters.
struct Direction<'a> {
    from: &'a TcpStream,
    to: &'a TcpStream,
    reader: Peer,
    writer: Peer,
    bytes: u64,
    /// The connection's live count (`GET /connections`).
    live: &'a AtomicU64,
    activity: &'a AtomicU64,
    /// Set by the first direction to reach end of stream.
    ended: &'a AtomicBool,
    epoch: Instant,
}

/// Relays until both directions have ended, one side fails, nothing moves for `idle`, or
/// `stop` turns true (the drain period ran out). Bytes are added to `traffic` as they move.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
    traffic: &Traffic,
) -> Relayed {
    let epoch = Instant::now();
    let activity = AtomicU64::new(0);
    let ended = AtomicBool::new(false);
    let mut up = Direction {
        from: client,
        to: upstream,
        reader: Peer::Client,
        writer: Peer::Upstream,
        bytes: 0,
        live: &traffic.upstream,
        activity: &activity,
        ended: &ended,
        epoch,
    };
    let mut down = Direction {
        from: upstream,
        to: client,
        reader: Peer::Upstream,
        writer: Peer::Client,
        bytes: 0,
        live: &traffic.downstream,
        activity: &activity,
        ended: &ended,
        epoch,
    };
    let outcome = {
        let both = async { tokio::try_join!(up.pump(), down.pump()) };
        tokio::select! {
            result = both => result.map(|_| CloseReason::Completed),
            () = idle_watch(&activity, epoch, idle) => Ok(CloseReason::IdleTimeout),
            () = stopped(&mut stop) => Ok(CloseReason::Shutdown),
        }
    };
    let reason = match outcome {
        Ok(reason) => reason,
        Err(failure) => {
            // Pass a reset on as a reset, so the other peer does not take a truncated
            // stream for a complete one.
            if failure.reset {
                let other = match failure.peer {
                    Peer::Client => upstream,
                    Peer::Upstream => client,
                };
                let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
            }
            failure.reason()
        }
    };
    Relayed {
        client_bytes: up.bytes,
        server_bytes: down.bytes,
        reason,
    }
}

impl Direction<'_> {
    /// Moves bytes until end of stream, then shuts the destination's write side
    /// (half-close). Uses splice(2) through a pipe where the platform has it, so the bytes
    /// never enter user space; otherwise copies through a buffer that exists only while
    /// data is flowing. An idle direction holds no buffer either way.
    async fn pump(&mut self) -> Result<(), Failure> {
        #[cfg(target_os = "linux")]
        {
            self.splice().await
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.copy().await
        }
    }

    /// Runs `write(sent, left)`, a non-blocking write, until `n` bytes are sent, waiting for
    /// the destination to become writable whenever it is full.
    async fn send(
        &self,
        n: usize,
        mut write: impl FnMut(usize, usize) -> io::Result<usize>,
    ) -> Result<(), Failure> {
        let mut sent = 0;
        while sent < n {
            match write(sent, n - sent) {
                Ok(m) => sent += m,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.to
                        .writable()
                        .await
                        .map_err(|e| Failure::new(self.writer, &e))?;
                }
                Err(err) => return Err(Failure::new(self.writer, &err)),
            }
        }
        Ok(())
    }

    fn moved(&mut self, n: usize) {
        self.bytes += n as u64;
        self.live.fetch_add(n as u64, Ordering::Relaxed);
        self.activity
            .store(millis_since(self.epoch), Ordering::Relaxed);
    }

    fn finish(&self) {
        // The direction that ends last skips the shutdown: both sockets are closed as soon
        // as the relay returns, and close() sends the same FIN (its source has been read
        // to the end, so nothing unread turns the close into a reset). One system call
        // less per connection.
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        // The peer we write to may already have gone: a failed shutdown is not data loss.
        let _ = SockRef::from(self.to).shutdown(std::net::Shutdown::Write);
    }

    async fn copy(&mut self) -> Result<(), Failure> {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            if buf.is_empty() {
                buf = vec![0u8; CHUNK];
            }
            let n = match self.from.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing to read: give the buffer back while waiting.
                    buf = Vec::new();
                    self.from
                        .readable()
                        .await
                        .map_err(|e| Failure::new(self.reader, &e))?;
                    continue;
                }
                Err(err) => return Err(Failure::new(self.reader, &err)),
            };
            self.send(n, |sent, _| self.to.try_write(&buf[sent..n]))
                .await?;
            self.moved(n);
        }
        self.finish();
        Ok(())
    }

    /// Moves bytes with splice(2); holds a pipe only while bytes are in flight. Falls back
    /// to `copy` when no pipe can be had.
    #[cfg(target_os = "linux")]
    async fn splice(&mut self) -> Result<(), Failure> {
        loop {
            self.from
                .readable()
                .await
                .map_err(|e| Failure::new(self.reader, &e))?;
            let Some(pipe) = splice::Pipe::take() else {
                return self.copy().await;
            };
            // The pipe is empty whenever `fill` runs, so EAGAIN can only mean the socket has
            // nothing: give the empty pipe back and wait.
            loop {
                let n = match self
                    .from
                    .try_io(Interest::READABLE, || pipe.fill(self.from, CHUNK))
                {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        pipe.give_back();
                        break;
                    }
                    Err(err) => return Err(Failure::new(self.reader, &err)),
                };
                if n == 0 {
                    pipe.give_back();
                    self.finish();
                    return Ok(());
                }
                // The pipe holds the bytes not yet sent, so EAGAIN can only mean the socket is
                // full. On failure the pipe still holds bytes: it is dropped, not pooled.
                self.send(n, |_, left| {
                    self.to
                        .try_io(Interest::WRITABLE, || pipe.drain(self.to, left))
                })
                .await?;
                self.moved(n);
            }
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Resolves once neither direction has moved a byte for `idle`.
async fn idle_watch(activity: &AtomicU64, epoch: Instant, idle: Duration) {
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let due = epoch + last + idle;
        if Instant::now() >= due {
            return;
        }
        sleep_until(due).await;
    }
}

/// Resolves when `stop` becomes true; never, if its sender is gone without saying so.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
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
        let gateway = tokio::spawn(async move {
            relay(
                &gw_client,
                &gw_upstream,
                Duration::from_secs(30),
                stop,
                &Traffic::default(),
            )
            .await
        });
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
    async fn upstream_reset_is_passed_on_as_a_reset() {
        let (mut client, gw_client) = pair().await;
        let (server, gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let gateway = tokio::spawn(async move {
            relay(
                &gw_client,
                &gw_upstream,
                Duration::from_secs(30),
                stop,
                &Traffic::default(),
            )
            .await
        });
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
        )
        .await;
        assert_eq!(relayed.reason, CloseReason::IdleTimeout);
    }

    #[tokio::test]
    async fn drain_expiry_stops_the_relay() {
        let (_client, gw_client) = pair().await;
        let (_server, gw_upstream) = pair().await;
        let (stop_tx, stop) = watch::channel(false);
        let gateway = tokio::spawn(async move {
            relay(
                &gw_client,
                &gw_upstream,
                Duration::from_secs(30),
                stop,
                &Traffic::default(),
            )
            .await
        });
        stop_tx.send(true).unwrap();
        assert_eq!(gateway.await.unwrap().reason, CloseReason::Shutdown);
    }

    #[tokio::test]
    async fn copy_fallback_relays_in_order_and_half_closes() {
        let (mut client, gw_client) = pair().await;
        let (mut server, gw_upstream) = pair().await;
        let data = pattern(5_000_000, 3);
        let expected = data.clone();
        let sender = tokio::spawn(async move {
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
            client
        });
        let activity = AtomicU64::new(0);
        let live = AtomicU64::new(0);
        let ended = AtomicBool::new(false);
        let mut direction = Direction {
            from: &gw_client,
            to: &gw_upstream,
            reader: Peer::Client,
            writer: Peer::Upstream,
            bytes: 0,
            live: &live,
            activity: &activity,
            ended: &ended,
            epoch: Instant::now(),
        };
        let (moved, got) = tokio::join!(direction.copy(), async {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            got
        });
        moved.unwrap();
        assert!(got == expected, "copied stream differs");
        assert_eq!(direction.bytes, 5_000_000);
        assert_eq!(live.load(Ordering::Relaxed), 5_000_000, "counted live too");
        drop(sender.await.unwrap());
    }
}
