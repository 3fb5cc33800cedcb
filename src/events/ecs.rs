//! The ECS documents as typed, borrowed structs: serialized straight into one string, with
//! no intermediate JSON tree (building `serde_json::Value` maps cost more than the rest of a
//! short connection together).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::sniff::{Meta, ServerBanner, Sniffed};

/// `@timestamp`, RFC 3339 with milliseconds, written without an intermediate string.
pub struct Timestamp(pub SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

/// Serializes with `Display` (IP addresses as text, on every serializer).
pub struct Text<T>(pub T);

impl<T: fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
pub struct Event {
    pub kind: &'static str,
    pub category: &'static [&'static str],
    #[serde(rename = "type")]
    pub types: &'static [&'static str],
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
}

#[derive(Serialize)]
pub struct Endpoint<'a> {
    /// Absent only for a destination named by host whose address was never learned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<Text<IpAddr>>,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
}

impl Endpoint<'_> {
    pub fn of(addr: SocketAddr) -> Endpoint<'static> {
        Endpoint {
            ip: Some(Text(addr.ip())),
            port: addr.port(),
            bytes: None,
            domain: None,
        }
    }

    /// A destination as the client named it: `domain` is the host name it asked for (explicit
    /// proxies). An unspecified address with a domain means the name was never resolved.
    pub fn destination<'a>(addr: SocketAddr, domain: Option<&'a str>) -> Endpoint<'a> {
        let mut endpoint = Endpoint::of(addr);
        if domain.is_some() && addr.ip().is_unspecified() {
            endpoint.ip = None;
        }
        endpoint.domain = domain;
        endpoint
    }
}

#[derive(Serialize)]
pub struct Network<'a> {
    pub transport: &'static str,
    #[serde(rename = "type")]
    pub family: &'static str,
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
}

#[derive(Serialize)]
pub struct Rule<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ruleset: Option<&'a str>,
    pub version: &'a str,
}

#[derive(Serialize)]
pub struct Threat {
    pub framework: &'static str,
    pub technique: Technique,
}

#[derive(Serialize)]
pub struct Technique {
    pub id: [&'static str; 1],
    pub name: [&'static str; 1],
}

/// MITRE ATT&CK T1571, "Non-Standard Port".
pub const T1571: Threat = Threat {
    framework: "MITRE ATT&CK",
    technique: Technique {
        id: ["T1571"],
        name: ["Non-Standard Port"],
    },
};

/// The ECS objects the sniffers' metadata fills (`tls`, `http`, `url`, `user_agent`).
#[derive(Serialize, Default)]
pub struct Observed<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Http<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Url<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgent<'a>>,
}

#[derive(Serialize)]
pub struct Tls<'a> {
    pub client: TlsClient<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_protocol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_protocol: Option<&'static str>,
}

#[derive(Serialize)]
pub struct TlsClient<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<&'a str>,
    pub ja4: &'a str,
}

#[derive(Serialize)]
pub struct Http<'a> {
    pub request: HttpRequest<'a>,
}

#[derive(Serialize)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
}

#[derive(Serialize)]
pub struct Url<'a> {
    pub domain: &'a str,
}

#[derive(Serialize)]
pub struct UserAgent<'a> {
    pub original: &'a str,
}

/// Non-ECS details the sniffers found, under `portcullis`.
#[derive(Serialize, Default)]
pub struct Details<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDetails<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshDetails<'a>>,
    /// `<protocol>: {banner, host}` for a server that greets first.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub banner: Option<BannerDetails<'a>>,
}

#[derive(Serialize)]
pub struct TlsDetails<'a> {
    pub alpn: &'a [String],
    pub ech: bool,
}

#[derive(Serialize)]
pub struct SshDetails<'a> {
    pub banner: &'a str,
}

/// A server greeting, keyed by its protocol's name (`portcullis.smtp.banner`, `.host`).
pub struct BannerDetails<'a> {
    pub protocol: &'static str,
    pub banner: &'a ServerBanner,
}

#[derive(Serialize)]
struct BannerFields<'a> {
    banner: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

impl Serialize for BannerDetails<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(
            self.protocol,
            &BannerFields {
                banner: &self.banner.text,
                host: self.banner.host.as_deref(),
            },
        )?;
        map.end()
    }
}

/// `0x0304` -> "1.3".
fn tls_version_name(version: u16) -> Option<&'static str> {
    Some(match version {
        0x0300 => "3.0",
        0x0301 => "1.0",
        0x0302 => "1.1",
        0x0303 => "1.2",
        0x0304 => "1.3",
        _ => return None,
    })
}

/// The ECS objects and `portcullis` details for what the sniffers saw.
pub fn observed(sniffed: &Sniffed) -> (Observed<'_>, Details<'_>) {
    let mut observed = Observed::default();
    let mut details = Details {
        side: Some(sniffed.side.name()),
        ..Details::default()
    };
    match &sniffed.meta {
        Meta::None => {}
        Meta::Tls(hello) => {
            let version = tls_version_name(hello.version);
            observed.tls = Some(Tls {
                client: TlsClient {
                    server_name: hello.server_name.as_deref(),
                    ja4: &hello.ja4,
                },
                next_protocol: hello.alpn.first().map(String::as_str),
                version,
                version_protocol: version.map(|_| "tls"),
            });
            details.tls = Some(TlsDetails {
                alpn: &hello.alpn,
                ech: hello.ech,
            });
        }
        Meta::Http(req) => {
            observed.http = Some(Http {
                request: HttpRequest {
                    method: &req.method,
                },
            });
            observed.url = req.host.as_deref().map(|domain| Url { domain });
            observed.user_agent = req
                .user_agent
                .as_deref()
                .map(|original| UserAgent { original });
        }
        Meta::Ssh(ssh) => {
            details.ssh = Some(SshDetails {
                banner: &ssh.banner,
            });
        }
        Meta::Banner(banner) => {
            details.banner = Some(BannerDetails {
                protocol: sniffed.protocol.name(),
                banner,
            });
        }
    }
    (observed, details)
}

/// Serializes a document as one JSON line (without the newline).
pub fn line<T: Serialize>(doc: &T) -> String {
    // Room for a whole decision event from the start: growing from serde_json's 128 bytes
    // took four reallocations and copies per event.
    let mut out = Vec::with_capacity(LINE);
    if !write_line(doc, &mut out) {
        return String::new();
    }
    // serde_json writes only UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends a document as one JSON line (without the newline) to `out`; false, with `out`
/// as it was, if it could not be serialized (these documents always can: every key is a
/// string and nothing is a map).
pub fn write_line<T: Serialize>(doc: &T, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if serde_json::to_writer(&mut *out, doc).is_err() {
        out.truncate(start);
        return false;
    }
    true
}

/// Room reserved for one event line: a decision event with TLS metadata is about 1 KB.
const LINE: usize = 1536;
