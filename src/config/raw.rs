//! Stage one of loading: the files as serde sees them, with positions for everything
//! stage two (validation) may need to point at. Values that have rules of their own
//! (modes, addresses, prefixes, ports) stay strings here so that every bad one is reported,
//! not just the first.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// `portcullis.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub policy_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub listener: Vec<Spanned<RawListener>>,
    pub detect: Option<RawDetect>,
    pub events: Option<RawEvents>,
    pub limits: Option<RawLimits>,
    pub admin: Option<Spanned<RawAdmin>>,
}

/// Just `policy_dir`, read leniently so a config file with other problems still leads to
/// its policy files being checked too.
#[derive(Debug, Deserialize)]
pub struct RawPolicyDirOnly {
    pub policy_dir: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub mode: Spanned<String>,
    pub listen: Spanned<String>,
    pub upstream: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    pub client_first_ms: Option<Spanned<i64>>,
    pub timeout_ms: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    pub sink: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_source: Option<Spanned<i64>>,
    pub rate_per_source: Option<Spanned<i64>>,
    pub rate_burst_per_source: Option<Spanned<i64>>,
    pub connect_timeout_ms: Option<Spanned<i64>>,
    pub idle_timeout_ms: Option<Spanned<i64>>,
    pub drain_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Spanned<String>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
}

/// One segment file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    pub segment: Option<Spanned<String>>,
    pub sources: Option<Spanned<Vec<Spanned<String>>>>,
    pub mode: Option<Spanned<String>>,
    pub on_unidentified: Option<Spanned<String>>,
    pub refuse: Option<Spanned<String>>,
    #[serde(default)]
    pub exempt_destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<RawRule>>,
}

/// One `[[allow]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub ports: Option<Spanned<RawPorts>>,
    pub protocols: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub destinations: Vec<Spanned<String>>,
    #[serde(default)]
    pub server_names: Vec<Spanned<String>>,
}

/// `services.toml`: protocol name = list of ports.
pub type RawServices = BTreeMap<Spanned<String>, Spanned<RawPorts>>;

/// A `ports` value before validation: a word (`"standard"` is the only good one), a list,
/// or something else entirely.
#[derive(Debug)]
pub enum RawPorts {
    Word(String),
    List(Vec<Spanned<PortItem>>),
    /// What was found instead, for the message.
    Other(&'static str),
}

/// One list entry: `443` or `"8000-8099"`, or something else.
#[derive(Debug)]
pub enum PortItem {
    Number(i64),
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for RawPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPorts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of ports or the string \"standard\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPorts, E> {
                Ok(RawPorts::Word(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawPorts, E> {
                Ok(RawPorts::Other("a single number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawPorts, E> {
                Ok(RawPorts::Other("a single number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawPorts, E> {
                Ok(RawPorts::Other("a boolean"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawPorts, E> {
                Ok(RawPorts::Other("a float"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPorts, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<PortItem>>()? {
                    items.push(item);
                }
                Ok(RawPorts::List(items))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range \"LOW-HIGH\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortItem, E> {
                Ok(PortItem::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortItem, E> {
                Ok(PortItem::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortItem, E> {
                Ok(PortItem::Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<PortItem, E> {
                Ok(PortItem::Other("a boolean"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<PortItem, E> {
                Ok(PortItem::Other("a float"))
            }
        }
        d.deserialize_any(V)
    }
}
