//! Protocol identification from a connection's first bytes, never from its port.
//!
//! Every sniffer is a pure function over `&[u8]` that answers [`Verdict`]: it needs more
//! bytes, it recognises its protocol (with whatever metadata the bytes carry), or the bytes
//! cannot be its protocol. Sniffers do no I/O, never log and never panic on any input; the
//! async detection driver in `proxy::detect` owns reading, deadlines and the byte cap.

mod amqp;
mod banner;
mod ber;
mod bittorrent;
mod cassandra;
mod dcerpc;
mod dispatch;
mod dns;
mod git;
mod http;
mod http2;
mod irc;
mod ja4;
mod kafka;
mod kerberos;
mod ldap;
mod memcached;
mod mongodb;
mod mqtt;
mod mssql;
mod mysql;
mod nats;
mod openvpn;
mod parse;
mod postgresql;
mod rdp;
mod redis;
mod rsync;
mod rtmp;
mod rtsp_sip;
mod smb;
mod socks;
mod ssh;
mod telnet;
#[cfg(test)]
mod tests;
mod tls;
mod vnc;
mod xmpp;

use std::fmt;

pub use dispatch::{sniff_client, sniff_server};
pub use tls::TlsHello;

/// An application protocol, by its ECS `network.protocol` name (contract: never renamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tls,
    Http,
    Http2,
    Ssh,
    Smtp,
    Ftp,
    Pop3,
    Imap,
    Dns,
    Rdp,
    Smb,
    Mysql,
    Postgresql,
    Redis,
    Mqtt,
    Socks4,
    Socks5,
    Bittorrent,
    Openvpn,
    Xmpp,
    Irc,
    Ldap,
    Kerberos,
    Telnet,
    Vnc,
    Rtsp,
    Sip,
    Mongodb,
    Amqp,
    Mssql,
    Nntp,
    Rtmp,
    Git,
    Rsync,
    Memcached,
    Nats,
    Kafka,
    Dcerpc,
    Cassandra,
    Unknown,
}

impl Protocol {
    /// Every protocol, in the order DESIGN.md lists them.
    pub const ALL: [Protocol; 40] = [
        Protocol::Tls,
        Protocol::Http,
        Protocol::Http2,
        Protocol::Ssh,
        Protocol::Smtp,
        Protocol::Ftp,
        Protocol::Pop3,
        Protocol::Imap,
        Protocol::Dns,
        Protocol::Rdp,
        Protocol::Smb,
        Protocol::Mysql,
        Protocol::Postgresql,
        Protocol::Redis,
        Protocol::Mqtt,
        Protocol::Socks4,
        Protocol::Socks5,
        Protocol::Bittorrent,
        Protocol::Openvpn,
        Protocol::Xmpp,
        Protocol::Irc,
        Protocol::Ldap,
        Protocol::Kerberos,
        Protocol::Telnet,
        Protocol::Vnc,
        Protocol::Rtsp,
        Protocol::Sip,
        Protocol::Mongodb,
        Protocol::Amqp,
        Protocol::Mssql,
        Protocol::Nntp,
        Protocol::Rtmp,
        Protocol::Git,
        Protocol::Rsync,
        Protocol::Memcached,
        Protocol::Nats,
        Protocol::Kafka,
        Protocol::Dcerpc,
        Protocol::Cassandra,
        Protocol::Unknown,
    ];

    /// The contract name, as it appears in policy files and events.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tls => "tls",
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Ssh => "ssh",
            Protocol::Smtp => "smtp",
            Protocol::Ftp => "ftp",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Dns => "dns",
            Protocol::Rdp => "rdp",
            Protocol::Smb => "smb",
            Protocol::Mysql => "mysql",
            Protocol::Postgresql => "postgresql",
            Protocol::Redis => "redis",
            Protocol::Mqtt => "mqtt",
            Protocol::Socks4 => "socks4",
            Protocol::Socks5 => "socks5",
            Protocol::Bittorrent => "bittorrent",
            Protocol::Openvpn => "openvpn",
            Protocol::Xmpp => "xmpp",
            Protocol::Irc => "irc",
            Protocol::Ldap => "ldap",
            Protocol::Kerberos => "kerberos",
            Protocol::Telnet => "telnet",
            Protocol::Vnc => "vnc",
            Protocol::Rtsp => "rtsp",
            Protocol::Sip => "sip",
            Protocol::Mongodb => "mongodb",
            Protocol::Amqp => "amqp",
            Protocol::Mssql => "mssql",
            Protocol::Nntp => "nntp",
            Protocol::Rtmp => "rtmp",
            Protocol::Git => "git",
            Protocol::Rsync => "rsync",
            Protocol::Memcached => "memcached",
            Protocol::Nats => "nats",
            Protocol::Kafka => "kafka",
            Protocol::Dcerpc => "dcerpc",
            Protocol::Cassandra => "cassandra",
            Protocol::Unknown => "unknown",
        }
    }

    /// Looks a contract name up; `None` for anything that is not exactly one.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a sniffer says about the bytes it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<T> {
    /// Every byte so far is consistent with the protocol, but it is not proven yet.
    NeedMore,
    /// The bytes are this protocol.
    Match(T),
    /// The bytes cannot be this protocol.
    NoMatch,
}

impl<T> Verdict<T> {
    /// Converts the `Match` payload; `NeedMore` and `NoMatch` pass through.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Verdict<U> {
        match self {
            Verdict::NeedMore => Verdict::NeedMore,
            Verdict::Match(t) => Verdict::Match(f(t)),
            Verdict::NoMatch => Verdict::NoMatch,
        }
    }
}

/// Whose bytes decided the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub const fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// An identified protocol and the metadata its first bytes carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    pub protocol: Protocol,
    pub side: Side,
    pub meta: Meta,
}

/// Protocol metadata, in the shape the events need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Meta {
    #[default]
    None,
    Tls(TlsHello),
    Http(HttpRequest),
    Ssh(SshBanner),
    /// The greeting of a server that speaks first (SMTP, FTP, POP3, IMAP, NNTP).
    Banner(ServerBanner),
}

impl Sniffed {
    fn client(protocol: Protocol, meta: Meta) -> Sniffed {
        Sniffed {
            protocol,
            side: Side::Client,
            meta,
        }
    }

    fn server(protocol: Protocol, meta: Meta) -> Sniffed {
        Sniffed {
            protocol,
            side: Side::Server,
            meta,
        }
    }

    /// The name the client asked for: TLS SNI or the HTTP Host (without port).
    pub fn server_name(&self) -> Option<&str> {
        match &self.meta {
            Meta::Tls(hello) => hello.server_name.as_deref(),
            Meta::Http(req) => req.host.as_deref(),
            _ => None,
        }
    }
}

/// The request line and Host header of an HTTP/1.x request (RFC 9112 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    pub method: String,
    /// Host header value with any port removed, lowercased.
    pub host: Option<String>,
    pub user_agent: Option<String>,
}

/// An SSH identification string (RFC 4253 §4.2), without the trailing CR LF.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshBanner {
    pub banner: String,
}

/// A server's greeting line: its text and, where the protocol puts one there, the host name
/// it announces (RFC 5321 §4.2: an SMTP greeting starts with the server's domain).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerBanner {
    /// The first greeting line after the reply code, without its line end.
    pub text: String,
    pub host: Option<String>,
}

impl ServerBanner {
    /// Allocates: called only on a `Match`.
    fn new(text: &[u8], host: Option<&[u8]>) -> ServerBanner {
        ServerBanner {
            text: String::from_utf8_lossy(text).into_owned(),
            host: host.map(|h| String::from_utf8_lossy(h).to_ascii_lowercase()),
        }
    }
}
