//! Both sides must agree: after a client-first verdict that forwards, the server's first
//! bytes are identified before the client sees any of them. They are peeked, not read, so
//! the relay delivers them untouched; while the gateway waits, the client's further bytes
//! (a request body, a pipelined request) keep flowing upstream, so a client that has more
//! to say before the server answers is not held up.

use std::net::Shutdown;
use std::time::Duration;

use socket2::SockRef;

use tokio::net::TcpStream;
use tokio::time::{sleep, timeout_at, Instant};

use crate::sniff::{self, Sniffed, Verdict};

/// Longest server first turn looked at: greetings and banners are far shorter.
const PEEK: usize = 1024;
/// A first turn shorter than this, without a complete line, may still be arriving.
const SHORT: usize = 256;
/// How long to wait before peeking again at a first turn that is not complete yet.
const REPEEK: Duration = Duration::from_millis(2);
/// Most client bytes moved per read while waiting.
const PUMP: usize = 16 * 1024;

/// What the server's first turn said, and what the client sent meanwhile.
#[derive(Debug, Default)]
pub struct Answer {
    /// The server's first turn, when a server-first sniffer named it before `until`.
    pub sniffed: Option<Sniffed>,
    /// Client bytes relayed upstream while waiting (counted in the close event).
    pub client_bytes: u64,
    /// The client's socket failed while its bytes were relayed: the connection is over.
    pub client_failed: bool,
    /// Writing the client's bytes upstream failed: the connection is over.
    pub upstream_failed: bool,
}

/// Waits until `until` at most for the server's first turn on `upstream` and identifies
/// it with `sniff_server`, relaying what the client sends meanwhile. Returns as soon as the
/// server's turn is named or cannot be (no match, end of stream, `PEEK` bytes without a
/// verdict), when the deadline passes, or when either socket fails.
pub async fn server_answer(client: &TcpStream, upstream: &TcpStream, until: Instant) -> Answer {
    let mut answer = Answer::default();
    let mut peeked = [0u8; PEEK];
    let mut pump: Vec<u8> = Vec::new();
    let mut client_open = true;
    loop {
        let more = tokio::select! {
            biased;
            seen = timeout_at(until, upstream.peek(&mut peeked)) => match seen {
                Ok(Ok(n)) if n > 0 => match sniff::sniff_server(&peeked[..n]) {
                    Verdict::Match(sniffed) => {
                        answer.sniffed = Some(sniffed);
                        false
                    }
                    Verdict::NeedMore if n < SHORT && !peeked[..n].contains(&b'\n') => {
                        // The first line has not all arrived (a banner split over
                        // segments): let more of it in. A complete line that names
                        // nothing (an HTTP status line) ends the wait.
                        timeout_at(until, sleep(REPEEK)).await.is_ok()
                    }
                    Verdict::NeedMore | Verdict::NoMatch => false,
                },
                // End of stream, an error, or the deadline: nothing to name.
                _ => false,
            },
            read = client.readable(), if client_open => {
                if read.is_err() {
                    answer.client_failed = true;
                    return answer;
                }
                if pump.is_empty() {
                    pump.resize(PUMP, 0);
                }
                match client.try_read(&mut pump) {
                    // End of the client's stream: pass the half-close on now, as the
                    // relay would (a server may answer only once the request has ended).
                    Ok(0) => {
                        let _ = SockRef::from(upstream).shutdown(Shutdown::Write);
                        client_open = false;
                        true
                    }
                    Ok(n) => {
                        match timeout_at(until, write_all(upstream, &pump[..n])).await {
                            Ok(Ok(())) => {
                                answer.client_bytes += n as u64;
                                true
                            }
                            Ok(Err(_)) => {
                                answer.upstream_failed = true;
                                return answer;
                            }
                            // The server does not read and has not spoken: stop waiting.
                            Err(_) => {
                                answer.client_bytes += n as u64;
                                answer.upstream_failed = true;
                                return answer;
                            }
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => true,
                    Err(_) => {
                        answer.client_failed = true;
                        return answer;
                    }
                }
            }
        };
        if !more {
            return answer;
        }
    }
}

/// Writes all of `buf` through a shared reference (the socket is peeked at meanwhile).
async fn write_all(to: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        to.writable().await?;
        match to.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniff::Protocol;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair: (gateway's end, far end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (near, far) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (near.unwrap(), far.unwrap().0)
    }

    #[tokio::test]
    async fn names_a_banner_split_over_writes_and_leaves_it_in_the_socket() {
        let (client, _client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        let banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
        let writer = tokio::spawn(async move {
            server.write_all(&banner[..9]).await.unwrap();
            sleep(Duration::from_millis(20)).await;
            server.write_all(&banner[9..]).await.unwrap();
            server
        });
        let until = Instant::now() + Duration::from_secs(2);
        let answer = server_answer(&client, &upstream, until).await;
        let _server = writer.await.unwrap();
        assert_eq!(answer.sniffed.map(|s| s.protocol), Some(Protocol::Ssh));
        // Peeked, not consumed: the relay still delivers every byte.
        let mut got = vec![0u8; banner.len()];
        let mut upstream = upstream;
        upstream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..], &banner[..]);
    }

    #[tokio::test]
    async fn relays_the_clients_bytes_and_half_close_while_the_server_is_silent() {
        let (client, mut client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        client_far.write_all(b"request body").await.unwrap();
        client_far.shutdown().await.unwrap();
        let until = Instant::now() + Duration::from_millis(200);
        let answer = server_answer(&client, &upstream, until).await;
        assert!(
            Instant::now() >= until,
            "waited for the server until the deadline"
        );
        assert!(answer.sniffed.is_none());
        assert_eq!(answer.client_bytes, 12);
        assert!(!answer.client_failed && !answer.upstream_failed);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"request body",
            "the bytes, then the client's half-close"
        );
    }

    #[tokio::test]
    async fn an_unnamed_answer_ends_the_wait_at_once() {
        let (client, _client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let answer = server_answer(&client, &upstream, until).await;
        assert!(answer.sniffed.is_none());
        assert!(Instant::now() < until - Duration::from_secs(4));
    }
}
