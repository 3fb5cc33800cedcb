//! A connection's verdict, up to the relay: detection (client first, then the server's
//! banner), the decision and its event, the server's first turn confirming a client-first
//! verdict, and any refusal. It runs in a boxed future of its own, freed before the relay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::dial::{dial_and_listen, finish_dialled, forward, reset, server_first_forward};
use super::refuse::refuse_connection;
use super::{Early, Judged, Known, Next};
use crate::events::{CloseReason, Detection};
use crate::metrics::{Side, Tracked, Traffic};
use crate::policy::{Decision, Gate, Policy, Reason, Refuse};
use crate::proxy::detect::{client_first_turn, server_first_turn, ClientTurn, Detected, Eager};
use crate::proxy::dial::connect;
use crate::proxy::relay::Relayed;
use crate::proxy::{InForce, Shared};
use crate::sniff::{Protocol, Sniffed};

/// [`super::judge`] up to the relay: the decision event, and any refusal.
pub(super) async fn verdict<'a>(
    shared: &'a Shared,
    in_force: &'a InForce,
    gate: Gate,
    mut client: TcpStream,
    known: &Known,
    dialled: Option<TcpStream>,
    early: Early,
) -> Judged<'a> {
    let policy = &in_force.policy;
    let destination = known.flow.destination;
    let mut connected = dialled;
    let inspected = matches!(gate, Gate::Inspect { .. });
    let (mut decision, mut inspection) = match gate {
        // Bytes a proxy read already are forwarded even without inspection.
        Gate::Decided(decision) => (decision, early.uninspected().map(Inspection::read)),
        Gate::Inspect { segment } => {
            let inspection = match early {
                Early::Read(detected) => Inspection::read(detected),
                Early::Nothing | Early::Begun(_) => {
                    let begun = match early {
                        Early::Begun(begun) => begun,
                        _ => Vec::new(),
                    };
                    let started = Instant::now();
                    let (client, up) = (&mut client, &mut connected);
                    let inspection =
                        inspect(shared, policy, segment, client, begun, destination, up).await;
                    if let Some(side) = inspection.side() {
                        shared.metrics().detected(side, started.elapsed());
                    }
                    inspection
                }
            };
            let sniffed = inspection.detected.sniffed.as_ref();
            let domain = known.domain.as_deref();
            let decision = decide(policy, segment, destination, sniffed, domain);
            (decision, Some(inspection))
        }
    };
    // Client-first and forwarded: dial now, and let the server's first turn confirm it.
    let mut dialled = None;
    if let Some(Inspection {
        detected,
        upstream: Upstream::NotYet,
    }) = inspection.as_mut()
    {
        if inspected && decision.action.forwards() {
            let replay = std::mem::take(&mut detected.buf);
            let up = connected.take();
            let d = dial_and_listen(shared, &client, destination, up, replay).await;
            if let Some(server) = d.answer.sniffed.as_ref() {
                let client_protocol = detected
                    .sniffed
                    .as_ref()
                    .map_or(Protocol::Unknown, |s| s.protocol);
                decision =
                    policy.reconcile(decision, client_protocol, destination, server.protocol);
            }
            dialled = Some(d);
        }
    }
    let detected = inspection.as_ref().map(|i| &i.detected);
    let protocol = detected
        .and_then(|d| d.sniffed.as_ref())
        .map_or(Protocol::Unknown, |s| s.protocol);
    let server_protocol = dialled
        .as_ref()
        .and_then(|d| d.answer.sniffed.as_ref())
        .map(|s| s.protocol);
    let counted = known.emit_decision(shared, in_force, &decision, detected, server_protocol);
    let segment = policy.segment(&decision);

    // Only the bytes to replay outlive the decision; they are freed once written.
    let (replay, upstream) = match inspection {
        None => (Vec::new(), Upstream::NotYet),
        Some(Inspection { detected, upstream }) => (detected.buf, upstream),
    };
    // Listed in `GET /connections` from the decision to the close.
    let open = shared.metrics().connections.open(Tracked {
        source: known.flow.source,
        destination,
        listener: known.flow.listener,
        segment: Arc::clone(&counted),
        protocol,
        action: decision.action,
        started: known.accepted.into_std(),
        traffic: Traffic::default(),
    });
    let traffic = open.traffic();
    let read = replay.len() as u64;
    match upstream {
        Upstream::Connected(_) => &traffic.downstream,
        Upstream::NotYet | Upstream::Unreachable(_) => &traffic.upstream,
    }
    .fetch_add(read, Ordering::Relaxed);
    let next = if let Some(d) = dialled {
        let refuse = segment.map_or(Refuse::Reset, |s| s.refuse);
        finish_dialled(client, d, &decision, refuse, protocol, traffic).await
    } else if !decision.action.forwards() {
        let refuse = segment.map_or(Refuse::Reset, |s| s.refuse);
        refuse_connection(client, refuse, &decision, protocol).await;
        let read = replay.len() as u64;
        let (client_bytes, server_bytes) = match upstream {
            Upstream::Connected(_) => (0, read),
            Upstream::NotYet | Upstream::Unreachable(_) => (read, 0),
        };
        Next::Closed(Relayed {
            client_bytes,
            server_bytes,
            reason: CloseReason::Blocked,
        })
    } else {
        match upstream {
            Upstream::NotYet => forward(shared, client, destination, connected, replay).await,
            Upstream::Connected(upstream) => server_first_forward(client, upstream, replay).await,
            Upstream::Unreachable(reason) => {
                reset(&client);
                Next::Closed(Relayed {
                    client_bytes: 0,
                    server_bytes: 0,
                    reason,
                })
            }
        }
    };
    Judged {
        counted,
        segment,
        protocol,
        open,
        next,
    }
}

/// The rules' verdict on what detection saw. A host name the client gave an explicit proxy
/// is a server name too: `server_names` rules must match it and, for TLS, the SNI as well.
fn decide(
    policy: &Policy,
    segment: usize,
    destination: SocketAddr,
    sniffed: Option<&Sniffed>,
    domain: Option<&str>,
) -> Decision {
    let protocol = sniffed.map_or(Protocol::Unknown, |s| s.protocol);
    let named = sniffed.and_then(Sniffed::server_name);
    let decision = policy.decide_rules(segment, destination, protocol, named.or(domain));
    match (named, domain) {
        (Some(named), Some(domain))
            if decision.reason == Reason::Allowed && !named.eq_ignore_ascii_case(domain) =>
        {
            let by_host = policy.decide_rules(segment, destination, protocol, Some(domain));
            if by_host.reason == Reason::Allowed {
                decision
            } else {
                by_host
            }
        }
        _ => decision,
    }
}

/// What detection learned, and the upstream connection if detection needed it.
struct Inspection {
    /// The turn that decided: the client's, or the server's when the client was silent.
    detected: Detected,
    upstream: Upstream,
}

impl Inspection {
    /// Whose bytes decided, for the detection-time histogram; `None` when nobody's did (a
    /// silent client on a blindly refused port, an unreachable server).
    fn side(&self) -> Option<Side> {
        match self.upstream {
            Upstream::Connected(_) => Some(Side::Server),
            Upstream::Unreachable(_) => None,
            Upstream::NotYet
                if self.detected.stop == Detection::Timeout && self.detected.buf.is_empty() =>
            {
                None
            }
            Upstream::NotYet => Some(Side::Client),
        }
    }

    /// The client's first turn as an explicit proxy read it.
    fn read(detected: Detected) -> Inspection {
        Inspection {
            detected,
            upstream: Upstream::NotYet,
        }
    }
}

impl Early {
    /// What was read already, to forward as it is when the gate decided without inspection.
    fn uninspected(self) -> Option<Detected> {
        match self {
            Early::Nothing => None,
            Early::Begun(buf) if buf.is_empty() => None,
            Early::Begun(buf) => Some(Detected {
                sniffed: None,
                stop: Detection::Skipped,
                buf,
            }),
            Early::Read(detected) => Some(detected),
        }
    }
}

enum Upstream {
    /// Client-first: not dialled until the verdict allows it (or, through an explicit
    /// proxy, dialled already and sent nothing yet).
    NotYet,
    /// Server-first: dialled to read the banner, which `detected.buf` holds.
    Connected(TcpStream),
    /// Server-first, but the destination could not be reached.
    Unreachable(CloseReason),
}

/// Client first, starting from the bytes an explicit proxy read already (`begun`); if the
/// client stays silent for `client_first_ms`, the server's banner (from `connected` when an
/// explicit proxy has dialled already).
async fn inspect(
    shared: &Shared,
    policy: &Policy,
    segment: usize,
    client: &mut TcpStream,
    begun: Vec<u8>,
    destination: SocketAddr,
    connected: &mut Option<TcpStream>,
) -> Inspection {
    let started = Instant::now();
    let detect = shared.detect;
    let deadline = started + detect.timeout;
    let silence = started + detect.client_first;
    let silent = Detected {
        sniffed: None,
        stop: Detection::Timeout,
        buf: Vec::new(),
    };
    let client = &mut Eager::new(client);
    match client_first_turn(client, begun, deadline, silence, detect.max_bytes).await {
        ClientTurn::Spoke(detected) => Inspection::read(detected),
        ClientTurn::Silent => {
            if let Some(mut upstream) = connected.take() {
                return Inspection {
                    detected: server_first_turn(&mut upstream, deadline, detect.max_bytes).await,
                    upstream: Upstream::Connected(upstream),
                };
            }
            // A port refused whatever is spoken on it: never contact the destination.
            if policy.refuses_port_blind(segment, destination) {
                return Inspection::read(silent);
            }
            let limit = shared
                .limits
                .connect_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            match connect(destination, limit, &[]).await {
                Ok(mut upstream) => Inspection {
                    detected: server_first_turn(&mut upstream, deadline, detect.max_bytes).await,
                    upstream: Upstream::Connected(upstream),
                },
                Err(reason) => Inspection {
                    detected: Detected {
                        stop: Detection::ReadError,
                        ..silent
                    },
                    upstream: Upstream::Unreachable(reason),
                },
            }
        }
    }
}
