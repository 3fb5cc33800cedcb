//! Refusing a connection: a reset, or for `refuse = "native"` an answer in the client's own
//! protocol, read to the end so the kernel's reset cannot destroy it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::dial::reset;
use crate::policy::{Decision, Reason, Refuse};
use crate::sniff::Protocol;

/// How long a native refusal waits for the client to read it before closing.
const NATIVE_LINGER: Duration = Duration::from_secs(2);

/// Refuses with a reset, or for `refuse = "native"` with what the client's protocol
/// understands: an HTTP 403, a TLS access_denied alert, an SMTP 554 greeting; anything else
/// is reset.
pub(super) async fn refuse_connection(
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

pub(in crate::proxy) fn http_403(reason: Reason) -> Vec<u8> {
    let body = format!("portcullis refused this connection: {}\n", reason.name());
    format!(
        "HTTP/1.1 403 Forbidden\r\nX-Portcullis-Reason: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reason.name(),
        body.len(),
        body
    )
    .into_bytes()
}
