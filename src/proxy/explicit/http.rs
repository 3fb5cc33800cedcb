//! The `http_proxy` listener: HTTP/1.1 `CONNECT host:port` tunnels (RFC 9110 §9.3.6) and
//! absolute-form requests (`GET http://host/...`, RFC 9112 §3.2.2), with a bounded request
//! head read under a deadline.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{answer_and_close, open, Accepted, Host, Refusal, Shared, Target, Tunnel};
use crate::events::CloseReason;
use crate::policy::Admission;
use crate::proxy::conn::Early;
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
        Ok((head, after)) => match parse(&head) {
            Ok(Request::Connect(target)) => {
                return match open(shared, accepted, admission, target).await {
                    Ok(opened) => {
                        let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
                        write_all(&mut client, established)
                            .await
                            .then(|| opened.tunnel(client, Early::Begun(after)))
                    }
                    Err(refusal) => {
                        answer_and_close(client, &refusal_answer(refusal)).await;
                        None
                    }
                };
            }
            Ok(Request::Absolute(req)) => {
                return forward::serve(shared, client, accepted, admission, req, after).await;
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

/// Bytes asked of the socket per read of a request head.
const HEAD_READ: usize = 4096;

/// Reads one request head (through its empty line), and returns it with the bytes that came
/// after it in the same reads: a `CONNECT`'s tunnel bytes (which detection judges first), an
/// absolute-form request's body. Each read takes whatever has arrived, so a client's usual
/// single write of head and first bytes takes one read (a peek and then an exact read of the
/// head took two, and the bytes behind it a third).
async fn read_head(
    client: &mut TcpStream,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let searched = buf.len();
        buf.reserve(HEAD_READ);
        match timeout_at(deadline, client.read_buf(&mut buf)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Err(_) | Ok(0)) => return Err(HeadError::Closed),
            Ok(Ok(_)) => {}
        }
        match head_end(&buf, searched) {
            Some(end) if end > MAX_HEAD => return Err(HeadError::TooLarge),
            Some(end) => {
                let after = buf.split_off(end);
                return Ok((buf, after));
            }
            None if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
            None => {}
        }
    }
}

/// Where the head in `buf` ends (just after its first empty line: `\n\n` or `\n\r\n`), given
/// that none ends within the first `searched` bytes.
pub fn head_end(buf: &[u8], searched: usize) -> Option<usize> {
    // Up to two bytes of a terminator may be among those searched already.
    let from = searched.saturating_sub(2);
    buf[from..].iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let rest = &buf[from + i + 1..];
        if rest.starts_with(b"\n") {
            Some(from + i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(from + i + 3)
        } else {
            None
        }
    })
}

/// A request to the proxy.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Connect(Target),
    Absolute(forward::Absolute),
}

/// Parses a complete head; the error says what is wrong, for the 400 answer.
pub fn parse(head: &[u8]) -> Result<Request, &'static str> {
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
