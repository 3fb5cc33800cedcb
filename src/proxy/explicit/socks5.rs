//! The `socks5` listener: RFC 1928 without authentication, CONNECT to IPv4, IPv6 and domain
//! addresses. BIND and UDP ASSOCIATE answer `0x07`; a refusal by the policy `0x02`; a name
//! that does not resolve `0x04`; a refused or timed-out dial `0x05` / `0x06`. A SOCKS4
//! client gets SOCKS4's "request rejected"; anything else that is not SOCKS5 (TLS, HTTP,
//! garbage) gets "no acceptable methods" (`05 FF`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::{answer_and_close, open, Accepted, Host, Refusal, Shared, Target, Tunnel};
use crate::events::CloseReason;
use crate::policy::Admission;
use crate::proxy::conn::Early;
use crate::proxy::limits::Slot;

const VERSION: u8 = 0x05;
const NO_AUTH: u8 = 0x00;
const NO_ACCEPTABLE: u8 = 0xFF;
const CONNECT: u8 = 0x01;

/// RFC 1928 §6 reply codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

/// SOCKS4's "request rejected or failed" (version 0, code 91), for a SOCKS4 client.
const SOCKS4_REJECTED: [u8; 8] = [0x00, 0x5B, 0, 0, 0, 0, 0, 0];

/// Serves the proxy protocol up to an open tunnel (`None`: the client was answered, or left).
pub async fn serve(
    shared: &Shared,
    mut client: TcpStream,
    accepted: Accepted,
    admission: Result<Slot, Admission>,
) -> Option<Tunnel> {
    let deadline = accepted.deadline(shared);
    let mut input = Input {
        client: &mut client,
        deadline,
        buf: Vec::new(),
        used: 0,
    };
    let answer = match handshake(&mut input).await {
        Ok(target) => match open(shared, accepted, admission, target).await {
            Ok(opened) => {
                // What the client sent after its request (without waiting for the reply)
                // is the tunnel's first bytes.
                let after = input.rest();
                let bound = opened.upstream.local_addr().ok();
                let sent = client.write_all(&reply(Reply::Succeeded, bound)).await;
                return sent
                    .is_ok()
                    .then(|| opened.tunnel(client, Early::Begun(after)));
            }
            Err(refusal) => reply(refusal_reply(refusal), None),
        },
        Err(Failed::Answer(answer)) => answer,
        Err(Failed::Silently) => return None,
    };
    answer_and_close(client, &answer).await;
    None
}

fn refusal_reply(refusal: Refusal) -> Reply {
    match refusal {
        Refusal::Policy(_) => Reply::NotAllowed,
        Refusal::Unresolved => Reply::HostUnreachable,
        Refusal::Upstream(CloseReason::UpstreamRefused) => Reply::ConnectionRefused,
        Refusal::Upstream(CloseReason::UpstreamTimeout) => Reply::TtlExpired,
        Refusal::Upstream(CloseReason::UpstreamUnreachable) => Reply::HostUnreachable,
        Refusal::Upstream(_) => Reply::GeneralFailure,
    }
}

/// A reply (RFC 1928 §6): `BND.ADDR` and `BND.PORT` are the upstream socket's local
/// address on success, zeros otherwise.
fn reply(code: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut out = vec![VERSION, code as u8, 0x00];
    match bound.ip().to_canonical() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(0x04);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

/// How a handshake that produced no target ends.
#[derive(Debug, PartialEq, Eq)]
enum Failed {
    /// Send this, then close.
    Answer(Vec<u8>),
    /// The client left (or sent nothing at all in time): nobody to answer.
    Silently,
}

/// The client's side of the handshake, read as it arrives: each read takes whatever the
/// client has sent (a greeting, a request, often whole in one segment), not one field at a
/// time.
struct Input<'a> {
    client: &'a mut TcpStream,
    deadline: Instant,
    buf: Vec<u8>,
    /// Bytes of `buf` the handshake has taken.
    used: usize,
}

/// Bytes asked of the socket per read: more than a greeting or a request can hold (257 and
/// 262 bytes).
const READ: usize = 512;

impl Input<'_> {
    /// The next `n` bytes, read before the deadline; a timeout, end of stream or error is
    /// `Err`.
    async fn take(&mut self, n: usize) -> Result<&[u8], ()> {
        while self.buf.len() - self.used < n {
            self.buf.reserve(READ);
            match timeout_at(self.deadline, self.client.read_buf(&mut self.buf)).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => return Err(()),
            }
        }
        let start = self.used;
        self.used += n;
        Ok(&self.buf[start..self.used])
    }

    /// The next `N` bytes, as an array.
    async fn array<const N: usize>(&mut self) -> Result<[u8; N], ()> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N).await?);
        Ok(out)
    }

    /// What the client sent beyond the handshake.
    fn rest(mut self) -> Vec<u8> {
        self.buf.split_off(self.used)
    }
}

/// Method negotiation (§3), then the request (§4); all before the input's deadline.
async fn handshake(input: &mut Input<'_>) -> Result<Target, Failed> {
    let no_methods = || Failed::Answer(vec![VERSION, NO_ACCEPTABLE]);
    let [version] = input.array().await.map_err(|()| Failed::Silently)?;
    match version {
        VERSION => {}
        0x04 => return Err(Failed::Answer(SOCKS4_REJECTED.to_vec())),
        _ => return Err(no_methods()),
    }
    let [count] = input.array().await.map_err(|()| no_methods())?;
    let methods = input
        .take(usize::from(count))
        .await
        .map_err(|()| no_methods())?;
    if !methods.contains(&NO_AUTH) {
        return Err(no_methods());
    }
    input
        .client
        .write_all(&[VERSION, NO_AUTH])
        .await
        .map_err(|_| Failed::Silently)?;

    let failure = |code| Failed::Answer(reply(code, None));
    let general = |()| failure(Reply::GeneralFailure);
    let [version, command, _reserved, address_type] = input.array().await.map_err(general)?;
    if version != VERSION {
        return Err(failure(Reply::GeneralFailure));
    }
    let host = match address_type {
        0x01 => {
            let ip: [u8; 4] = input.array().await.map_err(general)?;
            Host::Ip(IpAddr::V4(Ipv4Addr::from(ip)))
        }
        0x04 => {
            let ip: [u8; 16] = input.array().await.map_err(general)?;
            Host::Ip(IpAddr::V6(Ipv6Addr::from(ip)).to_canonical())
        }
        0x03 => {
            let [len] = input.array().await.map_err(general)?;
            let name = input.take(usize::from(len)).await.map_err(general)?;
            let name = std::str::from_utf8(name).map_err(|_| failure(Reply::HostUnreachable))?;
            Host::parse(name).ok_or_else(|| failure(Reply::HostUnreachable))?
        }
        _ => return Err(failure(Reply::AddressTypeNotSupported)),
    };
    let port = u16::from_be_bytes(input.array().await.map_err(general)?);
    if command != CONNECT {
        return Err(failure(Reply::CommandNotSupported));
    }
    Ok(Target { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_the_bound_address() {
        let v4 = reply(Reply::Succeeded, Some("10.0.0.1:4242".parse().unwrap()));
        assert_eq!(v4, [5, 0, 0, 1, 10, 0, 0, 1, 0x10, 0x92]);
        let v6 = reply(Reply::Succeeded, Some("[fd00::1]:80".parse().unwrap()));
        assert_eq!(&v6[..4], [5, 0, 0, 4]);
        assert_eq!(v6.len(), 4 + 16 + 2);
        assert_eq!(
            reply(Reply::NotAllowed, None),
            [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn refusals_map_to_the_documented_codes() {
        use crate::policy::Reason;
        assert_eq!(
            refusal_reply(Refusal::Policy(Reason::PortNotAllowed)),
            Reply::NotAllowed
        );
        assert_eq!(
            refusal_reply(Refusal::Policy(Reason::SelfDestination)),
            Reply::NotAllowed
        );
        assert_eq!(refusal_reply(Refusal::Unresolved), Reply::HostUnreachable);
        assert_eq!(
            refusal_reply(Refusal::Upstream(CloseReason::UpstreamRefused)),
            Reply::ConnectionRefused
        );
        assert_eq!(
            refusal_reply(Refusal::Upstream(CloseReason::UpstreamTimeout)),
            Reply::TtlExpired
        );
    }

    /// Runs the handshake on a loopback connection whose client writes `chunks` one by one
    /// (each after the previous has been read); returns the target, what followed the
    /// request, and what the client received.
    async fn handshake_of(chunks: Vec<Vec<u8>>) -> (Result<Target, Failed>, Vec<u8>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got).await;
            got
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let mut input = Input {
            client: &mut server,
            deadline: Instant::now() + std::time::Duration::from_secs(10),
            buf: Vec::new(),
            used: 0,
        };
        let target = handshake(&mut input).await;
        let rest = input.rest();
        drop(server);
        (target, rest, client.await.unwrap())
    }

    #[tokio::test]
    async fn a_pipelined_greeting_request_and_first_bytes_arrive_in_one_read_and_are_kept() {
        let mut all = vec![5, 1, 0, 5, 1, 0, 3, 11];
        all.extend_from_slice(b"example.com");
        all.extend_from_slice(&443u16.to_be_bytes());
        all.extend_from_slice(b"first bytes of the tunnel");
        let (target, rest, got) = handshake_of(vec![all]).await;
        let target = target.unwrap();
        assert_eq!(
            (target.host, target.port),
            (Host::Name("example.com".into()), 443)
        );
        assert_eq!(rest, b"first bytes of the tunnel");
        assert_eq!(got, [5, 0]);
    }

    #[tokio::test]
    async fn a_handshake_arriving_a_byte_at_a_time_is_read_whole() {
        let request = [5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 7, 0, 22];
        let chunks = request.iter().map(|&b| vec![b]).collect();
        let (target, rest, got) = handshake_of(chunks).await;
        let target = target.unwrap();
        assert_eq!(
            (target.host, target.port),
            (Host::Ip("10.0.0.7".parse().unwrap()), 22)
        );
        assert!(rest.is_empty());
        assert_eq!(got, [5, 0]);
    }

    #[tokio::test]
    async fn a_request_cut_short_is_a_general_failure() {
        let (target, _, _) = handshake_of(vec![vec![5, 1, 0], vec![5, 1, 0, 1, 10]]).await;
        assert_eq!(
            target.unwrap_err(),
            Failed::Answer(reply(Reply::GeneralFailure, None))
        );
    }
}
