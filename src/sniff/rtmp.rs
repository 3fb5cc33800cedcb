//! RTMP handshake (Adobe RTMP specification 1.0, §5.2.2-5.2.3): C0, the version byte 3,
//! then C1, 1536 bytes of time, zero and random data, sent before the server answers.
//!
//! Only the plain handshake is identified: C1's second field is zero there. Clients that
//! put their version in it (the "digest" handshake of Flash players and FFmpeg) and RTMPE
//! (C0 = 6) stay unidentified: one byte and 1536 random ones are not a structure.

use super::parse::{literal, take, verdict, Stop};
use super::Verdict;

const C0_RTMP: u8 = 3;
const C1_LEN: usize = 1536;

/// C0 and C1 at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(handshake(buf))
}

fn handshake(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, &[C0_RTMP])?;
    let (_time, rest) = take(rest, 4)?;
    // The zero field: judged byte by byte, before C1 is complete.
    let rest = literal(rest, &[0, 0, 0, 0])?;
    take(rest, C1_LEN - 8).map(drop)
}
