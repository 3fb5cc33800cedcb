//! The segment policy model and `decide()`: pure data in, a [`Decision`] out.
//!
//! A [`Policy`] is compiled once at load time (see `crate::config`) from one file per segment
//! plus the service catalogue; the hot path only looks things up. Nothing here does I/O,
//! logs, or knows about tokio.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::sniff::Protocol;

/// Block or monitor: what happens to a connection the rules refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Block,
    Monitor,
}

/// What to do with traffic whose protocol was not identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnidentified {
    Block,
    Allow,
}

/// How a refused connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    Reset,
    Native,
}

/// Why a decision came out as it did (contract: names appear verbatim in events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded, and the policy allows it.
    Allowed,
    /// Refused (block mode, or a refusal no mode softens: no segment, limits, self).
    Blocked,
    /// Forwarded in monitor mode although block mode would have refused it.
    Alerted,
}

impl Action {
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
