//! HTTP/1.x request sniffer (RFC 9112): the request line, then the header block to its end.
//!
//! The structure decides, not a list of known methods: any RFC 9110 token is a method, kept
//! as sent. `Match` comes only with the complete header block, so the Host is known; a line
//! that lacks the `HTTP/1.x` version is refused as soon as its line end arrives.

use super::{HttpRequest, Verdict};

/// RFC 9112 §2.2: empty lines a server tolerates before the request line.
const MAX_LEADING_EMPTY_LINES: usize = 16;
/// The longest registered method, UPDATEREDIRECTREF, has 17 characters.
const MAX_METHOD_LEN: usize = 32;
/// RFC 9112 §3: request lines of at least 8000 octets should be supported.
const MAX_TARGET_LEN: usize = 8000;
/// The whole request head, request line and header fields; the detection cap is 16 KiB.
const MAX_HEAD_LEN: usize = 16 * 1024;
const MAX_FIELDS: usize = 128;

/// Why parsing stopped short of a request.
enum Stop {
    NeedMore,
    NoMatch,
}

type Step<'a> = Result<&'a [u8], Stop>;

/// Identifies an HTTP/1.x request head at the start of `buf` (after optional empty lines).
pub fn sniff(buf: &[u8]) -> Verdict<HttpRequest> {
    let head = buf.get(..MAX_HEAD_LEN).unwrap_or(buf);
    match request(head) {
        Ok(req) => Verdict::Match(req),
        Err(Stop::NeedMore) if buf.len() <= MAX_HEAD_LEN => Verdict::NeedMore,
        Err(_) => Verdict::NoMatch,
    }
}

fn request(buf: &[u8]) -> Result<HttpRequest, Stop> {
    let rest = skip_empty_lines(buf)?;
    let (method, rest) = method(rest)?;
    let rest = target(rest)?;
    let rest = version_line_end(rest)?;
    let fields = header_fields(rest)?;
    // Only a complete head allocates: the driver may ask once per byte.
    Ok(HttpRequest {
        method: String::from_utf8_lossy(method).into_owned(),
        host: fields
            .host
            .map(|h| String::from_utf8_lossy(h).to_ascii_lowercase()),
        user_agent: fields
            .user_agent
            .map(|ua| String::from_utf8_lossy(ua).into_owned()),
    })
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The line end at the start of `buf` (CR LF, or the bare LF RFC 9112 §2.2 lets a recipient
/// accept): the bytes after it, or `None` when `buf` does not start with one.
fn line_end(buf: &[u8]) -> Option<Step<'_>> {
    match buf {
        [b'\n', rest @ ..] | [b'\r', b'\n', rest @ ..] => Some(Ok(rest)),
        [b'\r'] => Some(Err(Stop::NeedMore)),
        _ => None,
    }
}

fn skip_empty_lines(mut buf: &[u8]) -> Step<'_> {
    for _ in 0..=MAX_LEADING_EMPTY_LINES {
        match line_end(buf) {
            Some(step) => buf = step?,
            None if buf.is_empty() => return Err(Stop::NeedMore),
            None => return Ok(buf),
        }
    }
    Err(Stop::NoMatch)
}

/// `method SP`: a token of bounded length.
fn method(buf: &[u8]) -> Result<(&[u8], &[u8]), Stop> {
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b' ' if i > 0 => return Ok((&buf[..i], &buf[i + 1..])),
            _ if i < MAX_METHOD_LEN && is_tchar(b) => {}
            _ => return Err(Stop::NoMatch),
        }
    }
    Err(Stop::NeedMore)
}

/// `request-target SP` (RFC 9112 §3.2): visible bytes of bounded length. A line end here is
/// a line without an HTTP version: not HTTP/1.x (an SMTP `EHLO host`, an HTTP/0.9 request).
fn target(buf: &[u8]) -> Step<'_> {
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b' ' if i > 0 => return Ok(&buf[i + 1..]),
            0x21..=0x7e | 0x80..=0xff if i < MAX_TARGET_LEN => {}
            _ => return Err(Stop::NoMatch),
        }
    }
    Err(Stop::NeedMore)
}

/// `HTTP/1.d` and the line end. HTTP/2's `PRI * HTTP/2.0` preface stops here.
fn version_line_end(buf: &[u8]) -> Step<'_> {
    const VERSION: &[u8] = b"HTTP/1.";
    let n = buf.len().min(VERSION.len());
    if buf.get(..n) != VERSION.get(..n) {
        return Err(Stop::NoMatch);
    }
    match buf.get(VERSION.len()) {
        None => Err(Stop::NeedMore),
        Some(d) if d.is_ascii_digit() => {
            let rest = buf.get(VERSION.len() + 1..).unwrap_or_default();
            match line_end(rest) {
                Some(step) => step,
                None if rest.is_empty() => Err(Stop::NeedMore),
                None => Err(Stop::NoMatch),
            }
        }
        Some(_) => Err(Stop::NoMatch),
    }
}

/// The header fields the sniffer reports, still borrowed from the buffer.
#[derive(Default)]
struct Fields<'a> {
    /// Host without port or IPv6 brackets, not yet lowercased.
    host: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
}

/// Header fields (RFC 9112 §5) up to the empty line that ends them.
fn header_fields(mut buf: &[u8]) -> Result<Fields<'_>, Stop> {
    let mut fields = Fields::default();
    let mut host_seen = false;
    for _ in 0..=MAX_FIELDS {
        match line_end(buf) {
            Some(step) => return step.map(|_| fields),
            None if buf.is_empty() => return Err(Stop::NeedMore),
            None => {}
        }
        let Field { name, value, rest } = field_line(buf)?;
        buf = rest;
        if name.eq_ignore_ascii_case(b"host") {
            // RFC 9112 §3.2: a second Host is a bad request; it is also how a request would
            // show the gateway one name and the server another.
            if host_seen {
                return Err(Stop::NoMatch);
            }
            host_seen = true;
            fields.host = host_name(value)?;
        } else if name.eq_ignore_ascii_case(b"user-agent") && fields.user_agent.is_none() {
            fields.user_agent = Some(value);
        }
    }
    Err(Stop::NoMatch)
}

/// One header field line, split.
struct Field<'a> {
    name: &'a [u8],
    /// Without the surrounding whitespace.
    value: &'a [u8],
    /// The bytes after the line end.
    rest: &'a [u8],
}

/// `field-name ":" OWS field-value OWS` and its line end. No whitespace before the colon
/// and no obsolete line folding (RFC 9112 §5.1, §5.2): both are refused.
fn field_line(buf: &[u8]) -> Result<Field<'_>, Stop> {
    let colon = match buf.iter().position(|&b| !is_tchar(b)) {
        Some(i) if i > 0 && buf[i] == b':' => i,
        Some(_) => return Err(Stop::NoMatch),
        None => return Err(Stop::NeedMore),
    };
    let after = &buf[colon + 1..];
    for (i, &b) in after.iter().enumerate() {
        match b {
            b'\n' => {
                let value = &after[..i];
                let value = value.strip_suffix(b"\r").unwrap_or(value);
                return Ok(Field {
                    name: &buf[..colon],
                    value: value.trim_ascii(),
                    rest: &after[i + 1..],
                });
            }
            b'\r' if after.get(i + 1).is_some_and(|&next| next != b'\n') => {
                return Err(Stop::NoMatch)
            }
            b'\r' | b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
            _ => return Err(Stop::NoMatch),
        }
    }
    Err(Stop::NeedMore)
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): the host, port and
/// IPv6 brackets removed. Empty is allowed (no authority); anything malformed is refused.
fn host_name(value: &[u8]) -> Result<Option<&[u8]>, Stop> {
    if value.is_empty() {
        return Ok(None);
    }
    let (host, port, literal) = match value.strip_prefix(b"[") {
        Some(inner) => {
            let close = inner.iter().position(|&b| b == b']').ok_or(Stop::NoMatch)?;
            let port = match &inner[close + 1..] {
                [] => &[][..],
                [b':', port @ ..] => port,
                _ => return Err(Stop::NoMatch),
            };
            (&inner[..close], port, true)
        }
        None => match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], &value[i + 1..], false),
            None => (value, &[][..], false),
        },
    };
    let host_ok = |b: &u8| match literal {
        true => b.is_ascii_hexdigit() || b":.".contains(b),
        false => b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b),
    };
    if host.is_empty() || !host.iter().all(host_ok) || !port.iter().all(u8::is_ascii_digit) {
        return Err(Stop::NoMatch);
    }
    Ok(Some(host))
}
