//! The catalogue on real programs' bytes: each fixture is named with the right side, every
//! prefix of it waits or agrees, metadata comes through, and look-alikes stay apart.

use super::fixtures::{bytes, CATALOGUE};
use super::*;
use crate::sniff::{sniff_client, sniff_server, Meta, Protocol, ServerBanner, Side, Sniffed};

fn sniff_side(side: Side) -> fn(&[u8]) -> Verdict<Sniffed> {
    match side {
        Side::Client => sniff_client,
        Side::Server => sniff_server,
    }
}

fn matched(side: Side, input: &[u8]) -> Sniffed {
    match sniff_side(side)(input) {
        Verdict::Match(s) => s,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn identify(side: Side, input: &[u8]) -> Option<Protocol> {
    match sniff_side(side)(input) {
        Verdict::Match(s) => Some(s.protocol),
        _ => None,
    }
}

#[test]
fn every_fixture_is_its_protocol_from_its_side_at_every_prefix() {
    for (name, input, protocol, side) in CATALOGUE {
        let last = check_all_prefixes(name, input, sniff_side(side));
        match last {
            Verdict::Match(s) => assert_eq!((s.protocol, s.side), (protocol, side), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_first_turn_is_never_claimed_from_the_wrong_side() {
    // A server-first greeting sent by a client (or the reverse) is another protocol or none:
    // only rsync and telnet open the same way from both sides.
    for (name, input, protocol, side) in CATALOGUE {
        let other = match side {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let found = identify(other, input);
        let both_ways = matches!(protocol, Protocol::Rsync | Protocol::Telnet);
        assert!(
            found.is_none() || (both_ways && found == Some(protocol)),
            "{name}: {found:?}"
        );
    }
}

#[test]
fn smtp_and_ftp_greetings_carry_text_and_host() {
    let smtp = matched(Side::Server, bytes("smtp_server_aiosmtpd"));
    assert_eq!(
        smtp.meta,
        Meta::Banner(ServerBanner {
            text: "localhost Python SMTP 1.4.3".into(),
            host: Some("localhost".into()),
        })
    );
    // Exim's default banner: host, ESMTP, version and date.
    let exim = matched(Side::Server, bytes("smtp_server_exim"));
    assert_eq!(exim.protocol, Protocol::Smtp);
    assert!(
        matches!(&exim.meta, Meta::Banner(b) if b.host.as_deref() == Some("vm")
            && b.text.starts_with("vm ESMTP Exim 4.96 "))
    );
    let vsftpd = matched(Side::Server, bytes("ftp_server_vsftpd"));
    assert_eq!(
        vsftpd.meta,
        Meta::Banner(ServerBanner {
            text: "(vsFTPd 3.0.3)".into(),
            host: None,
        })
    );
    let named = matched(Side::Server, b"220 ftp.example.test FTP server ready\r\n");
    assert_eq!(named.protocol, Protocol::Ftp);
    assert_eq!(
        named.meta,
        Meta::Banner(ServerBanner {
            text: "ftp.example.test FTP server ready".into(),
            host: Some("ftp.example.test".into()),
        })
    );
}

#[test]
fn a_220_greeting_that_names_neither_smtp_nor_ftp_stays_unidentified() {
    assert_eq!(identify(Side::Server, b"220 Welcome\r\n"), None);
    assert_eq!(
        identify(Side::Server, b"220 mail.example SMTP and FTP\r\n"),
        None
    );
    // A multi-line greeting is read to its last line; the name may come on any line.
    let multi = b"220-mx.example.test\r\n220-policy: no relaying\r\n220 ESMTP ready\r\n";
    assert_eq!(
        check_all_prefixes("multi", multi, sniff_server).map(|s| s.protocol),
        Verdict::Match(Protocol::Smtp)
    );
}

#[test]
fn pop3_imap_greetings_keep_their_text() {
    let pop3 = matched(Side::Server, bytes("pop3_server_dovecot"));
    assert_eq!(
        pop3.meta,
        Meta::Banner(ServerBanner {
            text: "Dovecot (Debian) ready.".into(),
            host: None,
        })
    );
    let imap = matched(Side::Server, bytes("imap_server_dovecot"));
    assert!(matches!(imap.meta, Meta::Banner(b) if b.text.ends_with("Dovecot (Debian) ready.")));
    // `+OKAY` is not `+OK` followed by text.
    assert_eq!(identify(Side::Server, b"+OKAY\r\n"), None);
}

#[test]
fn nntp_greeting_names_the_service_or_stays_unidentified() {
    let jam = matched(Side::Server, bytes("nntp_server_jamnntpd"));
    assert_eq!(jam.protocol, Protocol::Nntp);
    assert!(matches!(&jam.meta, Meta::Banner(b) if b.text.starts_with("Welcome to JamNNTPd")));
    // `200` alone means "command okay" in FTP: without a news word it is nobody's.
    assert_eq!(identify(Side::Server, b"200 Welcome\r\n"), None);
}

#[test]
fn smtp_commands_and_irc_lines_are_not_http() {
    // An HTTP method is any token, so the version decides: a line without one is refused.
    assert_eq!(identify(Side::Client, b"EHLO client.example\r\n"), None);
    assert_eq!(
        identify(Side::Client, bytes("irc_client_sic")),
        Some(Protocol::Irc)
    );
    assert_eq!(identify(Side::Client, b"NICK 9bad\r\n"), None);
    assert_eq!(
        identify(Side::Client, b"CAP LS 302\r\nNICK alice\r\n"),
        Some(Protocol::Irc)
    );
}

#[test]
fn ldap_and_mqtt_share_a_first_byte_but_not_a_structure() {
    assert_eq!(
        identify(Side::Client, bytes("ldap_client_ldapsearch")),
        Some(Protocol::Ldap)
    );
    // An MQTT PUBLISH (QoS 0, topic "t/1", payload "on") starts with 0x30 like a SEQUENCE.
    let publish = b"\x30\x07\x00\x03t/1on";
    assert_eq!(identify(Side::Client, publish), None);
    // A SEQUENCE holding something other than a request (here an INTEGER 0 message id).
    assert_eq!(
        identify(Side::Client, b"\x30\x05\x02\x01\x00\x42\x00"),
        None
    );
    // An MQTT CONNECT with the reserved flag bit set is refused.
    let mut connect = bytes("mqtt_client_mosquitto_pub").to_vec();
    connect[9] |= 0x01;
    assert_eq!(identify(Side::Client, &connect), None);
}

#[test]
fn binary_headers_are_checked_past_the_first_byte() {
    // DNS: a response (QR set) is not a query.
    let mut response = bytes("dns_client_dig").to_vec();
    response[4] |= 0x80;
    assert_eq!(identify(Side::Client, &response), None);
    // PostgreSQL: an unknown protocol version code.
    let mut startup = bytes("postgresql_client_psql").to_vec();
    startup[5] = 0x04;
    assert_eq!(identify(Side::Client, &startup), None);
    // A StartupMessage without a user parameter.
    assert_eq!(
        identify(
            Side::Client,
            b"\x00\x00\x00\x16\x00\x03\x00\x00database\x00shop\x00\x00"
        ),
        None
    );
    // SMB2 with a wrong header StructureSize.
    let mut smb2 = bytes("smb_client_smbclient").to_vec();
    smb2[8] = 0x41;
    assert_eq!(identify(Side::Client, &smb2), None);
    // MySQL: a greeting with protocol version 9.
    let mut greeting = bytes("mysql_server_mariadb").to_vec();
    greeting[4] = 9;
    assert_eq!(identify(Side::Server, &greeting), None);
    // SOCKS5 offering the same method twice, or 0xff ("no acceptable methods").
    assert_eq!(identify(Side::Client, b"\x05\x02\x00\x00"), None);
    assert_eq!(identify(Side::Client, b"\x05\x01\xff"), None);
}

#[test]
fn text_commands_need_their_arguments() {
    assert_eq!(
        identify(Side::Client, bytes("memcached_client_memccp")),
        Some(Protocol::Memcached)
    );
    assert_eq!(identify(Side::Client, b"set key 0 0\r\n"), None);
    assert_eq!(identify(Side::Client, b"get\r\n"), None);
    assert_eq!(identify(Side::Client, b"shutdown\r\n"), None);
    // Redis: the inline form is not claimed; the array form is.
    assert_eq!(identify(Side::Client, b"PING\r\n"), None);
    assert_eq!(
        identify(Side::Client, b"*1\r\n$4\r\nPING\r\n"),
        Some(Protocol::Redis)
    );
    assert_eq!(identify(Side::Client, b"*1\r\n$4\r\nPI\x00G\r\n"), None);
}

#[test]
fn bytes_after_a_complete_first_message_do_not_change_the_answer() {
    for (name, input, protocol, side) in CATALOGUE {
        let longer = [input, &b"\x00\xffanything at all\r\n"[..]].concat();
        assert_eq!(
            identify(side, &longer),
            Some(protocol),
            "{name} with trailing bytes"
        );
    }
}

/// r3: the first fuzz crash. An SSH server's "other lines" before its banner were read past
/// an IMAP greeting, so a prefix said `imap` and the whole buffer `ssh`.
#[test]
fn r3_fuzz_ssh_pre_banner_line_that_is_an_imap_greeting() {
    let input = include_bytes!("regressions/ssh_preline_imap.bin");
    assert_eq!(
        check_all_prefixes("r3", input, sniff_server).map(|s| s.protocol),
        Verdict::Match(Protocol::Imap)
    );
}
