//! The detection driver: reads a connection's first turn under a deadline and a byte cap,
//! asks the sniffers after every read, and keeps every byte it read for replay upstream.

use std::time::Duration;

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

/// Reads the client's first turn until the sniffers agree, `budget` runs out, the peer stops
/// sending, or `max_bytes` are buffered. Never holds more than `max_bytes`.
pub async fn client_first_turn<R>(reader: &mut R, budget: Duration, max_bytes: usize) -> Detected
where
    R: AsyncRead + Unpin,
{
    first_turn(reader, budget, max_bytes, sniff::sniff_client).await
}

async fn first_turn<R, F>(reader: &mut R, budget: Duration, max_bytes: usize, sniff: F) -> Detected
where
    R: AsyncRead + Unpin,
    F: Fn(&[u8]) -> Verdict<Sniffed>,
{
    let deadline = Instant::now() + budget;
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
        match timeout_at(deadline, reader.read(&mut buf[filled..])).await {
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
    match stop {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniff::{Meta, Protocol, Side};
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
        let detected = first_turn(&mut server, Duration::from_secs(5), 16389, wants(1)).await;
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
        let detected =
            first_turn(&mut server, Duration::from_millis(550), 16389, wants(1000)).await;
        assert_eq!(detected.stop, Detection::Timeout);
        assert_eq!(detected.buf, vec![b'x'; 6]);
    }

    #[tokio::test]
    async fn never_buffers_more_than_max_bytes() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(&vec![b'x'; 100_000]).await.unwrap();
        let detected = first_turn(
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
        let detected = first_turn(&mut server, Duration::from_secs(5), 16389, wants(40)).await;
        assert_eq!(detected.stop, Detection::Matched);
        assert_eq!(detected.buf, vec![b'x'; 40]);
    }

    #[tokio::test]
    async fn end_of_stream_and_no_match_are_named() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"xx").await.unwrap();
        drop(client);
        let detected = first_turn(&mut server, Duration::from_secs(5), 16389, wants(10)).await;
        assert_eq!(
            (detected.stop, detected.buf.as_slice()),
            (Detection::Eof, &b"xx"[..])
        );

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"xy").await.unwrap();
        let detected = first_turn(&mut server, Duration::from_secs(5), 16389, wants(10)).await;
        assert_eq!(
            (detected.stop, detected.buf.as_slice()),
            (Detection::NoMatch, &b"xy"[..])
        );
    }
}
