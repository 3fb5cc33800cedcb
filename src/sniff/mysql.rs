//! MySQL/MariaDB server greeting: the Protocol::HandshakeV10 packet a server sends first.
//!
//! MySQL client/server protocol, "Protocol::HandshakeV10": a packet header (3-byte
//! little-endian payload length, sequence id 0), protocol version 10, the NUL-terminated
//! server version, connection id, 8 bytes of scramble, a zero filler, capability flags,
//! character set, status flags, upper capability flags, scramble length and reserved bytes
//! (all zero in MySQL; MariaDB keeps its extended capabilities in the last four).

use super::parse::{byte, ensure, le32, take, token, verdict, Stop};
use super::Verdict;

/// Smallest payload with every field up to the reserved bytes and a one-byte version.
const MIN_PAYLOAD: usize = 1 + 2 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
/// The greeting with a long version string and plugin name stays far below this.
const MAX_PAYLOAD: usize = 1024;
const MAX_VERSION_LEN: usize = 64;
/// CLIENT_PROTOCOL_41: every server since 4.1 sets it.
const CLIENT_PROTOCOL_41: u16 = 0x0200;

/// Identifies the handshake packet at the start of a server's first turn.
pub fn sniff_server(buf: &[u8]) -> Verdict<()> {
    verdict(handshake(buf))
}

fn handshake(buf: &[u8]) -> Result<(), Stop> {
    let (header, rest) = take(buf, 4)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    ensure((MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) && header[3] == 0)?;
    let (version, rest) = byte(rest)?;
    ensure(version == 10)?;
    let printable = |b: u8| (0x20..=0x7e).contains(&b);
    let (_, rest) = token(rest, MAX_VERSION_LEN, printable, 0)?;
    let (_connection_id, rest) = le32(rest)?;
    let (_scramble, rest) = take(rest, 8)?;
    let (filler, rest) = byte(rest)?;
    ensure(filler == 0)?;
    let (caps, rest) = take(rest, 2)?;
    ensure(u16::from_le_bytes([caps[0], caps[1]]) & CLIENT_PROTOCOL_41 != 0)?;
    let (_charset_status_caps_len, rest) = take(rest, 1 + 2 + 2 + 1)?;
    let (reserved, _) = take(rest, 6)?;
    ensure(reserved.iter().all(|&b| b == 0))?;
    // The fields read lie inside the payload the header announced.
    ensure(buf.len() - rest.len() + 10 <= 4 + len)
}
