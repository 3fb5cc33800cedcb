//! Dialling the destination, with the client's first bytes sent as soon as the connection
//! is up. On loopback and on a gateway's directly attached networks the handshake often
//! completes within connect(2) itself: then the bytes go out at once, without a turn of the
//! event loop to learn that the socket is writable and a getsockopt(2) to learn that the
//! connection succeeded. Otherwise (a real round trip away) this costs one send(2) that
//! finds the socket still connecting, and the dial proceeds as usual. With nothing to send
//! (an explicit proxy answers its client first), getpeername(2) plays the same part.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::events::CloseReason;

/// Dials `destination` within `limit` and sends it all of `first` (possibly nothing); the
/// failure is named as a close reason.
pub async fn connect(
    destination: SocketAddr,
    limit: Duration,
    first: &[u8],
) -> Result<TcpStream, CloseReason> {
    // Non-blocking from socket(2) on: no fcntl(2) calls.
    let socket = Socket::new(
        Domain::for_address(destination),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(|_| CloseReason::UpstreamError)?;
    let _ = socket.set_tcp_nodelay(true);
    // With bytes to send, the handshake's last ACK waits for them and leaves with them
    // (HAProxy's `tcp-smart-connect`): one segment less, and the server's accept(2) finds
    // the bytes already queued. Undone once they are sent (below).
    #[cfg(target_os = "linux")]
    if !first.is_empty() {
        let _ = socket.set_tcp_quickack(false);
    }
    match socket.connect(&destination.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(err) => return Err(connect_failure(&err)),
    }
    let sent = if first.is_empty() {
        0
    } else {
        match socket.send(first) {
            Ok(n) => n,
            // Still connecting.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(err) => return Err(connect_failure(&err)),
        }
    };
    // Nothing to send: getpeername(2) tells whether the handshake has completed already.
    let up = sent > 0 || (first.is_empty() && socket.peer_addr().is_ok());
    let mut stream = TcpStream::from_std(std::net::TcpStream::from(socket))
        .map_err(|_| CloseReason::UpstreamError)?;
    if !up {
        // Connected once writable, or failed: SO_ERROR says which.
        match timeout(limit, stream.writable()).await {
            Err(_) => return Err(CloseReason::UpstreamTimeout),
            Ok(Err(_)) => return Err(CloseReason::UpstreamUnreachable),
            Ok(Ok(())) => {}
        }
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(err)) | Err(err) => return Err(connect_failure(&err)),
        }
    }
    stream
        .write_all(&first[sent..])
        .await
        .map_err(|_| CloseReason::UpstreamError)?;
    // Sent so soon after the handshake, the bytes leave the socket delaying its ACKs
    // (Linux's interactive "pingpong" mode). The server's answer is acknowledged at once
    // again, as on any socket: a server that writes its answer in two parts, with Nagle's
    // algorithm on, would otherwise wait for a delayed ACK before the second.
    #[cfg(target_os = "linux")]
    if !first.is_empty() {
        let _ = SockRef::from(&stream).set_tcp_quickack(true);
    }
    Ok(stream)
}

/// Why a connection attempt failed, as its close reason.
fn connect_failure(err: &io::Error) -> CloseReason {
    if err.kind() == io::ErrorKind::ConnectionRefused {
        CloseReason::UpstreamRefused
    } else if err.kind() == io::ErrorKind::TimedOut {
        CloseReason::UpstreamTimeout
    } else {
        CloseReason::UpstreamUnreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn the_first_bytes_arrive_whole_and_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Larger than a socket buffer: the rest goes out once the connection is writable.
        let first: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        let expected = first.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let upstream = connect(addr, LIMIT, &first).await.unwrap();
        assert!(upstream.nodelay().unwrap());
        drop(upstream);
        assert_eq!(server.await.unwrap(), expected);
    }

    /// The handshake's last ACK waits for the first bytes, which makes Linux delay the
    /// socket's ACKs; the connection handed on acknowledges at once again, as any socket
    /// does. Otherwise a server that writes its answer in two parts with Nagle's algorithm
    /// on would wait for a delayed ACK before sending the second.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_connection_handed_on_acknowledges_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for first in [&b"a request"[..], b""] {
            let upstream = connect(addr, LIMIT, first).await.unwrap();
            let (mut accepted, _) = listener.accept().await.unwrap();
            let mut got = vec![0; first.len()];
            accepted.read_exact(&mut got).await.unwrap();
            assert_eq!(got, first);
            let quickack = SockRef::from(&upstream).tcp_quickack().unwrap();
            assert!(quickack, "ACKs delayed after sending {first:?}");
        }
    }

    #[tokio::test]
    async fn nothing_to_send_still_waits_for_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = connect(addr, LIMIT, b"").await.unwrap();
        let (accepted, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, upstream.local_addr().unwrap());
        drop(accepted);
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_with_or_without_bytes() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        for first in [&b""[..], b"hello"] {
            let err = connect(addr, LIMIT, first).await.unwrap_err();
            assert_eq!(err, CloseReason::UpstreamRefused);
        }
    }
}
