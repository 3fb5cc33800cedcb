//! Small zero-copy readers the line-oriented and length-prefixed sniffers share.
//!
//! Each reader looks at the start of a buffer and answers the bytes after what it read, or
//! why it stopped: the buffer ends too early (`NeedMore`) or holds a byte the structure
//! forbids (`NoMatch`). `?` threads the stop through a sniffer; [`verdict`] turns it into a
//! [`Verdict`]. Nothing here allocates.

use super::Verdict;

/// Why a reader stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    NeedMore,
    NoMatch,
}

/// A sniffer's parse result as a [`Verdict`].
pub(super) fn verdict<T>(parsed: Result<T, Stop>) -> Verdict<T> {
    match parsed {
        Ok(t) => Verdict::Match(t),
        Err(Stop::NeedMore) => Verdict::NeedMore,
        Err(Stop::NoMatch) => Verdict::NoMatch,
    }
}

/// `lit` at the start of `buf`, byte for byte: the bytes after it.
pub(super) fn literal<'a>(buf: &'a [u8], lit: &[u8]) -> Result<&'a [u8], Stop> {
    let n = buf.len().min(lit.len());
    if buf.get(..n) != lit.get(..n) {
        Err(Stop::NoMatch)
    } else if n < lit.len() {
        Err(Stop::NeedMore)
    } else {
        Ok(buf.get(n..).unwrap_or_default())
    }
}

/// The first of `lits` that `buf` starts with (its index and the bytes after it); `NeedMore`
/// while `buf` is a proper prefix of one of them.
pub(super) fn one_of<'a>(buf: &'a [u8], lits: &[&[u8]]) -> Result<(usize, &'a [u8]), Stop> {
    let mut stop = Stop::NoMatch;
    for (i, lit) in lits.iter().enumerate() {
        match literal(buf, lit) {
            Ok(rest) => return Ok((i, rest)),
            Err(Stop::NeedMore) => stop = Stop::NeedMore,
            Err(Stop::NoMatch) => {}
        }
    }
    Err(stop)
}

/// The first `n` bytes and the rest.
pub(super) fn take(buf: &[u8], n: usize) -> Result<(&[u8], &[u8]), Stop> {
    match (buf.get(..n), buf.get(n..)) {
        (Some(head), Some(rest)) => Ok((head, rest)),
        _ => Err(Stop::NeedMore),
    }
}

/// One byte and the rest.
pub(super) fn byte(buf: &[u8]) -> Result<(u8, &[u8]), Stop> {
    match buf {
        [b, rest @ ..] => Ok((*b, rest)),
        [] => Err(Stop::NeedMore),
    }
}

/// A big-endian u16 and the rest.
pub(super) fn be16(buf: &[u8]) -> Result<(u16, &[u8]), Stop> {
    match buf {
        [a, b, rest @ ..] => Ok((u16::from_be_bytes([*a, *b]), rest)),
        _ => Err(Stop::NeedMore),
    }
}

/// A big-endian u32 and the rest.
pub(super) fn be32(buf: &[u8]) -> Result<(u32, &[u8]), Stop> {
    match buf {
        [a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(Stop::NeedMore),
    }
}

/// A little-endian u32 and the rest.
pub(super) fn le32(buf: &[u8]) -> Result<(u32, &[u8]), Stop> {
    match buf {
        [a, b, c, d, rest @ ..] => Ok((u32::from_le_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(Stop::NeedMore),
    }
}

/// Refuses with `NoMatch` unless `ok`.
pub(super) fn ensure(ok: bool) -> Result<(), Stop> {
    if ok {
        Ok(())
    } else {
        Err(Stop::NoMatch)
    }
}

/// A text byte: printable ASCII, tab, or a UTF-8 byte above 0x7f.
pub(super) fn is_text(b: u8) -> bool {
    matches!(b, b'\t' | 0x20..=0x7e | 0x80..=0xff)
}

/// One text line of at most `max` bytes before its end (CR LF, or a bare LF): the line
/// without its end, and the bytes after it. A CR anywhere else, or a control byte, refuses.
pub(super) fn line(buf: &[u8], max: usize) -> Result<(&[u8], &[u8]), Stop> {
    for (i, &b) in buf.iter().enumerate().take(max + 2) {
        match b {
            b'\n' => {
                let text = buf.get(..i).unwrap_or_default();
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                ensure(text.len() <= max)?;
                return Ok((text, buf.get(i + 1..).unwrap_or_default()));
            }
            b'\r' if buf.get(i + 1).is_some_and(|&next| next != b'\n') => {
                return Err(Stop::NoMatch)
            }
            b'\r' => {}
            _ if is_text(b) && i < max => {}
            _ => return Err(Stop::NoMatch),
        }
    }
    Err(Stop::NeedMore)
}

/// A token of 1 to `max` bytes from `allowed`, ended by `end` (consumed): the token and the
/// bytes after `end`.
pub(super) fn token(
    buf: &[u8],
    max: usize,
    allowed: fn(u8) -> bool,
    end: u8,
) -> Result<(&[u8], &[u8]), Stop> {
    for (i, &b) in buf.iter().enumerate() {
        if b == end && i > 0 {
            return Ok((
                buf.get(..i).unwrap_or_default(),
                buf.get(i + 1..).unwrap_or_default(),
            ));
        }
        ensure(i < max && allowed(b))?;
    }
    Err(Stop::NeedMore)
}

/// Contains `needle`, ASCII case-insensitively.
pub(super) fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}
