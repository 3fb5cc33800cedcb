//! Sniffer tests over bytes recorded from real programs (tests/fixtures/sniff/README.md).

mod catalogue;
mod cross;
mod fixtures;
mod http;
mod ssh;
mod structure;
mod tls;

use std::fmt::Debug;

use super::Verdict;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/sniff/", $name)).as_slice()
    };
}

pub(super) const TLS_CURL: &[u8] = fixture!("tls_curl.bin");
pub(super) const TLS_OPENSSL: &[u8] = fixture!("tls_openssl.bin");
pub(super) const TLS12_OPENSSL: &[u8] = fixture!("tls12_openssl.bin");
pub(super) const TLS_PYTHON_BIGALPN: &[u8] = fixture!("tls_python_bigalpn.bin");
pub(super) const TLS_RUSTLS: &[u8] = fixture!("tls_rustls.bin");
pub(super) const TLS_RUSTLS_PQ: &[u8] = fixture!("tls_rustls_pq.bin");
pub(super) const HTTP_CURL_GET: &[u8] = fixture!("http_curl_get.bin");
pub(super) const HTTP_CURL_IPV6_HOST: &[u8] = fixture!("http_curl_ipv6_host.bin");
pub(super) const HTTP2_CURL: &[u8] = fixture!("http2_curl_prior_knowledge.bin");
pub(super) const SSH_CLIENT: &[u8] = fixture!("ssh_client_openssh.bin");
pub(super) const SSH_SERVER: &[u8] = fixture!("ssh_server_openssh.bin");

pub(super) const TLS_FIXTURES: [(&str, &[u8]); 6] = [
    ("tls_curl", TLS_CURL),
    ("tls_openssl", TLS_OPENSSL),
    ("tls12_openssl", TLS12_OPENSSL),
    ("tls_python_bigalpn", TLS_PYTHON_BIGALPN),
    ("tls_rustls", TLS_RUSTLS),
    ("tls_rustls_pq", TLS_RUSTLS_PQ),
];
pub(super) const HTTP_FIXTURES: [(&str, &[u8]); 2] = [
    ("http_curl_get", HTTP_CURL_GET),
    ("http_curl_ipv6_host", HTTP_CURL_IPV6_HOST),
];

/// Every prefix of `input` gives `NeedMore` or the answer for the whole input, never another
/// answer (linkerd's `check_all_prefixes`). Returns the answer for the whole input.
pub(super) fn check_all_prefixes<T: PartialEq + Debug>(
    name: &str,
    input: &[u8],
    sniff: impl Fn(&[u8]) -> Verdict<T>,
) -> Verdict<T> {
    let last = sniff(input);
    for n in 0..input.len() {
        let v = sniff(&input[..n]);
        assert!(
            v == Verdict::NeedMore || v == last,
            "{name}: prefix of {n}/{} bytes gave {v:?}, the whole input {last:?}",
            input.len()
        );
    }
    last
}

/// xorshift64: a tiny deterministic PRNG, so a failing input can be reproduced.
pub(super) struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
