//! Git protocol request (git's gitprotocol-pack, "Git Transport"): the first pkt-line of a
//! `git://` client, `XXXXgit-upload-pack /path\0host=name\0`, four lowercase hex digits of
//! length (which count themselves) then the service, the path and a NUL.

use super::parse::{ensure, one_of, take, verdict, Stop};
use super::Verdict;

/// LARGE_PACKET_MAX in git's pkt-line.h.
const MAX_PKT_LEN: usize = 65520;
const SERVICES: [&[u8]; 3] = [
    b"git-upload-pack ",
    b"git-receive-pack ",
    b"git-upload-archive ",
];

/// The request line at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(request(buf))
}

fn request(buf: &[u8]) -> Result<(), Stop> {
    for &b in buf.iter().take(4) {
        ensure(matches!(b, b'0'..=b'9' | b'a'..=b'f'))?;
    }
    let (hex, rest) = take(buf, 4)?;
    let len = hex.iter().fold(0usize, |acc, &b| {
        acc << 4 | usize::from((b as char).to_digit(16).unwrap_or(0) as u8)
    });
    let (service, rest) = one_of(rest, &SERVICES)?;
    ensure(len <= MAX_PKT_LEN && len > 4 + SERVICES[service].len() + 1)?;
    // The path: printable, ended by NUL inside the packet.
    let room = len - 4 - SERVICES[service].len();
    for (i, &b) in rest.iter().take(room).enumerate() {
        if b == 0 {
            return ensure(i > 0);
        }
        ensure(b.is_ascii_graphic() || b == b' ')?;
    }
    ensure(rest.len() < room)?;
    Err(Stop::NeedMore)
}
