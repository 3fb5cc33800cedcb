//! LDAP request (RFC 4511 §4.1.1, §4.2, §4.5.1, §4.12): an LDAPMessage SEQUENCE with a
//! messageID and a BindRequest, SearchRequest or ExtendedRequest (StartTLS), checked field
//! by field: a 0x30 byte alone is also how an MQTT PUBLISH or any DER blob starts.

use super::ber::{header, small_int};
use super::parse::{byte, ensure, verdict, Stop};
use super::Verdict;

const BIND_REQUEST: u8 = 0x60;
const SEARCH_REQUEST: u8 = 0x63;
const EXTENDED_REQUEST: u8 = 0x77;
/// Slapd's default sb_max_incoming for an anonymous session is 256 KiB.
const MAX_MESSAGE_LEN: usize = 256 * 1024;

/// The first request of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(message(buf))
}

fn message(buf: &[u8]) -> Result<(), Stop> {
    let (len, rest) = header(buf, 0x30)?;
    ensure(len <= MAX_MESSAGE_LEN)?;
    let end = buf.len() - rest.len() + len;
    let (id, rest) = small_int(rest)?;
    // §4.1.1.1: messageID 0 is reserved for unsolicited notifications.
    ensure(id != 0)?;
    let (&op, _) = rest.split_first().ok_or(Stop::NeedMore)?;
    let (op_len, body) = match op {
        BIND_REQUEST | SEARCH_REQUEST | EXTENDED_REQUEST => header(rest, op)?,
        _ => return Err(Stop::NoMatch),
    };
    // The operation lies inside the message.
    ensure(buf.len() - body.len() + op_len == end)?;
    match op {
        BIND_REQUEST => {
            // version INTEGER (1..127, 3 today), name LDAPDN, then simple [0] or SASL [3].
            let (version, rest) = small_int(body)?;
            ensure((1..=3).contains(&version))?;
            let (name_len, rest) = header(rest, 0x04)?;
            let rest = rest.get(name_len..).ok_or(Stop::NeedMore)?;
            let (auth, _) = byte(rest)?;
            ensure(auth == 0x80 || auth == 0xa3)
        }
        SEARCH_REQUEST => {
            // baseObject LDAPDN, scope ENUMERATED (0..2), derefAliases ENUMERATED (0..3).
            let (base_len, rest) = header(body, 0x04)?;
            let rest = rest.get(base_len..).ok_or(Stop::NeedMore)?;
            let (scope, rest) = enumerated(rest)?;
            let (deref, _) = enumerated(rest)?;
            ensure(scope <= 2 && deref <= 3)
        }
        _ => {
            // requestName [0] LDAPOID: digits and dots.
            let (name_len, rest) = header(body, 0x80)?;
            let name = rest.get(..name_len).ok_or(Stop::NeedMore)?;
            ensure(name_len > 0 && name.iter().all(|&b| b.is_ascii_digit() || b == b'.'))
        }
    }
}

fn enumerated(buf: &[u8]) -> Result<(u8, &[u8]), Stop> {
    let (len, rest) = header(buf, 0x0a)?;
    ensure(len == 1)?;
    byte(rest)
}
