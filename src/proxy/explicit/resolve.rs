//! Where an explicit proxy's client asked to go: the host it named, resolved with the
//! system's resolver (resolv.conf and hosts) under a time limit, and the gateway's own
//! addresses, which no client may reach through it.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::lookup_host;
use tokio::time::timeout;

/// A host as the client named it: an address literal or a name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// An address literal stays an address (`10.0.0.1`, `::1`, `::ffff:127.0.0.1`); anything
    /// else is a name. `None` for a name no resolver could look up (empty, too long, or with
    /// bytes outside letters, digits, `-`, `_` and `.`).
    pub fn parse(text: &str) -> Option<Host> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(Host::Ip(ip.to_canonical()));
        }
        let valid = !text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        valid.then(|| Host::Name(text.to_ascii_lowercase()))
    }
}

/// A name that yielded no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(io::Error),
    #[error("no address")]
    Empty,
}

/// Every address `name` resolves to, in the resolver's order, without duplicates.
pub async fn resolve(
    name: &str,
    port: u16,
    limit: Duration,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let found = timeout(limit, lookup_host((name, port)))
        .await
        .map_err(|_| ResolveError::Timeout(limit))?
        .map_err(ResolveError::Failed)?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(ResolveError::Empty);
    }
    Ok(addrs)
}

/// True for the addresses a proxy client must never reach: loopback, unspecified, and the
/// gateway's own (any address a socket on this host can bind, so every interface's and every
/// local route's, as they are now).
pub fn is_own(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified() || bindable(ip)
}

/// Whether a socket on this host can bind `ip`.
fn bindable(ip: IpAddr) -> bool {
    // Binding fails with EADDRNOTAVAIL for an address the host does not hold, and a failed
    // bind leaves the socket as it was: each thread keeps one unbound probe socket per family
    // and reuses it, one system call per check. A bind that succeeds uses the probe up (the
    // next check makes another). Should the socket itself fail, refuse rather than risk
    // looping back into the gateway.
    PROBES.with(|probes| {
        let mut probes = probes.borrow_mut();
        let (slot, domain) = match ip {
            IpAddr::V4(_) => (&mut probes.0, Domain::IPV4),
            IpAddr::V6(_) => (&mut probes.1, Domain::IPV6),
        };
        let probe = match slot.take() {
            Some(probe) => probe,
            None => match Socket::new(domain, Type::STREAM, None) {
                Ok(probe) => probe,
                Err(_) => return true,
            },
        };
        match probe.bind(&SocketAddr::new(ip, 0).into()) {
            Err(err) if err.kind() == io::ErrorKind::AddrNotAvailable => {
                *slot = Some(probe);
                false
            }
            _ => true,
        }
    })
}

thread_local! {
    /// This thread's unbound probe sockets for [`is_own`]: IPv4, IPv6.
    static PROBES: RefCell<(Option<Socket>, Option<Socket>)> = const { RefCell::new((None, None)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_addresses_and_names_are_checked() {
        assert_eq!(
            Host::parse("10.0.0.1"),
            Some(Host::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            Host::parse("::ffff:127.0.0.1"),
            Some(Host::Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            Host::parse("Web.Example.COM"),
            Some(Host::Name("web.example.com".into()))
        );
        for bad in ["", "a b", "evil.com/x", "x\r\nHost: y", &"a".repeat(254)] {
            assert_eq!(Host::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_unspecified_and_local_addresses_are_own() {
        for own in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_own(own.parse().unwrap()), "{own}");
        }
        // TEST-NET-3 is on no interface of a test machine. Asked again, the probe socket the
        // first check kept answers the same, and an own address after it is still own.
        for _ in 0..3 {
            assert!(!is_own("203.0.113.9".parse().unwrap()));
            assert!(!is_own("2001:db8::9".parse().unwrap()));
        }
        // Loopback is bindable: each bind uses a probe up, and the next check makes another.
        for _ in 0..3 {
            assert!(bindable("127.0.0.1".parse().unwrap()));
            assert!(!bindable("203.0.113.9".parse().unwrap()));
        }
    }

    #[tokio::test]
    async fn hosts_file_names_resolve() {
        // Unresolvable names are tested in the namespace lab, whose resolver is local.
        let addrs = resolve("localhost", 443, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 443 && a.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}
