//! HTTP/2 prior-knowledge sniffer: the client connection preface (RFC 9113 §3.4).
//!
//! A cleartext HTTP/2 client that knows the server speaks HTTP/2 opens with this fixed
//! 24-byte preface. It looks like an HTTP/1.x request line (`PRI * HTTP/2.0`) on purpose, so
//! the HTTP/1.x sniffer refuses it and this one claims it.

use super::Verdict;

/// RFC 9113 §3.4: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `Match` once the whole preface is present; `NoMatch` on the first byte that differs.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    let n = buf.len().min(PREFACE.len());
    if buf.get(..n) != PREFACE.get(..n) {
        Verdict::NoMatch
    } else if n < PREFACE.len() {
        Verdict::NeedMore
    } else {
        Verdict::Match(())
    }
}
