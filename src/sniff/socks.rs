//! SOCKS client greetings: a SOCKS4/4a CONNECT or BIND request (the SOCKS 4 protocol and its
//! 4A extension) and a SOCKS5 method-selection message (RFC 1928 §3).

use super::parse::{be16, byte, ensure, take, verdict, Stop};
use super::Verdict;

/// User ids and 4a host names: bounded so a stream of text cannot hold the sniffer.
const MAX_FIELD_LEN: usize = 255;

/// `VN=4 CD=1|2 DSTPORT DSTIP USERID NUL [HOST NUL]`; 4a marks a host name with the
/// destination address 0.0.0.x, x not 0.
pub fn sniff_socks4(buf: &[u8]) -> Verdict<()> {
    verdict(socks4(buf))
}

fn socks4(buf: &[u8]) -> Result<(), Stop> {
    let (version, rest) = byte(buf)?;
    ensure(version == 4)?;
    let (command, rest) = byte(rest)?;
    ensure(command == 1 || command == 2)?;
    let (port, rest) = be16(rest)?;
    ensure(port != 0)?;
    let (ip, rest) = take(rest, 4)?;
    let (_user, rest) = field(rest, |b| (0x20..=0x7e).contains(&b), true)?;
    if ip[..3] == [0, 0, 0] {
        ensure(ip[3] != 0)?;
        let host_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
        field(rest, host_byte, false)?;
    }
    Ok(())
}

/// A NUL-terminated string of `allowed` bytes; `may_be_empty` for the user id.
fn field(buf: &[u8], allowed: fn(u8) -> bool, may_be_empty: bool) -> Result<(&[u8], &[u8]), Stop> {
    for (i, &b) in buf.iter().enumerate().take(MAX_FIELD_LEN + 1) {
        if b == 0 {
            ensure(i > 0 || may_be_empty)?;
            return Ok((&buf[..i], &buf[i + 1..]));
        }
        ensure(allowed(b) && i < MAX_FIELD_LEN)?;
    }
    Err(Stop::NeedMore)
}

/// `VER=5 NMETHODS METHODS...`: at least one method, each assigned by IANA (0x00-0x09) or
/// private (0x80-0xfe), none twice.
pub fn sniff_socks5(buf: &[u8]) -> Verdict<()> {
    verdict(socks5(buf))
}

fn socks5(buf: &[u8]) -> Result<(), Stop> {
    let (version, rest) = byte(buf)?;
    ensure(version == 5)?;
    let (count, rest) = byte(rest)?;
    ensure(count >= 1)?;
    let mut seen = [false; 256];
    for &method in rest.iter().take(usize::from(count)) {
        ensure(method <= 0x09 || (0x80..=0xfe).contains(&method))?;
        ensure(!seen[usize::from(method)])?;
        seen[usize::from(method)] = true;
    }
    take(rest, usize::from(count)).map(drop)
}
