//! RTMP handshake (Adobe RTMP specification 1.0, §5.2.2-5.2.3): C0, the version byte 3,
//! then C1, 1536 bytes of time, a second field and random data, sent before the server
//! answers.
//!
//! The plain handshake has zero in C1's second field. Clients that put a player version
//! there (the Flash Player 9 handshake of librtmp, FFmpeg and Flash) also place an
//! HMAC-SHA256 digest of C1, keyed with "Genuine Adobe Flash Player 001", at an offset
//! derived from C1 itself (scheme 0 or 1): that digest is verified, so 1537 random bytes
//! after a 3 are never enough. RTMPE (C0 = 6) stays unidentified.

use sha2::{Digest, Sha256};

use super::parse::{ensure, literal, take, verdict, Stop};
use super::Verdict;

const C0_RTMP: u8 = 3;
const C1_LEN: usize = 1536;
const DIGEST_LEN: usize = 32;
/// The Flash Player key's first 30 bytes: the part used to sign C1.
const PLAYER_KEY: &[u8] = b"Genuine Adobe Flash Player 001";
/// The two digest layouts: where the 4 offset bytes are, and where the offset counts from.
const SCHEMES: [(usize, usize); 2] = [(8, 12), (772, 776)];
/// Each scheme's digest lies within 728 + 32 bytes of its base.
const OFFSET_MODULUS: usize = 728;

/// C0 and C1 at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(handshake(buf))
}

fn handshake(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, &[C0_RTMP])?;
    let (c1, _) = take(rest, C1_LEN)?;
    if c1[4..8] == [0, 0, 0, 0] {
        return Ok(());
    }
    ensure(SCHEMES.iter().any(|&scheme| digest_matches(c1, scheme)))
}

/// The digest at the scheme's offset is the HMAC of the other 1504 bytes of C1.
fn digest_matches(c1: &[u8], (at, base): (usize, usize)) -> bool {
    let Some(offset_bytes) = c1.get(at..at + 4) else {
        return false;
    };
    let offset = offset_bytes.iter().map(|&b| usize::from(b)).sum::<usize>() % OFFSET_MODULUS;
    let start = base + offset;
    let (Some(before), Some(digest), Some(after)) = (
        c1.get(..start),
        c1.get(start..start + DIGEST_LEN),
        c1.get(start + DIGEST_LEN..),
    ) else {
        return false;
    };
    hmac_sha256(PLAYER_KEY, &[before, after]) == digest
}

/// RFC 2104 HMAC with SHA-256 over the concatenation of `parts`; `key` is shorter than a
/// block.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    for (b, k) in block.iter_mut().zip(key) {
        *b = *k;
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}
