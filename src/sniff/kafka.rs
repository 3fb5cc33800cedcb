//! Kafka's first client request (Kafka protocol guide, "Requests" and "Headers"): a
//! four-byte size, then a request header `api_key, api_version, correlation_id, client_id`.
//!
//! A client opens with ApiVersions (KIP-35), or with Metadata (clients before 0.10) or
//! SaslHandshake; the api key and version must be one of those at a version that exists,
//! and the client id (a nullable string) must fit in the request.

use super::parse::{be16, be32, ensure, take, verdict, Stop};
use super::Verdict;

const METADATA: u16 = 3;
const SASL_HANDSHAKE: u16 = 17;
const API_VERSIONS: u16 = 18;
/// The highest version of each opening request that Kafka 3.x/4.x define.
const MAX_METADATA: u16 = 13;
const MAX_SASL_HANDSHAKE: u16 = 1;
const MAX_API_VERSIONS: u16 = 4;
/// api_key, api_version, correlation_id and the client id's length.
const HEADER_LEN: u32 = 2 + 2 + 4 + 2;
/// An opening request is a few hundred bytes at most.
const MAX_SIZE: u32 = 0xffff;
/// Client ids are short names ("producer-1", "console-consumer-42", ...).
const MAX_CLIENT_ID: usize = 255;

/// The first request of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(request(buf))
}

fn request(buf: &[u8]) -> Result<(), Stop> {
    // A size up to MAX_SIZE has two zero high bytes: judged before all four arrive.
    ensure(buf.iter().take(2).all(|&b| b == 0))?;
    let (size, rest) = be32(buf)?;
    ensure((HEADER_LEN..=MAX_SIZE).contains(&size))?;
    let (api_key, rest) = be16(rest)?;
    let max_version = match api_key {
        API_VERSIONS => MAX_API_VERSIONS,
        METADATA => MAX_METADATA,
        SASL_HANDSHAKE => MAX_SASL_HANDSHAKE,
        _ => return Err(Stop::NoMatch),
    };
    let (version, rest) = be16(rest)?;
    ensure(version <= max_version)?;
    let (_correlation_id, rest) = take(rest, 4)?;
    let (id_len, rest) = be16(rest)?;
    if id_len == 0xffff {
        return Ok(()); // null client id
    }
    let id_len = usize::from(id_len);
    ensure(id_len <= MAX_CLIENT_ID && id_len <= (size - HEADER_LEN) as usize)?;
    let (client_id, _) = take(rest, id_len)?;
    ensure(client_id.iter().all(u8::is_ascii_graphic))
}
