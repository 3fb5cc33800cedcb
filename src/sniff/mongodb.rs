//! MongoDB wire protocol, a driver's first message (MongoDB Wire Protocol: "Standard
//! Message Header", OP_QUERY and OP_MSG): a little-endian header with responseTo 0, then
//! either a legacy OP_QUERY on `<db>.$cmd` or an OP_MSG with a body section, and the first
//! BSON document whole and well-formed at its edges.

use super::parse::{byte, ensure, le32, take, verdict, Stop};
use super::Verdict;

const OP_QUERY: u32 = 2004;
const OP_MSG: u32 = 2013;
const HEADER_LEN: usize = 16;
/// A hello/isMaster with its client metadata is under 1 KiB; the server's limit on a
/// message is 48 MB.
const MAX_LEN: u32 = 48_000_000;
/// OP_QUERY flags: bit 0 and bits 8-31 are reserved.
const QUERY_FLAGS: u32 = 0xfe;
/// OP_MSG flagBits: checksumPresent, moreToCome, exhaustAllowed; other bits 0-15 must be 0.
const MSG_REQUIRED_BITS: u32 = 0xffff;
const MSG_FLAGS: u32 = 0x0001_0003;
/// "<db>.<collection>" names are at most 255 bytes.
const MAX_NAMESPACE: usize = 255;
/// Smallest BSON document: its length and the terminating zero.
const MIN_DOC_LEN: u32 = 5;

/// The first message of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(message(buf))
}

fn message(buf: &[u8]) -> Result<(), Stop> {
    let (len, rest) = le32(buf)?;
    ensure((HEADER_LEN as u32 + MIN_DOC_LEN..=MAX_LEN).contains(&len))?;
    let (_request_id, rest) = le32(rest)?;
    let (response_to, rest) = le32(rest)?;
    ensure(response_to == 0)?;
    let (op, rest) = le32(rest)?;
    let body_len = len as usize - HEADER_LEN;
    let doc = match op {
        OP_QUERY => {
            let (flags, rest) = le32(rest)?;
            ensure(flags & !QUERY_FLAGS == 0)?;
            let (namespace, rest) = cstring(rest, MAX_NAMESPACE)?;
            ensure(namespace.contains(&b'.') && namespace.iter().all(u8::is_ascii_graphic))?;
            // numberToSkip, numberToReturn.
            take(rest, 8)?.1
        }
        OP_MSG => {
            let (flags, rest) = le32(rest)?;
            ensure(flags & MSG_REQUIRED_BITS & !MSG_FLAGS == 0)?;
            let (kind, rest) = byte(rest)?;
            ensure(kind == 0)?;
            rest
        }
        _ => return Err(Stop::NoMatch),
    };
    let doc_offset = buf.len() - doc.len() - HEADER_LEN;
    document(doc, body_len.checked_sub(doc_offset).ok_or(Stop::NoMatch)?)
}

/// A BSON document of at most `room` bytes: its length, a first element with a known type
/// and a printable name, and the terminating zero.
fn document(buf: &[u8], room: usize) -> Result<(), Stop> {
    let (len, rest) = le32(buf)?;
    ensure(len >= MIN_DOC_LEN && len as usize <= room)?;
    let (doc, _) = take(buf, len as usize)?;
    ensure(doc.last() == Some(&0))?;
    let (kind, rest) = byte(rest)?;
    if kind == 0 {
        return ensure(len == MIN_DOC_LEN);
    }
    // BSON spec element types 0x01-0x13, min key 0xff, max key 0x7f.
    ensure(matches!(kind, 0x01..=0x13 | 0x7f | 0xff))?;
    let (name, _) = cstring(rest, len as usize)?;
    ensure(!name.is_empty() && name.iter().all(u8::is_ascii_graphic))
}

/// A NUL-terminated string of at most `max` bytes, and the bytes after its NUL.
fn cstring(buf: &[u8], max: usize) -> Result<(&[u8], &[u8]), Stop> {
    match buf.iter().take(max + 1).position(|&b| b == 0) {
        Some(end) => Ok((&buf[..end], &buf[end + 1..])),
        None if buf.len() > max => Err(Stop::NoMatch),
        None => Err(Stop::NeedMore),
    }
}
