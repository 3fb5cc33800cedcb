//! ECS JSON events, one object per line: a decision event and a close event per connection,
//! and configuration events (DESIGN.md "Events", a contract). The proxy builds a
//! [`DecisionEvent`] or [`CloseEvent`] from plain data; [`Sink`] writes them off the data
//! path.

mod ecs;
mod sink;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::policy::{Action, Decision, Mode, Policy, Reason};
use crate::sniff::{Protocol, Sniffed};
use ecs::{
    line, write_line, Details, Endpoint, Event, Network, Observed, Rule, Threat, Timestamp, T1571,
};

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

fn network<'a>(flow: &Flow, protocol: Protocol, segment: Option<&'a str>) -> Network<'a> {
    Network {
        transport: "tcp",
        family: if flow.destination.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        },
        protocol: protocol.name(),
        name: segment,
    }
}

/// Serializes a slice of protocols by name.
struct Names<'a>(&'a [Protocol]);

impl Serialize for Names<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| p.name()))
    }
}

#[derive(Serialize)]
struct DecisionDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Timestamp,
    event: Event,
    source: Endpoint<'a>,
    destination: Endpoint<'a>,
    network: Network<'a>,
    rule: Rule<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat: Option<Threat>,
    #[serde(flatten)]
    observed: Observed<'a>,
    portcullis: DecisionDetails<'a>,
}

#[derive(Serialize)]
struct DecisionDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    expected_protocols: Names<'a>,
    would_block: bool,
    detection: &'static str,
    listener: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_protocol: Option<&'static str>,
    #[serde(flatten)]
    details: Details<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<Capture<'a>>,
}

#[derive(Serialize)]
struct Capture<'a> {
    file: &'a str,
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
        line(&self.doc(domain))
    }

    /// Appends the event's JSON line (without its newline) to `out`, as [`Sink::emit_with`]
    /// wants it; false if it could not be written.
    pub fn write_json_for(&self, domain: Option<&str>, out: &mut Vec<u8>) -> bool {
        write_line(&self.doc(domain), out)
    }

    fn doc<'b>(&'b self, domain: Option<&'b str>) -> DecisionDoc<'b> {
        let alert = self.would_block;
        let (types, outcome): (&'static [&'static str], _) = match self.action {
            Action::Blocked => (&["connection", "denied"], "failure"),
            Action::Allowed | Action::Alerted => (&["connection", "allowed"], "success"),
        };
        let (observed, details) = self.sniffed.map(ecs::observed).unwrap_or_default();
        DecisionDoc {
            timestamp: Timestamp(self.at),
            event: Event {
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
            },
            source: Endpoint::of(self.flow.source),
            destination: Endpoint::destination(self.flow.destination, domain),
            network: network(&self.flow, self.protocol, self.segment),
            rule: Rule {
                id: self.rule_id,
                ruleset: self.segment,
                version: self.policy_version,
            },
            threat: self.reason.is_t1571().then_some(T1571),
            observed,
            portcullis: DecisionDetails {
                mode: self.mode.map(mode_name),
                expected_protocols: Names(self.expected_protocols),
                would_block: self.would_block,
                detection: self.detection.name(),
                listener: self.flow.listener,
                details,
                server_protocol: self.server_protocol.map(Protocol::name),
                replay: self.capture.map(|file| Capture { file }),
            },
        }
    }
}

#[derive(Serialize)]
struct CloseDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Timestamp,
    event: Event,
    source: Endpoint<'a>,
    destination: Endpoint<'a>,
    network: Network<'a>,
    rule: Rule<'a>,
    portcullis: CloseDetails,
}

#[derive(Serialize)]
struct CloseDetails {
    close_reason: &'static str,
    listener: &'static str,
}

impl CloseEvent<'_> {
    pub fn to_json(&self) -> String {
        self.to_json_for(None)
    }

    /// As `to_json`, with `destination.domain` (see [`DecisionEvent::to_json_for`]).
    pub fn to_json_for(&self, domain: Option<&str>) -> String {
        line(&self.doc(domain))
    }

    /// As [`DecisionEvent::write_json_for`].
    pub fn write_json_for(&self, domain: Option<&str>, out: &mut Vec<u8>) -> bool {
        write_line(&self.doc(domain), out)
    }

    fn doc<'b>(&'b self, domain: Option<&'b str>) -> CloseDoc<'b> {
        let mut source = Endpoint::of(self.flow.source);
        source.bytes = Some(self.client_bytes);
        let mut destination = Endpoint::destination(self.flow.destination, domain);
        destination.bytes = Some(self.server_bytes);
        CloseDoc {
            timestamp: Timestamp(self.at),
            event: Event {
                kind: "event",
                category: &["network"],
                types: &["connection", "end"],
                action: "closed",
                reason: None,
                outcome: None,
                duration: Some(u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX)),
            },
            source,
            destination,
            network: network(&self.flow, self.protocol, self.segment),
            rule: Rule {
                id: None,
                ruleset: self.segment,
                version: self.policy_version,
            },
            portcullis: CloseDetails {
                close_reason: self.reason.name(),
                listener: self.flow.listener,
            },
        }
    }
}

#[derive(Serialize)]
struct ReloadDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: Timestamp,
    event: Event,
    rule: Rule<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObj<'a>>,
}

#[derive(Serialize)]
struct ErrorObj<'a> {
    message: &'a str,
}

/// A `policy_reloaded` event, or with `error` a `policy_reload_failed` one; `version` is the
/// policy in force afterwards.
pub fn reload_event(version: &str, error: Option<&str>) -> String {
    line(&ReloadDoc {
        timestamp: Timestamp(SystemTime::now()),
        event: Event {
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
        },
        rule: Rule {
            id: None,
            ruleset: None,
            version,
        },
        error: error.map(|message| ErrorObj { message }),
    })
}

#[derive(Serialize)]
struct SniffDoc<'a> {
    protocol: &'static str,
    detection: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    side: Option<&'static str>,
    destination: Port,
    #[serde(flatten)]
    observed: Observed<'a>,
    portcullis: Details<'a>,
}

#[derive(Serialize)]
struct Port {
    port: u16,
}

/// `portcullis sniff`'s answer: protocol, detection, side, and the metadata in the same ECS
/// objects as the events.
pub fn sniff_report(sniffed: Option<&Sniffed>, detection: &str, port: u16) -> String {
    let (observed, details) = sniffed.map(ecs::observed).unwrap_or_default();
    line(&SniffDoc {
        protocol: sniffed.map_or(Protocol::Unknown, |s| s.protocol).name(),
        detection,
        side: sniffed.map(|s| s.side.name()),
        destination: Port { port },
        observed,
        portcullis: details,
    })
}

pub const fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Block => "block",
        Mode::Monitor => "monitor",
    }
}

#[cfg(test)]
mod tests;
