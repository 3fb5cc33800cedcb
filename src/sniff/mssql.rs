//! Microsoft SQL Server's first client message: a TDS PRELOGIN packet (MS-TDS §2.2.6.5)
//! in one TDS packet (§2.2.3.1): type 0x12, end of message, SPID 0, window 0, then option
//! tokens (token, offset, length) ended by 0xFF, VERSION first, each pointing inside the
//! packet past the token table.

use super::parse::{be16, byte, ensure, literal, take, verdict, Stop};
use super::Verdict;

const PRELOGIN: u8 = 0x12;
/// Status: end of message, nothing else.
const STATUS_EOM: u8 = 0x01;
const HEADER_LEN: usize = 8;
/// Before login the packet size is at most 4096 bytes (§2.2.6.4 PacketSize default).
const MAX_LEN: u16 = 4096;
/// VERSION (0) to NONCEOPT (7) and the option numbers kept for later ones up to 0x0f.
const MAX_TOKEN: u8 = 0x0f;
const TERMINATOR: u8 = 0xff;
/// §2.2.6.5: VERSION is a 4-byte version and a 2-byte sub-build.
const VERSION_LEN: u16 = 6;

/// The PRELOGIN packet at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(prelogin(buf))
}

fn prelogin(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, &[PRELOGIN, STATUS_EOM])?;
    let (len, rest) = be16(rest)?;
    ensure((HEADER_LEN as u16 + 1..=MAX_LEN).contains(&len))?;
    // SPID 0; packet id 1 by the spec, 0 from some clients (FreeTDS); window 0.
    let rest = literal(rest, &[0, 0])?;
    let (packet_id, rest) = byte(rest)?;
    ensure(packet_id <= 1)?;
    let rest = literal(rest, &[0])?;
    let (payload, _) = take(rest, usize::from(len) - HEADER_LEN)?;
    options(payload)
}

/// The token table, checked against the complete payload.
fn options(payload: &[u8]) -> Result<(), Stop> {
    let table_len = payload
        .iter()
        .step_by(5)
        .position(|&t| t == TERMINATOR)
        .ok_or(Stop::NoMatch)?
        * 5;
    let mut rest = payload;
    let mut first = true;
    while rest.len() > payload.len() - table_len {
        let (token, after) = byte(rest)?;
        let (offset, after) = be16(after)?;
        let (len, after) = be16(after)?;
        ensure(token <= MAX_TOKEN && (!first || (token == 0 && len == VERSION_LEN)))?;
        let end = usize::from(offset) + usize::from(len);
        ensure(usize::from(offset) > table_len && end <= payload.len())?;
        first = false;
        rest = after;
    }
    ensure(!first)
}
