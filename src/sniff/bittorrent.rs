//! BitTorrent peer handshake (BEP 3, "peer protocol"): the byte 19, `BitTorrent protocol`,
//! eight reserved bytes, then the info hash and peer id. An encrypted (MSE) handshake is
//! random bytes by design and stays unidentified.

use super::parse::{literal, take, verdict, Stop};
use super::Verdict;

const PROTOCOL: &[u8] = b"\x13BitTorrent protocol";
/// The reserved extension bits after the protocol string.
const RESERVED_LEN: usize = 8;

/// The handshake at the start of the connecting peer's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(handshake(buf))
}

fn handshake(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, PROTOCOL)?;
    take(rest, RESERVED_LEN).map(drop)
}
