//! Link layer, IP and TCP headers of one captured frame, down to a [`Segment`]: zero-copy,
//! never panics on any input; anything that is not an unfragmented TCP segment is `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Link-layer header types (tcpdump.org "LINKTYPE_" values) replay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `LINKTYPE_NULL` (0): BSD loopback, a 4-byte address family in the capturing host's
    /// byte order.
    Null,
    /// `LINKTYPE_ETHERNET` (1), with any number of 802.1Q / 802.1ad VLAN tags.
    Ethernet,
    /// `LINKTYPE_RAW` (101, and the historical 12 and 14): the frame is an IP packet.
    Raw,
    /// `LINKTYPE_LOOP` (108): as `Null`, in network byte order.
    Loop,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1, 16-byte header.
    Sll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2 (`tcpdump -i any`), 20 bytes.
    Sll2,
    /// `LINKTYPE_IPV4` (228).
    Ipv4,
    /// `LINKTYPE_IPV6` (229).
    Ipv6,
}

impl Link {
    pub fn from_linktype(linktype: i32) -> Option<Link> {
        Some(match linktype {
            0 => Link::Null,
            1 => Link::Ethernet,
            12 | 14 | 101 => Link::Raw,
            108 => Link::Loop,
            113 => Link::Sll,
            276 => Link::Sll2,
            228 => Link::Ipv4,
            229 => Link::Ipv6,
            _ => return None,
        })
    }
}

/// TCP header flags replay looks at (RFC 9293 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// One TCP segment: endpoints, sequence number, flags and the captured payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub flags: Flags,
    /// The payload bytes present in the capture (fewer than sent when the snap length cut
    /// the frame).
    pub payload: &'a [u8],
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const TCP: u8 = 6;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The TCP segment in one frame of link type `link`.
pub fn parse(link: Link, frame: &[u8]) -> Option<Segment<'_>> {
    match link {
        Link::Ethernet => {
            let mut at = 12;
            let mut ethertype = be16(frame, at)?;
            while ETH_VLAN.contains(&ethertype) {
                at += 4;
                ethertype = be16(frame, at)?;
            }
            by_ethertype(ethertype, frame.get(at + 2..)?)
        }
        Link::Sll => by_ethertype(be16(frame, 14)?, frame.get(16..)?),
        Link::Sll2 => by_ethertype(be16(frame, 0)?, frame.get(20..)?),
        Link::Null | Link::Loop => {
            let family = frame.get(..4)?;
            let family = [family[0], family[1], family[2], family[3]];
            let family = if link == Link::Loop {
                u32::from_be_bytes(family)
            } else {
                // Host byte order of whoever captured: try both.
                let le = u32::from_le_bytes(family);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes(family)
                }
            };
            match family {
                2 => ipv4(frame.get(4..)?),
                // AF_INET6 on the BSDs (24), FreeBSD (28) and Darwin (30).
                24 | 28 | 30 => ipv6(frame.get(4..)?),
                _ => None,
            }
        }
        Link::Raw => match frame.first()? >> 4 {
            4 => ipv4(frame),
            6 => ipv6(frame),
            _ => None,
        },
        Link::Ipv4 => ipv4(frame),
        Link::Ipv6 => ipv6(frame),
    }
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Option<Segment<'_>> {
    match ethertype {
        ETH_IPV4 => ipv4(rest),
        ETH_IPV6 => ipv6(rest),
        t if ETH_VLAN.contains(&t) => by_ethertype(be16(rest, 2)?, rest.get(4..)?),
        _ => None,
    }
}

/// RFC 791 §3.1. Fragments are skipped: a TCP stream is not reassembled from IP fragments.
fn ipv4(p: &[u8]) -> Option<Segment<'_>> {
    let first = *p.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total = usize::from(be16(p, 2)?);
    let fragment = be16(p, 6)?;
    if fragment & 0x3fff != 0 || *p.get(9)? != TCP || total < ihl {
        return None;
    }
    let src = Ipv4Addr::from(be32(p, 12)?);
    let dst = Ipv4Addr::from(be32(p, 16)?);
    // Ethernet pads short frames: the IP total length says where the packet ends.
    let body = p.get(ihl..total.min(p.len()))?;
    tcp(src.into(), dst.into(), body, total - ihl)
}

/// RFC 8200 §4: walks hop-by-hop, routing and destination options headers; fragments are
/// skipped.
fn ipv6(p: &[u8]) -> Option<Segment<'_>> {
    if p.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(be16(p, 4)?);
    let mut next = *p.get(6)?;
    let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
    let end = (40 + payload_len).min(p.len());
    let mut at = 40;
    loop {
        match next {
            TCP => break,
            0 | 43 | 60 => {
                next = *p.get(at)?;
                at += (usize::from(*p.get(at + 1)?) + 1) * 8;
            }
            _ => return None,
        }
    }
    let body = p.get(at..end)?;
    let sent = (40 + payload_len).checked_sub(at)?;
    tcp(
        Ipv6Addr::from(src).into(),
        Ipv6Addr::from(dst).into(),
        body,
        sent,
    )
}

/// RFC 9293 §3.1. `sent` is the TCP length the IP header announces; `body` what was
/// captured of it.
fn tcp(src: IpAddr, dst: IpAddr, body: &[u8], sent: usize) -> Option<Segment<'_>> {
    let offset = usize::from(body.get(12)? >> 4) * 4;
    if offset < 20 || offset > sent {
        return None;
    }
    let flags = *body.get(13)?;
    Some(Segment {
        src: SocketAddr::new(src, be16(body, 0)?),
        dst: SocketAddr::new(dst, be16(body, 2)?),
        seq: be32(body, 4)?,
        flags: Flags {
            fin: flags & 0x01 != 0,
            syn: flags & 0x02 != 0,
            rst: flags & 0x04 != 0,
            ack: flags & 0x10 != 0,
        },
        payload: body.get(offset..).unwrap_or_default(),
    })
}
