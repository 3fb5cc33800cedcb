//! http sniffer (placeholder until the sniffer lands).
use super::{HttpRequest, Verdict};

pub fn sniff(_buf: &[u8]) -> Verdict<HttpRequest> {
    Verdict::NoMatch
}
