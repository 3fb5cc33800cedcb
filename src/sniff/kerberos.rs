//! Kerberos over TCP (RFC 4120 §7.2.2): a four-byte length, then an AS-REQ or TGS-REQ
//! (§5.4.1: `[APPLICATION 10|12] SEQUENCE { pvno [1] INTEGER 5, msg-type [2] INTEGER }`),
//! the message type matching the application tag.

use super::ber::{header, small_int};
use super::parse::{be32, ensure, verdict, Stop};
use super::Verdict;

const AS_REQ: u8 = 10;
const TGS_REQ: u8 = 12;
/// MIT's KDC refuses TCP requests above 1 MiB (MAX_DGRAM_SIZE is far less); a request with
/// every padata stays far below this.
const MAX_LEN: u32 = 1 << 20;

/// The request at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(request(buf))
}

fn request(buf: &[u8]) -> Result<(), Stop> {
    // §7.2.2: the high bit is reserved; below MAX_LEN the first byte is zero.
    ensure(buf.first().copied().unwrap_or(0) == 0)?;
    let (len, rest) = be32(buf)?;
    ensure(len <= MAX_LEN)?;
    let (&app, _) = rest.split_first().ok_or(Stop::NeedMore)?;
    let msg_type = match app {
        0x6a => AS_REQ,
        0x6c => TGS_REQ,
        _ => return Err(Stop::NoMatch),
    };
    let (app_len, body) = header(rest, app)?;
    // The application element fills the record exactly.
    ensure(rest.len() - body.len() + app_len == len as usize)?;
    let (seq_len, fields) = header(body, 0x30)?;
    ensure(body.len() - fields.len() + seq_len == app_len)?;
    let (_, pvno) = header(fields, 0xa1)?;
    let (version, rest) = small_int(pvno)?;
    ensure(version == 5)?;
    let (_, kind) = header(rest, 0xa2)?;
    let (kind, _) = small_int(kind)?;
    ensure(kind == u32::from(msg_type))
}
