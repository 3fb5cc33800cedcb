//! The decision: [`Policy::gate`] before any byte is read, [`Policy::decide_rules`] after
//! detection. Pure functions of the compiled policy; the hot path parses nothing.

use std::net::{IpAddr, SocketAddr};

use super::{
    Action, Admission, Decision, Gate, Mode, OnUnidentified, Policy, Ports, Reason, Request, Rule,
    Segment,
};
use crate::sniff::Protocol;

impl Policy {
    /// The segment whose source prefix is the longest one containing `source`. IPv4-mapped
    /// IPv6 sources (`::ffff:10.1.2.3`, from dual-stack listeners) count as IPv4.
    pub fn segment_for(&self, source: IpAddr) -> Option<usize> {
        let source = source.to_canonical();
        self.by_prefix
            .iter()
            .find(|(net, _)| net.contains(&source))
            .map(|&(_, i)| i)
    }

    /// The checks made before any byte is read, in contract order: self destination,
    /// connection limit, rate limit (as the proxy's [`Admission`] says), no segment, exempt
    /// destination. Anything else must be inspected.
    pub fn gate(&self, source: IpAddr, destination: SocketAddr, admission: Admission) -> Gate {
        let segment = self.segment_for(source);
        let refused = |reason| {
            Gate::Decided(Decision {
                action: Action::Blocked,
                reason,
                segment,
                rule: None,
                expected_protocols: Vec::new(),
            })
        };
        match admission {
            Admission::SelfDestination => return refused(Reason::SelfDestination),
            Admission::ConnectionLimit => return refused(Reason::ConnectionLimit),
            Admission::RateLimited => return refused(Reason::RateLimited),
            Admission::Admitted => {}
        }
        let Some(index) = segment else {
            return refused(Reason::NoSegment);
        };
        let dest_ip = destination.ip().to_canonical();
        let exempt = self
            .segments
            .get(index)
            .is_some_and(|seg| seg.exempt_destinations.iter().any(|n| n.contains(&dest_ip)));
        if exempt {
            return Gate::Decided(Decision {
                action: Action::Allowed,
                reason: Reason::ExemptDestination,
                segment,
                rule: None,
                expected_protocols: Vec::new(),
            });
        }
        Gate::Inspect { segment: index }
    }

    /// Whether the segment refuses whatever is spoken to `destination`: its port is named
    /// by no rule and the segment does not forward such traffic. A silent client on such a
    /// port never gets the destination contacted for its banner (live and replay alike).
    pub fn refuses_port_blind(&self, segment: usize, destination: SocketAddr) -> bool {
        let blind = self.decide_rules(segment, destination, Protocol::Unknown, None);
        blind.reason == Reason::PortNotAllowed && !blind.action.forwards()
    }

    /// The segment's rules on port, protocol, destination and server name (see the
    /// module documentation of `crate::policy` and DESIGN.md for the order).
    ///
    /// `unknown` is an ordinary protocol for a rule that lists it on this port (its
    /// destinations and server names still apply); otherwise the segment's
    /// `on_unidentified` decides.
    pub fn decide_rules(
        &self,
        segment: usize,
        destination: SocketAddr,
        protocol: Protocol,
        server_name: Option<&str>,
    ) -> Decision {
        let Some(seg) = self.segments.get(segment) else {
            // Not reachable through `gate`; refuse rather than guess.
            return Decision {
                action: Action::Blocked,
                reason: Reason::NoSegment,
                segment: None,
                rule: None,
                expected_protocols: Vec::new(),
            };
        };
        let port = destination.port();
        let dest_ip = destination.ip().to_canonical();
        let names_port = |r: &Rule| match &r.ports {
            Ports::Set(set) => set.contains(port),
            Ports::Standard => r
                .protocols
                .iter()
                .any(|p| self.catalogue.is_standard(*p, port)),
        };
        let allows_on_port = |r: &Rule, p: Protocol| {
            r.protocols.contains(&p)
                && match &r.ports {
                    Ports::Set(_) => true,
                    Ports::Standard => self.catalogue.is_standard(p, port),
                }
        };
        // The rules naming this port, in order; walked again rather than collected (no
        // allocation on every connection's decision).
        let candidates = || (0..seg.rules.len()).filter(|&i| names_port(&seg.rules[i]));
        let decision = |reason, rule: Option<usize>, expected: Vec<Protocol>| Decision {
            action: action(seg, reason),
            reason,
            segment: Some(segment),
            rule,
            expected_protocols: expected,
        };
        let Some(first) = candidates().next() else {
            return decision(Reason::PortNotAllowed, None, Vec::new());
        };

        let mut expected: Vec<Protocol> = Vec::new();
        for i in candidates() {
            for &p in &seg.rules[i].protocols {
                if allows_on_port(&seg.rules[i], p) && !expected.contains(&p) {
                    expected.push(p);
                }
            }
        }

        let allowing = || candidates().filter(|&i| allows_on_port(&seg.rules[i], protocol));
        let Some(first_allowing) = allowing().next() else {
            if protocol == Protocol::Unknown {
                return match seg.on_unidentified {
                    OnUnidentified::Allow => decision(Reason::Allowed, None, expected),
                    OnUnidentified::Block => {
                        decision(Reason::UnidentifiedProtocol, Some(first), expected)
                    }
                };
            }
            return decision(Reason::ProtocolNotAllowed, Some(first), expected);
        };

        let mut first_past_destination = None;
        for i in allowing() {
            let rule = &seg.rules[i];
            let dest_ok = rule.destinations.is_empty()
                || rule.destinations.iter().any(|n| n.contains(&dest_ip));
            if !dest_ok {
                continue;
            }
            first_past_destination.get_or_insert(i);
            let name_ok = rule.server_names.is_empty()
                || server_name
                    .is_some_and(|name| rule.server_names.iter().any(|p| p.matches(name)));
            if name_ok {
                return decision(Reason::Allowed, Some(i), expected);
            }
        }
        match first_past_destination {
            None => decision(
                Reason::DestinationNotAllowed,
                Some(first_allowing),
                expected,
            ),
            Some(i) => decision(Reason::ServerNameNotAllowed, Some(i), expected),
        }
    }

    /// Both sides must agree. `client` is the decision on the client's first turn, which
    /// forwarded the connection; the server's first turn then identified as `server`.
    /// The same protocol: `client` stands. An unidentified client turn: the server's
    /// protocol is judged as if the client had spoken it. Two different protocols (an HTTP
    /// request answered by an SSH banner): `protocol_not_allowed` under the rule that let
    /// the client's turn through, refused in block mode and alerted in monitor mode.
    pub fn reconcile(
        &self,
        client: Decision,
        client_protocol: Protocol,
        destination: SocketAddr,
        server: Protocol,
    ) -> Decision {
        let Some(segment) = client.segment else {
            return client;
        };
        if server == client_protocol
            || server == Protocol::Unknown
            || client.reason == Reason::ExemptDestination
        {
            return client;
        }
        if client_protocol == Protocol::Unknown {
            return self.decide_rules(segment, destination, server, None);
        }
        let Some(seg) = self.segments.get(segment) else {
            return client;
        };
        Decision {
            action: action(seg, Reason::ProtocolNotAllowed),
            reason: Reason::ProtocolNotAllowed,
            ..client
        }
    }

    /// [`Policy::gate`], then [`Policy::decide_rules`] when the gate asks for inspection:
    /// the whole decision for a connection whose protocol is already known (`explain`,
    /// replay, tests).
    pub fn decide(&self, req: &Request) -> Decision {
        match self.gate(req.source, req.destination, req.admission) {
            Gate::Decided(decision) => decision,
            Gate::Inspect { segment } => {
                self.decide_rules(segment, req.destination, req.protocol, req.server_name)
            }
        }
    }

    /// The rule that decided `d`, if any.
    pub fn rule(&self, d: &Decision) -> Option<&Rule> {
        self.segment(d)?.rules.get(d.rule?)
    }

    /// The segment `d` was judged in, if any.
    pub fn segment(&self, d: &Decision) -> Option<&Segment> {
        self.segments.get(d.segment?)
    }
}

/// What a reason means for the connection in this segment's mode.
fn action(seg: &Segment, reason: Reason) -> Action {
    match (reason, seg.mode) {
        (Reason::Allowed | Reason::ExemptDestination, _) => Action::Allowed,
        (_, Mode::Block) => Action::Blocked,
        (_, Mode::Monitor) => Action::Alerted,
    }
}
