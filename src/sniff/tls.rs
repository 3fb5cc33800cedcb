//! TLS ClientHello sniffer (placeholder until the sniffer lands).
use super::Verdict;

/// What a ClientHello tells about the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsHello {
    /// SNI host name (RFC 6066 §3), lowercased; for ECH, the outer SNI.
    pub server_name: Option<String>,
    /// ALPN protocol names in the client's order (RFC 7301).
    pub alpn: Vec<String>,
    /// Highest version offered: supported_versions (RFC 8446 §4.2.1) or legacy_version.
    pub version: u16,
    /// JA4 fingerprint (FoxIO JA4 spec).
    pub ja4: String,
    /// The ClientHello carries an encrypted_client_hello extension (0xfe0d).
    pub ech: bool,
}

pub fn sniff(_buf: &[u8]) -> Verdict<TlsHello> {
    Verdict::NoMatch
}
