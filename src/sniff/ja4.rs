//! JA4 TLS client fingerprint (FoxIO JA4 specification, technical_details/JA4.md).
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, version, SNI or not, cipher and
//! extension counts, ALPN ends; then a truncated sha256 of the sorted cipher suites; then one
//! of the sorted extensions (without SNI and ALPN) followed by the signature algorithms in the
//! client's order. GREASE values (RFC 8701) are ignored everywhere.

use sha2::{Digest, Sha256};

/// The parts of a ClientHello that JA4 reads. GREASE values may be present; they are skipped.
pub(super) struct Ja4Input<'a> {
    /// Highest supported_versions value, else the legacy_version.
    pub version: u16,
    /// A server_name extension is present (`d`), or not (`i`).
    pub sni: bool,
    /// Cipher suites in any order: sorted here, in place.
    pub ciphers: &'a mut [u16],
    /// Extension types in any order, SNI and ALPN included: sorted here, in place.
    pub extensions: &'a mut [u16],
    /// The first ALPN protocol name, as sent.
    pub first_alpn: Option<&'a [u8]>,
    /// The signature_algorithms list as sent: big-endian values in the client's order (an odd
    /// last byte is ignored, as tls-parser ignores it).
    pub signature_algorithms: &'a [u8],
}

/// RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ... 0xfafa.
#[inline]
pub(super) fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// Big-endian u16 values, a trailing odd byte ignored.
pub(super) fn be16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .map(|p| p.iter().fold(0, |v, &b| v << 8 | u16::from(b)))
}

/// Length of a fingerprint: `t13d1516h2_8daaf6152771_e5627efa2ab1`.
const JA4_LEN: usize = 36;

/// The JA4 fingerprint of a TLS-over-TCP ClientHello.
///
/// Written into a stack buffer and hashed from it; the returned `String` is the one
/// allocation (the detection budget is a microsecond for the whole hello).
pub(super) fn fingerprint(input: Ja4Input<'_>) -> String {
    input.ciphers.sort_unstable();
    input.extensions.sort_unstable();
    let not_grease = |&v: &u16| !is_grease(v);
    let mut text = HashText::new();

    let cipher_count = text.push_list(input.ciphers.iter().copied().filter(not_grease));
    let cipher_hash = text.finish(cipher_count > 0);
    // SNI and ALPN are counted but not hashed; without other extensions, the signature
    // algorithms are not hashed either.
    let hashed = |&e: &u16| !is_grease(e) && e != 0x0000 && e != 0x0010;
    let hashed_count = text.push_list(input.extensions.iter().copied().filter(hashed));
    if hashed_count > 0 {
        text.push(b'_');
        let algs = be16s(input.signature_algorithms).filter(not_grease);
        if text.push_list(algs) == 0 {
            text.len -= 1; // no signature algorithms: no `_` either
        }
    }
    let extension_hash = text.finish(hashed_count > 0);
    let extension_count = input.extensions.iter().filter(|e| not_grease(e)).count();

    let [v0, v1] = version_code(input.version);
    let [c0, c1] = two_digits(cipher_count);
    let [e0, e1] = two_digits(extension_count);
    let [a0, a1] = alpn_code(input.first_alpn);
    let sni = if input.sni { b'd' } else { b'i' };
    let mut out = Vec::with_capacity(JA4_LEN);
    out.extend_from_slice(&[b't', v0, v1, sni, c0, c1, e0, e1, a0, a1, b'_']);
    out.extend_from_slice(&cipher_hash);
    out.push(b'_');
    out.extend_from_slice(&extension_hash);
    // Every byte above is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// A count as two decimal digits, capped at 99 (JA4: "if there are more than 99, 99").
fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

/// JA4 version codes; "00" for anything else.
fn version_code(version: u16) -> [u8; 2] {
    *match version {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
        0x0002 => b"s2",
        0xfeff => b"d1",
        0xfefd => b"d2",
        0xfefc => b"d3",
        _ => b"00",
    }
}

/// First and last character of the first ALPN value; when either end is not an ASCII letter
/// or digit, the first and last character of its hex form instead (JA4.md, "ALPN Extension
/// Value", FoxIO PR #277); "00" without ALPN or for an empty value.
fn alpn_code(first_alpn: Option<&[u8]>) -> [u8; 2] {
    match first_alpn {
        Some(&[first, ref rest @ ..]) => {
            let last = rest.last().copied().unwrap_or(first);
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                [first, last]
            } else {
                [HEX[usize::from(first >> 4)], HEX[usize::from(last & 0x0f)]]
            }
        }
        _ => *b"00",
    }
}

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Every byte as its two lowercase hex digits, the first in the low byte.
const HEX_PAIRS: [u16; 256] = {
    let mut table = [0; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = HEX[i >> 4] as u16 | (HEX[i & 0x0f] as u16) << 8;
        i += 1;
    }
    table
};

/// `v` as four lowercase hex digits and a comma, in the first five bytes of a word: two
/// table loads and one store, whatever the value.
#[inline]
fn hex4_comma(v: u16) -> [u8; 8] {
    let [hi, lo] = v.to_be_bytes();
    let hi = u64::from(HEX_PAIRS[usize::from(hi)]);
    let lo = u64::from(HEX_PAIRS[usize::from(lo)]);
    (hi | lo << 16 | u64::from(b',') << 32).to_le_bytes()
}

/// Room for 64 values of text before it goes to the hash.
const TEXT_BUF: usize = 64 * 5;
/// Values are stored 8 bytes at a time, of which 5 are kept.
const TEXT_SLACK: usize = 3;

/// JA4's hash text (4-digit lowercase hex values, comma-separated), written on the stack and
/// handed to SHA-256 in large pieces: one `update` per value costs more than the hashing.
struct HashText {
    hasher: Sha256,
    buf: [u8; TEXT_BUF + TEXT_SLACK],
    len: usize,
}

impl HashText {
    fn new() -> HashText {
        HashText {
            hasher: Sha256::new(),
            buf: [0; TEXT_BUF + TEXT_SLACK],
            len: 0,
        }
    }

    fn flush(&mut self) {
        self.hasher
            .update(self.buf.get(..self.len).unwrap_or_default());
        self.len = 0;
    }

    fn push(&mut self, b: u8) {
        if self.len == TEXT_BUF {
            self.flush();
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// `values` comma-separated; how many there were.
    fn push_list(&mut self, values: impl Iterator<Item = u16>) -> usize {
        let mut count = 0;
        for v in values {
            // Each value goes in with the comma after it, so the last comma is never flushed.
            if self.len + 5 > TEXT_BUF {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len..self.len + 8) {
                slot.copy_from_slice(&hex4_comma(v));
                self.len += 5;
            }
            count += 1;
        }
        if count > 0 {
            self.len -= 1;
        }
        count
    }

    /// The first 12 hex digits of the hash of the text so far, or 12 zeros when there is
    /// nothing to hash; the text starts over.
    fn finish(&mut self, any: bool) -> [u8; 12] {
        let mut out = *b"000000000000";
        if any {
            self.flush();
            let digest = self.hasher.finalize_reset();
            for (pair, &b) in out.chunks_exact_mut(2).zip(digest.iter()) {
                pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
            }
        }
        self.len = 0;
        out
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

    /// `values` as the big-endian bytes a signature_algorithms list carries.
    fn wire(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// The example in FoxIO's JA4 README, a Chrome hello given as `JA4` beside its raw form
    /// `JA4_r` (the sorted lists); SNI and ALPN (h2) are added back here because `JA4_r`
    /// leaves them out of the extension list but counts them.
    #[test]
    fn spec_example_fingerprint() {
        let mut ciphers =
            hex("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9");
        let mut extensions =
            hex("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01");
        extensions.extend([0x0000, 0x0010]);
        let algs = hex("0403,0804,0401,0503,0805,0501,0806,0601");
        let ja4 = fingerprint(Ja4Input {
            version: 0x0304,
            sni: true,
            ciphers: &mut ciphers,
            extensions: &mut extensions,
            first_alpn: Some(b"h2"),
            signature_algorithms: &wire(&algs),
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
        let ja4 = fingerprint(Ja4Input {
            version: 0x0304,
            sni: true,
            ciphers: &mut ciphers,
            extensions: &mut extensions,
            first_alpn: Some(b"h2"),
            signature_algorithms: &wire(&algs),
        });
        assert_eq!(ja4, "t13d1516h2_8daaf6152771_d8a2da3f94cd");
    }

    #[test]
    fn every_value_is_written_as_four_lowercase_hex_digits() {
        for v in 0..=u16::MAX {
            let text = hex4_comma(v);
            assert_eq!(&text[..5], format!("{v:04x},").as_bytes());
        }
    }

    /// Lists longer than the stack buffer (hashed in pieces) hash as their text joined in one
    /// piece: sorted, comma-separated, `_` between extensions and signature algorithms, GREASE
    /// left out, and the counts capped at 99.
    #[test]
    fn long_lists_hash_as_their_joined_text() {
        let join = |values: &[u16]| {
            let hex: Vec<String> = values.iter().map(|v| format!("{v:04x}")).collect();
            hex.join(",")
        };
        let truncated_hash = |text: String| -> String {
            let digest = Sha256::digest(text.as_bytes());
            digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
        };
        for n in [1u16, 2, 63, 64, 65, 99, 130, 300, 3000] {
            // Distinct values in no order (40503 is odd), GREASE and SNI among them for large n.
            let ciphers: Vec<u16> = (0..n).map(|i| i.wrapping_mul(40503)).collect();
            let extensions: Vec<u16> = ciphers.iter().map(|c| c ^ 0x5a5a).collect();
            let algs: Vec<u16> = (0..n).rev().collect();
            let ja4 = fingerprint(Ja4Input {
                version: 0x0303,
                sni: false,
                ciphers: &mut ciphers.clone(),
                extensions: &mut extensions.clone(),
                first_alpn: None,
                signature_algorithms: &wire(&algs),
            });
            let mut sorted_ciphers = ciphers.clone();
            sorted_ciphers.retain(|&c| !is_grease(c));
            sorted_ciphers.sort();
            let mut counted = extensions.clone();
            counted.retain(|&e| !is_grease(e));
            let mut hashed = counted.clone();
            hashed.retain(|&e| e != 0x0000 && e != 0x0010);
            hashed.sort();
            let algs: Vec<u16> = algs.into_iter().filter(|&a| !is_grease(a)).collect();
            let expected = format!(
                "t12i{:02}{:02}00_{}_{}",
                sorted_ciphers.len().min(99),
                counted.len().min(99),
                truncated_hash(join(&sorted_ciphers)),
                match (hashed.is_empty(), algs.is_empty()) {
                    (true, _) => "000000000000".to_string(),
                    (false, true) => truncated_hash(join(&hashed)),
                    (false, false) => truncated_hash(format!("{}_{}", join(&hashed), join(&algs))),
                }
            );
            assert_eq!(ja4, expected, "{n} values");
        }
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
        let alpn = |a: Option<&[u8]>| String::from_utf8(alpn_code(a).to_vec()).unwrap();
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
        let ja4 = fingerprint(Ja4Input {
            version: 0x0301,
            sni: false,
            ciphers: &mut [],
            extensions: &mut [],
            first_alpn: None,
            signature_algorithms: &[],
        });
        assert_eq!(ja4, "t10i000000_000000000000_000000000000");
    }
}
