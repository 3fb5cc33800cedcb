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
use super::{orig_dst, InForce, ListenerInfo, Shared};
use crate::config::ListenerMode;
use crate::events::{CloseEvent, CloseReason, DecisionEvent, Detection, Flow};
use crate::metrics::{Side, Tracked, Traffic};
use crate::policy::{Decision, Gate, Policy, Reason, Refuse};
use crate::sniff::{Protocol, Sniffed};

/// How long a native refusal waits for the client to read it before closing.
const NATIVE_LINGER: Duration = Duration::from_secs(2);

pub async fn handle(
    shared: Arc<Shared>,
    listener: ListenerInfo,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let started = Instant::now();
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
    let flow = Flow {
        source: peer,
        destination,
        listener: listener.mode.name(),
    };
    // Held until the connection ends: it counts towards the connection limits.
    let (admission, _slot) = shared.admit(&listener, peer, destination, local);
    let InForce {
        policy, segments, ..
    } = shared.in_force();

    let (decision, inspection) = match policy.gate(peer.ip(), destination, admission) {
        Gate::Decided(decision) => (decision, None),
        Gate::Inspect { segment } => {
            let inspection =
                inspect(&shared, &policy, segment, &mut client, destination, started).await;
            if let Some(side) = inspection.side() {
                shared.metrics().detected(side, started.elapsed());
            }
            let sniffed = inspection.detected.sniffed.as_ref();
            let protocol = sniffed.map_or(Protocol::Unknown, |s| s.protocol);
            let server_name = sniffed.and_then(Sniffed::server_name);
            let decision = policy.decide_rules(segment, destination, protocol, server_name);
            (decision, Some(inspection))
        }
    };
    let detected = inspection.as_ref().map(|i| &i.detected);
    let sniffed = detected.and_then(|d| d.sniffed.as_ref());
    let protocol = sniffed.map_or(Protocol::Unknown, |s| s.protocol);
    let segment = policy.segment(&decision);
    // Metrics first, so a scrape after the event always counts it.
    let counted = decision
        .segment
        .and_then(|i| segments.get(i))
        .unwrap_or(shared.metrics().unsegmented());
    counted.decided(decision.action, decision.reason, protocol);
    shared.events.emit(
        DecisionEvent {
            at,
            flow,
            action: decision.action,
            reason: decision.reason,
            segment: segment.map(|s| s.name.as_str()),
            mode: segment.map(|s| s.mode),
            rule_id: policy.rule(&decision).map(|r| r.id.as_str()),
            policy_version: &policy.version,
            protocol,
            sniffed,
            detection: detected.map_or(Detection::Skipped, |d| d.stop),
            expected_protocols: &decision.expected_protocols,
            would_block: decision.would_block(),
            capture: None,
        }
        .to_json(),
    );

    // Only the bytes to replay outlive the decision; they are freed once written.
    let (replay, upstream) = match inspection {
        None => (Vec::new(), Upstream::NotYet),
        Some(Inspection { detected, upstream }) => (detected.buf, upstream),
    };
    let open = shared.metrics().connections.open(Tracked {
        source: peer,
        destination,
        listener: flow.listener,
        segment: std::sync::Arc::clone(counted),
        protocol,
        action: decision.action,
        started: started.into_std(),
        traffic: Traffic::default(),
    });
    let read = replay.len() as u64;
    match upstream {
        Upstream::Connected(_) => &open.traffic().downstream,
        Upstream::NotYet | Upstream::Unreachable(_) => &open.traffic().upstream,
    }
    .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
    let relayed = if !decision.action.forwards() {
        let refuse = segment.map_or(Refuse::Reset, |s| s.refuse);
        refuse_connection(client, refuse, &decision, protocol).await;
        let read = replay.len() as u64;
        let (client_bytes, server_bytes) = match upstream {
            Upstream::Connected(_) => (0, read),
            Upstream::NotYet | Upstream::Unreachable(_) => (read, 0),
        };
        Relayed {
            client_bytes,
            server_bytes,
            reason: CloseReason::Blocked,
        }
    } else {
        match upstream {
            Upstream::NotYet => {
                forward(&shared, &mut client, destination, replay, open.traffic()).await
            }
            Upstream::Connected(mut upstream) => {
                let traffic = open.traffic();
                server_first_forward(&shared, &mut client, &mut upstream, replay, traffic).await
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
    counted.closed(relayed.client_bytes, relayed.server_bytes);
    drop(open);
    shared.events.emit(
        CloseEvent {
            at: SystemTime::now(),
            flow,
            segment: segment.map(|s| s.name.as_str()),
            policy_version: &policy.version,
            protocol,
            client_bytes: relayed.client_bytes,
            server_bytes: relayed.server_bytes,
            duration: started.elapsed(),
            reason: relayed.reason,
        }
        .to_json(),
    );
}

/// What detection learned, and the upstream connection if detection needed it.
struct Inspection {
    /// The turn that decided: the client's, or the server's when the client was silent.
    detected: Detected,
    upstream: Upstream,
}

enum Upstream {
    /// Client-first: not dialled until the verdict allows it.
    NotYet,
    /// Server-first: dialled to read the banner, which `detected.buf` holds.
    Connected(TcpStream),
    /// Server-first, but the destination could not be reached.
    Unreachable(CloseReason),
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
}

/// Client first; if the client stays silent for `client_first_ms`, the server's banner.
async fn inspect(
    shared: &Shared,
    policy: &Policy,
    segment: usize,
    client: &mut TcpStream,
    destination: SocketAddr,
    started: Instant,
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
        ClientTurn::Spoke(detected) => Inspection {
            detected,
            upstream: Upstream::NotYet,
        },
        ClientTurn::Silent => {
            // A port refused whatever is spoken on it: never contact the destination.
            if policy.refuses_port_blind(segment, destination) {
                return Inspection {
                    detected: silent,
                    upstream: Upstream::NotYet,
                };
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

/// Server-first: delivers the banner the gateway read, then relays both ways.
async fn server_first_forward(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    banner: Vec<u8>,
    traffic: &Traffic,
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
    let mut relayed = relay(client, upstream, idle, shared.stop.clone(), traffic).await;
    relayed.server_bytes += read;
    relayed
}

/// Connects upstream, replays the bytes detection read, then relays both ways.
async fn forward(
    shared: &Shared,
    client: &mut TcpStream,
    destination: SocketAddr,
    replay: Vec<u8>,
    traffic: &Traffic,
) -> Relayed {
    let read = replay.len() as u64;
    let failed = |reason| Relayed {
        client_bytes: read,
        server_bytes: 0,
        reason,
    };
    let mut upstream = match connect(destination, shared.limits.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(reason) => {
            // What the client would have seen without the gateway: a reset.
            reset(client);
            return failed(reason);
        }
    };
    if !replay.is_empty() && upstream.write_all(&replay).await.is_err() {
        reset(client);
        return failed(CloseReason::UpstreamError);
    }
    drop(replay);
    let mut relayed = relay(
        client,
        &upstream,
        shared.limits.idle_timeout,
        shared.stop.clone(),
        traffic,
    )
    .await;
    relayed.client_bytes += read;
    relayed
}

async fn connect(destination: SocketAddr, limit: Duration) -> Result<TcpStream, CloseReason> {
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

fn http_403(reason: Reason) -> Vec<u8> {
    let body = format!("portcullis refused this connection: {}\n", reason.name());
    format!(
        "HTTP/1.1 403 Forbidden\r\nX-Portcullis-Reason: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reason.name(),
        body.len(),
        body
    )
    .into_bytes()
}
