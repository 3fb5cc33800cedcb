//! DNS over TCP (RFC 1035 §4.2.2): a two-byte length, then a query message (§4.1).
//!
//! The header must be a standard query (QR 0, opcode QUERY, TC 0, Z 0, RCODE 0) asking one
//! question with no answer or authority records and at most two additional ones (EDNS OPT,
//! TSIG); the question name must be well-formed labels inside the announced length.

use super::parse::{be16, byte, ensure, take, verdict, Stop};
use super::Verdict;

/// RFC 1035 §4.1.1 header size.
const HEADER_LEN: usize = 12;
/// RFC 1035 §2.3.4: a name is at most 255 octets, a label at most 63.
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: u8 = 63;

/// A query at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(query(buf))
}

fn query(buf: &[u8]) -> Result<(), Stop> {
    let (len, rest) = be16(buf)?;
    let len = usize::from(len);
    ensure(len >= HEADER_LEN + 1 + 4)?;
    let (_id, rest) = be16(rest)?;
    let (flags, rest) = be16(rest)?;
    // QR(15)=0, opcode(14..11)=0, AA(10)=0, TC(9)=0, Z(6)=0, RCODE(3..0)=0; RD, RA, AD, CD free.
    ensure(flags & 0xfe4f == 0)?;
    let (counts, rest) = take(rest, 8)?;
    let count = |i: usize| u16::from_be_bytes([counts[i], counts[i + 1]]);
    ensure(count(0) == 1 && count(2) == 0 && count(4) == 0 && count(6) <= 2)?;
    let mut rest = rest;
    let mut name_len = 0;
    loop {
        let (label, after) = byte(rest)?;
        ensure(label <= MAX_LABEL_LEN)?;
        name_len += 1 + usize::from(label);
        ensure(name_len <= MAX_NAME_LEN && HEADER_LEN + name_len + 4 <= len)?;
        let (_, after) = take(after, usize::from(label))?;
        rest = after;
        if label == 0 {
            break;
        }
    }
    let (qtype, rest) = be16(rest)?;
    let (qclass, _) = be16(rest)?;
    // RFC 1035 §3.2.2-3.2.5, RFC 6895: type 0 is reserved; classes IN, CH, HS, NONE, ANY.
    ensure(qtype != 0 && matches!(qclass, 1 | 3 | 4 | 254 | 255))
}
