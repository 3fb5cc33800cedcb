//! Binding listening sockets: IPv6 listeners are IPv6-only so `0.0.0.0:P` and `[::]:P` can be
//! configured side by side, a large backlog absorbs connection bursts, and TPROXY listeners
//! are `IP_TRANSPARENT` so they accept connections addressed to any destination. Listening
//! sockets are `TCP_NODELAY`, which Linux copies to every socket they accept: a proxy's small
//! writes (a refusal, a `200`, a short answer) leave at once, without a system call per
//! connection to say so.
//!
//! Each configured listener is one socket per data-path thread, all bound with
//! `SO_REUSEPORT`: the kernel spreads new connections over them, so every thread accepts its
//! own connections without waking another (as HAProxy and nginx do), and serves them unless
//! it is busier than another thread (`lanes.rs`).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const BACKLOG: i32 = 4096;

/// Binds `count` listening sockets to `addr`, one per data-path thread; `transparent` needs
/// CAP_NET_ADMIN. A first bind without `SO_REUSEPORT` checks that no other socket holds the
/// address (with `SO_REUSEPORT` another process of the same user could otherwise share the
/// port silently) and picks the port when `addr` asks for port 0.
pub fn bind(addr: SocketAddr, transparent: bool, count: usize) -> io::Result<Vec<TcpListener>> {
    let probe = socket(addr, transparent)?;
    probe.bind(&addr.into())?;
    let addr = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
    drop(probe);
    (0..count.max(1))
        .map(|_| {
            let socket = socket(addr, transparent)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            Ok(socket.into())
        })
        .collect()
}

/// A listening socket in this thread's reactor that accepts plain sockets, registered
/// nowhere yet: a connection the thread keeps joins its reactor once, and one it hands to
/// another thread (`lanes.rs`) joins only that thread's. (tokio's `TcpListener` registers
/// every accepted socket where it was accepted, so a handed connection cost an epoll_ctl(2)
/// to leave and another to join.)
pub struct Acceptor(AsyncFd<Socket>);

impl Acceptor {
    /// Must be called inside the runtime whose reactor is to watch `listener`.
    pub fn new(listener: TcpListener) -> io::Result<Acceptor> {
        // tokio deprecates its safe constructors because an arbitrary `AsRawFd` type could
        // close or swap its descriptor while registered; its replacement is `unsafe`, which
        // this crate forbids. A `socket2::Socket` owns its descriptor for its whole life and
        // always reports that one, so the old constructor is sound here.
        #[allow(deprecated)]
        AsyncFd::with_interest(Socket::from(listener), Interest::READABLE).map(Acceptor)
    }

    /// The next connection, non-blocking and close-on-exec (one accept4(2), as tokio's).
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        const FLAGS: i32 = nix::libc::SOCK_NONBLOCK | nix::libc::SOCK_CLOEXEC;
        loop {
            let mut ready = self.0.readable().await?;
            // `try_io` forgets the readiness only when accept4 says it would block.
            let Ok(accepted) = ready.try_io(|listener| listener.get_ref().accept4(FLAGS)) else {
                continue;
            };
            let (socket, peer) = accepted?;
            let peer = peer
                .as_socket()
                .ok_or_else(|| io::Error::other("accepted a connection from a non-IP address"))?;
            return Ok((socket.into(), peer));
        }
    }
}

fn socket(addr: SocketAddr, transparent: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
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
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_socket_shares_the_port_chosen_for_port_zero() {
        let socks = bind("127.0.0.1:0".parse().unwrap(), false, 3).unwrap();
        assert_eq!(socks.len(), 3);
        let addr = socks[0].local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        // Connections are accepted on the group: one of the sockets has it.
        let _client = std::net::TcpStream::connect(addr).unwrap();
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let socks = bind("127.0.0.1:0".parse().unwrap(), false, 1).unwrap();
        socks[0].set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(socks[0].local_addr().unwrap()).unwrap();
        let (accepted, _) = socks[0].accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn the_acceptor_gives_nonblocking_sockets_and_the_peer_address() {
        let socks = bind("127.0.0.1:0".parse().unwrap(), false, 1).unwrap();
        let addr = socks[0].local_addr().unwrap();
        let acceptor = Acceptor::new(socks.into_iter().next().unwrap()).unwrap();
        for _ in 0..3 {
            let client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (accepted, peer) = acceptor.accept().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            // Non-blocking, as tokio needs it: a read with nothing to read says so at once.
            let mut buf = [0u8; 1];
            let err = std::io::Read::read(&mut &accepted, &mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            // Not inherited by the programs a gateway might run (none today).
            let fd_flags = nix::fcntl::fcntl(&accepted, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(fd_flags & nix::libc::FD_CLOEXEC, 0);
            // And usable from this thread's reactor.
            let accepted = tokio::net::TcpStream::from_std(accepted).unwrap();
            let mut client = client;
            tokio::io::AsyncWriteExt::write_all(&mut client, b"x")
                .await
                .unwrap();
            accepted.readable().await.unwrap();
        }
    }

    #[test]
    fn an_address_already_listened_on_is_refused_not_shared() {
        let held = bind("127.0.0.1:0".parse().unwrap(), false, 2).unwrap();
        let addr = held[0].local_addr().unwrap();
        let err = bind(addr, false, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(plain.local_addr().unwrap(), false, 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
