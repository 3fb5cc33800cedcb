//! The catalogue fixtures: one recorded first turn per program (tests/fixtures/sniff/README.md).
//!
//! Kept apart from the test logic so `cross.rs` can run every sniffer over every fixture.

use crate::sniff::{Protocol, Side};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/sniff/", $name, ".bin")).as_slice()
    };
}

/// Every catalogue fixture: its file name, bytes, protocol and whose first turn it is.
pub(crate) const CATALOGUE: [(&str, &[u8], Protocol, Side); 29] = [
    ("dns_client_dig", fixture!("dns_client_dig"), Protocol::Dns, Side::Client),
    ("ftp_server_pyftpdlib", fixture!("ftp_server_pyftpdlib"), Protocol::Ftp, Side::Server),
    ("ftp_server_vsftpd", fixture!("ftp_server_vsftpd"), Protocol::Ftp, Side::Server),
    ("git_client_ls_remote", fixture!("git_client_ls_remote"), Protocol::Git, Side::Client),
    ("imap_server_dovecot", fixture!("imap_server_dovecot"), Protocol::Imap, Side::Server),
    ("irc_client_sic", fixture!("irc_client_sic"), Protocol::Irc, Side::Client),
    ("ldap_client_ldapsearch", fixture!("ldap_client_ldapsearch"), Protocol::Ldap, Side::Client),
    ("ldap_client_ldapsearch_anon", fixture!("ldap_client_ldapsearch_anon"), Protocol::Ldap, Side::Client),
    ("memcached_client_memccp", fixture!("memcached_client_memccp"), Protocol::Memcached, Side::Client),
    ("memcached_client_memcstat", fixture!("memcached_client_memcstat"), Protocol::Memcached, Side::Client),
    ("mqtt_client_mosquitto_pub", fixture!("mqtt_client_mosquitto_pub"), Protocol::Mqtt, Side::Client),
    ("mqtt_client_mosquitto_pub_v31", fixture!("mqtt_client_mosquitto_pub_v31"), Protocol::Mqtt, Side::Client),
    ("mqtt_client_mosquitto_pub_v5", fixture!("mqtt_client_mosquitto_pub_v5"), Protocol::Mqtt, Side::Client),
    ("mysql_server_mariadb", fixture!("mysql_server_mariadb"), Protocol::Mysql, Side::Server),
    ("nats_server_nats", fixture!("nats_server_nats"), Protocol::Nats, Side::Server),
    ("pop3_server_dovecot", fixture!("pop3_server_dovecot"), Protocol::Pop3, Side::Server),
    ("postgresql_client_psql", fixture!("postgresql_client_psql"), Protocol::Postgresql, Side::Client),
    ("postgresql_client_psql_sslrequest", fixture!("postgresql_client_psql_sslrequest"), Protocol::Postgresql, Side::Client),
    ("redis_client_redis_cli", fixture!("redis_client_redis_cli"), Protocol::Redis, Side::Client),
    ("rsync_client_rsync", fixture!("rsync_client_rsync"), Protocol::Rsync, Side::Client),
    ("rsync_server_daemon", fixture!("rsync_server_daemon"), Protocol::Rsync, Side::Server),
    ("smb_client_smbclient", fixture!("smb_client_smbclient"), Protocol::Smb, Side::Client),
    ("smb_client_smbclient_nt1", fixture!("smb_client_smbclient_nt1"), Protocol::Smb, Side::Client),
    ("smtp_server_aiosmtpd", fixture!("smtp_server_aiosmtpd"), Protocol::Smtp, Side::Server),
    ("socks4_client_curl", fixture!("socks4_client_curl"), Protocol::Socks4, Side::Client),
    ("socks4a_client_curl", fixture!("socks4a_client_curl"), Protocol::Socks4, Side::Client),
    ("socks5_client_curl", fixture!("socks5_client_curl"), Protocol::Socks5, Side::Client),
    ("telnet_server_inetutils", fixture!("telnet_server_inetutils"), Protocol::Telnet, Side::Server),
    ("vnc_server_tigervnc", fixture!("vnc_server_tigervnc"), Protocol::Vnc, Side::Server),
];

/// The bytes of the catalogue fixture `name`.
pub(crate) fn bytes(name: &str) -> &'static [u8] {
    CATALOGUE.iter().find(|f| f.0 == name).map(|f| f.1).unwrap_or_else(|| panic!("no fixture {name}"))
}
