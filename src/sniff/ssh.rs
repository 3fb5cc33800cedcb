//! SSH identification-string sniffer, client and server side (RFC 4253 §4.2).
//!
//! `SSH-protoversion-softwareversion SP comments CR LF`, at most 255 bytes with the CR LF.
//! OpenSSH also accepts a bare LF, so this does too. Only the server may send other lines
//! before its identification string; they are bounded in number and length here.

use super::{SshBanner, Verdict};

/// RFC 4253 §4.2: the identification string is at most 255 bytes, CR LF included.
const MAX_BANNER_LEN: usize = 255;
/// Lines a server may send before its identification string, and their length. RFC 4253
/// sets no limit; these keep a non-SSH server from holding the sniffer in `NeedMore`.
const MAX_PRE_BANNER_LINES: usize = 16;
const MAX_PRE_BANNER_LINE_LEN: usize = 1024;

/// The protocol versions an SSH-2 peer announces (RFC 4253 §4.2, §5.1 for 1.99).
const PREFIXES: [&[u8]; 2] = [b"SSH-2.0-", b"SSH-1.99-"];

/// A client's first line must be its identification string.
pub fn sniff_client(buf: &[u8]) -> Verdict<SshBanner> {
    identification(buf)
}

/// A server may send other lines (not starting with `SSH-`) before its identification string.
pub fn sniff_server(buf: &[u8]) -> Verdict<SshBanner> {
    let mut rest = buf;
    for _ in 0..=MAX_PRE_BANNER_LINES {
        let head = rest.get(..4).unwrap_or(rest);
        if b"SSH-".starts_with(head) {
            return if head.len() < 4 {
                Verdict::NeedMore
            } else {
                identification(rest)
            };
        }
        match other_line(rest) {
            Line::NeedMore => return Verdict::NeedMore,
            Line::NoMatch => return Verdict::NoMatch,
            Line::Next(after) => rest = after,
        }
    }
    Verdict::NoMatch
}

/// The identification string at the start of `buf`: the banner is the line without CR LF.
fn identification(buf: &[u8]) -> Verdict<SshBanner> {
    let head_ok = |p: &[u8]| {
        let n = buf.len().min(p.len());
        buf.get(..n) == p.get(..n)
    };
    if !PREFIXES.iter().any(|p| head_ok(p)) {
        return Verdict::NoMatch;
    }
    for (i, &b) in buf.iter().enumerate().take(MAX_BANNER_LEN) {
        match b {
            b'\n' => {
                let line = buf.get(..i).unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let complete = PREFIXES
                    .iter()
                    .any(|p| line.len() > p.len() && line.starts_with(p));
                return match std::str::from_utf8(line) {
                    Ok(banner) if complete => Verdict::Match(SshBanner {
                        banner: banner.to_owned(),
                    }),
                    _ => Verdict::NoMatch,
                };
            }
            // CR only as the first half of the line's CR LF.
            b'\r' if buf.get(i + 1).is_some_and(|&next| next != b'\n') => return Verdict::NoMatch,
            b'\r' | 0x20..=0x7e => {}
            _ => return Verdict::NoMatch,
        }
    }
    if buf.len() >= MAX_BANNER_LEN {
        Verdict::NoMatch
    } else {
        Verdict::NeedMore
    }
}

enum Line<'a> {
    NeedMore,
    NoMatch,
    Next(&'a [u8]),
}

/// One line before a server's identification string: text (RFC 4253 §4.2 says UTF-8;
/// control bytes other than tab and the closing CR are refused) ending in LF.
fn other_line(buf: &[u8]) -> Line<'_> {
    for (i, &b) in buf.iter().enumerate().take(MAX_PRE_BANNER_LINE_LEN) {
        match b {
            b'\n' => return Line::Next(buf.get(i + 1..).unwrap_or_default()),
            b'\r' if buf.get(i + 1).is_some_and(|&next| next != b'\n') => return Line::NoMatch,
            b'\r' | b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
            _ => return Line::NoMatch,
        }
    }
    if buf.len() >= MAX_PRE_BANNER_LINE_LEN {
        Line::NoMatch
    } else {
        Line::NeedMore
    }
}
