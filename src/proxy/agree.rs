//! Both sides must agree: after a client-first verdict that forwards, the server's first
//! bytes are identified before the client sees any of them. They are read (not peeked: the
//! relay would read them a second time) and handed to the relay, which sends them first and
//! untouched, or dropped with the connection when the answer is refused. While the gateway
//! waits, the client's further bytes (a request body, a pipelined request) keep flowing
//! upstream, so a client that has more to say before the server answers is not held up.

use std::io::ErrorKind::WouldBlock;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::time::Duration;

use socket2::SockRef;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::relay::is_reset;
use crate::sniff::{self, Sniffed, Verdict};

/// Longest server first turn looked at: greetings and banners are far shorter.
const FIRST: usize = 1024;
/// A first turn shorter than this, without a complete line, may still be arriving.
const SHORT: usize = 256;
/// How long the rest of a first turn may take to follow its first bytes.
const SPLIT: Duration = Duration::from_millis(25);
/// Most client bytes moved per read while waiting.
const PUMP: usize = 16 * 1024;

/// What the server's first turn said, and what the client sent meanwhile.
#[derive(Debug, Default)]
pub struct Answer {
    /// The server's first turn, when a server-first sniffer named it before `until`.
    pub sniffed: Option<Sniffed>,
    /// The server's bytes read to name its turn (at most `FIRST`), for the client first.
    pub first: Vec<u8>,
    /// Reading the server failed after `first` (`reset`: it reset the connection): the
    /// connection is over once `first` is delivered, as the relay would have ended it.
    pub read_failed: Option<ReadFailed>,
    /// Client bytes relayed upstream while waiting (counted in the close event).
    pub client_bytes: u64,
    /// The client's socket failed while its bytes were relayed: the connection is over.
    pub client_failed: bool,
    /// Writing the client's bytes upstream failed: the connection is over.
    pub upstream_failed: bool,
    /// The server accepted none of the client's bytes for `stall`: the connection is over.
    pub stalled: bool,
}

/// How reading the server's first turn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailed {
    pub reset: bool,
}

/// Waits until `until` at most for the server's first turn on `upstream` and identifies
/// it with `sniff_server`, relaying what the client sends meanwhile. Returns as soon as the
/// server's turn is named or cannot be (no match, end of stream, `SHORT` bytes without a
/// verdict), when the deadline passes, or when either socket fails.
pub async fn server_answer(
    client: &TcpStream,
    upstream: &TcpStream,
    until: Instant,
    stall: Duration,
) -> Answer {
    let mut answer = Answer::default();
    // On the heap, and only while waiting: a task is as large as its largest await state,
    // and an idle connection must not carry this buffer.
    let mut first = vec![0u8; FIRST];
    let mut got = 0;
    let mut until = until;
    let mut pump: Vec<u8> = Vec::new();
    let mut client_open = true;
    loop {
        let more = tokio::select! {
            biased;
            ready = timeout_at(until, upstream.readable()) => match ready {
                Ok(Ok(())) => match upstream.try_read(&mut first[got..]) {
                    Ok(n) if n > 0 => {
                        if got == 0 {
                            // The rest of a first turn follows its first bytes closely.
                            until = until.min(Instant::now() + SPLIT);
                        }
                        got += n;
                        match sniff::sniff_server(&first[..got]) {
                            Verdict::Match(sniffed) => {
                                answer.sniffed = Some(sniffed);
                                false
                            }
                            // The first line has not all arrived (a banner split over
                            // segments): let more of it in, briefly. A complete line that
                            // names nothing (an HTTP status line) ends the wait, and so do
                            // a few binary bytes.
                            Verdict::NeedMore => got < SHORT && !first[..got].contains(&b'\n'),
                            Verdict::NoMatch => false,
                        }
                    }
                    // End of stream: nothing (more) to name; the relay reads it again.
                    Ok(_) => false,
                    Err(err) if err.kind() == WouldBlock => true,
                    Err(err) => {
                        answer.read_failed = Some(ReadFailed {
                            reset: is_reset(&err),
                        });
                        false
                    }
                },
                Ok(Err(err)) => {
                    answer.read_failed = Some(ReadFailed {
                        reset: is_reset(&err),
                    });
                    false
                }
                // The deadline: nothing to name.
                Err(_) => false,
            },
            read = client.readable(), if client_open => {
                if read.is_err() {
                    answer.client_failed = true;
                    return answer;
                }
                if pump.is_empty() {
                    match look(client) {
                        Err(err) if err.kind() == WouldBlock => continue,
                        // The peek took the error (a reset): the read below would not see it.
                        Err(_) => {
                            answer.client_failed = true;
                            return answer;
                        }
                        Ok(_) => pump.resize(PUMP, 0),
                    }
                }
                match client.try_read(&mut pump) {
                    // End of the client's stream: pass the half-close on now, as the
                    // relay would (a server may answer only once the request has ended).
                    Ok(0) => {
                        let _ = SockRef::from(upstream).shutdown(Shutdown::Write);
                        client_open = false;
                        true
                    }
                    // Written whole even past `until` (bytes read from the client are never
                    // dropped), unless the server accepts nothing for `stall`: then the
                    // connection is as dead as the relay's idle timeout would find it.
                    Ok(n) => match timeout(stall, write_all(upstream, &pump[..n])).await {
                        Ok(Ok(())) => {
                            answer.client_bytes += n as u64;
                            true
                        }
                        Ok(Err(_)) => {
                            answer.upstream_failed = true;
                            return answer;
                        }
                        Err(_) => {
                            answer.stalled = true;
                            return answer;
                        }
                    },
                    Err(err) if err.kind() == WouldBlock => true,
                    Err(_) => {
                        answer.client_failed = true;
                        return answer;
                    }
                }
            }
        };
        if !more {
            first.truncate(got);
            answer.first = first;
            return answer;
        }
    }
}

/// Whether the client has bytes (or its end of stream) to read, though the reactor said it
/// had: detection reads the first turn before the reactor has reported it
/// (`detect::Eager`), and the report comes after the bytes are gone. Looks with a one-byte
/// peek and forgets that readiness when nothing is there (`WouldBlock`), so that a
/// connection whose client says nothing more while the server answers never allocates (and
/// zeroes) the pump's buffer. A socket error is the peek's to report: it is cleared once
/// read.
fn look(client: &TcpStream) -> std::io::Result<usize> {
    let mut byte = [MaybeUninit::uninit(); 1];
    client.try_io(Interest::READABLE, || SockRef::from(client).peek(&mut byte))
}

/// Writes all of `buf` through a shared reference (the socket is read from meanwhile).
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
    use tokio::time::sleep;

    const STALL: Duration = Duration::from_secs(5);

    /// A connected pair: (gateway's end, far end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (near, far) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (near.unwrap(), far.unwrap().0)
    }

    #[tokio::test]
    async fn names_a_banner_split_over_writes_and_hands_over_exactly_what_it_read() {
        let (client, _client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        let banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
        let writer = tokio::spawn(async move {
            server.write_all(&banner[..9]).await.unwrap();
            sleep(Duration::from_millis(5)).await;
            server.write_all(&banner[9..]).await.unwrap();
            // What follows the banner (the key exchange) stays for the relay, after it.
            sleep(Duration::from_millis(20)).await;
            server.write_all(b"KEXINIT").await.unwrap();
            server.shutdown().await.unwrap();
            server
        });
        let until = Instant::now() + Duration::from_secs(2);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        let _server = writer.await.unwrap();
        assert_eq!(answer.sniffed.map(|s| s.protocol), Some(Protocol::Ssh));
        assert_eq!(answer.read_failed, None);
        // Read once, never twice: the bytes handed over and those left make the stream.
        let mut rest = Vec::new();
        let mut upstream = upstream;
        upstream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            [&answer.first[..], &rest[..]].concat(),
            [&banner[..], b"KEXINIT"].concat()
        );
    }

    #[tokio::test]
    async fn a_server_that_resets_before_it_is_named_is_said_to_have_reset() {
        let (client, _client_far) = pair().await;
        let (upstream, server) = pair().await;
        SockRef::from(&server)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(server);
        let until = Instant::now() + Duration::from_secs(5);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        assert!(answer.sniffed.is_none() && answer.first.is_empty());
        assert_eq!(answer.read_failed, Some(ReadFailed { reset: true }));
        assert!(Instant::now() < until - Duration::from_secs(4));
    }

    /// The gateway's end of a connection as the gateway accepts it, whose first turn
    /// ("hello") detection read before the reactor reported it: the report that follows
    /// finds nothing to read. With the client's end.
    async fn eagerly_read() -> (TcpStream, std::net::TcpStream) {
        let (mut client, far) = crate::proxy::detect::tests::accepted_with(b"hello");
        let mut turn = [0u8; 5];
        crate::proxy::detect::Eager::new(&mut client)
            .read_exact(&mut turn)
            .await
            .unwrap();
        (client, far)
    }

    #[tokio::test]
    async fn bytes_sent_after_an_eagerly_read_first_turn_still_flow_while_the_server_is_silent() {
        use std::io::Write;
        let (client, mut far) = eagerly_read().await;
        let (upstream, mut server) = pair().await;
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            far.write_all(b"more").unwrap();
            far
        });
        let until = Instant::now() + Duration::from_millis(300);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        let _far = later.join().unwrap();
        assert_eq!(answer.client_bytes, 4);
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"more");
    }

    #[tokio::test]
    async fn a_client_that_resets_after_an_eagerly_read_first_turn_has_failed() {
        let (client, far) = eagerly_read().await;
        let (upstream, _server) = pair().await;
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            SockRef::from(&far)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        });
        let until = Instant::now() + Duration::from_secs(5);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        later.join().unwrap();
        assert!(answer.client_failed, "{answer:?}");
        assert!(Instant::now() < until - Duration::from_secs(4));
    }

    #[tokio::test]
    async fn relays_the_clients_bytes_and_half_close_while_the_server_is_silent() {
        let (client, mut client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        client_far.write_all(b"request body").await.unwrap();
        client_far.shutdown().await.unwrap();
        let until = Instant::now() + Duration::from_millis(200);
        let answer = server_answer(&client, &upstream, until, STALL).await;
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
    async fn a_few_binary_bytes_end_the_wait_soon() {
        let (client, _client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        // iperf3's server answers its control connection with one state byte.
        server.write_all(&[9]).await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        assert!(answer.sniffed.is_none());
        assert!(Instant::now() < until - Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_client_that_keeps_sending_to_a_slow_reader_loses_nothing() {
        let (client, mut client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let sender = tokio::spawn(async move {
            let _ = client_far.write_all(&sent).await;
            client_far
        });
        // The server reads slowly: the pump's writes block on a full socket past `until`.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = server.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                sleep(Duration::from_millis(1)).await;
            }
            got
        });
        let until = Instant::now() + Duration::from_millis(50);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        assert!(!answer.client_failed && !answer.upstream_failed && !answer.stalled);
        assert!(answer.client_bytes > 0);
        drop(upstream);
        let got = reader.await.unwrap();
        assert_eq!(
            got.len() as u64,
            answer.client_bytes,
            "every pumped byte arrived"
        );
        assert_eq!(&got[..], &data[..got.len()], "in order");
        drop(sender);
    }

    #[tokio::test]
    async fn a_server_that_reads_nothing_is_a_stall_not_a_hang() {
        let (client, mut client_far) = pair().await;
        let (upstream, _server) = pair().await;
        let sender = tokio::spawn(async move {
            let _ = client_far.write_all(&vec![7u8; 32 << 20]).await;
            client_far
        });
        // The wait for the server's first turn outlasts filling the socket buffers even on a
        // loaded machine (with a short one, a slow fill ended at the deadline instead): it is
        // the stall that must end it.
        let until = Instant::now() + Duration::from_secs(10);
        let answer = server_answer(&client, &upstream, until, Duration::from_millis(200)).await;
        assert!(answer.stalled);
        assert!(
            Instant::now() < until,
            "ended by the stall, not the deadline"
        );
        sender.abort();
    }

    #[tokio::test]
    async fn an_unnamed_answer_ends_the_wait_at_once() {
        let (client, _client_far) = pair().await;
        let (upstream, mut server) = pair().await;
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let answer = server_answer(&client, &upstream, until, STALL).await;
        assert!(answer.sniffed.is_none());
        assert!(Instant::now() < until - Duration::from_secs(4));
    }
}
