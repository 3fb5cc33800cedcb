//! Every sniffer against every other protocol's fixtures, the dispatch, and random bytes.

use super::fixtures::CATALOGUE;
use super::*;
use crate::sniff::{amqp, banner, bittorrent, cassandra, dcerpc, dns, git, http, http2, irc};
use crate::sniff::{kafka, kerberos, ldap, memcached, mongodb, mqtt, mssql, mysql, nats};
use crate::sniff::{openvpn, postgresql, rdp, redis, rsync, rtmp, rtsp_sip, smb, socks, ssh};
use crate::sniff::{sniff_client, sniff_server, Protocol, Side};
use crate::sniff::{telnet, tls, vnc, xmpp};

/// Every recorded first turn with the protocol it is, and whose turn it is.
fn all_fixtures() -> Vec<(&'static str, &'static [u8], Protocol, Side)> {
    let mut all: Vec<_> = TLS_FIXTURES
        .iter()
        .map(|&(n, b)| (n, b, Protocol::Tls, Side::Client))
        .collect();
    all.extend(
        HTTP_FIXTURES
            .iter()
            .map(|&(n, b)| (n, b, Protocol::Http, Side::Client)),
    );
    all.push(("http2", HTTP2_CURL, Protocol::Http2, Side::Client));
    all.push(("ssh_client", SSH_CLIENT, Protocol::Ssh, Side::Client));
    all.push(("ssh_server", SSH_SERVER, Protocol::Ssh, Side::Server));
    all.extend(CATALOGUE);
    all
}

type MatchOnly = fn(&[u8]) -> Verdict<()>;

/// Every sniffer, client and server side, by the protocol it claims, reduced to "did it
/// match". The SMTP/FTP greeting sniffer claims two protocols: it is listed under the one
/// it named.
fn every_sniffer() -> Vec<(Protocol, MatchOnly)> {
    vec![
        (Protocol::Tls, |b| tls::sniff(b).map(drop)),
        (Protocol::Http, |b| http::sniff(b).map(drop)),
        (Protocol::Http2, |b| http2::sniff(b).map(drop)),
        (Protocol::Ssh, |b| ssh::sniff_client(b).map(drop)),
        (Protocol::Ssh, |b| ssh::sniff_server(b).map(drop)),
        (Protocol::Smtp, |b| smtp_or_ftp(b, Protocol::Smtp)),
        (Protocol::Ftp, |b| smtp_or_ftp(b, Protocol::Ftp)),
        (Protocol::Pop3, |b| banner::sniff_pop3(b).map(drop)),
        (Protocol::Imap, |b| banner::sniff_imap(b).map(drop)),
        (Protocol::Nntp, |b| banner::sniff_nntp(b).map(drop)),
        (Protocol::Dns, dns::sniff),
        (Protocol::Git, git::sniff),
        (Protocol::Irc, irc::sniff_client),
        (Protocol::Ldap, ldap::sniff),
        (Protocol::Memcached, memcached::sniff),
        (Protocol::Mqtt, mqtt::sniff),
        (Protocol::Mysql, mysql::sniff_server),
        (Protocol::Nats, nats::sniff_client),
        (Protocol::Nats, nats::sniff_server),
        (Protocol::Postgresql, postgresql::sniff),
        (Protocol::Redis, redis::sniff),
        (Protocol::Rsync, rsync::sniff),
        (Protocol::Smb, smb::sniff),
        (Protocol::Socks4, socks::sniff_socks4),
        (Protocol::Socks5, socks::sniff_socks5),
        (Protocol::Telnet, telnet::sniff),
        (Protocol::Vnc, vnc::sniff_server),
        (Protocol::Rtsp, rtsp_sip::sniff_rtsp),
        (Protocol::Sip, rtsp_sip::sniff_sip),
        (Protocol::Xmpp, xmpp::sniff),
        (Protocol::Amqp, amqp::sniff),
        (Protocol::Bittorrent, bittorrent::sniff),
        (Protocol::Rdp, rdp::sniff),
        (Protocol::Rtmp, rtmp::sniff),
        (Protocol::Mssql, mssql::sniff),
        (Protocol::Dcerpc, dcerpc::sniff),
        (Protocol::Cassandra, cassandra::sniff),
        (Protocol::Kafka, kafka::sniff),
        (Protocol::Kerberos, kerberos::sniff),
        (Protocol::Openvpn, openvpn::sniff),
        (Protocol::Mongodb, mongodb::sniff),
    ]
}

/// The `220` greeting sniffer, matching only when it names `want`.
fn smtp_or_ftp(buf: &[u8], want: Protocol) -> Verdict<()> {
    match banner::sniff_220(buf) {
        Verdict::Match((p, _)) if p == want => Verdict::Match(()),
        Verdict::Match(_) => Verdict::NoMatch,
        Verdict::NeedMore => Verdict::NeedMore,
        Verdict::NoMatch => Verdict::NoMatch,
    }
}

#[test]
fn no_sniffer_claims_another_protocols_fixture() {
    for (name, input, protocol, _) in all_fixtures() {
        for (other, sniff) in every_sniffer() {
            if other == protocol {
                continue;
            }
            // Never claimed, and no prefix is ever claimed either. (Some sniffers may still
            // wait on a short fixture: DNS needs 17 bytes to judge, an SSH server may send
            // text lines before its banner.)
            assert_ne!(sniff(input), Verdict::Match(()), "{other} on {name}");
            check_all_prefixes(name, input, sniff);
        }
    }
}

#[test]
fn dispatch_names_the_protocol_and_the_side() {
    for (name, input, protocol, side) in all_fixtures() {
        let verdict = match side {
            Side::Client => sniff_client(input),
            Side::Server => sniff_server(input),
        };
        match verdict {
            Verdict::Match(s) => {
                assert_eq!((s.protocol, s.side), (protocol, side), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        check_all_prefixes(
            name,
            input,
            match side {
                Side::Client => sniff_client,
                Side::Server => sniff_server,
            },
        );
    }
}

#[test]
fn bytes_after_a_complete_first_turn_do_not_change_the_answer() {
    // A client that pipelines its next message, or junk appended to slip past a sniffer.
    for (name, input, protocol, side) in all_fixtures() {
        let sniff = match side {
            Side::Client => sniff_client,
            Side::Server => sniff_server,
        };
        for tail in [
            &b"\x00"[..],
            b"\xff\xfe junk\r\n",
            &[0x16, 0x03, 0x01, 0x02, 0x00],
        ] {
            let longer = [input, tail].concat();
            match sniff(&longer) {
                Verdict::Match(s) => assert_eq!(s.protocol, protocol, "{name}"),
                other => panic!("{name} + {tail:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn server_name_comes_from_sni_or_host() {
    let name = |input| match sniff_client(input) {
        Verdict::Match(s) => s.server_name().map(str::to_owned),
        other => panic!("{other:?}"),
    };
    assert_eq!(name(TLS_CURL).as_deref(), Some("www.example.test"));
    assert_eq!(name(HTTP_CURL_GET).as_deref(), Some("www.example.test"));
    assert_eq!(name(SSH_CLIENT), None);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..3000 {
        let len = match i % 10 {
            0 => rng.below(17_000),
            _ => rng.below(300),
        };
        let mut buf = rng.bytes(len);
        // Half of them start like something a sniffer accepts, to get past byte 0.
        match i % 6 {
            0 if len > 5 => buf[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0x00, 0xff]),
            1 if len > 8 => buf[..8].copy_from_slice(b"SSH-2.0-"),
            2 if len > 4 => buf[..4].copy_from_slice(b"GET "),
            _ => {}
        }
        let _ = sniff_client(&buf);
        let _ = sniff_server(&buf);
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for (_, input, _, _) in all_fixtures() {
        for _ in 0..300 {
            let mut buf = input.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(buf.len());
                buf[at] = rng.next() as u8;
            }
            let cut = rng.below(buf.len() + 1);
            let _ = sniff_client(&buf);
            let _ = sniff_client(&buf[..cut]);
            let _ = sniff_server(&buf);
        }
    }
}

#[test]
fn random_printable_text_ends_in_no_match() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for _ in 0..200 {
        let buf: Vec<u8> = (0..17_000).map(|_| 0x20 + rng.below(95) as u8).collect();
        assert_eq!(sniff_client(&buf), Verdict::NoMatch, "{:?}", &buf[..40]);
    }
}
