//! The event lines' JSON, written straight into the sink's batch.
//!
//! Every document here has a fixed shape: literal keys, a few optional members, and strings
//! that are either names from the code or text a client sent (a server name, a user agent, a
//! banner). Through serde every key went through the string escaper and every member through
//! a generic map serializer, which made the two events of a short connection about 4% of
//! the gateway's CPU. Here keys are copied as they are, and only the strings that came from
//! outside are escaped, exactly as serde_json escapes them (RFC 8259: `"`, `\`, the short
//! forms, and `\u00XX` for the other control characters; the rest of UTF-8 as it is).

use std::cell::Cell;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes one JSON object to `out`: `fill` adds its members.
pub fn object(out: &mut Vec<u8>, fill: impl FnOnce(&mut Object<'_>)) {
    out.push(b'{');
    fill(&mut Object { out, empty: true });
    out.push(b'}');
}

/// The members of an object being written. Keys are literals from this crate, written
/// without escaping.
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl Object<'_> {
    fn key(&mut self, key: &str) {
        debug_assert!(!needs_escape(key.as_bytes()), "key {key:?} needs escaping");
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A name from this crate (a protocol, a reason, an ECS category): copied without the
    /// escaping check, which is most of a short string's cost.
    pub fn name(&mut self, key: &str, value: &'static str) -> &mut Self {
        debug_assert!(!needs_escape(value.as_bytes()), "{value:?} needs escaping");
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
        self
    }

    /// Leaves the member out when there is no name.
    pub fn opt_name(&mut self, key: &str, value: Option<&'static str>) -> &mut Self {
        if let Some(value) = value {
            self.name(key, value);
        }
        self
    }

    /// A list of names (see [`Object::name`]).
    pub fn names(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = &'static str>,
    ) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.into_iter().enumerate() {
            debug_assert!(!needs_escape(value.as_bytes()), "{value:?} needs escaping");
            if i > 0 {
                self.out.push(b',');
            }
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        }
        self.out.push(b']');
        self
    }

    /// Text from outside (a client, a server, a policy file), escaped.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        string(self.out, value);
        self
    }

    /// Leaves the member out when there is no value.
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// An address as text (its digits, dots, colons and hex letters need no escaping).
    pub fn ip(&mut self, key: &str, ip: IpAddr) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        match ip {
            // Four integers: cheaper than the formatting machinery.
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(b'.');
                    }
                    self.out
                        .extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                // Writing to a Vec cannot fail.
                let _ = write!(self.out, "{v6}");
            }
        }
        self.out.push(b'"');
        self
    }

    /// `@timestamp`: RFC 3339 in UTC with milliseconds, `2026-11-28T10:00:00.123Z`.
    pub fn timestamp(&mut self, key: &str, at: SystemTime) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        timestamp(self.out, at);
        self.out.push(b'"');
        self
    }

    pub fn strs<'s>(&mut self, key: &str, values: impl IntoIterator<Item = &'s str>) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(self.out, value);
        }
        self.out.push(b']');
        self
    }

    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut Object<'_>)) -> &mut Self {
        self.key(key);
        object(self.out, fill);
        self
    }
}

/// `value` as a JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = value.as_bytes();
    // Most strings need nothing escaped: one check over the whole string, one copy.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(short);
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The last second of year 9999, the last one RFC 3339 can write.
const LAST_SECOND: u64 = 253_402_300_799;

thread_local! {
    /// The date and time of the last second written, `2026-11-28T10:00:00`: a thread writes
    /// many events a second, and working out a calendar date is most of a timestamp's cost.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `at` in RFC 3339, UTC, milliseconds. A clock before 1970 is written as 1970.
fn timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let seconds = since.as_secs().min(LAST_SECOND);
    let (cached, mut text) = SECOND.get();
    if cached != seconds {
        let whole = UNIX_EPOCH + Duration::from_secs(seconds);
        // `2026-11-28T10:00:00Z`: the date and time are its first 19 bytes.
        let rendered = humantime::format_rfc3339_seconds(whole).to_string();
        if let Some(date_time) = rendered.as_bytes().get(..19) {
            text.copy_from_slice(date_time);
        }
        SECOND.set((seconds, text));
    }
    out.extend_from_slice(&text);
    let millis = since.subsec_millis();
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(fill: impl FnOnce(&mut Object<'_>)) -> String {
        let mut out = Vec::new();
        object(&mut out, fill);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut hostile: String = (0u8..=0x7f).map(char::from).collect();
        hostile.push_str("é\u{1F600}\u{2028}\"\\end");
        for value in [hostile.as_str(), "", "plain", "\"", "\\\\", "a\u{0}"] {
            let line = written(|o| {
                o.str("v", value);
            });
            let serde = format!("{{\"v\":{}}}", serde_json::to_string(value).unwrap());
            assert_eq!(line, serde);
            let back: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(back["v"], value);
        }
    }

    #[test]
    fn members_nest_and_optional_ones_are_left_out() {
        let line = written(|o| {
            o.u64("n", u64::MAX)
                .opt_str("none", None)
                .opt_str("some", Some("x"))
                .bool("t", true)
                .bool("f", false)
                .ip("v4", "10.0.0.1".parse().unwrap())
                .ip("edges", "255.0.99.100".parse().unwrap())
                .ip("v6", "2001:db8::1".parse().unwrap())
                .strs("list", ["a", "b\"c"])
                .strs("empty", [])
                .name("name", "tls")
                .opt_name("no_name", None)
                .names("names", ["network", "intrusion_detection"])
                .object("inner", |o| {
                    o.object("deeper", |_| {});
                });
        });
        assert_eq!(
            line,
            r#"{"n":18446744073709551615,"some":"x","t":true,"f":false,"v4":"10.0.0.1","edges":"255.0.99.100","v6":"2001:db8::1","list":["a","b\"c"],"empty":[],"name":"tls","names":["network","intrusion_detection"],"inner":{"deeper":{}}}"#
        );
    }

    #[test]
    fn timestamps_have_milliseconds_and_follow_the_clock_across_seconds() {
        let at = |millis| UNIX_EPOCH + Duration::from_millis(millis);
        let stamp = |t| {
            written(|o| {
                o.timestamp("t", t);
            })
        };
        // The same second again, then the next one: the cached date must not stick.
        for (millis, text) in [
            (1_795_860_000_123, "2026-11-28T10:00:00.123Z"),
            (1_795_860_000_007, "2026-11-28T10:00:00.007Z"),
            (1_795_860_001_999, "2026-11-28T10:00:01.999Z"),
            (1_795_860_000_000, "2026-11-28T10:00:00.000Z"),
        ] {
            assert_eq!(stamp(at(millis)), format!(r#"{{"t":"{text}"}}"#));
        }
        // A clock set before 1970, and one past what RFC 3339 can write: still a line.
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(stamp(before), r#"{"t":"1970-01-01T00:00:00.000Z"}"#);
        let far = UNIX_EPOCH + Duration::from_secs(LAST_SECOND + 100);
        assert_eq!(stamp(far), r#"{"t":"9999-12-31T23:59:59.000Z"}"#);
    }
}
