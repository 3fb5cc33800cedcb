//! Redis client request in RESP (Redis serialization protocol specification): an array of
//! bulk strings, `*<count>\r\n$<len>\r\n<command>\r\n...`. `Match` once the command name,
//! the first bulk string, is complete and is a word; inline commands are not claimed.

use super::parse::{ensure, literal, take, verdict, Stop};
use super::Verdict;

/// Redis's limits: 1024*1024 arguments (proto-max-multibulk-len); command names are short.
const MAX_ARGS: u64 = 1024 * 1024;
const MAX_COMMAND_LEN: u64 = 64;

/// The first command of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(command(buf))
}

fn command(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, b"*")?;
    let (count, rest) = number(rest)?;
    ensure((1..=MAX_ARGS).contains(&count))?;
    let rest = literal(rest, b"$")?;
    let (len, rest) = number(rest)?;
    ensure((1..=MAX_COMMAND_LEN).contains(&len))?;
    let len = len as usize;
    // Check the name's bytes as they arrive.
    let name = rest.get(..len).unwrap_or(rest);
    ensure(
        name.iter()
            .all(|&b| b.is_ascii_alphabetic() || b == b'|' || b == b'-'),
    )?;
    let (_, rest) = take(rest, len)?;
    literal(rest, b"\r\n").map(drop)
}

/// A decimal number without sign or leading zero, ended by CR LF.
fn number(buf: &[u8]) -> Result<(u64, &[u8]), Stop> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(12) {
        match b {
            b'0'..=b'9' if !(i == 1 && buf[0] == b'0') => {
                value = value * 10 + u64::from(b - b'0');
            }
            b'\r' if i > 0 => return literal(&buf[i..], b"\r\n").map(|rest| (value, rest)),
            _ => return Err(Stop::NoMatch),
        }
    }
    ensure(buf.len() < 12)?;
    Err(Stop::NeedMore)
}
