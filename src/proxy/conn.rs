//! One connection, start to finish: original destination, admission, gate, detection,
//! decision, then forward (replaying the bytes read) or refuse; a decision event and a close
//! event, always.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

use super::detect::{client_first_turn, server_first_turn, ClientTurn, Detected};
use super::relay::{relay, Relayed};
use super::{orig_dst, ListenerInfo, Shared};
use crate::config::ListenerMode;
use crate::events::{CloseEvent, CloseReason, DecisionEvent, Detection, Flow};
use crate::policy::{Decision, Gate, Policy, Reason, Refuse};
use crate::sniff::{Protocol, Sniffed};

/// How long a native refusal waits for the client to read it before closing.
const NATIVE_LINGER: Duration = Duration::from_secs(2);

pub async fn handle(
    shared: Arc<Shared>,
    listener: ListenerInfo,
    client: TcpStream,
    peer: SocketAddr,
) {
    let accepted = Instant::now();
    let at = SystemTime::now();
    let _ = client.set_nodelay(true);
    let local = client.local_addr().unwrap_or(listener.addr);
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
    // Held until the connection ends: it counts towards the connection limits.
    let (admission, _slot) = shared.admit(&listener, peer, destination, local);
    let policy = shared.policy();
    let gate = policy.gate(peer.ip(), destination, admission);
    judge(&shared, &policy, gate, client, &known, None, None).await;
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
    /// The connection's decision event; `detected` is what detection saw, `None` when the
    /// decision came before any byte was read.
    pub(super) fn emit_decision(
        &self,
        shared: &Shared,
        policy: &Policy,
        decision: &Decision,
        detected: Option<&Detected>,
    ) {
        let sniffed = detected.and_then(|d| d.sniffed.as_ref());
        let segment = policy.segment(decision);
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
                protocol: sniffed.map_or(Protocol::Unknown, |s| s.protocol),
                sniffed,
                detection: detected.map_or(Detection::Skipped, |d| d.stop),
                expected_protocols: &decision.expected_protocols,
                would_block: decision.would_block(),
                capture: None,
            }
            .to_json_for(self.domain.as_deref()),
        );
    }

    /// The connection's close event.
    pub(super) fn emit_close(
        &self,
        shared: &Shared,
        policy: &Policy,
        segment: Option<&str>,
        protocol: Protocol,
        relayed: &Relayed,
    ) {
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
/// listener: detection (client first, then the server's banner), decision, refusal or
/// relay, one decision event and one close event. `dialled` is the upstream an explicit
/// proxy connected before answering its client; it is sent nothing until the verdict.
/// `read` is the client's first turn when the proxy protocol has read it already (an
/// absolute-form request, rewritten): it is judged as detection would have judged it.
pub(super) async fn judge(
    shared: &Shared,
    policy: &Policy,
    gate: Gate,
    mut client: TcpStream,
    known: &Known,
    dialled: Option<TcpStream>,
    read: Option<Detected>,
) {
    let destination = known.flow.destination;
    let (decision, inspection) = match gate {
        Gate::Decided(decision) => {
            let upstream = dialled.map_or(Upstream::NotYet, Upstream::Ready);
            // Bytes a proxy read already are forwarded even without inspection.
            let inspection = Inspection {
                detected: read,
                upstream,
            };
            (decision, inspection)
        }
        Gate::Inspect { segment } => {
            let started = Instant::now();
            let inspection = match read {
                Some(detected) => Inspection {
                    detected: Some(detected),
                    upstream: dialled.map_or(Upstream::NotYet, Upstream::Ready),
                },
                None => {
                    inspect(
                        shared,
                        policy,
                        segment,
                        &mut client,
                        destination,
                        started,
                        dialled,
                    )
                    .await
                }
            };
            let sniffed = inspection
                .detected
                .as_ref()
                .and_then(|d| d.sniffed.as_ref());
            let decision = decide(
                policy,
                segment,
                destination,
                sniffed,
                known.domain.as_deref(),
            );
            (decision, inspection)
        }
    };
    let Inspection { detected, upstream } = inspection;
    known.emit_decision(shared, policy, &decision, detected.as_ref());
    let protocol = detected
        .as_ref()
        .and_then(|d| d.sniffed.as_ref())
        .map_or(Protocol::Unknown, |s| s.protocol);
    let segment = policy.segment(&decision);

    // Only the bytes to replay outlive the decision; they are freed once written.
    let replay = detected.map(|d| d.buf).unwrap_or_default();
    let relayed = if !decision.action.forwards() {
        let refuse = segment.map_or(Refuse::Reset, |s| s.refuse);
        refuse_connection(client, refuse, &decision, protocol).await;
        let read = replay.len() as u64;
        let (client_bytes, server_bytes) = match upstream {
            Upstream::Connected(_) => (0, read),
            Upstream::NotYet | Upstream::Ready(_) | Upstream::Unreachable(_) => (read, 0),
        };
        Relayed {
            client_bytes,
            server_bytes,
            reason: CloseReason::Blocked,
        }
    } else {
        match upstream {
            Upstream::NotYet => forward(shared, &mut client, destination, replay).await,
            Upstream::Ready(upstream) => {
                send_and_relay(shared, &mut client, upstream, replay).await
            }
            Upstream::Connected(mut upstream) => {
                server_first_forward(shared, &mut client, &mut upstream, replay).await
            }
            Upstream::Unreachable(reason) => {
                reset(&client);
                Relayed {
                    client_bytes: 0,
                    server_bytes: 0,
                    reason,
                }
            }
        }
    };
    known.emit_close(
        shared,
        policy,
        segment.map(|s| s.name.as_str()),
        protocol,
        &relayed,
    );
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

/// What detection learned, and the upstream connection if there is one yet.
struct Inspection {
    /// The turn that decided: the client's, or the server's when the client was silent;
    /// `None` when the gate decided before any byte was read.
    detected: Option<Detected>,
    upstream: Upstream,
}

enum Upstream {
    /// Client-first: not dialled until the verdict allows it.
    NotYet,
    /// Dialled before detection (explicit proxies) and sent nothing yet; the client spoke
    /// first, so `detected.buf` goes to it.
    Ready(TcpStream),
    /// Server-first: dialled to read the banner, which `detected.buf` holds.
    Connected(TcpStream),
    /// Server-first, but the destination could not be reached.
    Unreachable(CloseReason),
}

/// Client first; if the client stays silent for `client_first_ms`, the server's banner
/// (from `dialled` when an explicit proxy has connected already).
async fn inspect(
    shared: &Shared,
    policy: &Policy,
    segment: usize,
    client: &mut TcpStream,
    destination: SocketAddr,
    started: Instant,
    dialled: Option<TcpStream>,
) -> Inspection {
    let detect = shared.detect;
    let deadline = started + detect.timeout;
    let silence = started + detect.client_first;
    let silent = Detected {
        sniffed: None,
        stop: Detection::Timeout,
        buf: Vec::new(),
    };
    let spoke = |detected, upstream| Inspection {
        detected: Some(detected),
        upstream,
    };
    match client_first_turn(client, deadline, silence, detect.max_bytes).await {
        ClientTurn::Spoke(detected) => {
            spoke(detected, dialled.map_or(Upstream::NotYet, Upstream::Ready))
        }
        ClientTurn::Silent => {
            if let Some(mut upstream) = dialled {
                let banner = server_first_turn(&mut upstream, deadline, detect.max_bytes).await;
                return spoke(banner, Upstream::Connected(upstream));
            }
            // A port refused whatever is spoken on it: never contact the destination.
            if policy.refuses_port_blind(segment, destination) {
                return spoke(silent, Upstream::NotYet);
            }
            let limit = shared
                .limits
                .connect_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            match connect(destination, limit).await {
                Ok(mut upstream) => spoke(
                    server_first_turn(&mut upstream, deadline, detect.max_bytes).await,
                    Upstream::Connected(upstream),
                ),
                Err(reason) => spoke(
                    Detected {
                        stop: Detection::ReadError,
                        ..silent
                    },
                    Upstream::Unreachable(reason),
                ),
            }
        }
    }
}

/// Server-first: delivers the banner the gateway read, then relays both ways.
async fn server_first_forward(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    banner: Vec<u8>,
) -> Relayed {
    let read = banner.len() as u64;
    if !banner.is_empty() && client.write_all(&banner).await.is_err() {
        reset(upstream);
        return Relayed {
            client_bytes: 0,
            server_bytes: read,
            reason: CloseReason::ClientError,
        };
    }
    drop(banner);
    let idle = shared.limits.idle_timeout;
    let mut relayed = relay(client, upstream, idle, shared.stop.clone()).await;
    relayed.server_bytes += read;
    relayed
}

/// Connects upstream, then replays and relays as [`send_and_relay`].
async fn forward(
    shared: &Shared,
    client: &mut TcpStream,
    destination: SocketAddr,
    replay: Vec<u8>,
) -> Relayed {
    match connect(destination, shared.limits.connect_timeout).await {
        Ok(upstream) => send_and_relay(shared, client, upstream, replay).await,
        Err(reason) => {
            // What the client would have seen without the gateway: a reset.
            reset(client);
            Relayed {
                client_bytes: replay.len() as u64,
                server_bytes: 0,
                reason,
            }
        }
    }
}

/// Replays the bytes detection read to the upstream, then relays both ways.
async fn send_and_relay(
    shared: &Shared,
    client: &mut TcpStream,
    mut upstream: TcpStream,
    replay: Vec<u8>,
) -> Relayed {
    let read = replay.len() as u64;
    if !replay.is_empty() && upstream.write_all(&replay).await.is_err() {
        reset(client);
        return Relayed {
            client_bytes: read,
            server_bytes: 0,
            reason: CloseReason::UpstreamError,
        };
    }
    drop(replay);
    let mut relayed = relay(
        client,
        &upstream,
        shared.limits.idle_timeout,
        shared.stop.clone(),
    )
    .await;
    relayed.client_bytes += read;
    relayed
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
pub(super) fn reset(client: &TcpStream) {
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
    let mut sink = [0u8; 1024];
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
