//! Memcached text protocol (memcached's protocol.txt): the first command line, with the
//! arguments its command takes. Storage commands carry `<key> <flags> <exptime> <bytes>`,
//! retrievals one or more keys; a line of any other shape is not claimed.

use super::parse::{ensure, line, verdict, Stop};
use super::Verdict;

/// protocol.txt: keys are at most 250 bytes; the line with many keys is bounded here.
const MAX_KEY_LEN: usize = 250;
const MAX_LINE: usize = 2048;

/// The first command of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(command(buf))
}

fn command(buf: &[u8]) -> Result<(), Stop> {
    // The command word, checked as it arrives: lowercase letters then a space or line end.
    let word_end = buf
        .iter()
        .position(|&b| !b.is_ascii_lowercase() && b != b'_');
    let word = &buf[..word_end.unwrap_or(buf.len())];
    ensure(word.len() <= 12 && COMMANDS.iter().any(|c| c.starts_with(word)))?;
    let (text, _) = line(buf, MAX_LINE)?;
    let mut args: Args<'_> = text.split(is_space);
    let verb = args.next().unwrap_or_default();
    let args = &mut args;
    match verb {
        b"get" | b"gets" => ensure(keys(args) >= 1),
        b"gat" | b"gats" => ensure(number(args.next()) && keys(args) >= 1),
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => storage(args, 4),
        b"cas" => storage(args, 5),
        b"delete" => ensure(key(args.next()) && rest_is_noreply(args)),
        b"incr" | b"decr" | b"touch" => {
            ensure(key(args.next()) && number(args.next()) && rest_is_noreply(args))
        }
        b"stats" => ensure(args.all(|a| !a.is_empty() && a.iter().all(u8::is_ascii_alphanumeric))),
        b"version" | b"flush_all" | b"verbosity" => {
            ensure(args.all(|a| number(Some(a)) || a == b"noreply"))
        }
        _ => Err(Stop::NoMatch),
    }
}

const COMMANDS: [&[u8]; 18] = [
    b"get",
    b"gets",
    b"gat",
    b"gats",
    b"set",
    b"add",
    b"replace",
    b"append",
    b"prepend",
    b"cas",
    b"delete",
    b"incr",
    b"decr",
    b"touch",
    b"stats",
    b"version",
    b"flush_all",
    b"verbosity",
];

/// The space-separated arguments of the command line.
type Args<'a> = std::slice::Split<'a, u8, fn(&u8) -> bool>;

fn is_space(b: &u8) -> bool {
    *b == b' '
}

/// `<key> <number>{n-1} [noreply]`
fn storage(args: &mut Args<'_>, n: usize) -> Result<(), Stop> {
    ensure(key(args.next()))?;
    for _ in 1..n {
        ensure(number(args.next()))?;
    }
    ensure(rest_is_noreply(args))
}

fn key(arg: Option<&[u8]>) -> bool {
    arg.is_some_and(|k| {
        !k.is_empty() && k.len() <= MAX_KEY_LEN && k.iter().all(|&b| b > b' ' && b != 0x7f)
    })
}

fn keys(args: &mut Args<'_>) -> usize {
    let mut n = 0;
    for arg in args {
        if !key(Some(arg)) {
            return 0;
        }
        n += 1;
    }
    n
}

fn number(arg: Option<&[u8]>) -> bool {
    arg.is_some_and(|n| {
        let digits = n.strip_prefix(b"-").unwrap_or(n);
        !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit)
    })
}

fn rest_is_noreply(args: &mut Args<'_>) -> bool {
    matches!(
        (args.next(), args.next()),
        (None, _) | (Some(b"noreply"), None)
    )
}
