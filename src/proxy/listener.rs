//! Binding listening sockets: IPv6 listeners are IPv6-only so `0.0.0.0:P` and `[::]:P` can be
//! configured side by side, a large backlog absorbs connection bursts, and TPROXY listeners
//! are `IP_TRANSPARENT` so they accept connections addressed to any destination.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

const BACKLOG: i32 = 4096;

/// Binds and listens; `transparent` needs CAP_NET_ADMIN.
pub fn bind(addr: SocketAddr, transparent: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if transparent {
        let set = match addr {
            SocketAddr::V4(_) => socket.set_ip_transparent_v4(true),
            SocketAddr::V6(_) => socket.set_ip_transparent_v6(true),
        };
        set.map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("IP_TRANSPARENT (needs CAP_NET_ADMIN): {err}"),
            )
        })?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}
