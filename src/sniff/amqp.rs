//! AMQP protocol header: the eight bytes a client sends before anything else.
//!
//! AMQP 0-9-1 §4.2.2: `AMQP` 0 0 9 1. AMQP 1.0 (OASIS, part 2 §2.2): `AMQP`, a protocol id
//! (0 AMQP, 2 TLS, 3 SASL), then version 1.0.0. Nothing else is an AMQP opening.

use super::parse::{one_of, verdict};
use super::Verdict;

const HEADERS: &[&[u8]] = &[
    b"AMQP\x00\x00\x09\x01",
    b"AMQP\x00\x01\x00\x00",
    b"AMQP\x02\x01\x00\x00",
    b"AMQP\x03\x01\x00\x00",
];

/// The protocol header at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(one_of(buf, HEADERS).map(drop))
}
