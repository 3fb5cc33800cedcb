//! The two entry points: every client-first sniffer over a client's first turn, every
//! server-first sniffer over a server's first turn.
//!
//! The protocols in each table exclude each other by structure (checked by the cross tests
//! over every fixture), so the order only decides how soon a `Match` comes: the cheapest
//! first-byte rejections run first.

use super::{amqp, banner, bittorrent, cassandra, dcerpc, dns, git, http, http2, irc, kafka};
use super::{kerberos, ldap, memcached, mongodb, mqtt, mssql, mysql, nats, openvpn};
use super::{postgresql, rdp, redis, rsync, rtmp, rtsp_sip, smb, socks, ssh, telnet, tls};
use super::{vnc, xmpp};
use super::{Meta, Protocol, Sniffed, Verdict};

/// A sniffer with its protocol and metadata attached.
type Sniffer = fn(&[u8]) -> Verdict<Sniffed>;

fn client(protocol: Protocol) -> impl Fn(()) -> Sniffed {
    move |()| Sniffed::client(protocol, Meta::None)
}

fn server(protocol: Protocol) -> impl Fn(()) -> Sniffed {
    move |()| Sniffed::server(protocol, Meta::None)
}

const CLIENT_SNIFFERS: &[Sniffer] = &[
    |b| tls::sniff(b).map(|hello| Sniffed::client(Protocol::Tls, Meta::Tls(hello))),
    |b| ssh::sniff_client(b).map(|banner| Sniffed::client(Protocol::Ssh, Meta::Ssh(banner))),
    |b| http2::sniff(b).map(|()| Sniffed::client(Protocol::Http2, Meta::None)),
    |b| http::sniff(b).map(|req| Sniffed::client(Protocol::Http, Meta::Http(req))),
    |b| postgresql::sniff(b).map(client(Protocol::Postgresql)),
    |b| redis::sniff(b).map(client(Protocol::Redis)),
    |b| mqtt::sniff(b).map(client(Protocol::Mqtt)),
    |b| socks::sniff_socks4(b).map(client(Protocol::Socks4)),
    |b| socks::sniff_socks5(b).map(client(Protocol::Socks5)),
    |b| ldap::sniff(b).map(client(Protocol::Ldap)),
    |b| dns::sniff(b).map(client(Protocol::Dns)),
    |b| smb::sniff(b).map(client(Protocol::Smb)),
    |b| git::sniff(b).map(client(Protocol::Git)),
    |b| memcached::sniff(b).map(client(Protocol::Memcached)),
    |b| rsync::sniff(b).map(client(Protocol::Rsync)),
    |b| telnet::sniff(b).map(client(Protocol::Telnet)),
    |b| irc::sniff_client(b).map(client(Protocol::Irc)),
    |b| nats::sniff_client(b).map(client(Protocol::Nats)),
    |b| rtsp_sip::sniff_rtsp(b).map(client(Protocol::Rtsp)),
    |b| rtsp_sip::sniff_sip(b).map(client(Protocol::Sip)),
    |b| xmpp::sniff(b).map(client(Protocol::Xmpp)),
    |b| amqp::sniff(b).map(client(Protocol::Amqp)),
    |b| bittorrent::sniff(b).map(client(Protocol::Bittorrent)),
    |b| rdp::sniff(b).map(client(Protocol::Rdp)),
    |b| rtmp::sniff(b).map(client(Protocol::Rtmp)),
    |b| mssql::sniff(b).map(client(Protocol::Mssql)),
    |b| dcerpc::sniff(b).map(client(Protocol::Dcerpc)),
    |b| cassandra::sniff(b).map(client(Protocol::Cassandra)),
    |b| kafka::sniff(b).map(client(Protocol::Kafka)),
    |b| kerberos::sniff(b).map(client(Protocol::Kerberos)),
    |b| openvpn::sniff(b).map(client(Protocol::Openvpn)),
    |b| mongodb::sniff(b).map(client(Protocol::Mongodb)),
];

/// SSH comes last: its server may send other lines before its banner, so it decides later
/// than the greetings that are decided by their first line.
const SERVER_SNIFFERS: &[Sniffer] = &[
    |b| banner::sniff_220(b).map(|(p, banner)| Sniffed::server(p, Meta::Banner(banner))),
    |b| banner::sniff_pop3(b).map(|g| Sniffed::server(Protocol::Pop3, Meta::Banner(g))),
    |b| banner::sniff_imap(b).map(|g| Sniffed::server(Protocol::Imap, Meta::Banner(g))),
    |b| banner::sniff_nntp(b).map(|g| Sniffed::server(Protocol::Nntp, Meta::Banner(g))),
    |b| mysql::sniff_server(b).map(server(Protocol::Mysql)),
    |b| vnc::sniff_server(b).map(server(Protocol::Vnc)),
    |b| rsync::sniff(b).map(server(Protocol::Rsync)),
    |b| telnet::sniff(b).map(server(Protocol::Telnet)),
    |b| nats::sniff_server(b).map(server(Protocol::Nats)),
    |b| ssh::sniff_server(b).map(|banner| Sniffed::server(Protocol::Ssh, Meta::Ssh(banner))),
];

/// `Match` as soon as one sniffer matches; `NoMatch` when every sniffer has said `NoMatch`;
/// `NeedMore` while at least one still might match.
fn first_match(sniffers: &[Sniffer], buf: &[u8]) -> Verdict<Sniffed> {
    let mut need_more = false;
    for sniffer in sniffers {
        match sniffer(buf) {
            Verdict::Match(sniffed) => return Verdict::Match(sniffed),
            Verdict::NeedMore => need_more = true,
            Verdict::NoMatch => {}
        }
    }
    if need_more {
        Verdict::NeedMore
    } else {
        Verdict::NoMatch
    }
}

/// Identifies the client's first turn: runs every client-first sniffer over `buf`.
///
/// `Match` as soon as one sniffer matches; `NoMatch` when every sniffer has said `NoMatch`;
/// `NeedMore` while at least one still might match.
///
/// ```
/// use portcullis::sniff::{sniff_client, Protocol, Verdict};
///
/// let request = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\r\n";
/// assert_eq!(sniff_client(&request[..20]), Verdict::NeedMore);
/// let Verdict::Match(sniffed) = sniff_client(request) else { unreachable!() };
/// assert_eq!(sniffed.protocol, Protocol::Http);
/// assert_eq!(sniffed.server_name(), Some("www.example.com"));
/// // No client-first protocol starts like this (two or three bytes are too few for the
/// // length-prefixed ones to refuse).
/// assert_eq!(sniff_client(b"\x00\x01\x02\x03\x04\x05\x06\x07"), Verdict::NoMatch);
/// ```
pub fn sniff_client(buf: &[u8]) -> Verdict<Sniffed> {
    first_match(CLIENT_SNIFFERS, buf)
}

/// Identifies the server's first turn, for server-first protocols (the client was silent).
pub fn sniff_server(buf: &[u8]) -> Verdict<Sniffed> {
    first_match(SERVER_SNIFFERS, buf)
}
