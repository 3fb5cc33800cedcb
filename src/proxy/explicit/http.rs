//! The `http_proxy` listener: HTTP/1.1 `CONNECT host:port` tunnels (RFC 9110 §9.3.6) and
//! absolute-form requests (`GET http://host/...`, RFC 9112 §3.2.2), with a bounded request
//! head read under a deadline.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{answer_and_close, open, Accepted, Host, Refusal, Shared, Target, Tunnel};
use crate::events::CloseReason;
use crate::policy::Admission;
use crate::proxy::limits::Slot;

mod forward;

/// The largest request head accepted (request line and every header field).
pub const MAX_HEAD: usize = 16 << 10;
/// The most header fields a request may carry.
const MAX_HEADERS: usize = 64;

/// Serves the proxy protocol up to an open tunnel (`None`: the client was answered, or left).
pub async fn serve(
    shared: &Shared,
    mut client: TcpStream,
    accepted: Accepted,
    admission: Result<Slot, Admission>,
) -> Option<Tunnel> {
    let failed = match read_head(&mut client, accepted.deadline(shared)).await {
        Ok(head) => match parse(&head) {
            Ok(Request::Connect(target)) => {
                return match open(shared, accepted, admission, target).await {
                    Ok(opened) => {
                        let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
                        write_all(&mut client, established)
                            .await
                            .then(|| opened.tunnel(client, None))
                    }
                    Err(refusal) => {
                        answer_and_close(client, &refusal_answer(refusal)).await;
                        None
                    }
                };
            }
            Ok(Request::Absolute(req)) => {
                return forward::serve(shared, client, accepted, admission, req).await;
            }
            Err(why) => status(400, "Bad Request", why),
        },
        Err(HeadError::Closed) => return None,
        Err(HeadError::Timeout) => status(
            408,
            "Request Timeout",
            "the request head did not arrive in time",
        ),
        Err(HeadError::TooLarge) => status(400, "Bad Request", "the request head is too large"),
    };
    answer_and_close(client, &failed).await;
    None
}

async fn write_all(client: &mut TcpStream, bytes: &[u8]) -> bool {
    tokio::io::AsyncWriteExt::write_all(client, bytes)
        .await
        .is_ok()
}

/// What a refused `CONNECT` (or absolute-form request) is answered.
pub fn refusal_answer(refusal: Refusal) -> Vec<u8> {
    match refusal {
        Refusal::Policy(reason) => crate::proxy::conn::http_403(reason),
        Refusal::Unresolved => status(502, "Bad Gateway", "the host name did not resolve"),
        Refusal::Upstream(CloseReason::UpstreamTimeout) => status(
            504,
            "Gateway Timeout",
            "the destination did not answer in time",
        ),
        Refusal::Upstream(CloseReason::UpstreamRefused) => {
            status(502, "Bad Gateway", "the destination refused the connection")
        }
        Refusal::Upstream(_) => status(502, "Bad Gateway", "the destination is unreachable"),
    }
}

/// A complete answer that closes the connection.
pub fn status(code: u16, phrase: &str, why: &str) -> Vec<u8> {
    let body = format!("portcullis: {why}\n");
    format!(
        "HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client closed (or the connection failed) before a head arrived.
    Closed,
    Timeout,
    TooLarge,
}

/// Reads exactly one request head (through its empty line) and not a byte more: bytes a
/// client sends after a `CONNECT` head belong to the tunnel and must reach detection. Each
/// round peeks at what has arrived and consumes only what is head.
async fn read_head(client: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head: Vec<u8> = Vec::with_capacity(512);
    let mut peeked = vec![0u8; 4096];
    loop {
        let n = match timeout_at(deadline, client.peek(&mut peeked)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Err(_) | Ok(0)) => return Err(HeadError::Closed),
            Ok(Ok(n)) => n,
        };
        let room = MAX_HEAD - head.len();
        let take = match head_end(&head, &peeked[..n]) {
            Some(end) => end,
            None => n,
        };
        if take > room {
            return Err(HeadError::TooLarge);
        }
        let start = head.len();
        head.resize(start + take, 0);
        if client.read_exact(&mut head[start..]).await.is_err() {
            return Err(HeadError::Closed);
        }
        if head_end(&head[..start], &head[start..]).is_some() {
            return Ok(head);
        }
        if head.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head ends in `more` (the count of its bytes that belong to the head), given
/// the head bytes already read: after the first empty line (`\n\n` or `\n\r\n`).
fn head_end(before: &[u8], more: &[u8]) -> Option<usize> {
    // Up to two bytes of the terminator may already have been read.
    let tail = &before[before.len().saturating_sub(2)..];
    let joined: Vec<u8> = tail.iter().chain(more.iter()).copied().collect();
    (0..joined.len()).find_map(|i| {
        let end = if joined[i..].starts_with(b"\n\n") {
            i + 2
        } else if joined[i..].starts_with(b"\n\r\n") {
            i + 3
        } else {
            return None;
        };
        (end > tail.len()).then(|| end - tail.len())
    })
}

/// A request to the proxy.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Connect(Target),
    Absolute(forward::Absolute),
}

/// Parses a complete head; the error says what is wrong, for the 400 answer.
fn parse(head: &[u8]) -> Result<Request, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("the request head is incomplete"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header fields"),
        Err(_) => return Err("the request is not HTTP/1.x"),
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Err("the request is not HTTP/1.x");
    };
    if method == "CONNECT" {
        return authority(path)
            .map(Request::Connect)
            .ok_or("CONNECT needs host:port");
    }
    forward::Absolute::parse(method, path, req.headers).map(Request::Absolute)
}

/// `host:port` or `[v6]:port` (RFC 9110 §9.3.6: the authority-form with a port).
fn authority(text: &str) -> Option<Target> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, rest) = rest.split_once(']')?;
            (host, rest.strip_prefix(':')?)
        }
        None => text.rsplit_once(':')?,
    };
    let bracketed = text.starts_with('[');
    // An IPv6 literal must be bracketed, and only an IPv6 literal may be.
    if bracketed != host.parse::<std::net::Ipv6Addr>().is_ok() {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some(Target {
        host: Host::parse(host)?,
        port,
    })
}

#[cfg(test)]
mod tests;
