//! Server greetings of the text protocols that speak first: SMTP, FTP, POP3, IMAP, NNTP.
//!
//! A greeting is judged whole: `Match` needs its last line, so a multi-line `220-` greeting
//! is read to its `220 ` line. SMTP and FTP both greet with `220`; the greeting's own words
//! tell them apart (RFC 5321 servers announce `ESMTP`/`SMTP`, FTP servers name `FTP`), and a
//! `220` greeting that names neither stays unidentified: a wrong name is worse than none.

use super::parse::{ensure, line, literal, one_of, verdict, Stop};
use super::{Protocol, ServerBanner, Verdict};

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with its CR LF.
const MAX_REPLY_LINE: usize = 510;
/// Continuation lines of a multi-line `220-` greeting.
const MAX_GREETING_LINES: usize = 32;
/// RFC 9051 §4: IMAP lines have no limit; a greeting with its capability list fits here.
const MAX_IMAP_LINE: usize = 8192;

/// A `220` greeting (RFC 5321 §4.2 and §4.3.1 for SMTP, RFC 959 §4.2 for FTP), single or
/// multi-line, named SMTP or FTP by its words.
pub fn sniff_220(buf: &[u8]) -> Verdict<(Protocol, ServerBanner)> {
    verdict(greeting_220(buf))
}

fn greeting_220(buf: &[u8]) -> Result<(Protocol, ServerBanner), Stop> {
    let mut rest = buf;
    let mut first: Option<&[u8]> = None;
    let (mut smtp, mut ftp) = (false, false);
    for _ in 0..MAX_GREETING_LINES {
        let (kind, after) = one_of(rest, &[b"220 ", b"220-"])?;
        let (text, next) = line(after, MAX_REPLY_LINE)?;
        first.get_or_insert(text);
        smtp |= names(text, b"SMTP");
        ftp |= names(text, b"FTP");
        rest = next;
        if kind == 0 {
            let first = first.unwrap_or_default();
            let protocol = match (smtp, ftp) {
                (true, false) => Protocol::Smtp,
                (false, true) => Protocol::Ftp,
                _ => return Err(Stop::NoMatch),
            };
            // RFC 5321 §4.2: the SMTP greeting's first word is the server's domain.
            let host = host_word(first, protocol == Protocol::Smtp);
            return Ok((protocol, ServerBanner::new(first, host)));
        }
    }
    Err(Stop::NoMatch)
}

/// `word` in `text`, any case, as part of a word (`ESMTP`, `vsFTPd`, `pyftpdlib`).
fn names(text: &[u8], word: &[u8]) -> bool {
    super::parse::contains_ci(text, word)
}

/// The greeting's first word when it is a host name or address literal. FTP greetings need
/// not start with one, so there it must at least contain a dot.
fn host_word(text: &[u8], smtp: bool) -> Option<&[u8]> {
    let word = text.split(|&b| b == b' ').next()?;
    let host_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._:[]".contains(b);
    let plausible = !word.is_empty() && word.iter().all(host_byte);
    (plausible && (smtp || word.contains(&b'.'))).then_some(word)
}

/// POP3 greeting (RFC 1939 §4): `+OK`, then a space and text or the line end.
pub fn sniff_pop3(buf: &[u8]) -> Verdict<ServerBanner> {
    verdict((|| {
        let rest = literal(buf, b"+OK")?;
        let (text, _) = line(rest, MAX_REPLY_LINE)?;
        ensure(text.is_empty() || text.starts_with(b" "))?;
        Ok(ServerBanner::new(text.trim_ascii(), None))
    })())
}

/// IMAP greeting (RFC 9051 §7.1.1, §7.1.4, §7.1.5): `* OK`, `* PREAUTH` or `* BYE`, then a
/// space and text.
pub fn sniff_imap(buf: &[u8]) -> Verdict<ServerBanner> {
    verdict((|| {
        let (_, rest) = one_of(buf, &[b"* OK ", b"* PREAUTH ", b"* BYE "])?;
        let (text, _) = line(rest, MAX_IMAP_LINE)?;
        Ok(ServerBanner::new(text, None))
    })())
}

/// NNTP greeting (RFC 3977 §5.1.1): `200` (posting allowed) or `201`, a space and text
/// that names the service (`NNTP`, `news`, `INN`): the same codes mean other things in FTP.
pub fn sniff_nntp(buf: &[u8]) -> Verdict<ServerBanner> {
    verdict((|| {
        let (_, rest) = one_of(buf, &[b"200 ", b"201 "])?;
        let (text, _) = line(rest, MAX_REPLY_LINE)?;
        ensure(
            [&b"NNTP"[..], b"news", b"InterNetNews"]
                .iter()
                .any(|w| names(text, w)),
        )?;
        ensure(!names(text, b"FTP") && !names(text, b"SMTP"))?;
        Ok(ServerBanner::new(text, host_word(text, false)))
    })())
}
