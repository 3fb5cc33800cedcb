//! The way out: dialling the destination, replaying what detection read, the agreement
//! check's wait for the server's first turn, and handing both sockets to the relay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::refuse::refuse_connection;
use super::{Next, Relaying};
use crate::events::CloseReason;
use crate::metrics::Traffic;
use crate::policy::{Decision, Refuse};
use crate::proxy::agree::{server_answer, Answer};
use crate::proxy::dial::connect;
use crate::proxy::relay::{Held, Relayed};
use crate::proxy::Shared;
use crate::sniff::Protocol;

/// Server-first: delivers the banner the gateway read; then both ways are relayed.
pub(super) async fn server_first_forward(
    mut client: TcpStream,
    upstream: TcpStream,
    banner: Vec<u8>,
) -> Next {
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
        first: None,
    })
}

/// Connects upstream (unless `connected` already is) and replays the bytes detection read;
/// then both ways are relayed.
pub(super) async fn forward(
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
            first: None,
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
    match connected {
        Some(mut upstream) => {
            if !replay.is_empty() && upstream.write_all(&replay).await.is_err() {
                return Err(CloseReason::UpstreamError);
            }
            Ok(upstream)
        }
        None => connect(destination, shared.limits.connect_timeout, &replay).await,
    }
}

/// A client-first connection dialled after its verdict, with the server's first turn.
pub(super) struct Dialled {
    upstream: Result<TcpStream, CloseReason>,
    /// Client bytes read by detection and replayed upstream.
    replayed: u64,
    /// What the server's first turn said (the verdict is reconciled with it).
    pub(super) answer: Answer,
}

/// Dials, replays the client's first turn, and waits up to `client_first_ms` for the
/// server's first turn (`agree::server_answer`), relaying the client meanwhile.
pub(super) async fn dial_and_listen(
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
pub(super) async fn finish_dialled(
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
        // Read to be named, never delivered.
        done.server_bytes = answer.first.len() as u64;
        done.reason = CloseReason::Blocked;
        return Next::Closed(done);
    }
    if let Some(failed) = answer.read_failed {
        // The server failed before the relay began: what it sent reaches the client as far
        // as the socket takes it now, then the failure does, as the relay would pass it on
        // (a reset as a reset).
        let sent = client.try_write(&answer.first).unwrap_or(0);
        traffic.downstream.fetch_add(sent as u64, Ordering::Relaxed);
        done.server_bytes = sent as u64;
        done.reason = if failed.reset {
            reset(&client);
            CloseReason::UpstreamReset
        } else {
            CloseReason::UpstreamError
        };
        return Next::Closed(done);
    }
    Next::Relay(Relaying {
        client,
        upstream,
        client_bytes: done.client_bytes,
        server_bytes: 0,
        first: (!answer.first.is_empty()).then(|| Box::new(Held(answer.first))),
    })
}

/// Closes with RST: the client learns at once that the connection is gone.
pub(super) fn reset(client: &TcpStream) {
    let _ = SockRef::from(client).set_linger(Some(Duration::ZERO));
}
