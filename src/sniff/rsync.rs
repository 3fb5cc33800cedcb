//! rsync daemon greeting, sent by both sides: `@RSYNCD: <major>.<minor>` (rsync's
//! clientserver.c), optionally followed by the checksum names (protocol 31+), then LF.

use super::parse::{ensure, line, literal, verdict, Stop};
use super::Verdict;

const MAX_LINE: usize = 256;

/// The greeting line, from either side.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(greeting(buf))
}

fn greeting(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, b"@RSYNCD: ")?;
    // Check the version digits as they arrive, before the line end.
    let version_end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\n' || b == b'\r');
    let version = &rest[..version_end.unwrap_or(rest.len())];
    let mut parts = version.splitn(2, |&b| b == b'.');
    let major = parts.next().unwrap_or_default();
    ensure(major.len() <= 3 && major.iter().all(u8::is_ascii_digit))?;
    if let Some(minor) = parts.next() {
        ensure(minor.len() <= 3 && minor.iter().all(u8::is_ascii_digit))?;
    }
    line(rest, MAX_LINE)?;
    // Protocols before 30 announce the major version alone.
    ensure(!major.is_empty())
}
