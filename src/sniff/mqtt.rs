//! MQTT CONNECT, the first packet a client must send (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1, and
//! MQTT 3.1's `MQIsdp` name): fixed header 0x10, remaining length, protocol name and level,
//! connect flags and keep alive. A PUBLISH (0x30, like an LDAP SEQUENCE) is never first.

use super::parse::{be16, byte, ensure, literal, one_of, verdict, Stop};
use super::Verdict;

/// MQTT 3.1.1 §2.2.3: the remaining length is at most four bytes, 268,435,455.
const MAX_LENGTH_BYTES: usize = 4;

/// The CONNECT packet at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(connect(buf))
}

fn connect(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, &[0x10])?;
    let (remaining, rest) = remaining_length(rest)?;
    let (name, rest) = one_of(rest, &[b"\x00\x04MQTT", b"\x00\x06MQIsdp"])?;
    let (level, rest) = byte(rest)?;
    // Level 4 is 3.1.1, 5 is 5.0; MQIsdp is 3.1 (level 3).
    ensure(if name == 0 {
        matches!(level, 4 | 5)
    } else {
        level == 3
    })?;
    let (flags, rest) = byte(rest)?;
    let will = flags & 0x04 != 0;
    // §3.1.2.3: reserved bit 0; no will QoS 3; will QoS and retain only with a will.
    ensure(flags & 0x01 == 0 && flags & 0x18 != 0x18)?;
    ensure(will || flags & 0x38 == 0)?;
    // §3.1.2.9 (3.1.1 only): a password needs a user name.
    ensure(level == 5 || flags & 0x80 != 0 || flags & 0x40 == 0)?;
    let (_keep_alive, _) = be16(rest)?;
    // Variable header plus at least the client identifier's length.
    let header = if name == 0 { 10 } else { 12 };
    ensure(remaining >= header + 2)
}

/// §2.2.3 variable byte integer.
fn remaining_length(buf: &[u8]) -> Result<(usize, &[u8]), Stop> {
    let mut value = 0;
    for i in 0..MAX_LENGTH_BYTES {
        let b = *buf.get(i).ok_or(Stop::NeedMore)?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // The shortest encoding only: no trailing zero continuation.
            ensure(i == 0 || b != 0)?;
            return Ok((value, buf.get(i + 1..).unwrap_or_default()));
        }
    }
    Err(Stop::NoMatch)
}
