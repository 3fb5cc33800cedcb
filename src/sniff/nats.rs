//! NATS protocol (NATS client protocol documentation): the server opens with
//! `INFO {json}` and the client answers `CONNECT {json}`, each one CR LF-terminated line.

use super::parse::{ensure, line, literal, verdict, Stop};
use super::Verdict;

/// nats-server caps a control line at 4 KiB by default (max_control_line).
const MAX_LINE: usize = 4096;

/// The client's `CONNECT {...}` line.
pub fn sniff_client(buf: &[u8]) -> Verdict<()> {
    verdict(json_line(buf, b"CONNECT "))
}

/// The server's `INFO {...}` line.
pub fn sniff_server(buf: &[u8]) -> Verdict<()> {
    verdict(json_line(buf, b"INFO "))
}

/// `verb` then a JSON object on one line: braces at both ends, nothing but text between.
fn json_line(buf: &[u8], verb: &[u8]) -> Result<(), Stop> {
    let rest = literal(buf, verb)?;
    let rest = literal(rest, b"{")?;
    let (json, _) = line(rest, MAX_LINE)?;
    ensure(json.trim_ascii_end().ends_with(b"}") && json.contains(&b'"'))
}
