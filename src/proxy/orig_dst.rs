//! The original destination of a redirected connection (`SO_ORIGINAL_DST`,
//! `IP6T_SO_ORIGINAL_DST`), read through socket2 without unsafe code.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Where the client meant to connect before nftables `redirect` sent it here.
///
/// The family of the accepted socket decides which option is asked: an IPv4 connection has an
/// IPv4 original destination and an IPv6 one an IPv6 destination (NAT does not change family).
pub fn original_dst(stream: &TcpStream, local: SocketAddr) -> io::Result<SocketAddr> {
    let sock = SockRef::from(stream);
    let addr = match local {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "original destination is not an IP address",
        )
    })
}
