//! ssh sniffer (placeholder until the sniffer lands).
use super::{SshBanner, Verdict};

pub fn sniff(_buf: &[u8]) -> Verdict<SshBanner> {
    Verdict::NoMatch
}
