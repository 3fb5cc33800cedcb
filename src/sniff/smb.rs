//! SMB over TCP (MS-SMB2 §2.1, MS-CIFS §2.1.1.2): a session message header (type 0, a
//! 3-byte length; RFC 1002 §4.3.1) around an SMB1 `\xffSMB` NEGOTIATE (MS-CIFS §2.2.4.52)
//! or an SMB2 `\xfeSMB` header (MS-SMB2 §2.2.1) with NEGOTIATE or a later command.

use super::parse::{byte, ensure, one_of, take, verdict, Stop};
use super::Verdict;

const SMB1_NEGOTIATE: u8 = 0x72;
/// MS-SMB2 §2.2.1: the header's StructureSize is always 64.
const SMB2_HEADER_LEN: u16 = 64;
/// MS-SMB2 §2.2.3: the client's first request is NEGOTIATE (0x0000).
const SMB2_NEGOTIATE: u16 = 0;
/// Smallest message: a 32-byte SMB1 header plus word and byte counts.
const MIN_LEN: usize = 35;
/// A NEGOTIATE, with every dialect and negotiate context, stays far below 64 KiB.
const MAX_LEN: usize = 0xffff;

/// The NEGOTIATE request at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(negotiate(buf))
}

fn negotiate(buf: &[u8]) -> Result<(), Stop> {
    let (kind, rest) = byte(buf)?;
    ensure(kind == 0)?;
    // The length's high byte is zero below MAX_LEN: judged before the other two arrive.
    ensure(rest.first().copied().unwrap_or(0) == 0)?;
    let (len, rest) = take(rest, 3)?;
    let len = usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
    ensure((MIN_LEN..=MAX_LEN).contains(&len))?;
    let (dialect, rest) = one_of(rest, &[b"\xffSMB", b"\xfeSMB"])?;
    if dialect == 0 {
        let (command, _) = byte(rest)?;
        return ensure(command == SMB1_NEGOTIATE);
    }
    let (fixed, _) = take(rest, 10)?;
    let structure_size = u16::from_le_bytes([fixed[0], fixed[1]]);
    let command = u16::from_le_bytes([fixed[8], fixed[9]]);
    ensure(structure_size == SMB2_HEADER_LEN && command == SMB2_NEGOTIATE)
}
