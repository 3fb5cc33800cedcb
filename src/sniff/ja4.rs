//! JA4 TLS client fingerprint (FoxIO JA4 specification, technical_details/JA4.md).
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, version, SNI or not, cipher and
//! extension counts, ALPN ends; then a truncated sha256 of the sorted cipher suites; then one
//! of the sorted extensions (without SNI and ALPN) followed by the signature algorithms in the
//! client's order. GREASE values (RFC 8701) are ignored everywhere.

use std::fmt::Write;

use sha2::{Digest, Sha256};

/// The parts of a ClientHello that JA4 reads. GREASE values may be present; they are dropped.
pub(super) struct Ja4Input<'a> {
    /// Highest supported_versions value, else the legacy_version.
    pub version: u16,
    /// A server_name extension is present (`d`), or not (`i`).
    pub sni: bool,
    pub ciphers: &'a [u16],
    /// Extension types in any order, SNI and ALPN included.
    pub extensions: &'a [u16],
    /// The first ALPN protocol name, as sent.
    pub first_alpn: Option<&'a [u8]>,
    /// signature_algorithms in the client's order.
    pub signature_algorithms: &'a [u16],
}

/// RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa.
pub(super) fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// The JA4 fingerprint of a TLS-over-TCP ClientHello.
pub(super) fn fingerprint(input: &Ja4Input<'_>) -> String {
    let mut ciphers: Vec<u16> = input
        .ciphers
        .iter()
        .copied()
        .filter(|&c| !is_grease(c))
        .collect();
    ciphers.sort_unstable();
    // Sorted with GREASE, SNI and ALPN still in: the hash skips them as it goes.
    let mut extensions = input.extensions.to_vec();
    extensions.sort_unstable();
    let extension_count = extensions.iter().filter(|&&e| !is_grease(e)).count();

    let mut out = String::with_capacity(36);
    out.push('t');
    out.push_str(version_code(input.version));
    out.push(if input.sni { 'd' } else { 'i' });
    push_two_digits(&mut out, ciphers.len());
    push_two_digits(&mut out, extension_count);
    push_alpn(&mut out, input.first_alpn);

    out.push('_');
    push_truncated_hash(&mut out, &[(&ciphers, |_| false)]);
    out.push('_');
    let not_hashed: fn(u16) -> bool = |e| is_grease(e) || e == 0x0000 || e == 0x0010;
    if extensions.iter().all(|&e| not_hashed(e)) {
        push_truncated_hash(&mut out, &[]);
    } else {
        let algs = (input.signature_algorithms, is_grease as fn(u16) -> bool);
        push_truncated_hash(&mut out, &[(&extensions, not_hashed), algs]);
    }
    out
}

/// JA4 version codes; "00" for anything else.
/// A count as two decimal digits, capped at 99 (JA4: "if there are more than 99, 99").
fn push_two_digits(out: &mut String, n: usize) {
    let n = n.min(99) as u8;
    out.push(char::from(b'0' + n / 10));
    out.push(char::from(b'0' + n % 10));
}

fn version_code(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last character of the first ALPN value; when either end is not an ASCII letter
/// or digit, the first and last character of its hex form instead (JA4.md, "ALPN Extension
/// Value", FoxIO PR #277); "00" without ALPN or for an empty value.
fn push_alpn(out: &mut String, first_alpn: Option<&[u8]>) {
    let (Some(&first), Some(&last)) = (
        first_alpn.and_then(|a| a.first()),
        first_alpn.and_then(|a| a.last()),
    ) else {
        out.push_str("00");
        return;
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        out.push(char::from(first));
        out.push(char::from(last));
    } else {
        let _ = write!(out, "{:x}{:x}", first >> 4, last & 0x0f);
    }
}

/// Comma-separated 4-digit lowercase hex.
/// Lowercase hex digits, for the formatting-free encoders below (the hot path: the detection
/// budget is a microsecond, and `write!` costs tens of nanoseconds a call).
const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex4(v: u16) -> [u8; 4] {
    let [hi, lo] = v.to_be_bytes();
    let d = |n: u8| HEX[usize::from(n & 0x0f)];
    [d(hi >> 4), d(hi), d(lo >> 4), d(lo)]
}

/// Text for the hash, gathered on the stack and handed to SHA-256 in large pieces: one
/// `update` per 4-digit value costs more than the hashing itself.
struct HashText {
    hasher: Sha256,
    buf: [u8; 512],
    len: usize,
}

impl HashText {
    /// A few bytes; the buffer goes to the hash first when they would not fit.
    #[inline]
    fn push(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.hasher
                .update(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
        if let Some(slot) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            slot.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    /// `values` as JA4 writes them: 4-digit lowercase hex, comma-separated; `skip` values
    /// are left out.
    fn push_hex_list(&mut self, values: &[u16], skip: impl Fn(u16) -> bool) {
        let mut first = true;
        for &v in values.iter().filter(|&&v| !skip(v)) {
            let [a, b, c, d] = hex4(v);
            if first {
                self.push(&[a, b, c, d]);
            } else {
                self.push(&[b',', a, b, c, d]);
            }
            first = false;
        }
    }

    fn finalize(&mut self) -> [u8; 32] {
        self.hasher
            .update(self.buf.get(..self.len).unwrap_or_default());
        self.hasher.finalize_reset().into()
    }
}

/// A list to hash and the values to leave out of it.
type HashList<'a> = (&'a [u16], fn(u16) -> bool);

/// The first 12 hex digits of the hash of `lists` (joined by `_`, empty ones left out), or
/// 12 zeros when there is nothing to hash.
fn push_truncated_hash(out: &mut String, lists: &[HashList<'_>]) {
    let present = |(list, skip): &&HashList<'_>| list.iter().any(|&v| !skip(v));
    if !lists.iter().any(|l| present(&l)) {
        out.push_str("000000000000");
        return;
    }
    let mut text = HashText {
        hasher: Sha256::new(),
        buf: [0; 512],
        len: 0,
    };
    for (i, (list, skip)) in lists.iter().filter(present).enumerate() {
        if i > 0 {
            text.push(b"_");
        }
        text.push_hex_list(list, skip);
    }
    let digest = text.finalize();
    for &b in digest.iter().take(6) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(list: &str) -> Vec<u16> {
        list.split(',')
            .map(|h| u16::from_str_radix(h, 16).unwrap())
            .collect()
    }

    /// The example in FoxIO's JA4 README, a Chrome hello given as `JA4` beside its raw form
    /// `JA4_r` (the sorted lists); SNI and ALPN (h2) are added back here because `JA4_r`
    /// leaves them out of the extension list but counts them.
    #[test]
    fn spec_example_fingerprint() {
        let ciphers =
            hex("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9");
        let mut extensions =
            hex("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01");
        extensions.extend([0x0000, 0x0010]);
        let algs = hex("0403,0804,0401,0503,0805,0501,0806,0601");
        let ja4 = fingerprint(&Ja4Input {
            version: 0x0304,
            sni: true,
            ciphers: &ciphers,
            extensions: &extensions,
            first_alpn: Some(b"h2"),
            signature_algorithms: &algs,
        });
        assert_eq!(ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    /// A published Chrome 143 fingerprint (browserleaks-style report: `ja4` beside `ja4_r`),
    /// with ECH (fe0d) and the X25519MLKEM768-era extension set; GREASE values added here
    /// must not change it.
    #[test]
    fn published_chrome_fingerprint_ignores_grease() {
        let mut ciphers =
            hex("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9");
        ciphers.insert(0, 0x4a4a);
        let mut extensions =
            hex("0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01");
        extensions.extend([0x0000, 0x0010, 0x2a2a, 0xdada]);
        let algs = hex("0403,0804,0401,0503,0805,0501,0806,0601");
        let ja4 = fingerprint(&Ja4Input {
            version: 0x0304,
            sni: true,
            ciphers: &ciphers,
            extensions: &extensions,
            first_alpn: Some(b"h2"),
            signature_algorithms: &algs,
        });
        assert_eq!(ja4, "t13d1516h2_8daaf6152771_d8a2da3f94cd");
    }

    #[test]
    fn grease_values_are_the_rfc_8701_sixteen() {
        let grease: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        assert_eq!(grease.len(), 16);
        assert_eq!(grease.first(), Some(&0x0a0a));
        assert_eq!(grease.last(), Some(&0xfafa));
        assert!(!is_grease(0x1a2a));
    }

    #[test]
    fn alpn_ends() {
        let alpn = |a: Option<&[u8]>| {
            let mut s = String::new();
            push_alpn(&mut s, a);
            s
        };
        assert_eq!(alpn(Some(b"http/1.1")), "h1");
        assert_eq!(alpn(Some(b"h")), "hh");
        assert_eq!(alpn(None), "00");
        assert_eq!(alpn(Some(b"")), "00");
        // Non-alphanumeric end: first and last hex digit ("2f...61" for "/a").
        assert_eq!(alpn(Some(b"/a")), "21");
        assert_eq!(alpn(Some(&[0xab])), "ab");
        assert_eq!(alpn(Some(&[0xab, 0xcd])), "ad");
    }

    #[test]
    fn no_ciphers_or_extensions_hash_to_zeros() {
        let ja4 = fingerprint(&Ja4Input {
            version: 0x0301,
            sni: false,
            ciphers: &[],
            extensions: &[],
            first_alpn: None,
            signature_algorithms: &[],
        });
        assert_eq!(ja4, "t10i000000_000000000000_000000000000");
    }
}
