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
    let answer = match handshake(&mut client, deadline).await {
        Ok(target) => match open(shared, accepted, admission, target).await {
            Ok(opened) => {
                let bound = opened.upstream.local_addr().ok();
                let sent = client.write_all(&reply(Reply::Succeeded, bound)).await;
                return sent.is_ok().then(|| opened.tunnel(client, Early::Nothing));
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

/// Method negotiation (§3), then the request (§4); all before `deadline`.
async fn handshake(client: &mut TcpStream, deadline: Instant) -> Result<Target, Failed> {
    let no_methods = || Failed::Answer(vec![VERSION, NO_ACCEPTABLE]);
    let mut version = [0u8; 1];
    read(client, &mut version, deadline)
        .await
        .map_err(|_| Failed::Silently)?;
    match version[0] {
        VERSION => {}
        0x04 => return Err(Failed::Answer(SOCKS4_REJECTED.to_vec())),
        _ => return Err(no_methods()),
    }
    let mut count = [0u8; 1];
    read(client, &mut count, deadline)
        .await
        .map_err(|_| no_methods())?;
    let mut methods = vec![0u8; usize::from(count[0])];
    read(client, &mut methods, deadline)
        .await
        .map_err(|_| no_methods())?;
    if !methods.contains(&NO_AUTH) {
        return Err(no_methods());
    }
    client
        .write_all(&[VERSION, NO_AUTH])
        .await
        .map_err(|_| Failed::Silently)?;

    let failure = |code| Failed::Answer(reply(code, None));
    let mut fixed = [0u8; 4];
    read(client, &mut fixed, deadline)
        .await
        .map_err(|_| failure(Reply::GeneralFailure))?;
    let [version, command, _reserved, address_type] = fixed;
    if version != VERSION {
        return Err(failure(Reply::GeneralFailure));
    }
    let host = match address_type {
        0x01 => {
            let mut ip = [0u8; 4];
            read(client, &mut ip, deadline)
                .await
                .map_err(|_| failure(Reply::GeneralFailure))?;
            Host::Ip(IpAddr::V4(Ipv4Addr::from(ip)))
        }
        0x04 => {
            let mut ip = [0u8; 16];
            read(client, &mut ip, deadline)
                .await
                .map_err(|_| failure(Reply::GeneralFailure))?;
            Host::Ip(IpAddr::V6(Ipv6Addr::from(ip)).to_canonical())
        }
        0x03 => {
            let mut len = [0u8; 1];
            read(client, &mut len, deadline)
                .await
                .map_err(|_| failure(Reply::GeneralFailure))?;
            let mut name = vec![0u8; usize::from(len[0])];
            read(client, &mut name, deadline)
                .await
                .map_err(|_| failure(Reply::GeneralFailure))?;
            let name = String::from_utf8(name).map_err(|_| failure(Reply::HostUnreachable))?;
            Host::parse(&name).ok_or_else(|| failure(Reply::HostUnreachable))?
        }
        _ => return Err(failure(Reply::AddressTypeNotSupported)),
    };
    let mut port = [0u8; 2];
    read(client, &mut port, deadline)
        .await
        .map_err(|_| failure(Reply::GeneralFailure))?;
    if command != CONNECT {
        return Err(failure(Reply::CommandNotSupported));
    }
    Ok(Target {
        host,
        port: u16::from_be_bytes(port),
    })
}

/// Fills `buf` before `deadline`; a timeout, end of stream or error is `Err`.
async fn read(client: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), ()> {
    match timeout_at(deadline, client.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(()),
    }
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
}
