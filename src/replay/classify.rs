//! What the live detection driver (`proxy::detect`, `proxy::conn`) would have concluded from
//! a flow's recorded first turns: one pure function, [`classify`], over packet timing and the
//! reassembled bytes. The sniffers are the live ones; only the reading is replaced.

use std::time::Duration;

use crate::config::Detect;
use crate::events::Detection;
use crate::sniff::{self, Side, Sniffed, Verdict};

/// `sniff::sniff_client` or `sniff::sniff_server`.
type Sniffer = fn(&[u8]) -> Verdict<Sniffed>;

/// One direction's first turn as the capture shows it. Times are since the handshake.
#[derive(Debug, Clone, Copy)]
pub struct TurnView<'a> {
    /// Contiguous bytes from the start of the stream, within the detection deadline.
    pub bytes: &'a [u8],
    /// When the first payload byte was captured.
    pub first_byte: Option<Duration>,
    /// When the stream ended (FIN after the contiguous bytes, or RST), within the deadline.
    pub ended: Option<Duration>,
}

/// Both first turns of a flow.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub client: TurnView<'a>,
    pub server: TurnView<'a>,
    /// Capture time since the handshake of the latest packet seen so far.
    pub now: Duration,
    /// No further packet can change the turns: the deadline passed or the capture ended.
    pub complete: bool,
    /// The segment refuses this destination port whatever is spoken on it, so the live
    /// gateway never contacts the server of a silent client (`proxy::conn::inspect`).
    pub blind_refusal: bool,
}

/// The detection outcome, as the live driver would have reported it.
#[derive(Debug, Clone)]
pub struct Classified {
    /// Whose turn decided: the client's, or the server's when the client was silent.
    pub side: Side,
    pub sniffed: Option<Sniffed>,
    pub detection: Detection,
}

/// The detection outcome, or `None` while later packets could still change it.
///
/// The client is silent when its first byte (or end of stream) comes later than
/// `client_first` after the handshake, or never; then the server's turn is sniffed, as the
/// live gateway does after `client_first` (a late client is not read at all). A silent
/// client on a port the segment refuses whatever is spoken is `timeout` at once, as live. A turn is cut at
/// `max_bytes` and judged as the driver judges a read: `Match` -> `matched`, `NoMatch` ->
/// `no_match`, `NeedMore` at the cap -> `too_large`, `NeedMore` and the stream ended ->
/// `eof`, otherwise `timeout` (once the flow is complete).
pub fn classify(seen: &Observed<'_>, detect: &Detect) -> Option<Classified> {
    let side = side(seen, detect)?;
    if side == Side::Server && seen.blind_refusal {
        return Some(Classified {
            side,
            sniffed: None,
            detection: Detection::Timeout,
        });
    }
    let (turn, sniffer): (_, Sniffer) = match side {
        Side::Client => (&seen.client, sniff::sniff_client),
        Side::Server => (&seen.server, sniff::sniff_server),
    };
    let bytes = &turn.bytes[..turn.bytes.len().min(detect.max_bytes)];
    let (sniffed, detection) = match sniffer(bytes) {
        Verdict::Match(sniffed) => (Some(sniffed), Detection::Matched),
        Verdict::NoMatch => (None, Detection::NoMatch),
        Verdict::NeedMore if bytes.len() >= detect.max_bytes => (None, Detection::TooLarge),
        Verdict::NeedMore if turn.ended.is_some() => (None, Detection::Eof),
        Verdict::NeedMore if seen.complete => (None, Detection::Timeout),
        Verdict::NeedMore => return None,
    };
    Some(Classified {
        side,
        sniffed,
        detection,
    })
}

/// Longest server first turn the live agreement check looks at (`proxy::agree`).
const ANSWER_PEEK: usize = 1024;
/// A first turn shorter than this, without a complete line, may still be arriving.
const ANSWER_SHORT: usize = 256;

/// After a client-first verdict that forwards, what the live agreement check
/// (`proxy::agree::server_answer`) would have read of the server's first turn: `Some(Some)`
/// when a server-first sniffer named it, `Some(None)` when nothing was named, `None` while
/// later packets could still change it. Live, the gateway dials once the client's turn is
/// read and waits `client_first` for the server; here the window is `client_first` from the
/// client's first byte, as the capture has no gateway's dial time.
pub fn server_answer(seen: &Observed<'_>, detect: &Detect) -> Option<Option<Sniffed>> {
    let opened = seen.client.first_byte.unwrap_or(Duration::ZERO);
    let window_end = opened + detect.client_first;
    let server = &seen.server;
    match server.first_byte {
        Some(at) if at > window_end => return Some(None),
        Some(_) => {}
        None if seen.complete || server.ended.is_some() || seen.now > window_end => {
            return Some(None)
        }
        None => return None,
    }
    let bytes = &server.bytes[..server.bytes.len().min(ANSWER_PEEK)];
    match sniff::sniff_server(bytes) {
        Verdict::Match(sniffed) => Some(Some(sniffed)),
        Verdict::NoMatch => Some(None),
        Verdict::NeedMore
            if bytes.len() >= ANSWER_SHORT
                || bytes.contains(&b'\n')
                || server.ended.is_some()
                || seen.complete
                || seen.now > window_end =>
        {
            Some(None)
        }
        Verdict::NeedMore => None,
    }
}

/// Whose first turn the live gateway would have read, or `None` while undecided.
///
/// Live, silence alone decides: a client with nothing to read for `client_first` is left
/// unread while the server's banner is read, whether or not the server ever speaks and
/// whatever the client sends later.
fn side(seen: &Observed<'_>, detect: &Detect) -> Option<Side> {
    // The live driver's first read returns at the first byte or at end of stream.
    let client = match (seen.client.first_byte, seen.client.ended) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match client {
        Some(at) if at <= detect.client_first => Some(Side::Client),
        Some(_) => Some(Side::Server),
        None if seen.now > detect.client_first || seen.complete => Some(Side::Server),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniff::Protocol;

    const MS: Duration = Duration::from_millis(1);
    const SSH_CLIENT: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
    const SSH_SERVER: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u5\r\n";

    fn detect() -> Detect {
        Detect {
            client_first: 250 * MS,
            timeout: 5000 * MS,
            max_bytes: 16389,
        }
    }

    fn turn(bytes: &[u8], first: Option<u64>, ended: Option<u64>) -> TurnView<'_> {
        TurnView {
            bytes,
            first_byte: first.map(Duration::from_millis),
            ended: ended.map(Duration::from_millis),
        }
    }

    fn seen<'a>(client: TurnView<'a>, server: TurnView<'a>, complete: bool) -> Observed<'a> {
        Observed {
            client,
            server,
            now: 6000 * MS,
            complete,
            blind_refusal: false,
        }
    }

    fn outcome(c: Option<Classified>) -> Option<(Side, Option<Protocol>, Detection)> {
        c.map(|c| (c.side, c.sniffed.map(|s| s.protocol), c.detection))
    }

    #[test]
    fn a_client_that_speaks_in_time_decides() {
        let s = seen(
            turn(SSH_CLIENT, Some(1), None),
            turn(SSH_SERVER, Some(0), None),
            false,
        );
        assert_eq!(
            outcome(classify(&s, &detect())),
            Some((Side::Client, Some(Protocol::Ssh), Detection::Matched))
        );
    }

    #[test]
    fn a_silent_client_gets_the_servers_banner_sniffed() {
        let s = seen(
            turn(SSH_CLIENT, Some(400), None),
            turn(SSH_SERVER, Some(300), None),
            false,
        );
        assert_eq!(
            outcome(classify(&s, &detect())),
            Some((Side::Server, Some(Protocol::Ssh), Detection::Matched))
        );
        let blind = Observed {
            blind_refusal: true,
            ..s
        };
        assert_eq!(
            outcome(classify(&blind, &detect())),
            Some((Side::Server, None, Detection::Timeout))
        );
        // Live, a silent client on a blindly refused port never gets the server contacted:
        // its late bytes or its close change nothing.
        let late_close = Observed {
            client: turn(b"", None, Some(2000)),
            server: turn(b"", None, None),
            ..blind
        };
        assert_eq!(
            outcome(classify(&late_close, &detect())),
            Some((Side::Server, None, Detection::Timeout))
        );
        let early = Observed {
            client: turn(SSH_CLIENT, Some(10), None),
            ..blind
        };
        assert_eq!(
            outcome(classify(&early, &detect())).map(|o| o.1),
            Some(Some(Protocol::Ssh)),
            "a client that speaks in time is sniffed whatever the port"
        );
    }

    #[test]
    fn a_late_client_is_not_read_as_live() {
        // The gateway stopped waiting for the client at client_first and read the server,
        // which said nothing: the client's late hello never counts.
        let quiet = seen(
            turn(SSH_CLIENT, Some(900), None),
            turn(b"", None, None),
            false,
        );
        assert!(
            classify(&quiet, &detect()).is_none(),
            "the server may still speak"
        );
        let done = Observed {
            complete: true,
            ..quiet
        };
        assert_eq!(
            outcome(classify(&done, &detect())),
            Some((Side::Server, None, Detection::Timeout))
        );
    }

    #[test]
    fn need_more_is_named_by_why_the_turn_stopped() {
        let partial = &SSH_CLIENT[..10];
        let open = seen(turn(partial, Some(1), None), turn(b"", None, None), false);
        assert!(classify(&open, &detect()).is_none(), "more may still come");
        let done = Observed {
            complete: true,
            ..open
        };
        assert_eq!(
            outcome(classify(&done, &detect())).map(|o| o.2),
            Some(Detection::Timeout)
        );
        let eof = seen(
            turn(partial, Some(1), Some(2)),
            turn(b"", None, None),
            false,
        );
        assert_eq!(
            outcome(classify(&eof, &detect())).map(|o| o.2),
            Some(Detection::Eof)
        );
        let d = Detect {
            max_bytes: 10,
            ..detect()
        };
        assert_eq!(
            outcome(classify(&open, &d)).map(|o| o.2),
            Some(Detection::TooLarge)
        );
        let junk = seen(
            turn(b"\x00\x01\x02\x03\x04\x05\x06\x07", Some(1), None),
            turn(b"", None, None),
            false,
        );
        assert_eq!(
            outcome(classify(&junk, &detect())),
            Some((Side::Client, None, Detection::NoMatch))
        );
    }

    #[test]
    fn nothing_from_either_side_waits_then_times_out_on_the_server_side() {
        let s = seen(turn(b"", None, None), turn(b"", None, None), false);
        assert!(classify(&s, &detect()).is_none());
        let s = Observed {
            complete: true,
            ..s
        };
        assert_eq!(
            outcome(classify(&s, &detect())),
            Some((Side::Server, None, Detection::Timeout))
        );
    }

    #[test]
    fn the_servers_answer_is_named_within_the_window_or_not_at_all() {
        const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: web.lab.test\r\n\r\n";
        let named = |client: TurnView<'static>, server: TurnView<'static>, now: u64, complete| {
            let s = Observed {
                now: Duration::from_millis(now),
                ..seen(client, server, complete)
            };
            server_answer(&s, &detect()).map(|a| a.map(|sniffed| sniffed.protocol))
        };
        // An HTTP request answered by an SSH banner within client_first: named.
        assert_eq!(
            named(
                turn(GET, Some(1), None),
                turn(SSH_SERVER, Some(3), None),
                3,
                false
            ),
            Some(Some(Protocol::Ssh))
        );
        // Half a banner line, more may come: undecided; the line's end or the window decides.
        let half = &SSH_SERVER[..10];
        assert_eq!(
            named(
                turn(GET, Some(1), None),
                turn(half, Some(3), None),
                3,
                false
            ),
            None
        );
        assert_eq!(
            named(
                turn(GET, Some(1), None),
                turn(half, Some(3), None),
                300,
                false
            ),
            Some(None)
        );
        // An HTTP status line names nothing; a banner after the window is not looked at.
        let status = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n";
        assert_eq!(
            named(
                turn(GET, Some(1), None),
                turn(status, Some(3), None),
                3,
                false
            ),
            Some(None)
        );
        assert_eq!(
            named(
                turn(GET, Some(1), None),
                turn(SSH_SERVER, Some(400), None),
                400,
                false
            ),
            Some(None)
        );
        // Nothing from the server yet: undecided until the window passes or the flow ends.
        assert_eq!(
            named(turn(GET, Some(1), None), turn(b"", None, None), 100, false),
            None
        );
        assert_eq!(
            named(turn(GET, Some(1), None), turn(b"", None, None), 100, true),
            Some(None)
        );
    }
}
