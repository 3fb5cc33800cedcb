//! VNC server greeting: the RFB ProtocolVersion message (RFC 6143 §7.1.1).

use super::parse::{ensure, literal, take, verdict, Stop};
use super::Verdict;

/// `RFB xxx.yyy\n`: exactly 12 bytes, three-digit major and minor versions.
pub fn sniff_server(buf: &[u8]) -> Verdict<()> {
    verdict(version(buf))
}

fn version(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, b"RFB ")?;
    for (i, &b) in rest.iter().take(8).enumerate() {
        ensure(match i {
            3 => b == b'.',
            7 => b == b'\n',
            _ => b.is_ascii_digit(),
        })?;
    }
    take(rest, 8).map(drop)
}
