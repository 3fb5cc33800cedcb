//! PostgreSQL frontend's first message (PostgreSQL protocol, "Message Formats"):
//! StartupMessage (protocol 3.0) or the SSLRequest, GSSENCRequest and CancelRequest that
//! share its untyped framing: an Int32 length that counts itself, then an Int32 code.

use super::parse::{be32, ensure, take, verdict, Stop};
use super::Verdict;

const PROTOCOL_3_0: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// libpq's limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
const MAX_STARTUP_LEN: u32 = 10_000;

/// The first message of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(first_message(buf))
}

fn first_message(buf: &[u8]) -> Result<(), Stop> {
    // A length of at most MAX_STARTUP_LEN has two zero high bytes: judged before all four.
    ensure(buf.iter().take(2).all(|&b| b == 0))?;
    let (len, rest) = be32(buf)?;
    ensure((8..=MAX_STARTUP_LEN).contains(&len))?;
    let (code, rest) = be32(rest)?;
    match code {
        SSL_REQUEST | GSSENC_REQUEST => ensure(len == 8),
        CANCEL_REQUEST => ensure(len == 16).and_then(|()| take(rest, 8).map(drop)),
        PROTOCOL_3_0 => parameters(rest, len as usize - 8),
        _ => Err(Stop::NoMatch),
    }
}

/// `name\0value\0` pairs then a final `\0`, exactly filling `len` bytes; `user` is required.
fn parameters(buf: &[u8], len: usize) -> Result<(), Stop> {
    let mut pos = 0;
    let mut user = false;
    loop {
        let name = cstring(buf, pos, len)?;
        pos += name.len() + 1;
        if name.is_empty() {
            return ensure(pos == len && user);
        }
        ensure(name.iter().all(|&b| b.is_ascii_graphic()))?;
        user |= name == b"user";
        let value = cstring(buf, pos, len)?;
        pos += value.len() + 1;
    }
}

/// The NUL-terminated string at `pos`, which must end inside the first `len` bytes.
fn cstring(buf: &[u8], pos: usize, len: usize) -> Result<&[u8], Stop> {
    let avail = buf.get(pos..len.min(buf.len())).unwrap_or_default();
    match avail.iter().position(|&b| b == 0) {
        Some(end) => Ok(&avail[..end]),
        None if pos + avail.len() >= len => Err(Stop::NoMatch),
        None => Err(Stop::NeedMore),
    }
}
