//! Cassandra CQL native protocol, a driver's first request (native_protocol_v4.spec §2,
//! §4.1.1-4.1.2; v3 and v5 share the header): version 3-5 with the request bit clear, no
//! flags but v5's beta flag, a non-negative stream id, then OPTIONS with an empty body or
//! STARTUP with a string map that holds CQL_VERSION and exactly fills the body.

use super::parse::{be16, be32, byte, ensure, take, verdict, Stop};
use super::Verdict;

const STARTUP: u8 = 0x01;
const OPTIONS: u8 = 0x05;
/// §2.2: 0x10 is the "use beta" flag; compression and tracing come after STARTUP.
const BETA_FLAG: u8 = 0x10;
/// A STARTUP map (CQL_VERSION, COMPRESSION, DRIVER_NAME, ...) is a few hundred bytes.
const MAX_BODY: u32 = 0xffff;
const MAX_ENTRIES: u16 = 16;

/// The first request of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(request(buf))
}

fn request(buf: &[u8]) -> Result<(), Stop> {
    let (version, rest) = byte(buf)?;
    ensure((3..=5).contains(&version))?;
    let (flags, rest) = byte(rest)?;
    ensure(flags & !BETA_FLAG == 0)?;
    let (stream, rest) = be16(rest)?;
    ensure(stream < 0x8000)?;
    let (opcode, rest) = byte(rest)?;
    ensure(opcode == OPTIONS || opcode == STARTUP)?;
    let (len, rest) = be32(rest)?;
    if opcode == OPTIONS {
        return ensure(len == 0);
    }
    ensure((2..=MAX_BODY).contains(&len))?;
    let (body, _) = take(rest, len as usize)?;
    // The body is complete: a map that runs past it is wrong, not early.
    startup_map(body).map_err(|_| Stop::NoMatch)
}

/// `[string map]`: n, then n pairs of `[string]` (a u16 length and bytes); keys are
/// upper-case option names and CQL_VERSION is required.
fn startup_map(body: &[u8]) -> Result<(), Stop> {
    let (n, mut rest) = be16(body)?;
    ensure((1..=MAX_ENTRIES).contains(&n))?;
    let mut cql_version = false;
    for _ in 0..n {
        let (key, after) = string(rest)?;
        let option_byte = |b: &u8| b.is_ascii_uppercase() || *b == b'_';
        ensure(!key.is_empty() && key.iter().all(option_byte))?;
        cql_version |= key == b"CQL_VERSION";
        let (value, after) = string(after)?;
        ensure(value.iter().all(|&b| (0x20..0x7f).contains(&b)))?;
        rest = after;
    }
    ensure(cql_version && rest.is_empty())
}

fn string(buf: &[u8]) -> Result<(&[u8], &[u8]), Stop> {
    let (len, rest) = be16(buf)?;
    take(rest, usize::from(len))
}
