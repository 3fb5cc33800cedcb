//! IRC client registration (RFC 2812 §2.3, §3.1; IRCv3 capability negotiation).
//!
//! A client opens with `CAP LS`, `PASS`, `NICK` and `USER` lines in some order; the sniffer
//! reads lines until one of `NICK`, `USER` or `CAP LS` is complete and well formed. IRC
//! servers wait for the client (ngircd sends nothing first), so there is no server side.

use super::parse::{ensure, line, verdict, Stop};
use super::Verdict;

/// RFC 2812 §2.3: 512 bytes with the CR LF.
const MAX_LINE: usize = 510;
/// `PASS` and `CAP` lines before the one that decides.
const MAX_LINES: usize = 4;

/// The client's registration.
pub fn sniff_client(buf: &[u8]) -> Verdict<()> {
    verdict(registration(buf))
}

fn is_command_byte(b: u8) -> bool {
    b.is_ascii_uppercase()
}

/// RFC 2812 §2.3.1 nickname: letter or special, then letters, digits, specials and `-`.
fn is_nick(nick: &[u8]) -> bool {
    let special = |b: &u8| b"[]\\`_^{|}".contains(b);
    match nick {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || special(first))
                && rest.len() < 32
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || special(b) || *b == b'-')
        }
        [] => false,
    }
}

/// Checks the command word as soon as it arrives: uppercase letters, then a space.
fn command(buf: &[u8]) -> Result<(&[u8], &[u8]), Stop> {
    super::parse::token(buf, 8, is_command_byte, b' ')
}

fn registration(mut buf: &[u8]) -> Result<(), Stop> {
    for _ in 0..MAX_LINES {
        let (verb, _) = command(buf)?;
        ensure(matches!(verb, b"CAP" | b"PASS" | b"NICK" | b"USER"))?;
        let (text, rest) = line(buf, MAX_LINE)?;
        let params = text.get(verb.len() + 1..).unwrap_or_default();
        let mut parts = params.split(|&b| b == b' ');
        match verb {
            b"NICK" => return ensure(parts.next().is_some_and(is_nick) && parts.next().is_none()),
            // USER <user> <mode> <unused> :<realname>
            b"USER" => {
                let user = parts.next().unwrap_or_default();
                let fixed = [parts.next(), parts.next()];
                let real = parts.next().unwrap_or_default();
                return ensure(
                    !user.is_empty()
                        && user.iter().all(|&b| b > b' ' && b != b'@')
                        && fixed.iter().all(|p| p.is_some_and(|p| !p.is_empty()))
                        && real.starts_with(b":"),
                );
            }
            b"CAP" => {
                if parts.next() == Some(b"LS") {
                    let version = parts.next().unwrap_or_default();
                    return ensure(version.iter().all(u8::is_ascii_digit));
                }
                ensure(params.starts_with(b"END") || params.starts_with(b"REQ "))?;
            }
            _ => ensure(!params.is_empty())?, // PASS <password>
        }
        buf = rest;
    }
    Err(Stop::NoMatch)
}
