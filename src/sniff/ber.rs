//! BER (ITU-T X.690 §8.1) tag-length readers for the ASN.1 protocols (LDAP, Kerberos).
//! Definite lengths only: DER for Kerberos and RFC 4511 §5.1 for LDAP forbid the others.

use super::parse::{byte, ensure, take, Stop};

/// Lengths beyond this are not a first message.
const MAX_LEN: usize = 1 << 24;

/// `tag` then a definite length: the length and the bytes after it (not yet the content).
pub(super) fn header(buf: &[u8], tag: u8) -> Result<(usize, &[u8]), Stop> {
    let (found, rest) = byte(buf)?;
    ensure(found == tag)?;
    length(rest)
}

/// X.690 §8.1.3: short form, or 0x81-0x84 then that many big-endian bytes.
fn length(buf: &[u8]) -> Result<(usize, &[u8]), Stop> {
    let (first, rest) = byte(buf)?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7f);
    ensure((1..=4).contains(&n))?;
    let (bytes, rest) = take(rest, n)?;
    // Minimal encoding (DER; LDAP and Kerberos implementations send it).
    ensure(bytes[0] != 0 && (n > 1 || bytes[0] >= 0x80))?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
    ensure(len <= MAX_LEN)?;
    Ok((len, rest))
}

/// A small non-negative INTEGER (tag 0x02, 1 to 4 content bytes): its value.
pub(super) fn small_int(buf: &[u8]) -> Result<(u32, &[u8]), Stop> {
    let (len, rest) = header(buf, 0x02)?;
    ensure((1..=4).contains(&len))?;
    let (bytes, rest) = take(rest, len)?;
    ensure(bytes[0] < 0x80 && (len == 1 || bytes[0] != 0 || bytes[1] >= 0x80))?;
    Ok((
        bytes.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)),
        rest,
    ))
}
