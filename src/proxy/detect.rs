//! The detection driver: reads a connection's first turn under a deadline and a byte cap,
//! asks the sniffers after every read, and keeps every byte it read for replay upstream.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::events::Detection;
use crate::sniff::{self, Sniffed, Verdict};

/// What the first turn was, why reading stopped, and the bytes read (to replay).
#[derive(Debug)]
pub struct Detected {
    pub sniffed: Option<Sniffed>,
    pub stop: Detection,
    pub buf: Vec<u8>,
}

/// First allocation for the detection buffer: a typical ClientHello or request fits.
const INITIAL: usize = 2048;

/// The client's first turn, or its silence.
#[derive(Debug)]
pub enum ClientTurn {
    /// The client said nothing for `client_first`: a server-first protocol, perhaps.
    Silent,
    Spoke(Detected),
}

/// Reads the client's first turn until the sniffers agree, the deadline passes, the peer
/// stops sending, or `max_bytes` are buffered. A client that sends nothing at all before
/// `silence` has passed is `Silent`. `begun` is what an explicit proxy already read of the
/// turn (bytes the client sent straight after its `CONNECT` or SOCKS request): the turn
/// starts with it, so a client that sent any byte is never silent. Holds no more than
/// `max_bytes`, or `begun` when that is longer.
pub async fn client_first_turn<R>(
    reader: &mut R,
    begun: Vec<u8>,
    deadline: Instant,
    silence: Instant,
    max_bytes: usize,
) -> ClientTurn
where
    R: AsyncRead + Unpin,
{
    match first_turn(
        reader,
        begun,
        deadline,
        Some(silence),
        max_bytes,
        sniff::sniff_client,
    )
    .await
    {
        Some(detected) => ClientTurn::Spoke(detected),
        None => ClientTurn::Silent,
    }
}

/// Reads the server's first turn (its banner) with the same rules, `sniff_server` deciding.
pub async fn server_first_turn<R>(reader: &mut R, deadline: Instant, max_bytes: usize) -> Detected
where
    R: AsyncRead + Unpin,
{
    let detected = first_turn(
        reader,
        Vec::new(),
        deadline,
        None,
        max_bytes,
        sniff::sniff_server,
    )
    .await;
    detected.unwrap_or_else(|| Detected {
        sniffed: None,
        stop: Detection::Timeout,
        buf: Vec::new(),
    })
}

/// A socket whose first read tries the socket at once. tokio reads a socket only after
/// epoll has reported it readable, and a connection just accepted has no report yet: its
/// first read would wait for a turn of the event loop (behind every other connection ready
/// in that turn, and arming the detection deadline's timer meanwhile), though the client's
/// first turn is usually in the socket by the time the connection is accepted. HAProxy
/// likewise reads straight after accept(2). Every later read waits for readiness as usual.
/// The reactor still reports the readiness that the first read used up, so the next wait
/// for readability may end with nothing to read (`agree::look` allows for it).
pub struct Eager<'a> {
    socket: &'a mut TcpStream,
    tried: bool,
}

impl<'a> Eager<'a> {
    pub fn new(socket: &'a mut TcpStream) -> Eager<'a> {
        Eager {
            socket,
            tried: false,
        }
    }
}

impl AsyncRead for Eager<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !std::mem::replace(&mut me.tried, true) {
            // One recv(2) on the non-blocking socket, whatever tokio knows of its readiness:
            // bytes, the end of the stream and an error are the read's answer; only "would
            // block" leaves the read to wait for readiness.
            match (&*SockRef::from(&*me.socket)).read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Pin::new(&mut *me.socket).poll_read(cx, buf)
    }
}

/// `None` when `silence` passed with not a byte read (`begun` is empty then).
async fn first_turn<R, F>(
    reader: &mut R,
    begun: Vec<u8>,
    deadline: Instant,
    silence: Option<Instant>,
    max_bytes: usize,
    sniff: F,
) -> Option<Detected>
where
    R: AsyncRead + Unpin,
    F: Fn(&[u8]) -> Verdict<Sniffed>,
{
    let mut filled = begun.len();
    let mut buf = begun;
    buf.resize(filled.max(INITIAL.min(max_bytes)), 0);
    let stop = loop {
        if filled > 0 {
            match sniff(&buf[..filled]) {
                Verdict::Match(sniffed) => break Ok(sniffed),
                Verdict::NoMatch => break Err(Detection::NoMatch),
                Verdict::NeedMore => {}
            }
        }
        if filled >= buf.len() {
            if buf.len() >= max_bytes {
                break Err(Detection::TooLarge);
            }
            let grown = (buf.len() * 2).min(max_bytes);
            buf.resize(grown, 0);
        }
        let until = match silence {
            Some(silence) if filled == 0 => silence.min(deadline),
            _ => deadline,
        };
        match timeout_at(until, reader.read(&mut buf[filled..])).await {
            Err(_) if filled == 0 && until < deadline => return None,
            Err(_) => break Err(Detection::Timeout),
            Ok(Err(_)) => break Err(Detection::ReadError),
            Ok(Ok(0)) => break Err(Detection::Eof),
            Ok(Ok(n)) => filled += n,
        }
    };
    buf.truncate(filled);
    Some(match stop {
        Ok(sniffed) => Detected {
            sniffed: Some(sniffed),
            stop: Detection::Matched,
            buf,
        },
        Err(stop) => Detected {
            sniffed: None,
            stop,
            buf,
        },
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sniff::{Meta, Protocol, Side};
    use std::time::Duration;

    /// Client-first detection with no silence phase, `budget` from now.
    async fn detect<R: AsyncRead + Unpin>(
        reader: &mut R,
        budget: Duration,
        max_bytes: usize,
        sniff: impl Fn(&[u8]) -> Verdict<Sniffed>,
    ) -> Detected {
        first_turn(
            reader,
            Vec::new(),
            Instant::now() + budget,
            None,
            max_bytes,
            sniff,
        )
        .await
        .unwrap()
    }
    use tokio::io::AsyncWriteExt;

    /// A sniffer that wants `n` bytes starting with `b'x'`, and refuses anything else.
    fn wants(n: usize) -> impl Fn(&[u8]) -> Verdict<Sniffed> {
        move |buf: &[u8]| {
            if buf.iter().any(|&b| b != b'x') {
                Verdict::NoMatch
            } else if buf.len() < n {
                Verdict::NeedMore
            } else {
                Verdict::Match(Sniffed {
                    protocol: Protocol::Unknown,
                    side: Side::Client,
                    meta: Meta::None,
                })
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_with_nothing_buffered() {
        let (_client, mut server) = tokio::io::duplex(64);
        let detected = detect(&mut server, Duration::from_secs(5), 16389, wants(1)).await;
        assert_eq!(detected.stop, Detection::Timeout);
        assert!(detected.buf.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_drip_is_cut_at_the_deadline_and_keeps_its_bytes() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for _ in 0..100 {
                let _ = client.write_all(b"x").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let detected = detect(&mut server, Duration::from_millis(550), 16389, wants(1000)).await;
        assert_eq!(detected.stop, Detection::Timeout);
        assert_eq!(detected.buf, vec![b'x'; 6]);
    }

    #[tokio::test]
    async fn never_buffers_more_than_max_bytes() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(&vec![b'x'; 100_000]).await.unwrap();
        let detected = detect(
            &mut server,
            Duration::from_secs(5),
            16389,
            wants(usize::MAX),
        )
        .await;
        assert_eq!(detected.stop, Detection::TooLarge);
        assert_eq!(detected.buf.len(), 16389);
    }

    #[tokio::test]
    async fn match_keeps_every_byte_read_across_small_writes() {
        let (mut client, mut server) = tokio::io::duplex(8);
        tokio::spawn(async move {
            for _ in 0..40 {
                client.write_all(b"x").await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let detected = detect(&mut server, Duration::from_secs(5), 16389, wants(40)).await;
        assert_eq!(detected.stop, Detection::Matched);
        assert_eq!(detected.buf, vec![b'x'; 40]);
    }

    #[tokio::test]
    async fn end_of_stream_and_no_match_are_named() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"xx").await.unwrap();
        drop(client);
        let detected = detect(&mut server, Duration::from_secs(5), 16389, wants(10)).await;
        assert_eq!(
            (detected.stop, detected.buf.as_slice()),
            (Detection::Eof, &b"xx"[..])
        );

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"xy").await.unwrap();
        let detected = detect(&mut server, Duration::from_secs(5), 16389, wants(10)).await;
        assert_eq!(
            (detected.stop, detected.buf.as_slice()),
            (Detection::NoMatch, &b"xy"[..])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_told_apart_from_a_slow_first_byte() {
        let (_client, mut server) = tokio::io::duplex(64);
        let start = Instant::now();
        let silent = first_turn(
            &mut server,
            Vec::new(),
            start + Duration::from_secs(5),
            Some(start + Duration::from_millis(250)),
            16389,
            wants(2),
        )
        .await;
        assert!(silent.is_none());
        assert_eq!(start.elapsed(), Duration::from_millis(250));

        // One byte before the silence deadline: the client spoke, detection goes on to the
        // full deadline.
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"x").await.unwrap();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            client.write_all(b"x").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let start = Instant::now();
        let spoke = first_turn(
            &mut server,
            Vec::new(),
            start + Duration::from_secs(5),
            Some(start + Duration::from_millis(250)),
            16389,
            wants(2),
        )
        .await
        .unwrap();
        assert_eq!((spoke.stop, spoke.buf.len()), (Detection::Matched, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_begun_by_the_proxy_is_judged_first_and_never_silent() {
        let start = Instant::now();
        let turn = |begun: &[u8], n| {
            let begun = begun.to_vec();
            async move {
                let (_client, mut server) = tokio::io::duplex(64);
                first_turn(
                    &mut server,
                    begun,
                    start + Duration::from_secs(5),
                    Some(start + Duration::from_millis(250)),
                    8,
                    wants(n),
                )
                .await
                .unwrap()
            }
        };
        // Already whole: matched without a read (the socket never sends a byte).
        let whole = turn(b"xxx", 3).await;
        assert_eq!(
            (whole.stop, whole.buf.as_slice()),
            (Detection::Matched, &b"xxx"[..])
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        let wrong = turn(b"xy", 3).await;
        assert_eq!(
            (wrong.stop, wrong.buf.as_slice()),
            (Detection::NoMatch, &b"xy"[..])
        );
        // Longer than max_bytes: kept whole, and too large.
        let long = turn(&[b'x'; 12], 20).await;
        assert_eq!((long.stop, long.buf.len()), (Detection::TooLarge, 12));
        // Begun but not whole: the client spoke, so the socket is read to the deadline.
        let begun = turn(b"x", 3).await;
        assert_eq!(
            (begun.stop, begun.buf.as_slice()),
            (Detection::Timeout, &b"x"[..])
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_begun_turn_continues_with_what_the_socket_brings() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"xx").await.unwrap();
        let detected = first_turn(
            &mut server,
            b"xx".to_vec(),
            Instant::now() + Duration::from_secs(5),
            None,
            16389,
            wants(4),
        )
        .await
        .unwrap();
        assert_eq!(
            (detected.stop, detected.buf.as_slice()),
            (Detection::Matched, &b"xxxx"[..])
        );
    }

    /// A connection accepted on loopback as the gateway accepts (accept4(2), then into this
    /// thread's reactor) whose client has sent `bytes` (and they have arrived), with the
    /// client's end.
    pub(in crate::proxy) fn accepted_with(bytes: &[u8]) -> (TcpStream, std::net::TcpStream) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(bytes).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let accepted = TcpStream::from_std(accepted).unwrap();
        let mut peek = [std::mem::MaybeUninit::<u8>::uninit(); 64];
        while SockRef::from(&accepted).peek(&mut peek).unwrap_or(0) < bytes.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        (accepted, client)
    }

    #[tokio::test]
    async fn an_eager_first_read_takes_what_waits_at_once_and_later_reads_wait_for_readiness() {
        let (mut accepted, client) = accepted_with(b"hello");
        let mut eager = Eager::new(&mut accepted);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut buf = [0u8; 16];
        // Polled once, with no turn of the event loop since the accept: the bytes already.
        let mut read = ReadBuf::new(&mut buf);
        let first = Pin::new(&mut eager).poll_read(&mut cx, &mut read);
        assert!(matches!(first, Poll::Ready(Ok(()))), "{first:?}");
        assert_eq!(read.filled(), b"hello");
        // Nothing more to read: the next read waits, and then sees the end of the stream.
        let mut read = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut eager)
            .poll_read(&mut cx, &mut read)
            .is_pending());
        drop(client);
        assert_eq!(eager.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_eager_first_read_reports_a_reset_and_detection_names_it() {
        let (mut accepted, client) = accepted_with(b"");
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let err = Eager::new(&mut accepted)
            .read(&mut [0u8; 16])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

        let (mut accepted, client) = accepted_with(b"");
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let detected = detect(
            &mut Eager::new(&mut accepted),
            Duration::from_secs(5),
            64,
            wants(4),
        )
        .await;
        assert_eq!(detected.stop, Detection::ReadError);
    }
}
