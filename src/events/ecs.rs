//! The ECS objects the documents share, written member by member (see `json`): the event
//! object, endpoints, network, rule, the T1571 threat, and what the sniffers saw.

use std::net::SocketAddr;

use super::json::Object;
use super::Flow;
use crate::sniff::{Meta, Sniffed};

/// The `event` object.
pub struct Event {
    pub kind: &'static str,
    pub category: &'static [&'static str],
    pub types: &'static [&'static str],
    pub action: &'static str,
    pub reason: Option<&'static str>,
    pub outcome: Option<&'static str>,
    pub duration: Option<u64>,
}

impl Event {
    pub fn write(&self, o: &mut Object<'_>) {
        o.object("event", |o| {
            o.name("kind", self.kind)
                .names("category", self.category.iter().copied())
                .names("type", self.types.iter().copied())
                .name("action", self.action)
                .opt_name("reason", self.reason)
                .opt_name("outcome", self.outcome);
            if let Some(duration) = self.duration {
                o.u64("duration", duration);
            }
        });
    }
}

/// `source` or `destination`: address, port, bytes (close events) and the host name the
/// client asked an explicit proxy for. A destination named by host whose address was never
/// learned (an unspecified address with a domain) has no `ip`.
pub fn endpoint(
    o: &mut Object<'_>,
    key: &'static str,
    addr: SocketAddr,
    bytes: Option<u64>,
    domain: Option<&str>,
) {
    o.object(key, |o| {
        if domain.is_none() || !addr.ip().is_unspecified() {
            o.ip("ip", addr.ip());
        }
        o.u64("port", u64::from(addr.port()));
        if let Some(bytes) = bytes {
            o.u64("bytes", bytes);
        }
        o.opt_str("domain", domain);
    });
}

/// `network`: transport, address family, the protocol identified and the segment.
pub fn network(o: &mut Object<'_>, flow: &Flow, protocol: &'static str, segment: Option<&str>) {
    o.object("network", |o| {
        o.name("transport", "tcp")
            .name(
                "type",
                if flow.destination.is_ipv4() {
                    "ipv4"
                } else {
                    "ipv6"
                },
            )
            .name("protocol", protocol)
            .opt_str("name", segment);
    });
}

/// `rule`: the rule that decided, its segment (`ruleset`) and the policy version.
pub fn rule(o: &mut Object<'_>, id: Option<&str>, ruleset: Option<&str>, version: &str) {
    o.object("rule", |o| {
        o.opt_str("id", id)
            .opt_str("ruleset", ruleset)
            .str("version", version);
    });
}

/// `threat`: MITRE ATT&CK T1571, "Non-Standard Port".
pub fn t1571(o: &mut Object<'_>) {
    o.object("threat", |o| {
        o.name("framework", "MITRE ATT&CK")
            .object("technique", |o| {
                o.names("id", ["T1571"])
                    .names("name", ["Non-Standard Port"]);
            });
    });
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

/// The ECS objects the sniffers' metadata fills, at the top level: `tls`, or `http`, `url`
/// and `user_agent`.
pub fn observed(o: &mut Object<'_>, sniffed: Option<&Sniffed>) {
    match sniffed.map(|s| &s.meta) {
        Some(Meta::Tls(hello)) => {
            let version = tls_version_name(hello.version);
            o.object("tls", |o| {
                o.object("client", |o| {
                    o.opt_str("server_name", hello.server_name.as_deref())
                        .str("ja4", &hello.ja4);
                })
                .opt_str("next_protocol", hello.alpn.first().map(String::as_str))
                .opt_name("version", version)
                .opt_name("version_protocol", version.map(|_| "tls"));
            });
        }
        Some(Meta::Http(req)) => {
            o.object("http", |o| {
                o.object("request", |o| {
                    o.str("method", &req.method);
                });
            });
            if let Some(domain) = &req.host {
                o.object("url", |o| {
                    o.str("domain", domain);
                });
            }
            if let Some(original) = &req.user_agent {
                o.object("user_agent", |o| {
                    o.str("original", original);
                });
            }
        }
        Some(Meta::None | Meta::Ssh(_) | Meta::Banner(_)) | None => {}
    }
}

/// Non-ECS details the sniffers found, inside `portcullis`: the side that spoke, the ALPN
/// list and ECH, the SSH banner, or a server greeting under its protocol's name
/// (`portcullis.smtp.banner`, `.host`).
pub fn details(o: &mut Object<'_>, sniffed: Option<&Sniffed>) {
    let Some(sniffed) = sniffed else {
        return;
    };
    o.name("side", sniffed.side.name());
    match &sniffed.meta {
        Meta::None | Meta::Http(_) => {}
        Meta::Tls(hello) => {
            o.object("tls", |o| {
                o.strs("alpn", hello.alpn.iter().map(String::as_str))
                    .bool("ech", hello.ech);
            });
        }
        Meta::Ssh(ssh) => {
            o.object("ssh", |o| {
                o.str("banner", &ssh.banner);
            });
        }
        Meta::Banner(banner) => {
            o.object(sniffed.protocol.name(), |o| {
                o.str("banner", &banner.text)
                    .opt_str("host", banner.host.as_deref());
            });
        }
    }
}
