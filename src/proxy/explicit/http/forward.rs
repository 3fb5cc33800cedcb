//! Absolute-form requests (`GET http://host/path HTTP/1.1`, RFC 9112 §3.2.2): one request per
//! client connection, rewritten to origin-form with the hop-by-hop fields (RFC 9110 §7.6.1)
//! and `Proxy-Authorization` removed and `Connection: close` set, then judged as the HTTP it
//! is and forwarded through the same path as every tunnel. Once the request (and its
//! `Content-Length` body) is read, the client's read side is shut: a pipelined second
//! request, credentials and all, never reaches the upstream.

use std::net::Shutdown;

use socket2::SockRef;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::super::{answer_and_close, open, Accepted, Host, Shared, Target, Tunnel};
use super::{refusal_answer, status, MAX_HEAD};
use crate::events::Detection;
use crate::policy::Admission;
use crate::proxy::conn::Early;
use crate::proxy::detect::Detected;
use crate::proxy::limits::Slot;
use crate::sniff::{self, Verdict};

/// The largest request body forwarded (it is read whole before the upstream is judged).
pub const MAX_BODY: u64 = 1 << 20;

/// Header fields that concern only this hop, plus the proxy's own credentials.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
];

/// An absolute-form request, ready to send in origin-form.
#[derive(Debug, PartialEq, Eq)]
pub struct Absolute {
    pub target: Target,
    /// The request head as the origin server gets it.
    pub head: Vec<u8>,
    pub body_len: u64,
}

impl Absolute {
    /// The error is the reason given in the `400` answer.
    pub fn parse(
        method: &str,
        uri: &str,
        headers: &[httparse::Header],
    ) -> Result<Absolute, &'static str> {
        let scheme_end = uri
            .find("://")
            .ok_or("a proxy request needs an absolute URI (http://host/...)")?;
        if !uri[..scheme_end].eq_ignore_ascii_case("http") {
            return Err("only http:// URIs are forwarded; use CONNECT for https");
        }
        let rest = &uri[scheme_end + 3..];
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = path.split('#').next().unwrap_or("");
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if authority.contains('@') {
            return Err("credentials in the URI are not forwarded");
        }
        let target = host_port(authority).ok_or("the URI's host is not valid")?;

        let mut named: Vec<String> = Vec::new();
        let mut body_len: Option<u64> = None;
        for h in headers {
            let name = h.name.to_ascii_lowercase();
            if name == "transfer-encoding" {
                return Err("chunked request bodies are not forwarded; send Content-Length");
            }
            if name == "content-length" {
                let len: u64 = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("Content-Length is not a number")?;
                if body_len.is_some_and(|l| l != len) {
                    return Err("conflicting Content-Length fields");
                }
                body_len = Some(len);
            }
            if name == "connection" || name == "proxy-connection" {
                let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                named.extend(value.split(',').map(|t| t.trim().to_owned()));
            }
        }
        let body_len = body_len.unwrap_or(0);
        if body_len > MAX_BODY {
            return Err("the request body is too large to forward");
        }
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
        for h in headers {
            let name = h.name.to_ascii_lowercase();
            if HOP_BY_HOP.contains(&name.as_str()) || named.contains(&name) {
                continue;
            }
            head.extend_from_slice(h.name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(h.value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        if head.len() > MAX_HEAD + 64 {
            return Err("the request head is too large");
        }
        Ok(Absolute {
            target,
            head,
            body_len,
        })
    }
}

/// `host[:port]` of an http URI; the port defaults to 80.
fn host_port(authority: &str) -> Option<Target> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, rest) = rest.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, rest.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
    };
    Some(Target {
        host: Host::parse(host)?,
        port,
    })
}

pub async fn serve(
    shared: &Shared,
    mut client: TcpStream,
    accepted: Accepted,
    admission: Result<Slot, Admission>,
    req: Absolute,
    after: Vec<u8>,
) -> Option<Tunnel> {
    let Absolute {
        target,
        mut head,
        body_len,
    } = req;
    let head_len = head.len();
    let body_deadline = Instant::now() + shared.detect.timeout;
    // `body_len` is at most MAX_BODY. The body starts with what came in the head's reads;
    // anything after the body there is a pipelined request, and goes unread like the rest.
    let body_len = usize::try_from(body_len).unwrap_or(0);
    let early = &after[..body_len.min(after.len())];
    head.extend_from_slice(early);
    let have = head.len();
    head.resize(head_len + body_len, 0);
    match timeout_at(body_deadline, client.read_exact(&mut head[have..])).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return None,
        Err(_) => {
            let answer = status(
                408,
                "Request Timeout",
                "the request body did not arrive in time",
            );
            answer_and_close(client, &answer).await;
            return None;
        }
    }
    let _ = SockRef::from(&client).shutdown(Shutdown::Read);
    match open(shared, accepted, admission, target).await {
        Ok(opened) => {
            let sniffed = match sniff::sniff_client(&head[..head_len]) {
                Verdict::Match(sniffed) => Some(sniffed),
                Verdict::NeedMore | Verdict::NoMatch => None,
            };
            let read = Detected {
                stop: if sniffed.is_some() {
                    Detection::Matched
                } else {
                    Detection::NoMatch
                },
                sniffed,
                buf: head,
            };
            Some(opened.tunnel(client, Early::Read(read)))
        }
        Err(refusal) => {
            answer_and_close(client, &refusal_answer(refusal)).await;
            None
        }
    }
}
