//! Relaying an established connection both ways after the verdict: half-closes are passed
//! on (a client that shuts its write side still gets the whole response), resets are passed
//! on as resets, and every byte is counted for the close event.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::events::CloseReason;

/// Per-direction copy buffer.
const CHUNK: usize = 16 * 1024;

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

/// Relays until both directions have ended, one side fails, nothing moves for `idle`, or
/// `stop` turns true (the drain period ran out).
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> Relayed {
    let epoch = Instant::now();
    let activity = AtomicU64::new(0);
    let mut client_bytes = 0u64;
    let mut server_bytes = 0u64;
    let outcome = {
        let (mut client_r, mut client_w) = client.split();
        let (mut upstream_r, mut upstream_w) = upstream.split();
        let up = pump(
            &mut client_r,
            &mut upstream_w,
            (Peer::Client, Peer::Upstream),
            &mut client_bytes,
            &activity,
            epoch,
        );
        let down = pump(
            &mut upstream_r,
            &mut client_w,
            (Peer::Upstream, Peer::Client),
            &mut server_bytes,
            &activity,
            epoch,
        );
        let both = async { tokio::try_join!(up, down) };
        tokio::select! {
            result = both => match result {
                Ok(_) => Ok(CloseReason::Completed),
                Err(failure) => Err(failure),
            },
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
                    Peer::Client => &*upstream,
                    Peer::Upstream => &*client,
                };
                let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
            }
            failure.reason()
        }
    };
    Relayed {
        client_bytes,
        server_bytes,
        reason,
    }
}

/// Copies `from` to `to` until end of stream, then shuts `to`'s write side (half-close).
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    (reader, writer): (Peer, Peer),
    bytes: &mut u64,
    activity: &AtomicU64,
    epoch: Instant,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => return Err(Failure::new(reader, &err)),
        };
        activity.store(millis_since(epoch), Ordering::Relaxed);
        if let Err(err) = to.write_all(&buf[..n]).await {
            return Err(Failure::new(writer, &err));
        }
        *bytes += n as u64;
    }
    // The peer we write to may already have gone: a failed shutdown is not data loss.
    let _ = to.shutdown().await;
    Ok(())
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
        let (mut client, mut gw_client) = pair().await;
        let (mut server, mut gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let gateway = tokio::spawn(async move {
            relay(
                &mut gw_client,
                &mut gw_upstream,
                Duration::from_secs(30),
                stop,
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
        let (mut client, mut gw_client) = pair().await;
        let (server, mut gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let gateway = tokio::spawn(async move {
            relay(
                &mut gw_client,
                &mut gw_upstream,
                Duration::from_secs(30),
                stop,
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
        let (_client, mut gw_client) = pair().await;
        let (_server, mut gw_upstream) = pair().await;
        let (_stop_tx, stop) = watch::channel(false);
        let relayed = relay(
            &mut gw_client,
            &mut gw_upstream,
            Duration::from_millis(200),
            stop,
        )
        .await;
        assert_eq!(relayed.reason, CloseReason::IdleTimeout);
    }

    #[tokio::test]
    async fn drain_expiry_stops_the_relay() {
        let (_client, mut gw_client) = pair().await;
        let (_server, mut gw_upstream) = pair().await;
        let (stop_tx, stop) = watch::channel(false);
        let gateway = tokio::spawn(async move {
            relay(
                &mut gw_client,
                &mut gw_upstream,
                Duration::from_secs(30),
                stop,
            )
            .await
        });
        stop_tx.send(true).unwrap();
        assert_eq!(gateway.await.unwrap().reason, CloseReason::Shutdown);
    }
}
