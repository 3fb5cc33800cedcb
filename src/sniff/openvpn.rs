//! OpenVPN over TCP: the client's P_CONTROL_HARD_RESET_CLIENT_V2, in its two-byte length
//! framing (OpenVPN's ssl_pkt.h / "openvpn-wire-protocol" documentation).
//!
//! Packet: opcode 7 << 3 | key id 0, an 8-byte session id, then either nothing else
//! authenticated (an empty ACK array and message packet id 0) or, with `--tls-auth`, an
//! HMAC, replay packet id 1 and a timestamp before them. With `--tls-crypt` the rest is
//! encrypted; only its packet id 1 and exact size are visible. Other opcodes (V1, and V3 of
//! tls-crypt-v2) stay unidentified.

use super::parse::{be16, byte, ensure, take, verdict, Stop};
use super::Verdict;

/// P_CONTROL_HARD_RESET_CLIENT_V2 with key id 0.
const HARD_RESET_CLIENT_V2: u8 = 7 << 3;
const SESSION_ID_LEN: usize = 8;
/// opcode, session id, ACK count 0, message packet id.
const PLAIN_LEN: usize = 1 + SESSION_ID_LEN + 1 + 4;
/// What every variant but tls-crypt sends in the clear last: an empty ACK array and
/// message packet id 0.
const CLEARTEXT_TAIL: [u8; 5] = [0; 5];
/// The HMAC sizes of the digests --auth accepts (MD5 to SHA-512).
const HMAC_LENS: [usize; 6] = [16, 20, 28, 32, 48, 64];
/// tls-crypt: opcode, session id, packet id, time, 256-bit tag, encrypted ACK count and id.
const TLS_CRYPT_LEN: usize = 1 + SESSION_ID_LEN + 4 + 4 + 32 + 1 + 4;

/// The hard reset at the start of a client's first turn.
pub fn sniff(buf: &[u8]) -> Verdict<()> {
    verdict(hard_reset(buf))
}

fn hard_reset(buf: &[u8]) -> Result<(), Stop> {
    // Every accepted length is below 256: the first length byte is zero.
    ensure(buf.first().copied().unwrap_or(0) == 0)?;
    let (len, rest) = be16(buf)?;
    let len = usize::from(len);
    let (opcode, rest) = byte(rest)?;
    ensure(opcode == HARD_RESET_CLIENT_V2)?;
    let hmac_len = len.checked_sub(PLAIN_LEN + 8);
    let tls_auth_len = hmac_len.is_some_and(|h| HMAC_LENS.contains(&h));
    ensure(len == PLAIN_LEN || len == TLS_CRYPT_LEN || tls_auth_len)?;
    let (_session, rest) = take(rest, SESSION_ID_LEN)?;
    let (packet, _) = take(rest, len - 1 - SESSION_ID_LEN)?;
    if len == PLAIN_LEN {
        return ensure(packet == CLEARTEXT_TAIL);
    }
    let replay_id_one = |p: &[u8]| p.starts_with(&[0, 0, 0, 1]);
    // tls-auth: HMAC, then replay packet id 1, time, and the cleartext tail.
    let tls_auth = tls_auth_len
        && packet
            .len()
            .checked_sub(8 + CLEARTEXT_TAIL.len())
            .and_then(|hmac| packet.get(hmac..))
            .is_some_and(|t| replay_id_one(t) && t.get(8..) == Some(&CLEARTEXT_TAIL[..]));
    // tls-crypt: replay packet id 1, time, then the tag and ciphertext.
    ensure(tls_auth || (len == TLS_CRYPT_LEN && replay_id_one(packet)))
}
