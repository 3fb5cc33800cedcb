//! The detection driver: reads a connection's first turn under a deadline and a byte cap,
//! asks the sniffers after every read, and keeps every byte it read for replay upstream.

use tokio::io::{AsyncRead, AsyncReadExt};
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
/// `silence` has passed is `Silent`. Never holds more than `max_bytes`.
pub async fn client_first_turn<R>(
    reader: &mut R,
    deadline: Instant,
    silence: Instant,
    max_bytes: usize,
) -> ClientTurn
where
    R: AsyncRead + Unpin,
{
    match first_turn(
        reader,
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
    let detected = first_turn(reader, deadline, None, max_bytes, sniff::sniff_server).await;
    detected.unwrap_or_else(|| Detected {
        sniffed: None,
        stop: Detection::Timeout,
        buf: Vec::new(),
    })
}

/// `None` when `silence` passed with not a byte read.
async fn first_turn<R, F>(
    reader: &mut R,
    deadline: Instant,
    silence: Option<Instant>,
    max_bytes: usize,
    sniff: F,
) -> Option<Detected>
where
    R: AsyncRead + Unpin,
    F: Fn(&[u8]) -> Verdict<Sniffed>,
{
    let mut buf = vec![0u8; INITIAL.min(max_bytes)];
    let mut filled = 0;
    let stop = loop {
        if filled == buf.len() {
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
        match sniff(&buf[..filled]) {
            Verdict::Match(sniffed) => break Ok(sniffed),
            Verdict::NoMatch => break Err(Detection::NoMatch),
            Verdict::NeedMore => {}
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
mod tests {
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
        first_turn(reader, Instant::now() + budget, None, max_bytes, sniff)
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
            start + Duration::from_secs(5),
            Some(start + Duration::from_millis(250)),
            16389,
            wants(2),
        )
        .await
        .unwrap();
        assert_eq!((spoke.stop, spoke.buf.len()), (Detection::Matched, 2));
    }
}
