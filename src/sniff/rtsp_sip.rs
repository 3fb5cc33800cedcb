//! RTSP (RFC 2326 §6, RFC 7826 §7) and SIP (RFC 3261 §7.1, §8.1.1) requests: HTTP's
//! request syntax under their own versions. The HTTP sniffer refuses every version but
//! `HTTP/1.x`; these two are told apart from each other by the version, a method of their
//! own and the request URI's scheme, and need the complete header block with its CSeq
//! (mandatory in both).

use super::parse::{ensure, line, one_of, token, verdict, Stop};
use super::Verdict;

/// The longest method in either list (SET_PARAMETER, GET_PARAMETER) is 13 bytes.
const MAX_METHOD: usize = 16;
/// RFC 3261 §20 and RFC 2326 §3.2 set no limit; the detection cap is 16 KiB.
const MAX_URI: usize = 4096;
const MAX_LINE: usize = 4096;
const MAX_FIELDS: usize = 128;

struct Dialect {
    methods: &'static [&'static [u8]],
    /// Request URI starts, lower case; `*` is RTSP's "the server itself".
    uris: &'static [&'static [u8]],
    versions: &'static [&'static [u8]],
}

/// RFC 2326 §10 and RFC 7826 §13 methods.
const RTSP: Dialect = Dialect {
    methods: &[
        b"OPTIONS",
        b"DESCRIBE",
        b"ANNOUNCE",
        b"SETUP",
        b"PLAY",
        b"PAUSE",
        b"TEARDOWN",
        b"GET_PARAMETER",
        b"SET_PARAMETER",
        b"REDIRECT",
        b"RECORD",
        b"PLAY_NOTIFY",
    ],
    uris: &[b"*", b"rtsp://", b"rtsps://", b"rtspu://"],
    versions: &[b"RTSP/1.0", b"RTSP/2.0"],
};

/// RFC 3261 §7.1 and the methods added since (RFC 3262, 3265/6665, 3311, 3428, 3515,
/// 3903, 6086).
const SIP: Dialect = Dialect {
    methods: &[
        b"REGISTER",
        b"INVITE",
        b"ACK",
        b"CANCEL",
        b"BYE",
        b"OPTIONS",
        b"PRACK",
        b"SUBSCRIBE",
        b"NOTIFY",
        b"UPDATE",
        b"MESSAGE",
        b"REFER",
        b"PUBLISH",
        b"INFO",
    ],
    uris: &[b"sip:", b"sips:", b"tel:"],
    versions: &[b"SIP/2.0"],
};

/// An RTSP request at the start of a client's first turn.
pub fn sniff_rtsp(buf: &[u8]) -> Verdict<()> {
    verdict(request(buf, &RTSP))
}

/// A SIP request at the start of a client's first turn.
pub fn sniff_sip(buf: &[u8]) -> Verdict<()> {
    verdict(request(buf, &SIP))
}

fn request(buf: &[u8], dialect: &Dialect) -> Result<(), Stop> {
    let method_byte = |b: u8| b.is_ascii_uppercase() || b == b'_';
    let (method, rest) = token(buf, MAX_METHOD, method_byte, b' ')?;
    ensure(dialect.methods.contains(&method))?;
    let (uri, rest) = token(rest, MAX_URI, |b| b.is_ascii_graphic(), b' ')?;
    let scheme = |start: &&[u8]| {
        uri.get(..start.len())
            .is_some_and(|u| u.eq_ignore_ascii_case(start))
    };
    ensure(dialect.uris.iter().any(scheme))?;
    let (_, rest) = one_of(rest, dialect.versions)?;
    let (after_version, rest) = line(rest, 0)?;
    ensure(after_version.is_empty())?;
    header_fields(rest)
}

/// `name: value` lines up to the empty line; a CSeq field must be among them.
fn header_fields(mut buf: &[u8]) -> Result<(), Stop> {
    let mut cseq = false;
    for _ in 0..=MAX_FIELDS {
        let (field, rest) = line(buf, MAX_LINE)?;
        if field.is_empty() {
            return ensure(cseq);
        }
        let colon = field.iter().position(|&b| b == b':').ok_or(Stop::NoMatch)?;
        let name = field[..colon].trim_ascii_end();
        ensure(!name.is_empty() && !name.contains(&b' ') && name.iter().all(u8::is_ascii_graphic))?;
        cseq |= name.eq_ignore_ascii_case(b"CSeq");
        buf = rest;
    }
    Err(Stop::NoMatch)
}
