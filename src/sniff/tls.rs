//! TLS ClientHello sniffer: reassembles the hello across records, then parses it with tls-parser.
//!
//! The record layer (RFC 8446 §5.1) may split one handshake message over many records, down
//! to one byte each; tls-parser parses a whole handshake message but does not reassemble, so
//! this module walks the record headers itself. The walk only reads headers, so answering
//! `NeedMore` costs nothing but the walk, however often the driver asks.

use std::borrow::Cow;

use tls_parser::parse_tls_handshake_client_hello;

use super::ja4::{self, Ja4Input};
use super::{parse, Verdict};

/// What a ClientHello tells about the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsHello {
    /// SNI host name (RFC 6066 §3), lowercased; for ECH, the outer SNI.
    pub server_name: Option<String>,
    /// ALPN protocol names in the client's order (RFC 7301).
    pub alpn: Vec<String>,
    /// Highest version offered: supported_versions (RFC 8446 §4.2.1) or legacy_version.
    pub version: u16,
    /// The ClientHello's legacy_version field (RFC 8446 §4.1.2), 0x0303 for TLS 1.3 clients.
    pub legacy_version: u16,
    /// JA4 fingerprint (FoxIO JA4 spec).
    pub ja4: String,
    /// The ClientHello carries an encrypted_client_hello extension (0xfe0d).
    pub ech: bool,
}

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER_LEN: usize = 5;
/// RFC 8446 §5.1: a plaintext record carries at most 2^14 bytes.
const MAX_RECORD_LEN: usize = 1 << 14;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Smallest ClientHello body: version, random, empty session id, one cipher suite, one
/// compression method, no extensions.
const MIN_HELLO_BODY_LEN: usize = 2 + 32 + 1 + (2 + 2) + (1 + 1);
/// Largest ClientHello body the length fields allow: every vector at its maximum.
const MAX_HELLO_BODY_LEN: usize = 2 + 32 + (1 + 32) + (2 + 65534) + (1 + 255) + (2 + 65535);

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;

/// Identifies a TLS ClientHello (RFC 8446 §4.1.2) at the start of `buf`.
///
/// `Match` once the whole hello has arrived, whatever the records after it hold; `NoMatch`
/// on the first byte a client's first flight cannot contain.
pub fn sniff(buf: &[u8]) -> Verdict<TlsHello> {
    match walk_records(buf) {
        Walk::NeedMore => Verdict::NeedMore,
        Walk::NoMatch => Verdict::NoMatch,
        Walk::Complete { msg_len } => match parse_hello(&reassemble(buf, msg_len)) {
            Some(hello) => Verdict::Match(hello),
            None => Verdict::NoMatch,
        },
    }
}

/// How far the record walk got.
enum Walk {
    NeedMore,
    NoMatch,
    /// The first `msg_len` bytes of the handshake stream (header included) are present.
    Complete {
        msg_len: usize,
    },
}

/// Walks the record headers, checking each byte as soon as it is present, until the whole
/// ClientHello message has been seen. Copies nothing.
fn walk_records(buf: &[u8]) -> Walk {
    let mut pos = 0;
    // The first bytes of the handshake stream: type, 24-bit length, legacy_version major.
    let mut prefix = [0u8; HANDSHAKE_HEADER_LEN + 1];
    let mut seen = 0usize;
    loop {
        let record = buf.get(pos..).unwrap_or_default();
        match check_record_header(record) {
            Header::NeedMore => return Walk::NeedMore,
            Header::NoMatch => return Walk::NoMatch,
            Header::Len(len) => {
                let end = (RECORD_HEADER_LEN + len).min(record.len());
                let payload = record.get(RECORD_HEADER_LEN..end).unwrap_or_default();
                for (slot, &b) in prefix.iter_mut().skip(seen).zip(payload) {
                    *slot = b;
                }
                seen += payload.len();
                let msg_len = match check_handshake_prefix(&prefix[..seen.min(prefix.len())]) {
                    Prefix::NoMatch => return Walk::NoMatch,
                    Prefix::NeedMore => None,
                    Prefix::MsgLen(n) => Some(n),
                };
                if let Some(msg_len) = msg_len.filter(|&n| seen >= n) {
                    return Walk::Complete { msg_len };
                }
                if payload.len() < len {
                    return Walk::NeedMore;
                }
                pos += RECORD_HEADER_LEN + len;
            }
        }
    }
}

enum Header {
    NeedMore,
    NoMatch,
    Len(usize),
}

/// RFC 8446 §5.1 record header: handshake content type, version 3.x (SSL 3.0 to the TLS 1.2
/// value TLS 1.3 freezes it at), length 1..=2^14.
fn check_record_header(h: &[u8]) -> Header {
    let ok = h.first().is_some_and(|&t| t == CONTENT_TYPE_HANDSHAKE)
        && h.get(1).map_or(true, |&major| major == 3)
        && h.get(2).map_or(true, |&minor| minor <= 3)
        && h.get(3)
            .map_or(true, |&hi| usize::from(hi) << 8 <= MAX_RECORD_LEN);
    if h.is_empty() {
        return Header::NeedMore;
    }
    if !ok {
        return Header::NoMatch;
    }
    match record_len(h) {
        None => Header::NeedMore,
        Some(len) if (1..=MAX_RECORD_LEN).contains(&len) => Header::Len(len),
        Some(_) => Header::NoMatch,
    }
}

/// The length field of the record header at the start of `h`, once both bytes are present.
fn record_len(h: &[u8]) -> Option<usize> {
    match h.get(3..RECORD_HEADER_LEN) {
        Some(&[hi, lo]) => Some(usize::from(u16::from_be_bytes([hi, lo]))),
        _ => None,
    }
}

enum Prefix {
    NeedMore,
    NoMatch,
    /// Length of the whole handshake message, header included.
    MsgLen(usize),
}

/// RFC 8446 §4: the first handshake message must be a ClientHello of a plausible length
/// whose legacy_version starts with 3.
fn check_handshake_prefix(p: &[u8]) -> Prefix {
    if p.first().is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO)
        || p.get(HANDSHAKE_HEADER_LEN).is_some_and(|&major| major != 3)
    {
        return Prefix::NoMatch;
    }
    let Some(&[a, b, c]) = p.get(1..HANDSHAKE_HEADER_LEN) else {
        return Prefix::NeedMore;
    };
    let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if (MIN_HELLO_BODY_LEN..=MAX_HELLO_BODY_LEN).contains(&body_len) {
        Prefix::MsgLen(HANDSHAKE_HEADER_LEN + body_len)
    } else {
        Prefix::NoMatch
    }
}

/// The first `msg_len` bytes of the handshake stream: borrowed when one record holds them
/// (the usual case), copied out of the records otherwise. The walk has checked the headers.
fn reassemble(buf: &[u8], msg_len: usize) -> Cow<'_, [u8]> {
    if record_len(buf).is_some_and(|len| len >= msg_len) {
        let end = RECORD_HEADER_LEN + msg_len;
        return Cow::Borrowed(buf.get(RECORD_HEADER_LEN..end).unwrap_or_default());
    }
    let mut msg = Vec::with_capacity(msg_len);
    let mut rest = buf;
    while let Some(len) = record_len(rest).filter(|_| msg.len() < msg_len) {
        let end = (RECORD_HEADER_LEN + len).min(rest.len());
        msg.extend_from_slice(rest.get(RECORD_HEADER_LEN..end).unwrap_or_default());
        rest = rest.get(end..).unwrap_or_default();
    }
    msg.truncate(msg_len);
    Cow::Owned(msg)
}

/// Parses a complete ClientHello handshake message (header included). `None` when it is
/// malformed: trailing bytes, a truncated or duplicated extension, or an unreadable SNI,
/// ALPN, supported_versions or signature_algorithms extension.
///
/// tls-parser parses the hello; the four extensions read here are walked in place, as
/// tls-parser reads them, so that nothing is allocated but the answer.
fn parse_hello(msg: &[u8]) -> Option<TlsHello> {
    let body = msg.get(HANDSHAKE_HEADER_LEN..)?;
    let (rest, hello) = parse_tls_handshake_client_hello(body).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let mut exts = Extensions::walk(hello.ext.unwrap_or_default())?;
    // RFC 8446 §4.2: at most one extension of each type. A second SNI is how a hello
    // would show the gateway one name and the server another.
    if has_duplicates(exts.types.as_mut_slice()) {
        return None;
    }
    let name = exts.server_name.map(sni_host_name).transpose().ok()?;
    let server_name = match name.flatten() {
        Some(name) => Some(host_name(name)?),
        None => None,
    };
    let alpn = exts.alpn.map(alpn_names).transpose().ok()?;
    let first_alpn = alpn.clone().and_then(|mut names| names.next());
    let alpn = alpn
        .into_iter()
        .flatten()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let offered = exts
        .supported_versions
        .map(highest_version)
        .transpose()
        .ok()?;
    let signature_algorithms = match exts.signature_algorithms {
        Some(data) => len16(data)?.0,
        None => &[],
    };
    let legacy_version = hello.version.0;
    let version = offered.flatten().unwrap_or(legacy_version);
    // Same layout: the collect reuses tls-parser's vector in place.
    let mut ciphers: Vec<u16> = hello.ciphers.into_iter().map(|c| c.0).collect();
    let ja4 = ja4::fingerprint(Ja4Input {
        version,
        sni: exts.server_name.is_some(),
        ciphers: &mut ciphers,
        extensions: exts.types.as_mut_slice(),
        first_alpn,
        signature_algorithms,
    });
    Some(TlsHello {
        server_name,
        alpn,
        version,
        legacy_version,
        ja4,
        ech: exts.ech,
    })
}

/// The extensions a ClientHello carries (RFC 8446 §4.2): every type, and the raw data of the
/// four the sniffer reads.
struct Extensions<'a> {
    /// Every extension type but GREASE, in the client's order.
    types: U16List<64>,
    server_name: Option<&'a [u8]>,
    alpn: Option<&'a [u8]>,
    supported_versions: Option<&'a [u8]>,
    signature_algorithms: Option<&'a [u8]>,
    ech: bool,
}

impl<'a> Extensions<'a> {
    /// Walks the extension block; `None` when an extension is truncated. For a type that
    /// occurs twice the last one is kept (the hello is refused for the duplicate anyway).
    fn walk(mut block: &'a [u8]) -> Option<Extensions<'a>> {
        let mut out = Extensions {
            types: U16List::new(),
            server_name: None,
            alpn: None,
            supported_versions: None,
            signature_algorithms: None,
            ech: false,
        };
        while !block.is_empty() {
            let (ty, rest) = parse::be16(block).ok()?;
            let (data, rest) = len16(rest)?;
            block = rest;
            if ja4::is_grease(ty) {
                continue;
            }
            out.types.push(ty);
            let slot = match ty {
                EXT_SERVER_NAME => &mut out.server_name,
                EXT_ALPN => &mut out.alpn,
                EXT_SUPPORTED_VERSIONS => &mut out.supported_versions,
                EXT_SIGNATURE_ALGORITHMS => &mut out.signature_algorithms,
                EXT_ENCRYPTED_CLIENT_HELLO => {
                    out.ech = true;
                    continue;
                }
                _ => continue,
            };
            *slot = Some(data);
        }
        Some(out)
    }
}

/// An extension no ClientHello can carry: the hello is refused.
pub(super) struct Malformed;

/// A vector with a 16-bit length (RFC 8446 §3.4) and the bytes after it.
pub(super) fn len16(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = parse::be16(buf).ok()?;
    parse::take(rest, usize::from(len)).ok()
}

/// The first host_name of a server_name extension (RFC 6066 §3), read as tls-parser reads
/// it: entries are read until one does not fit in the list; an empty extension names nothing.
/// `Malformed` when the list itself is truncated.
pub(super) fn sni_host_name(data: &[u8]) -> Result<Option<&[u8]>, Malformed> {
    if data.is_empty() {
        return Ok(None);
    }
    let (mut list, _) = len16(data).ok_or(Malformed)?;
    while let Some((&name_type, rest)) = list.split_first() {
        let Some((name, rest)) = len16(rest) else {
            break;
        };
        if name_type == 0 {
            return Ok(Some(name));
        }
        list = rest;
    }
    Ok(None)
}

/// ALPN protocol names (RFC 7301 §3.1), read as tls-parser reads them: names are read until
/// one does not fit in the list. `Malformed` when the list itself is truncated.
pub(super) fn alpn_names(data: &[u8]) -> Result<impl Iterator<Item = &[u8]> + Clone, Malformed> {
    let (mut rest, _) = len16(data).ok_or(Malformed)?;
    Ok(std::iter::from_fn(move || {
        let (&len, after) = rest.split_first()?;
        let (name, after) = parse::take(after, usize::from(len)).ok()?;
        rest = after;
        Some(name)
    }))
}

/// The highest version but GREASE in a supported_versions extension (RFC 8446 §4.2.1), read
/// as tls-parser reads it: two bytes are one version (the ServerHello form); otherwise a
/// length byte (not checked) and a list that must not end in half a version.
pub(super) fn highest_version(data: &[u8]) -> Result<Option<u16>, Malformed> {
    let list = match data {
        [] => return Err(Malformed),
        [_, _] => data,
        [_, list @ ..] => list,
    };
    if list.len() % 2 == 1 {
        return Err(Malformed);
    }
    Ok(ja4::be16s(list).filter(|&v| !ja4::is_grease(v)).max())
}

/// Up to `N` values on the stack; past that (no real hello comes near, but the length fields
/// allow thousands) on the heap.
struct U16List<const N: usize> {
    inline: [u16; N],
    len: usize,
    heap: Vec<u16>,
}

impl<const N: usize> U16List<N> {
    fn new() -> Self {
        U16List {
            inline: [0; N],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn push(&mut self, v: u16) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = v;
            self.len += 1;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.inline);
            }
            self.heap.push(v);
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u16] {
        if self.heap.is_empty() {
            self.inline.get_mut(..self.len).unwrap_or_default()
        } else {
            &mut self.heap
        }
    }
}

/// Whether a value occurs twice. Sorts `values` to find out: JA4 wants them sorted anyway.
pub(super) fn has_duplicates(values: &mut [u16]) -> bool {
    values.sort_unstable();
    values.windows(2).any(|w| w.first() == w.get(1))
}

/// RFC 6066 §3: a host name is ASCII, without a trailing NUL or control bytes; anything else
/// is not a name a server would accept, so the hello is refused rather than misread.
fn host_name(raw: &[u8]) -> Option<String> {
    if raw.is_empty() || !raw.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let name = std::str::from_utf8(raw).ok()?;
    Some(name.to_ascii_lowercase())
}
