//! The catalogue's binary and HTTP-like sniffers refuse near misses: a real program's first
//! turn with one field changed to a value its specification forbids, or the look-alike
//! protocol that shares its first bytes.

use super::fixtures::bytes;
use super::*;
use crate::sniff::{sniff_client, Protocol};

fn client(input: &[u8]) -> Option<Protocol> {
    match sniff_client(input) {
        Verdict::Match(s) => Some(s.protocol),
        _ => None,
    }
}

/// `name`'s fixture with `edit` applied.
fn edited(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = bytes(name).to_vec();
    edit(&mut buf);
    buf
}

#[test]
fn rtsp_and_sip_are_told_from_http_and_from_each_other() {
    assert_eq!(client(bytes("rtsp_client_curl")), Some(Protocol::Rtsp));
    assert_eq!(client(bytes("sip_client_sipsak")), Some(Protocol::Sip));
    // The same request under the other's version, or HTTP's, is no one's.
    let swap = |name: &str, from: &[u8], to: &[u8]| {
        let text = String::from_utf8_lossy(bytes(name)).into_owned();
        let from = String::from_utf8_lossy(from).into_owned();
        let to = String::from_utf8_lossy(to).into_owned();
        text.replacen(&from, &to, 1).into_bytes()
    };
    assert_eq!(
        client(&swap("rtsp_client_curl", b"RTSP/1.0", b"SIP/2.0")),
        None
    );
    assert_eq!(
        client(&swap("sip_client_sipsak", b" SIP/2.0\r", b" RTSP/1.0\r")),
        None
    );
    assert_eq!(
        client(&swap("rtsp_client_curl", b"RTSP/1.0", b"HTTP/1.1")),
        Some(Protocol::Http),
        "an HTTP OPTIONS request stays HTTP"
    );
    // A SIP method with an http URI, and an RTSP request without its CSeq.
    assert_eq!(
        client(&swap("sip_client_sipsak", b"sip:alice", b"http://alice")),
        None
    );
    assert_eq!(client(&swap("rtsp_client_curl", b"CSeq: 1\r\n", b"")), None);
    // RTSP/2.0 (RFC 7826) is RTSP too.
    let rtsp2 = swap("rtsp_client_curl", b"RTSP/1.0", b"RTSP/2.0");
    assert_eq!(
        check_all_prefixes("rtsp2", &rtsp2, sniff_client).map(|s| s.protocol),
        Verdict::Match(Protocol::Rtsp)
    );
}

#[test]
fn xmpp_needs_the_streams_namespace_not_just_xml() {
    assert_eq!(client(bytes("xmpp_client_slixmpp")), Some(Protocol::Xmpp));
    let declared = [
        b"<?xml version='1.0'?>\n".as_slice(),
        bytes("xmpp_client_slixmpp"),
    ]
    .concat();
    assert_eq!(client(&declared), Some(Protocol::Xmpp));
    assert_eq!(client(b"<?xml version='1.0'?><methodCall>"), None);
    let other_ns = String::from_utf8_lossy(bytes("xmpp_client_slixmpp"))
        .replace("etherx.jabber.org", "example.test")
        .into_bytes();
    assert_eq!(client(&other_ns), None);
}

#[test]
fn fixed_openings_are_exact() {
    assert_eq!(client(bytes("amqp_client_py_amqp")), Some(Protocol::Amqp));
    // AMQP 1.0 with its SASL layer (OASIS AMQP 1.0 part 5 §5.3.1).
    assert_eq!(client(b"AMQP\x03\x01\x00\x00"), Some(Protocol::Amqp));
    assert_eq!(client(b"AMQP\x00\x00\x09\x02"), None);
    assert_eq!(
        client(bytes("bittorrent_client_libtorrent")),
        Some(Protocol::Bittorrent)
    );
    assert_eq!(
        client(&edited("bittorrent_client_libtorrent", |b| b[0] = 0x14)),
        None
    );
    // RTMP: C0 must be 3 (6 is RTMPE); C1's second field zero (the plain handshake), or a
    // player version with a valid digest (librtmp's Flash Player 9 handshake).
    let fp9 = bytes("rtmp_client_rtmpdump_fp9");
    assert_eq!(client(fp9), Some(Protocol::Rtmp));
    for at in [12, 800, 1000, 1535] {
        let flipped = edited("rtmp_client_rtmpdump_fp9", |b| b[1 + at] ^= 1);
        assert_eq!(client(&flipped), None, "one bit flipped at C1[{at}]");
    }
    assert_eq!(client(bytes("rtmp_client_rtmpdump")), Some(Protocol::Rtmp));
    assert_eq!(client(&edited("rtmp_client_rtmpdump", |b| b[0] = 6)), None);
    assert_eq!(
        client(&edited("rtmp_client_rtmpdump", |b| b[5] = 0x09)),
        None
    );
    assert_eq!(
        client(&bytes("rtmp_client_rtmpdump")[..1536]),
        None,
        "C1 cut short waits"
    );
}

#[test]
fn rdp_is_not_any_iso_on_tcp_connection_request() {
    let rdp = bytes("rdp_client_xfreerdp");
    assert_eq!(client(rdp), Some(Protocol::Rdp));
    // S7comm's COTP CR: the same TPKT and X.224 fields, with TSAP parameters (0xc1, 0xc2,
    // 0xc0) where RDP has its cookie and RDP_NEG_REQ.
    let mut cotp = rdp[..11].to_vec();
    cotp.extend_from_slice(b"\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a");
    cotp[3] = cotp.len() as u8;
    cotp[4] = cotp.len() as u8 - 5;
    assert_eq!(client(&cotp), None);
    // A length indicator that disagrees with the TPKT length, and an unknown protocol bit.
    assert_eq!(client(&edited("rdp_client_xfreerdp", |b| b[4] -= 1)), None);
    assert_eq!(
        client(&edited("rdp_client_xfreerdp", |b| b[39] = 0x40)),
        None
    );
    // The correlation-info flag without the correlation info.
    assert_eq!(
        client(&edited("rdp_client_xfreerdp", |b| b[36] = 0x08)),
        None
    );
}

#[test]
fn length_prefixed_requests_are_checked_field_by_field() {
    // MSSQL: the first option must be VERSION; an option may not point into the table.
    assert_eq!(client(bytes("mssql_client_tsql")), Some(Protocol::Mssql));
    assert_eq!(client(&edited("mssql_client_tsql", |b| b[8] = 0x01)), None);
    assert_eq!(client(&edited("mssql_client_tsql", |b| b[15] = 0x10)), None);
    // DCE/RPC: a fragment length one too long, and a request PDU instead of bind.
    assert_eq!(
        client(bytes("dcerpc_client_impacket")),
        Some(Protocol::Dcerpc)
    );
    assert_eq!(
        client(&edited("dcerpc_client_impacket", |b| b[8] += 1)),
        None
    );
    assert_eq!(
        client(&edited("dcerpc_client_impacket", |b| b[2] = 0)),
        None
    );
    // Kafka: Produce (api key 0) is not an opening; a client id longer than the request.
    assert_eq!(
        client(bytes("kafka_client_kafka_python")),
        Some(Protocol::Kafka)
    );
    assert_eq!(
        client(&edited("kafka_client_kafka_python", |b| b[5] = 0)),
        None
    );
    assert_eq!(
        client(&edited("kafka_client_kafka_python", |b| b[13] = 0x40)),
        None
    );
    // Kerberos: protocol version 4, and an AS-REQ tag with the TGS-REQ message type.
    assert_eq!(
        client(bytes("kerberos_client_kinit")),
        Some(Protocol::Kerberos)
    );
    assert_eq!(
        client(&edited("kerberos_client_kinit", |b| b[14] = 4)),
        None
    );
    assert_eq!(
        client(&edited("kerberos_client_kinit", |b| b[19] = 12)),
        None
    );
}

#[test]
fn openvpn_hard_resets_with_and_without_control_channel_protection() {
    for name in [
        "openvpn_client_openvpn",
        "openvpn_client_openvpn_tls_auth",
        "openvpn_client_openvpn_tls_crypt",
    ] {
        assert_eq!(client(bytes(name)), Some(Protocol::Openvpn), "{name}");
        // Key id 1 is a renegotiation, never a connection's first packet.
        assert_eq!(client(&edited(name, |b| b[2] |= 1)), None, "{name}");
    }
    // Plain: a message packet id other than 0; tls-auth: a replay packet id other than 1.
    assert_eq!(
        client(&edited("openvpn_client_openvpn", |b| b[15] = 1)),
        None
    );
    assert_eq!(
        client(&edited("openvpn_client_openvpn_tls_auth", |b| b[34] = 2)),
        None
    );
    assert_eq!(
        client(&edited("openvpn_client_openvpn_tls_crypt", |b| b[14] = 2)),
        None
    );
}

#[test]
fn mongodb_and_cassandra_headers() {
    assert_eq!(
        client(bytes("mongodb_client_pymongo")),
        Some(Protocol::Mongodb)
    );
    // A reply (responseTo set), OP_REPLY (1), and a first document not ended by its zero.
    assert_eq!(
        client(&edited("mongodb_client_pymongo", |b| b[8] = 1)),
        None
    );
    assert_eq!(
        client(&edited("mongodb_client_pymongo", |b| b[12..16]
            .copy_from_slice(&1u32.to_le_bytes()))),
        None
    );
    let doc_end = 39 + 0xd7 - 1;
    assert_eq!(
        client(&edited("mongodb_client_pymongo", |b| b[doc_end] = 1)),
        None
    );
    // Cassandra: OPTIONS and STARTUP; a response (version bit 0x80) and an OPTIONS body.
    assert_eq!(
        client(bytes("cassandra_client_python_driver")),
        Some(Protocol::Cassandra)
    );
    assert_eq!(
        client(bytes("cassandra_client_python_driver_startup")),
        Some(Protocol::Cassandra)
    );
    assert_eq!(
        client(&edited("cassandra_client_python_driver", |b| b[0] = 0x84)),
        None
    );
    assert_eq!(
        client(&edited("cassandra_client_python_driver", |b| b[8] = 1)),
        None
    );
    // STARTUP whose map lacks CQL_VERSION (renamed to a key of the same length).
    let startup = edited("cassandra_client_python_driver_startup", |b| b[0x4b] = b'X');
    assert_eq!(client(&startup), None);
}
