//! One connection, start to finish: original destination, admission, gate, detection,
//! decision, then forward (replaying the bytes read) or refuse; a decision event and a close
//! event, always. Explicit proxies join at [`judge`], once they know the destination.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

use super::agree::{server_answer, Answer};
use super::detect::{client_first_turn, server_first_turn, ClientTurn, Detected};
use super::limits::Slot;
use super::relay::{relay, Relayed};
use super::{orig_dst, InForce, ListenerInfo, Shared};
use crate::config::ListenerMode;
use crate::events::{CloseEvent, CloseReason, DecisionEvent, Detection, Flow};
use crate::metrics::{Open, SegmentMetrics, Side, Tracked, Traffic};
use crate::policy::{Decision, Gate, Policy, Reason, Refuse, Segment};
use crate::sniff::{Protocol, Sniffed};

/// How long a native refusal waits for the client to read it before closing.
const NATIVE_LINGER: Duration = Duration::from_secs(2);

pub async fn handle(
    shared: Arc<Shared>,
    listener: ListenerInfo,
    client: TcpStream,
    peer: SocketAddr,
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
    judge(&shared, &in_force, gate, client, &known, None, None).await;
    drop(slot);
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
    let _ = client.set_nodelay(true);
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
        let segment = policy.segment(decision);
        let counted = decision
            .segment
            .and_then(|i| in_force.segments.get(i))
            .unwrap_or(shared.metrics().unsegmented());
        let protocol = sniffed.map_or(Protocol::Unknown, |s| s.protocol);
        counted.decided(decision.action, decision.reason, protocol);
        shared.events.emit(
            DecisionEvent {
                at: self.at,
                flow: self.flow,
                action: decision.action,
                reason: decision.reason,
                segment: segment.map(|s| s.name.as_str()),
                mode: segment.map(|s| s.mode),
                rule_id: policy.rule(decision).map(|r| r.id.as_str()),
                policy_version: &policy.version,
                protocol,
                sniffed,
                detection: detected.map_or(Detection::Skipped, |d| d.stop),
                expected_protocols: &decision.expected_protocols,
                would_block: decision.would_block(),
                server_protocol,
                capture: None,
            }
            .to_json_for(self.domain.as_deref()),
        );
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
        shared.events.emit(
            CloseEvent {
                at: SystemTime::now(),
                flow: self.flow,
                segment,
                policy_version: &policy.version,
                protocol,
                client_bytes: relayed.client_bytes,
                server_bytes: relayed.server_bytes,
                duration: self.accepted.elapsed(),
                reason: relayed.reason,
            }
            .to_json_for(self.domain.as_deref()),
        );
    }
}

/// Everything after "the client and its destination are known", the same for every
/// listener: detection (client first, then the server's banner), decision, the server's
/// first turn confirming a client-first verdict, refusal or relay, one decision event and
/// one close event. `dialled` is the upstream an explicit proxy connected before answering
/// its client; it is sent nothing until the verdict. `read` is the client's first turn when
/// the proxy protocol has read it already (an absolute-form request, rewritten): it is
/// judged as detection would have judged it.
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
    read: Option<Detected>,
) -> impl Future<Output = ()> + Send + 'a {
    let verdict = Box::pin(verdict(
        shared, in_force, gate, client, known, dialled, read,
    ));
    async move {
        let Judged {
            counted,
            segment,
            protocol,
            open,
            next,
        } = verdict.await;
        let relayed = match &next {
            Next::Closed(relayed) => *relayed,
            Next::Relay(r) => {
                let (idle, stop) = (shared.limits.idle_timeout, shared.stop.clone());
                let mut relayed = relay(&r.client, &r.upstream, idle, stop, open.traffic()).await;
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

/// Both sides connected, and the bytes that moved before the relay.
struct Relaying {
    client: TcpStream,
    upstream: TcpStream,
    client_bytes: u64,
    server_bytes: u64,
}

/// [`judge`] up to the relay: the decision event, and any refusal.
async fn verdict<'a>(
    shared: &'a Shared,
    in_force: &'a InForce,
    gate: Gate,
    mut client: TcpStream,
    known: &Known,
    dialled: Option<TcpStream>,
    read: Option<Detected>,
) -> Judged<'a> {
    let policy = &in_force.policy;
    let destination = known.flow.destination;
    let mut connected = dialled;
    let inspected = matches!(gate, Gate::Inspect { .. });
    let (mut decision, mut inspection) = match gate {
        // Bytes a proxy read already are forwarded even without inspection.
        Gate::Decided(decision) => (decision, read.map(Inspection::read)),
        Gate::Inspect { segment } => {
            let inspection = match read {
                Some(detected) => Inspection::read(detected),
                None => {
                    let started = Instant::now();
                    let (client, up) = (&mut client, &mut connected);
                    let inspection =
                        inspect(shared, policy, segment, client, destination, started, up).await;
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
                    policy.reconcile(&decision, client_protocol, destination, server.protocol);
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

enum Upstream {
    /// Client-first: not dialled until the verdict allows it (or, through an explicit
    /// proxy, dialled already and sent nothing yet).
    NotYet,
    /// Server-first: dialled to read the banner, which `detected.buf` holds.
    Connected(TcpStream),
    /// Server-first, but the destination could not be reached.
    Unreachable(CloseReason),
}

/// Client first; if the client stays silent for `client_first_ms`, the server's banner
/// (from `connected` when an explicit proxy has dialled already).
async fn inspect(
    shared: &Shared,
    policy: &Policy,
    segment: usize,
    client: &mut TcpStream,
    destination: SocketAddr,
    started: Instant,
    connected: &mut Option<TcpStream>,
) -> Inspection {
    let detect = shared.detect;
    let deadline = started + detect.timeout;
    let silence = started + detect.client_first;
    let silent = Detected {
        sniffed: None,
        stop: Detection::Timeout,
        buf: Vec::new(),
    };
    match client_first_turn(client, deadline, silence, detect.max_bytes).await {
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
            match connect(destination, limit).await {
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

/// Server-first: delivers the banner the gateway read; then both ways are relayed.
async fn server_first_forward(mut client: TcpStream, upstream: TcpStream, banner: Vec<u8>) -> Next {
    let read = banner.len() as u64;
    if !banner.is_empty() && client.write_all(&banner).await.is_err() {
        reset(&upstream);
        return Next::Closed(Relayed {
            client_bytes: 0,
            server_bytes: read,
            reason: CloseReason::ClientError,
        });
    }
    Next::Relay(Relaying {
        client,
        upstream,
        client_bytes: 0,
        server_bytes: read,
    })
}

/// Connects upstream (unless `connected` already is) and replays the bytes detection read;
/// then both ways are relayed.
async fn forward(
    shared: &Shared,
    client: TcpStream,
    destination: SocketAddr,
    connected: Option<TcpStream>,
    replay: Vec<u8>,
) -> Next {
    let read = replay.len() as u64;
    match dial(shared, destination, connected, replay).await {
        Ok(upstream) => Next::Relay(Relaying {
            client,
            upstream,
            client_bytes: read,
            server_bytes: 0,
        }),
        Err(reason) => {
            // What the client would have seen without the gateway: a reset.
            reset(&client);
            Next::Closed(Relayed {
                client_bytes: read,
                server_bytes: 0,
                reason,
            })
        }
    }
}

/// Connects upstream (unless an explicit proxy's `connected` already is) and replays the
/// bytes detection read (freed once written).
async fn dial(
    shared: &Shared,
    destination: SocketAddr,
    connected: Option<TcpStream>,
    replay: Vec<u8>,
) -> Result<TcpStream, CloseReason> {
    let mut upstream = match connected {
        Some(upstream) => upstream,
        None => connect(destination, shared.limits.connect_timeout).await?,
    };
    if !replay.is_empty() && upstream.write_all(&replay).await.is_err() {
        return Err(CloseReason::UpstreamError);
    }
    Ok(upstream)
}

/// A client-first connection dialled after its verdict, with the server's first turn.
struct Dialled {
    upstream: Result<TcpStream, CloseReason>,
    /// Client bytes read by detection and replayed upstream.
    replayed: u64,
    answer: Answer,
}

/// Dials, replays the client's first turn, and waits up to `client_first_ms` for the
/// server's first turn (`agree::server_answer`), relaying the client meanwhile.
async fn dial_and_listen(
    shared: &Shared,
    client: &TcpStream,
    destination: SocketAddr,
    connected: Option<TcpStream>,
    replay: Vec<u8>,
) -> Dialled {
    let replayed = replay.len() as u64;
    let upstream = dial(shared, destination, connected, replay).await;
    let answer = match &upstream {
        Ok(up) => {
            let until = Instant::now() + shared.detect.client_first;
            server_answer(client, up, until, shared.limits.idle_timeout).await
        }
        Err(_) => Answer::default(),
    };
    Dialled {
        upstream,
        replayed,
        answer,
    }
}

/// Acts on a verdict taken after dialling: relay both ways, or refuse with both sides closed
/// (the client never sees a byte of the server's).
async fn finish_dialled(
    client: TcpStream,
    dialled: Dialled,
    decision: &Decision,
    refuse: Refuse,
    protocol: Protocol,
    traffic: &Traffic,
) -> Next {
    let Dialled {
        upstream,
        replayed,
        answer,
    } = dialled;
    let mut done = Relayed {
        client_bytes: replayed + answer.client_bytes,
        server_bytes: 0,
        reason: CloseReason::Completed,
    };
    traffic
        .upstream
        .fetch_add(done.client_bytes, Ordering::Relaxed);
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(reason) => {
            reset(&client);
            done.reason = reason;
            return Next::Closed(done);
        }
    };
    if answer.client_failed || answer.upstream_failed || answer.stalled {
        done.reason = if answer.client_failed {
            CloseReason::ClientError
        } else if answer.stalled {
            CloseReason::IdleTimeout
        } else {
            CloseReason::UpstreamError
        };
        // Both sides learn at once that the connection is gone.
        reset(&client);
        reset(&upstream);
        return Next::Closed(done);
    }
    if !decision.action.forwards() {
        reset(&upstream);
        drop(upstream);
        refuse_connection(client, refuse, decision, protocol).await;
        done.reason = CloseReason::Blocked;
        return Next::Closed(done);
    }
    Next::Relay(Relaying {
        client,
        upstream,
        client_bytes: done.client_bytes,
        server_bytes: 0,
    })
}

/// Dials `destination` within `limit`; the failure is named as a close reason.
pub(super) async fn connect(
    destination: SocketAddr,
    limit: Duration,
) -> Result<TcpStream, CloseReason> {
    let socket = match destination {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|_| CloseReason::UpstreamError)?;
    match timeout(limit, socket.connect(destination)).await {
        Err(_) => Err(CloseReason::UpstreamTimeout),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(CloseReason::UpstreamRefused)
        }
        Ok(Err(_)) => Err(CloseReason::UpstreamUnreachable),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// Closes with RST: the client learns at once that the connection is gone.
fn reset(client: &TcpStream) {
    let _ = SockRef::from(client).set_linger(Some(Duration::ZERO));
}

/// Refuses with a reset, or for `refuse = "native"` with what the client's protocol
/// understands: an HTTP 403, a TLS access_denied alert, an SMTP 554 greeting; anything else
/// is reset.
async fn refuse_connection(
    mut client: TcpStream,
    refuse: Refuse,
    decision: &Decision,
    protocol: Protocol,
) {
    let native: Option<Vec<u8>> = match (refuse, protocol) {
        (Refuse::Native, Protocol::Http) => Some(http_403(decision.reason)),
        // TLS alert record: handshake-layer version 1.2, fatal (2), access_denied (49).
        (Refuse::Native, Protocol::Tls) => Some(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49]),
        // A 554 greeting: "no SMTP service here" (RFC 5321 §3.1).
        (Refuse::Native, Protocol::Smtp) => Some(
            format!(
                "554 5.7.1 portcullis refused this connection: {}\r\n",
                decision.reason.name()
            )
            .into_bytes(),
        ),
        _ => None,
    };
    let Some(message) = native else {
        reset(&client);
        return;
    };
    if client.write_all(&message).await.is_err() {
        reset(&client);
        return;
    }
    let _ = client.shutdown().await;
    // Read what the client still sends until it closes, so the kernel does not answer its
    // data with a reset that could destroy the refusal before the client reads it.
    let mut sink = vec![0u8; 1024]; // heap: keeps every connection task small
    let _ = timeout(NATIVE_LINGER, async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

pub(super) fn http_403(reason: Reason) -> Vec<u8> {
    let body = format!("portcullis refused this connection: {}\n", reason.name());
    format!(
        "HTTP/1.1 403 Forbidden\r\nX-Portcullis-Reason: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reason.name(),
        body.len(),
        body
    )
    .into_bytes()
}
