//! RDP connection request (MS-RDPBCGR §2.2.1.1): a TPKT header (RFC 1006 §6), an X.224
//! Connection Request TPDU (ITU-T X.224 §13.3), then RDP's own variable part: a
//! `Cookie: mstshash=` line or a routing token, and/or an RDP_NEG_REQ.
//!
//! TPKT and X.224 alone are also how ISO-on-TCP protocols such as S7comm open; those carry
//! X.224 parameters (0xc0-0xc2) where RDP carries its cookie or negotiation request, so an
//! empty or parameter-only variable part is not RDP.

use super::parse::{be16, byte, ensure, line, literal, take, verdict, Stop};
use super::Verdict;

/// TPKT header plus the fixed part of a Connection Request.
const HEADER_LEN: usize = 4 + 7;
/// A connection request with a long routing token stays far below this.
const MAX_LEN: u16 = 1024;
/// MS-RDPBCGR §2.2.1.1.1: RDP_NEG_REQ is type 1, length 8.
const NEG_REQ: [u8; 4] = [0x01, 0x00, 0x08, 0x00];
const NEG_REQ_LEN: usize = 8;
/// MS-RDPBCGR §2.2.1.1.2: type 6, flags 0, length 36, then a 16-byte id and 16 reserved.
const CORRELATION_INFO: [u8; 4] = [0x06, 0x00, 0x24, 0x00];
/// The cookie and routing token lines end in CR LF and stay short.
const MAX_TOKEN_LINE: usize = 512;

/// The Connection Request at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(connection_request(buf))
}

fn connection_request(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, &[3, 0])?;
    let (len, rest) = be16(rest)?;
    ensure((HEADER_LEN as u16..=MAX_LEN).contains(&len))?;
    let len = usize::from(len);
    // X.224 §13.3: length indicator (the TPDU without itself), CR code 0xE0 with credit 0,
    // DST-REF 0, SRC-REF, class 0 without options.
    let (li, rest) = byte(rest)?;
    ensure(usize::from(li) == len - 5)?;
    let rest = literal(rest, &[0xe0, 0, 0])?;
    let (_src_ref, rest) = take(rest, 2)?;
    let rest = literal(rest, &[0])?;
    let (variable, _) = take(rest, len - HEADER_LEN)?;
    // The TPDU is complete: whatever its variable part lacks is missing, not yet to come.
    variable_part(variable).map_err(|_| Stop::NoMatch)
}

/// A cookie or routing token line, an RDP_NEG_REQ, or both, filling `variable` exactly.
fn variable_part(variable: &[u8]) -> Result<(), Stop> {
    ensure(!variable.is_empty())?;
    let after_token = match literal(variable, b"Cookie: ") {
        Ok(cookie) => line(cookie, MAX_TOKEN_LINE)?.1,
        Err(_) => variable,
    };
    if after_token.is_empty() {
        // A cookie or routing token alone (clients before RDP 5.2 send no RDP_NEG_REQ).
        return ensure(after_token.len() < variable.len());
    }
    neg_req(after_token)
}

/// RDP_NEG_REQ (§2.2.1.1.1), then the RDP_NEG_CORRELATION_INFO (§2.2.1.1.2) its flags
/// announce, and nothing else.
fn neg_req(buf: &[u8]) -> Result<(), Stop> {
    let (fixed, rest) = take(buf, NEG_REQ_LEN)?;
    // Flags: restricted admin 0x01, redirected authentication 0x02, correlation info 0x08.
    let flags = fixed[1];
    ensure(fixed[0] == NEG_REQ[0] && flags & !0x0b == 0 && fixed[2..4] == NEG_REQ[2..4])?;
    // Requested protocols: SSL, HYBRID, RDSTLS, HYBRID_EX, RDSAAD.
    let protocols = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    ensure(protocols & !0x1f == 0)?;
    if flags & 0x08 == 0 {
        return ensure(rest.is_empty());
    }
    ensure(rest.len() == CORRELATION_INFO.len() + 32 && rest.starts_with(&CORRELATION_INFO))
}
