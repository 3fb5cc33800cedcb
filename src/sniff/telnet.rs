//! Telnet option negotiation (RFC 854, RFC 855): a first turn that opens with IAC commands.
//!
//! Either side may open by negotiating options: `IAC WILL|WONT|DO|DONT option` or a
//! subnegotiation `IAC SB option ... IAC SE`. One three-byte command is too little evidence
//! (0xff 0xfb 0x01 is as likely a fragment of anything binary), so `Match` needs two
//! complete commands in a row, each naming an option the IANA registry knows.

use super::parse::{byte, ensure, verdict, Stop};
use super::Verdict;

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;
/// IANA telnet options 0..=49 and EXOPL (255).
fn known_option(option: u8) -> bool {
    option <= 49 || option == 255
}
/// Longest subnegotiation accepted (terminal types, environment variables).
const MAX_SUBNEGOTIATION: usize = 512;
const COMMANDS_FOR_MATCH: usize = 2;

/// Two negotiation commands at the start of `buf`, from either side.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(commands(buf))
}

fn commands(mut buf: &[u8]) -> Result<(), Stop> {
    for _ in 0..COMMANDS_FOR_MATCH {
        buf = command(buf)?;
    }
    Ok(())
}

/// One negotiation command: the bytes after it.
fn command(buf: &[u8]) -> Result<&[u8], Stop> {
    let (iac, rest) = byte(buf)?;
    ensure(iac == IAC)?;
    let (verb, rest) = byte(rest)?;
    ensure((WILL..=DONT).contains(&verb) || verb == SB)?;
    let (option, rest) = byte(rest)?;
    ensure(known_option(option))?;
    if verb != SB {
        return Ok(rest);
    }
    // RFC 855: the subnegotiation runs to IAC SE; a data byte 255 is doubled (IAC IAC).
    let mut i = 0;
    while i < rest.len().min(MAX_SUBNEGOTIATION) {
        if rest[i] == IAC {
            match rest.get(i + 1) {
                Some(&SE) => return Ok(&rest[i + 2..]),
                Some(&IAC) => i += 2,
                Some(_) => return Err(Stop::NoMatch),
                None => return Err(Stop::NeedMore),
            }
        } else {
            i += 1;
        }
    }
    ensure(rest.len() < MAX_SUBNEGOTIATION)?;
    Err(Stop::NeedMore)
}
