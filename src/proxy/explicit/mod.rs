//! Explicit proxy listeners (`http_proxy`, `socks5`): the client names its destination in
//! the proxy protocol; the gateway checks the port, resolves the name, refuses its own
//! addresses, dials, answers, and then hands the tunnel to `conn::judge`, so its first
//! bytes go through the same detection, decision, refusal, relay and events as a redirected
//! connection (DESIGN.md "Explicit proxy listeners").
//!
//! Before the tunnel opens, a refusal by the policy gets a decision event and a close event
//! (`blocked`); a name that does not resolve or an upstream that cannot be reached gets a
//! close event naming why (`unresolved`, `upstream_refused`, ...): no protocol was ever
//! judged.

mod http;
mod resolve;
mod socks5;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::conn::{self, Early, Known};
use super::dial;
use super::lanes::Counted;
use super::limits::Slot;
use super::relay::Relayed;
use super::{InForce, ListenerInfo, Shared};
use crate::config::ListenerMode;
use crate::events::{CloseReason, Flow};
use crate::policy::{Admission, Decision, Gate, Policy, Reason};
use crate::sniff::Protocol;

pub use resolve::Host;

/// The HTTP proxy's request-head parsing, for the fuzz target (`cargo fuzz` builds with
/// `--cfg fuzzing`).
#[cfg(fuzzing)]
pub mod fuzzing {
    pub use super::http::{head_end, parse, Request};
}

/// Serves one connection on an explicit listener.
pub async fn handle(
    shared: Arc<Shared>,
    listener: ListenerInfo,
    client: TcpStream,
    peer: SocketAddr,
    counted: Counted,
) {
    // The proxy protocol runs in a future of its own on the heap, freed once the tunnel is
    // open: a task is as large as its largest await state, and an idle tunnel should carry
    // only what judging and relaying it needs.
    let Some(Tunnel {
        opened:
            Opened {
                known,
                in_force,
                gate,
                upstream,
                slot,
            },
        client,
        early,
    }) = Box::pin(serve(&shared, listener.mode, client, peer)).await
    else {
        return;
    };
    conn::judge(
        &shared,
        &in_force,
        gate,
        client,
        &known,
        Some(upstream),
        early,
    )
    .await;
    drop(slot);
    drop(counted);
}

/// The proxy protocol up to an open tunnel.
async fn serve(
    shared: &Shared,
    mode: ListenerMode,
    client: TcpStream,
    peer: SocketAddr,
) -> Option<Tunnel> {
    let accepted = Accepted {
        peer,
        listener: mode,
        at: SystemTime::now(),
        started: Instant::now(),
    };
    // Taken at once, so that clients slow to name a destination count towards the limits.
    let admission = shared.limiter.admit(peer.ip());
    match mode {
        ListenerMode::Socks5 => socks5::serve(shared, client, accepted, admission).await,
        _ => http::serve(shared, client, accepted, admission).await,
    }
}

/// A client connection before it named its destination.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    peer: SocketAddr,
    listener: ListenerMode,
    at: SystemTime,
    started: Instant,
}

impl Accepted {
    /// When the client must have named its destination: the detection budget.
    fn deadline(&self, shared: &Shared) -> Instant {
        self.started + shared.detect.timeout
    }
}

/// Where the client asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: Host,
    port: u16,
}

/// Why a client got no tunnel; each proxy protocol answers it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The policy refused before anything was dialled (the reason is in the events).
    Policy(Reason),
    /// The name did not resolve.
    Unresolved,
    /// Dialling failed: refused, unreachable, timed out.
    Upstream(CloseReason),
}

/// A tunnel ready to open: the upstream is connected and has been sent nothing.
struct Opened {
    known: Known,
    in_force: InForce,
    gate: Gate,
    upstream: TcpStream,
    /// Held until the connection ends: it counts towards the connection limits.
    slot: Option<Slot>,
}

impl Opened {
    /// After the proxy protocol told the client it is connected: the tunnel, whose first
    /// bytes are judged like any connection's, starting from what the proxy read of them.
    fn tunnel(self, client: TcpStream, early: Early) -> Tunnel {
        Tunnel {
            opened: self,
            client,
            early,
        }
    }
}

/// An open tunnel, handed to `conn::judge`.
struct Tunnel {
    opened: Opened,
    client: TcpStream,
    early: Early,
}

/// Port check, resolution, self-destination check on every address, then the dial; every
/// refusal is evented here.
async fn open(
    shared: &Shared,
    accepted: Accepted,
    admission: Result<Slot, Admission>,
    target: Target,
) -> Result<Opened, Refusal> {
    let in_force = shared.in_force();
    let policy = &in_force.policy;
    let (first, domain) = match &target.host {
        Host::Ip(ip) => (SocketAddr::new(*ip, target.port), None),
        // Not resolved yet: events say only the port and the name.
        Host::Name(name) => (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), target.port),
            Some(name.clone()),
        ),
    };
    let mut known = Known {
        flow: Flow {
            source: accepted.peer,
            destination: first,
            listener: accepted.listener.name(),
        },
        domain,
        accepted: accepted.started,
        at: accepted.at,
    };
    let literal_self = matches!(target.host, Host::Ip(ip) if resolve::is_own(ip));
    let (admission, slot) = match admission {
        _ if literal_self => (Admission::SelfDestination, None),
        Ok(slot) => (Admission::Admitted, Some(slot)),
        Err(refused) => (refused, None),
    };
    let refuse = |known: &Known, decision: Decision| {
        refused(shared, &in_force, known, &decision);
        Err(Refusal::Policy(decision.reason))
    };
    let gate = policy.gate(accepted.peer.ip(), first, admission);
    if let Gate::Decided(decision) = &gate {
        if !decision.action.forwards() {
            return refuse(&known, decision.clone());
        }
    }
    if let Gate::Inspect { segment } = gate {
        // The port first: a port no rule names is refused before anything is looked up.
        if policy.refuses_port_blind(segment, first) {
            let decision = policy.decide_rules(segment, first, Protocol::Unknown, None);
            return refuse(&known, decision);
        }
    }
    let limit = shared.limits.connect_timeout;
    let addrs = match &target.host {
        Host::Ip(_) => vec![first],
        Host::Name(name) => match resolve::resolve(name, target.port, limit).await {
            Ok(addrs) => addrs,
            Err(_) => {
                closed(shared, policy, &known, CloseReason::Unresolved);
                return Err(Refusal::Unresolved);
            }
        },
    };
    // An address literal was checked before the gate (`literal_self`); a name's addresses
    // are all checked now, before any is dialled.
    let named = matches!(target.host, Host::Name(_));
    if let Some(own) = addrs.iter().find(|a| named && resolve::is_own(a.ip())) {
        known.flow.destination = *own;
        if let Gate::Decided(decision) =
            policy.gate(accepted.peer.ip(), *own, Admission::SelfDestination)
        {
            return refuse(&known, decision);
        }
    }
    let deadline = Instant::now() + limit;
    let mut failure = CloseReason::UpstreamUnreachable;
    for addr in addrs {
        known.flow.destination = addr;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            failure = CloseReason::UpstreamTimeout;
            break;
        }
        match dial::connect(addr, left, &[]).await {
            Ok(upstream) => {
                let gate = policy.gate(accepted.peer.ip(), addr, Admission::Admitted);
                return Ok(Opened {
                    known,
                    in_force,
                    gate,
                    upstream,
                    slot,
                });
            }
            Err(reason) => failure = reason,
        }
    }
    closed(shared, policy, &known, failure);
    Err(Refusal::Upstream(failure))
}

/// A refusal by the policy before the tunnel opened: its decision event and close event.
fn refused(shared: &Shared, in_force: &InForce, known: &Known, decision: &Decision) {
    let counted = known.emit_decision(shared, in_force, decision, None, None);
    let policy = &in_force.policy;
    let segment = policy.segment(decision).map(|s| s.name.as_str());
    let relayed = Relayed {
        client_bytes: 0,
        server_bytes: 0,
        reason: CloseReason::Blocked,
    };
    let counted = Some(&*counted);
    known.emit_close(
        shared,
        policy,
        counted,
        segment,
        Protocol::Unknown,
        &relayed,
    );
}

/// No tunnel, and no decision either: the destination could not be reached.
fn closed(shared: &Shared, policy: &Policy, known: &Known, reason: CloseReason) {
    let segment = policy
        .segment_for(known.flow.source.ip())
        .and_then(|i| policy.segments.get(i))
        .map(|s| s.name.as_str());
    let relayed = Relayed {
        client_bytes: 0,
        server_bytes: 0,
        reason,
    };
    known.emit_close(shared, policy, None, segment, Protocol::Unknown, &relayed);
}

/// How long an answer waits for the client to read it before the connection closes.
const ANSWER_LINGER: Duration = Duration::from_secs(2);
/// Bytes of a client's further input discarded while it reads the answer.
const ANSWER_DRAIN: usize = 64 << 10;

/// Sends a final answer, then closes without a reset that could destroy it: the write side
/// is shut, and what the client still sends is read (bounded in time and bytes) until it
/// closes.
async fn answer_and_close(mut client: TcpStream, answer: &[u8]) {
    if client.write_all(answer).await.is_err() {
        return;
    }
    let _ = client.shutdown().await;
    let mut sink = vec![0u8; 4096]; // heap: keeps every connection task small
    let mut drained = 0;
    let _ = timeout(ANSWER_LINGER, async {
        while drained < ANSWER_DRAIN {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
