//! One connection, start to finish: original destination, admission, gate, detection,
//! decision, then forward (replaying the bytes read) or refuse; a decision event and a close
//! event, always. Explicit proxies join at [`judge`], once they know the destination.

mod dial;
mod refuse;
mod verdict;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::detect::Detected;
use super::lanes::Counted;
use super::limits::Slot;
use super::relay::{relay, Held, Relayed};
use super::{orig_dst, InForce, ListenerInfo, Shared};
use crate::config::ListenerMode;
use crate::events::{CloseEvent, DecisionEvent, Detection, Flow};
use crate::metrics::{Open, SegmentMetrics};
use crate::policy::{Decision, Gate, Policy, Segment};
use crate::sniff::Protocol;

pub(super) use refuse::http_403;
use verdict::verdict;

pub async fn handle(
    shared: Arc<Shared>,
    listener: ListenerInfo,
    client: TcpStream,
    peer: SocketAddr,
    counted: Counted,
) {
    // The arguments are only moved from here on, never borrowed, so the task does not keep
    // copies of them across the connection's life.
    let Arrived {
        client,
        known,
        slot,
        in_force,
        gate,
    } = arrive(&shared, listener, client, peer);
    judge(
        &shared,
        &in_force,
        gate,
        client,
        &known,
        None,
        Early::Nothing,
    )
    .await;
    drop(slot);
    drop(counted);
}

/// An accepted connection with its destination, admission and gate.
struct Arrived {
    client: TcpStream,
    known: Known,
    /// Held until the connection ends: it counts towards the connection limits.
    slot: Option<Slot>,
    in_force: InForce,
    gate: Gate,
}

/// Original destination, admission and gate of a connection just accepted.
fn arrive(shared: &Shared, listener: ListenerInfo, client: TcpStream, peer: SocketAddr) -> Arrived {
    let accepted = Instant::now();
    let at = SystemTime::now();
    // A listener bound to one address accepts only on it: no getsockname(2) needed.
    let local = if listener.addr.ip().is_unspecified() {
        client.local_addr().unwrap_or(listener.addr)
    } else {
        listener.addr
    };
    let destination = match listener.mode {
        ListenerMode::Forward => listener.upstream.unwrap_or(local),
        // TPROXY leaves the destination untouched: it is the accepted socket's local address.
        ListenerMode::Tproxy => local,
        // Not redirected (no conntrack NAT entry): the client dialled the listener itself.
        _ => orig_dst::original_dst(&client, local).unwrap_or(local),
    };
    let known = Known {
        flow: Flow {
            source: peer,
            destination,
            listener: listener.mode.name(),
        },
        domain: None,
        accepted,
        at,
    };
    let (admission, slot) = shared.admit(&listener, peer, destination, local);
    let in_force = shared.in_force();
    let gate = in_force.policy.gate(peer.ip(), destination, admission);
    Arrived {
        client,
        known,
        slot,
        in_force,
        gate,
    }
}

/// A connection whose destination is known: what every listener hands to [`judge`].
pub(super) struct Known {
    pub flow: Flow,
    /// The host name the client asked an explicit proxy for (`destination.domain`).
    pub domain: Option<String>,
    pub accepted: Instant,
    pub at: SystemTime,
}

impl Known {
    /// The connection's decision, counted in its segment's metrics and then evented (so a
    /// scrape after the event always counts it); `detected` is what detection saw, `None`
    /// when the decision came before any byte was read. Returns the counters the
    /// connection's close is counted in.
    pub(super) fn emit_decision(
        &self,
        shared: &Shared,
        in_force: &InForce,
        decision: &Decision,
        detected: Option<&Detected>,
        server_protocol: Option<Protocol>,
    ) -> Arc<SegmentMetrics> {
        let policy = &in_force.policy;
        let sniffed = detected.and_then(|d| d.sniffed.as_ref());
        let counted = decision
            .segment
            .and_then(|i| in_force.segments.get(i))
            .unwrap_or(shared.metrics().unsegmented());
        let protocol = sniffed.map_or(Protocol::Unknown, |s| s.protocol);
        counted.decided(decision.action, decision.reason, protocol);
        let detection = detected.map_or(Detection::Skipped, |d| d.stop);
        let event = DecisionEvent::of(
            policy,
            decision,
            self.at,
            self.flow,
            sniffed,
            detection,
            server_protocol,
        );
        let domain = self.domain.as_deref();
        shared
            .events
            .emit_with(|out| event.write_json_for(domain, out));
        Arc::clone(counted)
    }

    /// The connection's close event, its bytes first added to `counted` (the counters of
    /// its decision; `None` when no decision was taken).
    pub(super) fn emit_close(
        &self,
        shared: &Shared,
        policy: &Policy,
        counted: Option<&SegmentMetrics>,
        segment: Option<&str>,
        protocol: Protocol,
        relayed: &Relayed,
    ) {
        if let Some(counted) = counted {
            counted.closed(relayed.client_bytes, relayed.server_bytes);
        }
        let event = CloseEvent {
            at: SystemTime::now(),
            flow: self.flow,
            segment,
            policy_version: &policy.version,
            protocol,
            client_bytes: relayed.client_bytes,
            server_bytes: relayed.server_bytes,
            duration: self.accepted.elapsed(),
            reason: relayed.reason,
        };
        let domain = self.domain.as_deref();
        shared
            .events
            .emit_with(|out| event.write_json_for(domain, out));
    }
}

/// What an explicit proxy read of the client's first turn before it handed the tunnel over.
pub(super) enum Early {
    /// Nothing: detection reads the turn from the socket.
    Nothing,
    /// The turn's first bytes, which came with the proxy request (a client that did not wait
    /// for the proxy's answer): detection starts from them.
    Begun(Vec<u8>),
    /// The whole turn, read and rewritten by the proxy (an absolute-form request), judged as
    /// detection would have judged it.
    Read(Detected),
}

/// Everything after "the client and its destination are known", the same for every
/// listener: detection (client first, then the server's banner), decision, the server's
/// first turn confirming a client-first verdict, refusal or relay, one decision event and
/// one close event. `dialled` is the upstream an explicit proxy connected before answering
/// its client; it is sent nothing until the verdict. `early` is what the proxy protocol read
/// of the client's first turn already.
///
/// Everything up to the relay runs in a future of its own on the heap, freed before the
/// relay starts: a task is as large as its largest await state, and an idle relayed
/// connection should carry only its two sockets, the relay and what its close event needs,
/// not detection's and the agreement check's.
pub(super) fn judge<'a>(
    shared: &'a Shared,
    in_force: &'a InForce,
    gate: Gate,
    client: TcpStream,
    known: &'a Known,
    dialled: Option<TcpStream>,
    early: Early,
) -> impl Future<Output = ()> + Send + 'a {
    let verdict = Box::pin(verdict(
        shared, in_force, gate, client, known, dialled, early,
    ));
    async move {
        let Judged {
            counted,
            segment,
            protocol,
            open,
            mut next,
        } = verdict.await;
        let relayed = match &mut next {
            Next::Closed(relayed) => *relayed,
            Next::Relay(r) => {
                let (idle, stop) = (shared.limits.idle_timeout, shared.stop.clone());
                let first = std::mem::take(&mut r.first);
                let traffic = open.traffic();
                let mut relayed = relay(&r.client, &r.upstream, idle, stop, traffic, first).await;
                relayed.client_bytes += r.client_bytes;
                relayed.server_bytes += r.server_bytes;
                relayed
            }
        };
        drop(open);
        known.emit_close(
            shared,
            &in_force.policy,
            Some(&counted),
            segment.map(|s| s.name.as_str()),
            protocol,
            &relayed,
        );
        // The sockets close after the close event.
        drop(next);
    }
}

/// What the verdict leaves for the relay and the close event.
struct Judged<'a> {
    counted: Arc<SegmentMetrics>,
    segment: Option<&'a Segment>,
    protocol: Protocol,
    /// Listed in `GET /connections` from the decision to the close.
    open: Open<'a>,
    next: Next,
}

/// After the verdict and whatever was written before the relay.
enum Next {
    /// Nothing (more) to relay: refused, or a side failed before the relay.
    Closed(Relayed),
    Relay(Relaying),
}

/// Both sides connected, the bytes that moved before the relay, and the server's bytes read
/// but not delivered yet (the agreement check's), which the relay sends first.
struct Relaying {
    client: TcpStream,
    upstream: TcpStream,
    client_bytes: u64,
    server_bytes: u64,
    first: Option<Box<Held>>,
}
