//! Criterion benchmarks: time to classify a client's first turn (issue 3's budget: < 1 µs).
//!
//! Every input is a fixture recorded from a real program (tests/fixtures/sniff/README.md),
//! except the buffer that matches nothing, which is deterministic pseudo-random bytes.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::sniff::{sniff_client, sniff_server, Verdict};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../tests/fixtures/sniff/", $name)).as_slice()
    };
}

/// 1 KiB of xorshift64 bytes: what an unknown or encrypted protocol looks like.
fn noise() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn classify(c: &mut Criterion) {
    let noise = noise();
    let client: [(&str, &[u8]); 6] = [
        ("tls_clienthello_517b_curl", fixture!("tls_curl.bin")),
        ("tls_clienthello_pq_rustls", fixture!("tls_rustls_pq.bin")),
        ("http_get_curl", fixture!("http_curl_get.bin")),
        ("ssh_banner_openssh", fixture!("ssh_client_openssh.bin")),
        // The last sniffer in the client table: every other one refuses it first.
        (
            "mongodb_op_query_pymongo",
            fixture!("mongodb_client_pymongo.bin"),
        ),
        ("no_match_1k_noise", &noise),
    ];
    let mut group = c.benchmark_group("sniff_client");
    for (name, input) in client {
        // A benchmark of the wrong answer would be meaningless: check it first.
        let expect_match = !name.starts_with("no_match");
        let verdict = sniff_client(input);
        assert_eq!(matches!(verdict, Verdict::Match(_)), expect_match, "{name}");
        assert!(expect_match || verdict == Verdict::NoMatch, "{name}");
        group.bench_function(name, |b| b.iter(|| sniff_client(black_box(input))));
    }
    group.finish();
    let server: [(&str, &[u8]); 2] = [
        ("ssh_banner_openssh", fixture!("ssh_server_openssh.bin")),
        ("smtp_banner_exim", fixture!("smtp_server_exim.bin")),
    ];
    let mut group = c.benchmark_group("sniff_server");
    for (name, input) in server {
        assert!(matches!(sniff_server(input), Verdict::Match(_)), "{name}");
        group.bench_function(name, |b| b.iter(|| sniff_server(black_box(input))));
    }
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
