//! The segment policy model and `decide()`: pure data in, a [`Decision`] out.
//!
//! A [`Policy`] is compiled once at load time (see `crate::config`) from one file per segment
//! plus the service catalogue; the hot path only looks things up. Nothing here does I/O,
//! logs, or knows about tokio.
//!
//! The order of the checks (DESIGN.md, contract): [`Policy::gate`] before any byte is read
//! (self destination, connection limit, rate limit, no segment, exempt destination), then
//! [`Policy::decide_rules`] once the protocol is known (port, protocol, destination, server
//! name).

mod catalogue;
mod decide;
mod names;
mod ports;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::sniff::Protocol;

pub use catalogue::Catalogue;
pub use names::{BadPattern, NamePattern};
pub use ports::{PortSet, Ports};

/// A compiled policy: every segment, the effective service catalogue and the version that
/// names this exact content.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub segments: Vec<Segment>,
    pub catalogue: Catalogue,
    /// sha256 (hex) of every policy file and the effective catalogue.
    pub version: String,
    /// Every source prefix with its segment index, longest prefix first.
    #[serde(skip)]
    by_prefix: Vec<(IpNet, usize)>,
}

impl Policy {
    /// Compiles the source-prefix lookup. The loader has already refused a prefix that two
    /// segments share; should one slip through, the first segment listed wins.
    pub fn new(segments: Vec<Segment>, catalogue: Catalogue, version: String) -> Policy {
        let mut by_prefix: Vec<(IpNet, usize)> = segments
            .iter()
            .enumerate()
            .flat_map(|(i, seg)| seg.sources.iter().map(move |net| (*net, i)))
            .collect();
        // Stable sort: equal lengths keep segment order.
        by_prefix.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Policy {
            segments,
            catalogue,
            version,
            by_prefix,
        }
    }
}

/// One network segment: the sources it covers and the rules for their connections.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub name: String,
    pub sources: Vec<IpNet>,
    pub mode: Mode,
    pub on_unidentified: OnUnidentified,
    pub refuse: Refuse,
    pub exempt_destinations: Vec<IpNet>,
    pub rules: Vec<Rule>,
}

/// One `[[allow]]` entry of a segment file.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// `"<segment>/allow[<index>]"`, as in events (`rule.id`).
    pub id: String,
    pub ports: Ports,
    #[serde(serialize_with = "protocol_names")]
    pub protocols: Vec<Protocol>,
    /// Empty: any destination.
    pub destinations: Vec<IpNet>,
    /// Empty: any server name (or none at all).
    pub server_names: Vec<NamePattern>,
}

/// Serializes protocols by their contract names.
fn protocol_names<S: Serializer>(protocols: &[Protocol], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(protocols.iter().map(|p| p.name()))
}

/// Everything [`Policy::decide`] needs to know about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub source: IpAddr,
    /// The original destination.
    pub destination: SocketAddr,
    pub protocol: Protocol,
    /// TLS SNI or HTTP Host, when the bytes carried one.
    pub server_name: Option<&'a str>,
    pub admission: Admission,
}

/// The policy's answer for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
    /// Index into [`Policy::segments`], when the source matched one.
    pub segment: Option<usize>,
    /// Index into that segment's rules, when a rule decided.
    pub rule: Option<usize>,
    /// The protocols the rules naming this port allow on it (events:
    /// `portcullis.expected_protocols`).
    #[serde(serialize_with = "protocol_names")]
    pub expected_protocols: Vec<Protocol>,
}

impl Decision {
    /// True for every refusal reason, whether block mode refused it or monitor mode let it
    /// through (`portcullis.would_block`).
    pub fn would_block(&self) -> bool {
        !matches!(self.reason, Reason::Allowed | Reason::ExemptDestination)
    }

    /// True when the event is an alert (`event.kind = "alert"`): a refusal, real or
    /// monitored.
    pub fn is_alert(&self) -> bool {
        self.would_block()
    }
}

/// The outcome of the checks made before any byte is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Read the first bytes, identify the protocol, then ask [`Policy::decide_rules`].
    Inspect { segment: usize },
    /// Decided without looking at the bytes.
    Decided(Decision),
}

/// Block or monitor: what happens to a connection the rules refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Block,
    Monitor,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Block => "block",
            Mode::Monitor => "monitor",
        }
    }
}

/// What to do with traffic whose protocol was not identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnidentified {
    Block,
    Allow,
}

impl OnUnidentified {
    pub const fn name(self) -> &'static str {
        match self {
            OnUnidentified::Block => "block",
            OnUnidentified::Allow => "allow",
        }
    }
}

/// How a refused connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refuse {
    Reset,
    Native,
}

impl Refuse {
    pub const fn name(self) -> &'static str {
        match self {
            Refuse::Reset => "reset",
            Refuse::Native => "native",
        }
    }
}

/// Why a decision came out as it did (contract: names appear verbatim in events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Allowed,
    ExemptDestination,
    PortNotAllowed,
    ProtocolNotAllowed,
    UnidentifiedProtocol,
    DestinationNotAllowed,
    ServerNameNotAllowed,
    RateLimited,
    ConnectionLimit,
    NoSegment,
    SelfDestination,
}

impl Reason {
    /// Every reason, in declaration order (`metrics` keeps one counter slot per reason).
    pub const ALL: [Reason; 11] = [
        Reason::Allowed,
        Reason::ExemptDestination,
        Reason::PortNotAllowed,
        Reason::ProtocolNotAllowed,
        Reason::UnidentifiedProtocol,
        Reason::DestinationNotAllowed,
        Reason::ServerNameNotAllowed,
        Reason::RateLimited,
        Reason::ConnectionLimit,
        Reason::NoSegment,
        Reason::SelfDestination,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::ExemptDestination => "exempt_destination",
            Reason::PortNotAllowed => "port_not_allowed",
            Reason::ProtocolNotAllowed => "protocol_not_allowed",
            Reason::UnidentifiedProtocol => "unidentified_protocol",
            Reason::DestinationNotAllowed => "destination_not_allowed",
            Reason::ServerNameNotAllowed => "server_name_not_allowed",
            Reason::RateLimited => "rate_limited",
            Reason::ConnectionLimit => "connection_limit",
            Reason::NoSegment => "no_segment",
            Reason::SelfDestination => "self_destination",
        }
    }

    /// The reasons that are MITRE ATT&CK T1571 evidence (events carry `threat.*`).
    pub const fn is_t1571(self) -> bool {
        matches!(
            self,
            Reason::ProtocolNotAllowed | Reason::PortNotAllowed | Reason::UnidentifiedProtocol
        )
    }
}

/// The facts the proxy layer established before the policy is consulted
/// (checked first, in this order: self destination, connection limit, rate limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    SelfDestination,
    ConnectionLimit,
    RateLimited,
}

/// What the proxy does with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forwarded, and the policy allows it.
    Allowed,
    /// Refused (block mode, or a refusal no mode softens: no segment, limits, self).
    Blocked,
    /// Forwarded in monitor mode although block mode would have refused it.
    Alerted,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 3] = [Action::Allowed, Action::Blocked, Action::Alerted];

    pub const fn name(self) -> &'static str {
        match self {
            Action::Allowed => "allowed",
            Action::Blocked => "blocked",
            Action::Alerted => "alerted",
        }
    }

    pub const fn forwards(self) -> bool {
        !matches!(self, Action::Blocked)
    }
}
