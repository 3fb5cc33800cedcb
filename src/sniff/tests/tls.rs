//! TLS ClientHello sniffer: real hellos, reassembly across records, evasions.

use super::*;
use crate::sniff::tls::{sniff, TlsHello};

/// (fixture, SNI, ALPN, version, JA4). The JA4 values come from the independent `ja4plus`
/// implementation (tests/fixtures/sniff/ja4_reference.py), not from this crate.
const EXPECTED: [(&str, &str, &[&str], u16, &str); 5] = [
    (
        "tls_curl",
        "www.example.test",
        &["h2", "http/1.1"],
        0x0304,
        "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6",
    ),
    (
        "tls_openssl",
        "mixed.example.org",
        &["h2", "http/1.1"],
        0x0304,
        "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4",
    ),
    (
        "tls12_openssl",
        "legacy.example.test",
        &["http/1.1"],
        0x0303,
        "t12d2808h1_d943125447b4_e7e480e5a997",
    ),
    (
        "tls_rustls",
        "rustls.example.test",
        &["h2", "http/1.1"],
        0x0304,
        "t13d1011h2_61a7ad8aa9b6_0d308c48d2a3",
    ),
    (
        "tls_rustls_pq",
        "pq.example.test",
        &["h2", "http/1.1"],
        0x0304,
        "t13d1011h2_61a7ad8aa9b6_0d308c48d2a3",
    ),
];

fn matched(name: &str, input: &[u8]) -> TlsHello {
    match sniff(input) {
        Verdict::Match(hello) => hello,
        other => panic!("{name}: expected a ClientHello, got {other:?}"),
    }
}

fn fixture(name: &str) -> &'static [u8] {
    TLS_FIXTURES.iter().find(|(n, _)| *n == name).unwrap().1
}

/// The handshake bytes of a recorded first flight, record headers removed.
fn handshake_stream(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    out
}

/// Wraps handshake bytes into handshake records of the sizes `size` picks.
fn reframe(stream: &[u8], mut size: impl FnMut() -> usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = size().clamp(1, 1 << 14).min(rest.len());
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// Rebuilds a recorded hello with its extension list edited, in records of at most 2^14.
fn with_extensions(records: &[u8], edit: impl FnOnce(&mut Vec<(u16, Vec<u8>)>)) -> Vec<u8> {
    let stream = handshake_stream(records);
    let body = &stream[4..];
    let mut o = 2 + 32;
    o += 1 + usize::from(body[o]);
    o += 2 + usize::from(u16::from_be_bytes([body[o], body[o + 1]]));
    o += 1 + usize::from(body[o]);
    let mut exts = Vec::new();
    let mut e = &body[o + 2..];
    while !e.is_empty() {
        let len = usize::from(u16::from_be_bytes([e[2], e[3]]));
        exts.push((u16::from_be_bytes([e[0], e[1]]), e[4..4 + len].to_vec()));
        e = &e[4 + len..];
    }
    edit(&mut exts);
    let mut ext_bytes = Vec::new();
    for (ty, data) in &exts {
        ext_bytes.extend_from_slice(&ty.to_be_bytes());
        ext_bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext_bytes.extend_from_slice(data);
    }
    let mut new_body = body[..o].to_vec();
    new_body.extend_from_slice(&(ext_bytes.len() as u16).to_be_bytes());
    new_body.extend_from_slice(&ext_bytes);
    let mut msg = vec![1];
    msg.extend_from_slice(&(new_body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&new_body);
    reframe(&msg, || 1 << 14)
}

#[test]
fn real_client_hellos_are_identified_with_their_metadata() {
    for (name, sni, alpn, version, ja4) in EXPECTED {
        let hello = matched(name, fixture(name));
        assert_eq!(hello.server_name.as_deref(), Some(sni), "{name}");
        assert_eq!(hello.alpn, alpn, "{name}");
        assert_eq!(hello.version, version, "{name}");
        assert_eq!(hello.legacy_version, 0x0303, "{name}");
        assert_eq!(hello.ja4, ja4, "{name}");
        assert!(!hello.ech, "{name}");
    }
}

#[test]
fn hello_larger_than_one_record_is_reassembled() {
    // OpenSSL split python's 17.8 KB hello into a full 2^14 record and a second one.
    assert!(TLS_PYTHON_BIGALPN.len() > (1 << 14) + 5);
    assert_eq!(&TLS_PYTHON_BIGALPN[3..5], &[0x40, 0x00]);
    let hello = matched("bigalpn", TLS_PYTHON_BIGALPN);
    assert_eq!(hello.server_name.as_deref(), Some("big-alpn.example.test"));
    assert_eq!(hello.alpn.len(), 81);
    assert_eq!(hello.alpn[0], "h2");
    assert!(hello.alpn[80].starts_with("x-portcullis-079-"));
    assert_eq!(hello.ja4, "t13d1811h2_85036bcba153_1f22a2ca17c4");
    // Not before the last byte of the second record.
    let last = TLS_PYTHON_BIGALPN.len() - 1;
    assert_eq!(sniff(&TLS_PYTHON_BIGALPN[..last]), Verdict::NeedMore);
    assert_eq!(
        sniff(&TLS_PYTHON_BIGALPN[..(1 << 14) + 5]),
        Verdict::NeedMore
    );
}

#[test]
fn post_quantum_hello_offers_x25519mlkem768() {
    // The fixture is what it claims: a key_share (51) entry for group 0x11ec, whose client
    // share is 1184 bytes of ML-KEM-768 key and 32 of X25519.
    let stream = handshake_stream(TLS_RUSTLS_PQ);
    let pq_entry = [0x11, 0xec, 0x04, 0xc0];
    assert!(stream.windows(4).any(|w| w == pq_entry));
    let hello = matched("pq", TLS_RUSTLS_PQ);
    assert_eq!(hello.server_name.as_deref(), Some("pq.example.test"));
    assert_eq!(hello.version, 0x0304);
}

#[test]
fn every_prefix_of_every_hello_needs_more_or_matches() {
    for (name, input) in TLS_FIXTURES {
        let last = check_all_prefixes(name, input, sniff);
        assert!(matches!(last, Verdict::Match(_)), "{name}");
    }
}

#[test]
fn one_byte_records_fed_one_byte_at_a_time() {
    for name in ["tls_curl", "tls_openssl", "tls_rustls_pq"] {
        let original = matched(name, fixture(name));
        let split = reframe(&handshake_stream(fixture(name)), || 1);
        assert_eq!(split.len(), 6 * handshake_stream(fixture(name)).len());
        let last = check_all_prefixes(name, &split, sniff);
        assert_eq!(last, Verdict::Match(original), "{name}");
        assert_eq!(
            sniff(&split[..split.len() - 1]),
            Verdict::NeedMore,
            "{name}"
        );
    }
}

#[test]
fn records_of_random_sizes_give_the_same_hello() {
    let mut rng = XorShift(0x5eed_71c5);
    for (name, input) in TLS_FIXTURES {
        let original = matched(name, input);
        for _ in 0..20 {
            let split = reframe(&handshake_stream(input), || 1 + rng.below(700));
            assert_eq!(sniff(&split), Verdict::Match(original.clone()), "{name}");
        }
    }
}

#[test]
fn bytes_after_the_complete_hello_do_not_change_the_answer() {
    let original = matched("curl", TLS_CURL);
    // A change_cipher_spec record and application data, as a TLS 1.3 client sends next.
    let mut more = TLS_CURL.to_vec();
    more.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03, 0x00]);
    assert_eq!(sniff(&more), Verdict::Match(original));
}

#[test]
fn record_layer_violations_are_refused_on_the_first_impossible_byte() {
    assert_eq!(sniff(b""), Verdict::NeedMore);
    assert_eq!(sniff(&[0x16]), Verdict::NeedMore);
    assert_eq!(sniff(&[0x17]), Verdict::NoMatch); // application data, not a hello
    assert_eq!(sniff(&[0x16, 0x02]), Verdict::NoMatch); // version major 2
    assert_eq!(sniff(&[0x16, 0x03, 0x09]), Verdict::NoMatch);
    assert_eq!(sniff(&[0x16, 0x03, 0x01, 0x41]), Verdict::NoMatch); // > 2^14 for sure
    assert_eq!(sniff(&[0x16, 0x03, 0x01, 0x40, 0x01]), Verdict::NoMatch); // 2^14 + 1
    assert_eq!(sniff(&[0x16, 0x03, 0x01, 0x00, 0x00]), Verdict::NoMatch); // empty record
    assert_eq!(
        sniff(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x02]),
        Verdict::NoMatch
    ); // ServerHello
       // A record header followed by something else entirely.
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, SSH_CLIENT.len() as u8];
    garbage.extend_from_slice(SSH_CLIENT);
    assert_eq!(sniff(&garbage), Verdict::NoMatch);
    // Handshake header of a hello, then a body that is not one.
    let mut bogus = vec![0x16, 0x03, 0x01, 0x00, 0x34, 0x01, 0x00, 0x00, 0x30];
    bogus.extend(std::iter::repeat(0x03).take(0x30));
    assert_eq!(sniff(&bogus), Verdict::NoMatch);
}

#[test]
fn a_non_handshake_record_before_the_hello_is_complete_is_refused() {
    let stream = handshake_stream(TLS_CURL);
    let mut input = reframe(&stream[..100], || 100);
    assert_eq!(sniff(&input), Verdict::NeedMore);
    input.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]); // an alert
    assert_eq!(sniff(&input), Verdict::NoMatch);
}

#[test]
fn malformed_hellos_are_refused() {
    // Trailing byte inside the handshake message.
    let mut stream = handshake_stream(TLS_CURL);
    stream.push(0);
    let len = (stream.len() - 4) as u32;
    stream[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(sniff(&reframe(&stream, || 1 << 14)), Verdict::NoMatch);
    // A second server_name: the gateway could read one name and the server another.
    let dup = with_extensions(TLS_OPENSSL, |exts| {
        let sni = exts.iter().find(|(t, _)| *t == 0).unwrap().clone();
        exts.push(sni);
    });
    assert_eq!(sniff(&dup), Verdict::NoMatch);
    // A host name with a NUL in it.
    let nul = with_extensions(TLS_OPENSSL, |exts| {
        let sni = exts.iter_mut().find(|(t, _)| *t == 0).unwrap();
        *sni.1.last_mut().unwrap() = 0;
    });
    assert_eq!(sniff(&nul), Verdict::NoMatch);
}

#[test]
fn rebuilt_hello_without_edits_is_unchanged() {
    // Guards the helper the evasion tests rely on.
    let same = with_extensions(TLS_OPENSSL, |_| {});
    assert_eq!(same, TLS_OPENSSL);
}

#[test]
fn encrypted_client_hello_extension_is_reported() {
    let original = matched("openssl", TLS_OPENSSL);
    let ech = with_extensions(TLS_OPENSSL, |exts| exts.push((0xfe0d, vec![0; 8])));
    let hello = matched("ech", &ech);
    assert!(hello.ech);
    assert_eq!(hello.server_name, original.server_name);
    assert_ne!(hello.ja4, original.ja4); // one more extension, counted and hashed
}

#[test]
fn grease_does_not_change_version_or_fingerprint() {
    let original = matched("openssl", TLS_OPENSSL);
    let greased = with_extensions(TLS_OPENSSL, |exts| {
        exts.insert(0, (0x3a3a, vec![]));
        let versions = exts.iter_mut().find(|(t, _)| *t == 0x2b).unwrap();
        versions.1 = vec![6, 0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03];
    });
    let hello = matched("greased", &greased);
    assert_eq!(hello.version, 0x0304);
    assert_eq!(hello.ja4, original.ja4);
}

#[test]
fn no_sni_and_no_alpn() {
    let bare = with_extensions(TLS_OPENSSL, |exts| {
        exts.retain(|(t, _)| ![0, 0x10].contains(t))
    });
    let hello = matched("bare", &bare);
    assert_eq!(hello.server_name, None);
    assert!(hello.alpn.is_empty());
    assert!(hello.ja4.starts_with("t13i310900_"), "{}", hello.ja4);
    // SNI and ALPN are not part of the extension hash.
    let original = matched("openssl", TLS_OPENSSL);
    assert_eq!(hello.ja4[10..], original.ja4[10..]);
}

#[test]
fn duplicate_extension_types_are_found_in_short_and_long_lists() {
    use crate::sniff::tls::has_duplicates;
    let mut many: Vec<u16> = (0..200).collect();
    assert!(!has_duplicates(&mut many[..20]) && !has_duplicates(&mut many));
    many[150] = 3;
    assert!(has_duplicates(&mut many));
    assert!(has_duplicates(&mut [0x0000, 0x0010, 0x0000]));
}

/// One extension's data as tls-parser reads it, against the sniffer's own walk: the same host
/// name, ALPN names, highest version and signature algorithms, refused exactly when
/// tls-parser refuses.
fn assert_read_as_tls_parser_reads(ty: u16, data: &[u8]) {
    use crate::sniff::ja4::{be16s, is_grease};
    use crate::sniff::tls::{alpn_names, highest_version, len16, sni_host_name};
    use tls_parser::{parse_tls_client_hello_extension, SNIType, TlsExtension};
    let mut ext = ty.to_be_bytes().to_vec();
    ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
    ext.extend_from_slice(data);
    let theirs = parse_tls_client_hello_extension(&ext).ok().map(|(_, e)| e);
    let case = format!("extension {ty:#06x}, data {data:02x?}");
    match (ty, theirs) {
        (0x00, Some(TlsExtension::SNI(names))) => {
            let name = names.iter().find(|(t, _)| *t == SNIType::HostName);
            assert_eq!(
                sni_host_name(data).ok(),
                Some(name.map(|(_, n)| *n)),
                "{case}"
            );
        }
        (0x10, Some(TlsExtension::ALPN(names))) => {
            let ours = alpn_names(data).ok().map(|n| n.collect::<Vec<_>>());
            assert_eq!(ours, Some(names), "{case}");
        }
        (0x2b, Some(TlsExtension::SupportedVersions(versions))) => {
            let max = versions
                .iter()
                .map(|v| v.0)
                .filter(|&v| !is_grease(v))
                .max();
            assert_eq!(highest_version(data).ok(), Some(max), "{case}");
        }
        (0x0d, Some(TlsExtension::SignatureAlgorithms(algs))) => {
            let ours = len16(data).map(|(list, _)| be16s(list).collect::<Vec<_>>());
            assert_eq!(ours, Some(algs), "{case}");
        }
        (0x00, None) => assert!(sni_host_name(data).is_err(), "{case}"),
        (0x10, None) => assert!(alpn_names(data).is_err(), "{case}"),
        (0x2b, None) => assert!(highest_version(data).is_err(), "{case}"),
        (0x0d, None) => assert!(len16(data).is_none(), "{case}"),
        (_, other) => panic!("{case}: tls-parser read {other:?}"),
    }
}

/// The sniffer walks SNI, ALPN, supported_versions and signature_algorithms itself (to
/// allocate nothing); over the real extensions of every fixture, cut at every length and with
/// random bytes changed, and over random bytes, it reads them exactly as tls-parser does.
#[test]
fn extension_walk_reads_what_tls_parser_reads() {
    let mut samples: Vec<(u16, Vec<u8>)> = Vec::new();
    for (_, input) in TLS_FIXTURES {
        with_extensions(input, |exts| {
            let read = exts
                .iter()
                .filter(|(t, _)| [0x00, 0x10, 0x2b, 0x0d].contains(t));
            samples.extend(read.cloned());
        });
    }
    assert!(samples.len() >= 4 * TLS_FIXTURES.len() - 1);
    let mut rng = XorShift(0x7e11_0a5e);
    for (ty, data) in &samples {
        for n in 0..=data.len().min(300) {
            assert_read_as_tls_parser_reads(*ty, &data[..n]);
        }
        for _ in 0..200 {
            let mut changed = data.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(changed.len().min(12));
                changed[i] = [0x00, 0x01, 0x02, 0x03, 0xff][rng.below(5)];
            }
            assert_read_as_tls_parser_reads(*ty, &changed);
        }
    }
    for ty in [0x00, 0x10, 0x2b, 0x0d] {
        for _ in 0..500 {
            let len = rng.below(12);
            assert_read_as_tls_parser_reads(ty, &rng.bytes(len));
        }
    }
}
