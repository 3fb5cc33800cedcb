//! DCE/RPC over TCP (connection-oriented, C706 §12.6.3.1 and §12.6.4.3, MS-RPCE §2.2.2):
//! a bind PDU, version 5.0 or 5.1, first fragment, a valid data representation, and a
//! presentation context list that fills the fragment exactly (with the auth verifier its
//! header announces).

use super::parse::{byte, ensure, literal, take, verdict, Stop};
use super::Verdict;

const BIND: u8 = 11;
const PFC_FIRST_FRAG: u8 = 0x01;
const HEADER_LEN: usize = 16;
/// max_xmit_frag, max_recv_frag, assoc_group_id, n_context_elem and its padding.
const BIND_FIXED_LEN: usize = 12;
/// An interface or transfer syntax: UUID and version.
const SYNTAX_LEN: usize = 20;
/// §13.2.6.1 sec_trailer before the auth value.
const SEC_TRAILER_LEN: usize = 8;

/// The bind PDU at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(bind(buf))
}

fn bind(buf: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, &[5])?;
    let (minor, rest) = byte(rest)?;
    ensure(minor <= 1)?;
    let rest = literal(rest, &[BIND])?;
    let (flags, rest) = byte(rest)?;
    ensure(flags & PFC_FIRST_FRAG != 0)?;
    // §14.1 NDR format label: integer order (0 big, 1 little) and character set (0 ASCII,
    // 1 EBCDIC) in the first byte, floating point (0-3) in the second, then two zeros.
    let (drep, rest) = take(rest, 4)?;
    ensure(matches!(drep[0], 0x00 | 0x01 | 0x10 | 0x11) && drep[1] <= 3)?;
    ensure(drep[2] == 0 && drep[3] == 0)?;
    let little = drep[0] & 0x10 != 0;
    let u16_at = |b: [u8; 2]| {
        usize::from(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let (lengths, rest) = take(rest, 4)?;
    let frag_len = u16_at([lengths[0], lengths[1]]);
    let auth_len = u16_at([lengths[2], lengths[3]]);
    let (_call_id, rest) = take(rest, 4)?;
    let (fixed, rest) = take(rest, BIND_FIXED_LEN)?;
    let contexts = usize::from(fixed[8]);
    ensure(contexts > 0)?;
    let mut rest = rest;
    let mut end = HEADER_LEN + BIND_FIXED_LEN;
    for _ in 0..contexts {
        // p_cont_id, n_transfer_syn and a reserved byte, the abstract syntax, transfers.
        let (head, after) = take(rest, 4)?;
        let transfers = usize::from(head[2]);
        ensure(transfers > 0)?;
        let element = SYNTAX_LEN * (1 + transfers);
        end += 4 + element;
        ensure(end <= frag_len)?;
        rest = take(after, element)?.1;
    }
    if auth_len == 0 {
        return ensure(end == frag_len);
    }
    // §12.6.3: the verifier may follow up to 15 bytes of alignment padding.
    let pad = frag_len.checked_sub(end + SEC_TRAILER_LEN + auth_len);
    ensure(pad.is_some_and(|p| p < 16))
}
