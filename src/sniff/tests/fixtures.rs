//! The catalogue fixtures: one recorded first turn per program (tests/fixtures/sniff/README.md).
//!
//! Kept apart from the test logic so `cross.rs` can run every sniffer over every fixture.

use crate::sniff::{Protocol, Side};

/// `(name, bytes of tests/fixtures/sniff/<name>.bin, protocol, side)`.
macro_rules! fixture {
    ($name:literal, $protocol:ident, $side:ident) => {
        (
            $name,
            include_bytes!(concat!("../../../tests/fixtures/sniff/", $name, ".bin")).as_slice(),
            Protocol::$protocol,
            Side::$side,
        )
    };
}

/// Every catalogue fixture: its file name, bytes, protocol and whose first turn it is.
pub(crate) const CATALOGUE: [(&str, &[u8], Protocol, Side); 51] = [
    fixture!("amqp_client_py_amqp", Amqp, Client),
    fixture!("bittorrent_client_libtorrent", Bittorrent, Client),
    fixture!("cassandra_client_python_driver", Cassandra, Client),
    fixture!("cassandra_client_python_driver_startup", Cassandra, Client),
    fixture!("dcerpc_client_impacket", Dcerpc, Client),
    fixture!("dns_client_dig", Dns, Client),
    fixture!("ftp_server_pyftpdlib", Ftp, Server),
    fixture!("ftp_server_vsftpd", Ftp, Server),
    fixture!("git_client_ls_remote", Git, Client),
    fixture!("imap_server_dovecot", Imap, Server),
    fixture!("irc_client_sic", Irc, Client),
    fixture!("kafka_client_kafka_python", Kafka, Client),
    fixture!("kerberos_client_kinit", Kerberos, Client),
    fixture!("ldap_client_ldapsearch", Ldap, Client),
    fixture!("ldap_client_ldapsearch_anon", Ldap, Client),
    fixture!("memcached_client_memccp", Memcached, Client),
    fixture!("memcached_client_memcstat", Memcached, Client),
    fixture!("mongodb_client_pymongo", Mongodb, Client),
    fixture!("mqtt_client_mosquitto_pub", Mqtt, Client),
    fixture!("mqtt_client_mosquitto_pub_v31", Mqtt, Client),
    fixture!("mqtt_client_mosquitto_pub_v5", Mqtt, Client),
    fixture!("mssql_client_tsql", Mssql, Client),
    fixture!("mysql_server_mariadb", Mysql, Server),
    fixture!("nats_client_python", Nats, Client),
    fixture!("nats_server_nats", Nats, Server),
    fixture!("nntp_server_jamnntpd", Nntp, Server),
    fixture!("openvpn_client_openvpn", Openvpn, Client),
    fixture!("openvpn_client_openvpn_tls_auth", Openvpn, Client),
    fixture!("openvpn_client_openvpn_tls_crypt", Openvpn, Client),
    fixture!("pop3_server_dovecot", Pop3, Server),
    fixture!("postgresql_client_psql", Postgresql, Client),
    fixture!("postgresql_client_psql_sslrequest", Postgresql, Client),
    fixture!("rdp_client_xfreerdp", Rdp, Client),
    fixture!("redis_client_redis_cli", Redis, Client),
    fixture!("rsync_client_rsync", Rsync, Client),
    fixture!("rsync_server_daemon", Rsync, Server),
    fixture!("rtmp_client_rtmpdump", Rtmp, Client),
    fixture!("rtmp_client_rtmpdump_fp9", Rtmp, Client),
    fixture!("rtsp_client_curl", Rtsp, Client),
    fixture!("sip_client_sipsak", Sip, Client),
    fixture!("smb_client_smbclient", Smb, Client),
    fixture!("smb_client_smbclient_nt1", Smb, Client),
    fixture!("smtp_server_aiosmtpd", Smtp, Server),
    fixture!("smtp_server_exim", Smtp, Server),
    fixture!("socks4_client_curl", Socks4, Client),
    fixture!("socks4a_client_curl", Socks4, Client),
    fixture!("socks5_client_curl", Socks5, Client),
    fixture!("telnet_client_inetutils", Telnet, Client),
    fixture!("telnet_server_inetutils", Telnet, Server),
    fixture!("vnc_server_tigervnc", Vnc, Server),
    fixture!("xmpp_client_slixmpp", Xmpp, Client),
];

/// The bytes of the catalogue fixture `name`.
pub(crate) fn bytes(name: &str) -> &'static [u8] {
    CATALOGUE
        .iter()
        .find(|f| f.0 == name)
        .map(|f| f.1)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}
