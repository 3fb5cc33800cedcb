//! ECS JSON events, one object per line: a decision event and a close event per connection,
//! and configuration events (DESIGN.md "Events", a contract). The proxy builds a
//! [`DecisionEvent`] or [`CloseEvent`] from plain data; [`Sink`] writes them off the data
//! path.

mod ecs;
mod json;
mod sink;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::policy::{Action, Decision, Mode, Policy, Reason};
use crate::sniff::{Protocol, Sniffed};
use ecs::Event;

pub use sink::{Sink, SinkError, Target, Writer};

/// Why detection stopped (contract: appears verbatim as `portcullis.detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Matched,
    NoMatch,
    Timeout,
    Eof,
    TooLarge,
    ReadError,
    /// Not inspected: the decision was taken before any byte was read (exempt, no segment,
    /// self destination, limits).
    Skipped,
}

impl Detection {
    pub const fn name(self) -> &'static str {
        match self {
            Detection::Matched => "matched",
            Detection::NoMatch => "no_match",
            Detection::Timeout => "timeout",
            Detection::Eof => "eof",
            Detection::TooLarge => "too_large",
            Detection::ReadError => "read_error",
            Detection::Skipped => "skipped",
        }
    }
}

/// Why a connection ended (appears verbatim as `portcullis.close_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions reached end of stream.
    Completed,
    /// The gateway refused the connection.
    Blocked,
    UpstreamRefused,
    UpstreamUnreachable,
    UpstreamTimeout,
    ClientReset,
    UpstreamReset,
    ClientError,
    UpstreamError,
    IdleTimeout,
    /// The drain period after SIGTERM ran out.
    Shutdown,
    /// The host name an explicit proxy's client asked for did not resolve.
    Unresolved,
}

impl CloseReason {
    pub const fn name(self) -> &'static str {
        match self {
            CloseReason::Completed => "completed",
            CloseReason::Blocked => "blocked",
            CloseReason::UpstreamRefused => "upstream_refused",
            CloseReason::UpstreamUnreachable => "upstream_unreachable",
            CloseReason::UpstreamTimeout => "upstream_timeout",
            CloseReason::ClientReset => "client_reset",
            CloseReason::UpstreamReset => "upstream_reset",
            CloseReason::ClientError => "client_error",
            CloseReason::UpstreamError => "upstream_error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Unresolved => "unresolved",
        }
    }
}

/// The connection an event is about.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// The listener's mode name (`redirect`, `forward`, ...).
    pub listener: &'static str,
}

/// Everything a decision event says.
#[derive(Debug, Clone)]
pub struct DecisionEvent<'a> {
    pub at: SystemTime,
    pub flow: Flow,
    pub action: Action,
    pub reason: Reason,
    /// Segment name, when a segment judged the connection.
    pub segment: Option<&'a str>,
    /// Segment mode, when a segment judged the connection.
    pub mode: Option<Mode>,
    pub rule_id: Option<&'a str>,
    pub policy_version: &'a str,
    pub protocol: Protocol,
    pub sniffed: Option<&'a Sniffed>,
    pub detection: Detection,
    pub expected_protocols: &'a [Protocol],
    pub would_block: bool,
    /// The protocol the server's first turn named after a client-first verdict (both
    /// sides must agree): `portcullis.server_protocol`.
    pub server_protocol: Option<Protocol>,
    /// `portcullis replay`: the capture file the flow came from.
    pub capture: Option<&'a str>,
}

/// Everything a close event says.
#[derive(Debug, Clone)]
pub struct CloseEvent<'a> {
    pub at: SystemTime,
    pub flow: Flow,
    pub segment: Option<&'a str>,
    pub policy_version: &'a str,
    pub protocol: Protocol,
    /// Bytes the client sent (and the gateway forwarded or discarded).
    pub client_bytes: u64,
    /// Bytes the server sent.
    pub server_bytes: u64,
    pub duration: Duration,
    pub reason: CloseReason,
}

impl<'a> DecisionEvent<'a> {
    /// The event for `decision` under `policy` (its segment, mode, rule and version), about
    /// `flow`, with what detection saw; the same for live connections and replayed flows.
    pub fn of(
        policy: &'a Policy,
        decision: &'a Decision,
        at: SystemTime,
        flow: Flow,
        sniffed: Option<&'a Sniffed>,
        detection: Detection,
        server_protocol: Option<Protocol>,
    ) -> DecisionEvent<'a> {
        let segment = policy.segment(decision);
        DecisionEvent {
            at,
            flow,
            action: decision.action,
            reason: decision.reason,
            segment: segment.map(|s| s.name.as_str()),
            mode: segment.map(|s| s.mode),
            rule_id: policy.rule(decision).map(|r| r.id.as_str()),
            policy_version: &policy.version,
            protocol: sniffed.map_or(Protocol::Unknown, |s| s.protocol),
            sniffed,
            detection,
            expected_protocols: &decision.expected_protocols,
            would_block: decision.would_block(),
            server_protocol,
            capture: None,
        }
    }
}

impl DecisionEvent<'_> {
    pub fn to_json(&self) -> String {
        self.to_json_for(None)
    }

    /// As `to_json`, with `destination.domain`: the host name the client asked an explicit
    /// proxy for.
    pub fn to_json_for(&self, domain: Option<&str>) -> String {
        line(|out| self.write_json_for(domain, out))
    }

    /// Appends the event's JSON line (without its newline) to `out`, as [`Sink::emit_with`]
    /// wants it.
    pub fn write_json_for(&self, domain: Option<&str>, out: &mut Vec<u8>) {
        let alert = self.would_block;
        let (types, outcome): (&'static [&'static str], _) = match self.action {
            Action::Blocked => (&["connection", "denied"], "failure"),
            Action::Allowed | Action::Alerted => (&["connection", "allowed"], "success"),
        };
        json::object(out, |o| {
            o.timestamp("@timestamp", self.at);
            Event {
                kind: if alert { "alert" } else { "event" },
                category: if alert {
                    &["network", "intrusion_detection"]
                } else {
                    &["network"]
                },
                types,
                action: self.action.name(),
                reason: Some(self.reason.name()),
                outcome: Some(outcome),
                duration: None,
            }
            .write(o);
            ecs::endpoint(o, "source", self.flow.source, None, None);
            ecs::endpoint(o, "destination", self.flow.destination, None, domain);
            ecs::network(o, &self.flow, self.protocol.name(), self.segment);
            ecs::rule(o, self.rule_id, self.segment, self.policy_version);
            if self.reason.is_t1571() {
                ecs::t1571(o);
            }
            ecs::observed(o, self.sniffed);
            o.object("portcullis", |o| {
                o.opt_name("mode", self.mode.map(mode_name))
                    .names(
                        "expected_protocols",
                        self.expected_protocols.iter().map(|p| p.name()),
                    )
                    .bool("would_block", self.would_block)
                    .name("detection", self.detection.name())
                    .name("listener", self.flow.listener)
                    .opt_name("server_protocol", self.server_protocol.map(Protocol::name));
                ecs::details(o, self.sniffed);
                if let Some(file) = self.capture {
                    o.object("replay", |o| {
                        o.str("file", file);
                    });
                }
            });
        });
    }
}

impl CloseEvent<'_> {
    pub fn to_json(&self) -> String {
        self.to_json_for(None)
    }

    /// As `to_json`, with `destination.domain` (see [`DecisionEvent::to_json_for`]).
    pub fn to_json_for(&self, domain: Option<&str>) -> String {
        line(|out| self.write_json_for(domain, out))
    }

    /// As [`DecisionEvent::write_json_for`].
    pub fn write_json_for(&self, domain: Option<&str>, out: &mut Vec<u8>) {
        json::object(out, |o| {
            o.timestamp("@timestamp", self.at);
            Event {
                kind: "event",
                category: &["network"],
                types: &["connection", "end"],
                action: "closed",
                reason: None,
                outcome: None,
                duration: Some(u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX)),
            }
            .write(o);
            let (source, destination) = (self.flow.source, self.flow.destination);
            ecs::endpoint(o, "source", source, Some(self.client_bytes), None);
            ecs::endpoint(
                o,
                "destination",
                destination,
                Some(self.server_bytes),
                domain,
            );
            ecs::network(o, &self.flow, self.protocol.name(), self.segment);
            ecs::rule(o, None, self.segment, self.policy_version);
            o.object("portcullis", |o| {
                o.name("close_reason", self.reason.name())
                    .name("listener", self.flow.listener);
            });
        });
    }
}

/// A `policy_reloaded` event, or with `error` a `policy_reload_failed` one; `version` is the
/// policy in force afterwards.
pub fn reload_event(version: &str, error: Option<&str>) -> String {
    line(|out| {
        json::object(out, |o| {
            o.timestamp("@timestamp", SystemTime::now());
            Event {
                kind: "event",
                category: &["configuration"],
                types: &["change"],
                action: if error.is_some() {
                    "policy_reload_failed"
                } else {
                    "policy_reloaded"
                },
                reason: None,
                outcome: Some(if error.is_some() {
                    "failure"
                } else {
                    "success"
                }),
                duration: None,
            }
            .write(o);
            ecs::rule(o, None, None, version);
            if let Some(message) = error {
                o.object("error", |o| {
                    o.str("message", message);
                });
            }
        });
    })
}

/// `portcullis sniff`'s answer: protocol, detection, side, and the metadata in the same ECS
/// objects as the events.
pub fn sniff_report(sniffed: Option<&Sniffed>, detection: &str, port: u16) -> String {
    line(|out| {
        json::object(out, |o| {
            o.name(
                "protocol",
                sniffed.map_or(Protocol::Unknown, |s| s.protocol).name(),
            )
            .str("detection", detection)
            .opt_name("side", sniffed.map(|s| s.side.name()))
            .object("destination", |o| {
                o.u64("port", u64::from(port));
            });
            ecs::observed(o, sniffed);
            o.object("portcullis", |o| ecs::details(o, sniffed));
        });
    })
}

/// A document written by `write` as one line (without the newline).
fn line(write: impl FnOnce(&mut Vec<u8>)) -> String {
    // Room for a whole decision event with TLS metadata (about 1 KB) from the start.
    let mut out = Vec::with_capacity(1536);
    write(&mut out);
    // Only whole UTF-8 strings and ASCII are ever written.
    String::from_utf8(out).unwrap_or_default()
}

pub const fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Block => "block",
        Mode::Monitor => "monitor",
    }
}

#[cfg(test)]
mod tests;
