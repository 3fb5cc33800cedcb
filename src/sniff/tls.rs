//! TLS ClientHello sniffer: reassembles the hello across records, then parses it with tls-parser.
//!
//! The record layer (RFC 8446 §5.1) may split one handshake message over many records, down
//! to one byte each; tls-parser parses a whole handshake message but does not reassemble, so
//! this module walks the record headers itself. The walk only reads headers, so answering
//! `NeedMore` costs nothing but the walk, however often the driver asks.

use std::borrow::Cow;

use tls_parser::{parse_tls_client_hello_extension, parse_tls_handshake_client_hello};
use tls_parser::{SNIType, TlsExtension};

use super::ja4::{self, Ja4Input};
use super::Verdict;

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
fn parse_hello(msg: &[u8]) -> Option<TlsHello> {
    let body = msg.get(HANDSHAKE_HEADER_LEN..)?;
    let (rest, hello) = parse_tls_handshake_client_hello(body).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = TlsHello {
        legacy_version: hello.version.0,
        ..TlsHello::default()
    };
    let mut sni_present = false;
    let mut first_alpn: Option<&[u8]> = None;
    let mut supported_versions: Option<Vec<u16>> = None;
    let mut sig_algs: Vec<u16> = Vec::new();
    let mut exts = hello.ext.unwrap_or_default();
    // Each extension takes at least 4 bytes.
    let mut ext_types: Vec<u16> = Vec::with_capacity(exts.len() / 4);
    while !exts.is_empty() {
        let (ty, len) = match exts {
            [t0, t1, l0, l1, ..] => (
                u16::from_be_bytes([*t0, *t1]),
                usize::from(u16::from_be_bytes([*l0, *l1])),
            ),
            _ => return None,
        };
        let (one, rest) = exts.split_at_checked(4 + len)?;
        exts = rest;
        if !ja4::is_grease(ty) {
            ext_types.push(ty);
        }
        if !matches!(
            ty,
            EXT_SERVER_NAME | EXT_ALPN | EXT_SUPPORTED_VERSIONS | EXT_SIGNATURE_ALGORITHMS
        ) {
            out.ech |= ty == EXT_ENCRYPTED_CLIENT_HELLO;
            continue;
        }
        let (_, parsed) = parse_tls_client_hello_extension(one).ok()?;
        match parsed {
            TlsExtension::SNI(names) => {
                sni_present = true;
                let name = names.iter().find(|(t, _)| *t == SNIType::HostName);
                out.server_name = match name {
                    Some((_, name)) => Some(host_name(name)?),
                    None => None,
                };
            }
            TlsExtension::ALPN(protocols) => {
                first_alpn = protocols.first().copied();
                out.alpn = protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            TlsExtension::SupportedVersions(versions) => {
                supported_versions = Some(versions.iter().map(|v| v.0).collect());
            }
            TlsExtension::SignatureAlgorithms(algs) => sig_algs = algs,
            _ => return None,
        }
    }
    // RFC 8446 §4.2: at most one extension of each type. A second SNI is how a hello
    // would show the gateway one name and the server another.
    if has_duplicates(&ext_types) {
        return None;
    }
    let offered = supported_versions
        .iter()
        .flatten()
        .copied()
        .filter(|&v| !ja4::is_grease(v))
        .max();
    out.version = offered.unwrap_or(out.legacy_version);
    let ciphers: Vec<u16> = hello.ciphers.iter().map(|c| c.0).collect();
    out.ja4 = ja4::fingerprint(&Ja4Input {
        version: out.version,
        sni: sni_present,
        ciphers: &ciphers,
        extensions: &ext_types,
        first_alpn,
        signature_algorithms: &sig_algs,
    });
    Some(out)
}

/// Whether a value occurs twice: pairwise for a real hello's couple of dozen extensions,
/// which costs less than sorting a copy; sorted for a hello built to have thousands.
pub(super) fn has_duplicates(values: &[u16]) -> bool {
    if values.len() <= 64 {
        return values
            .iter()
            .enumerate()
            .any(|(i, v)| values.get(i + 1..).unwrap_or_default().contains(v));
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[0] == w[1])
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
