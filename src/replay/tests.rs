//! Capture reading and link types on the captures recorded by tests/fixtures/pcap/record.sh.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::capture::{frames, CaptureError, Frame};
use super::packet::{parse, Link};

const LO_MIXED: &[u8] = include_bytes!("../../tests/fixtures/pcap/lo-mixed.pcap");
const LO_LOSS: &[u8] = include_bytes!("../../tests/fixtures/pcap/lo-loss.pcap");
const SLL: &[u8] = include_bytes!("../../tests/fixtures/pcap/any-sll.pcapng");
const SLL2: &[u8] = include_bytes!("../../tests/fixtures/pcap/any-sll2.pcap");
const TRUNCATED: &[u8] = include_bytes!("../../tests/fixtures/pcap/truncated.pcap");

/// Every frame as (link, bytes, time in ns).
fn read(capture: &[u8]) -> Vec<(Option<Link>, Vec<u8>, u128)> {
    let mut out = Vec::new();
    frames(capture, |f: Frame<'_>| {
        out.push((f.link, f.data.to_vec(), f.at.as_nanos()))
    })
    .unwrap();
    out
}

#[test]
fn every_frame_of_each_link_type_is_a_loopback_tcp_segment() {
    for (name, capture, link) in [
        ("lo-mixed.pcap", LO_MIXED, Link::Ethernet),
        ("any-sll.pcapng", SLL, Link::Sll),
        ("any-sll2.pcap", SLL2, Link::Sll2),
    ] {
        let all = read(capture);
        assert!(all.len() > 10, "{name}");
        for (l, data, _) in &all {
            assert_eq!(*l, Some(link), "{name}");
            let seg = parse(link, data).unwrap_or_else(|| panic!("{name}: no TCP in {data:02x?}"));
            assert!(
                seg.src.ip().is_loopback() && seg.dst.ip().is_loopback(),
                "{name}"
            );
        }
        let times: Vec<u128> = all.iter().map(|f| f.2).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{name}: capture order"
        );
        // Recorded in 2026 or later: the timestamps are decoded, not zero.
        assert!(times[0] > 1_767_225_600 * 1_000_000_000, "{name}");
    }
}

#[test]
fn raw_ip_and_loopback_link_types_carry_the_same_packets() {
    // The IP packets of a real Ethernet capture, under the other link-layer headers.
    for (_, frame, _) in read(LO_MIXED) {
        let ethernet = parse(Link::Ethernet, &frame).unwrap();
        let ip = &frame[14..];
        assert_eq!(parse(Link::Raw, ip).as_ref(), Some(&ethernet));
        let v6 = ip[0] >> 4 == 6;
        let typed = parse(if v6 { Link::Ipv6 } else { Link::Ipv4 }, ip);
        assert_eq!(typed.as_ref(), Some(&ethernet));
        let family: u32 = if v6 { 30 } else { 2 };
        let null = [&family.to_le_bytes()[..], ip].concat();
        assert_eq!(parse(Link::Null, &null).as_ref(), Some(&ethernet));
        let looped = [&family.to_be_bytes()[..], ip].concat();
        assert_eq!(parse(Link::Loop, &looped).as_ref(), Some(&ethernet));
        // The same frame with an 802.1Q tag (VLAN 10) inserted after the MAC addresses.
        let tagged = [&frame[..12], &[0x81, 0x00, 0x00, 0x0a], &frame[12..]].concat();
        assert_eq!(parse(Link::Ethernet, &tagged).as_ref(), Some(&ethernet));
    }
}

#[test]
fn cut_frames_never_panic_and_give_no_segment_without_a_tcp_header() {
    for (link, frame, _) in read(SLL2).into_iter().take(5) {
        let link = link.unwrap();
        for len in 0..frame.len() {
            let _ = parse(link, &frame[..len]);
        }
        // SLL2 header, then the IP header, then 10 of the TCP header's 20 fixed bytes.
        let ip = if frame[20] >> 4 == 6 { 40 } else { 20 };
        assert!(
            parse(link, &frame[..20 + ip + 10]).is_none(),
            "a TCP header cut short"
        );
    }
}

#[test]
fn the_loss_capture_has_retransmitted_data() {
    // Guards the fixture: the replay test on it means something only if the kernel really
    // retransmitted (the same bytes captured twice).
    let mut next: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut retransmitted = 0;
    for (link, frame, _) in read(LO_LOSS) {
        let seg = parse(link.unwrap(), &frame).unwrap();
        let k = (seg.src, seg.dst);
        if seg.flags.syn {
            next.insert(k, seg.seq.wrapping_add(1));
            continue;
        }
        if seg.payload.is_empty() {
            continue;
        }
        let expected = next.entry(k).or_insert(seg.seq);
        let rel = seg.seq.wrapping_sub(*expected) as i32;
        if rel < 0 {
            retransmitted += 1;
        }
        let end = seg.seq.wrapping_add(seg.payload.len() as u32);
        if end.wrapping_sub(*expected) as i32 > 0 {
            *expected = end;
        }
    }
    assert!(retransmitted > 0);
}

#[test]
fn a_truncated_file_delivers_its_whole_frames_then_says_so() {
    let mut n = 0;
    let err = frames(TRUNCATED, |_| n += 1).unwrap_err();
    assert!(matches!(err, CaptureError::Truncated(_)), "{err}");
    assert_eq!(n, 14);
    let err = frames(&b"#!/bin/sh\necho not a capture\n"[..], |_| {}).unwrap_err();
    assert!(matches!(err, CaptureError::NotACapture), "{err}");
    let err = frames(&b""[..], |_| {}).unwrap_err();
    assert!(matches!(err, CaptureError::NotACapture), "{err}");
}

mod flow_table {
    use super::*;
    use crate::config::{load_from_strs, Loaded};
    use crate::replay::flows::{Flows, Judged};
    use crate::sniff::Protocol;

    const CONFIG: &str = "policy_dir = \"policy\"\n\n[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1:15001\"\n";
    const SEGMENT: &str = "segment = \"loopback\"\nsources = [\"127.0.0.0/8\", \"::1/128\"]\nmode = \"block\"\non_unidentified = \"block\"\n\n[[allow]]\nports = [8443]\nprotocols = [\"tls\"]\n\n[[allow]]\nports = [8080]\nprotocols = [\"http\"]\n\n[[allow]]\nports = [2222]\nprotocols = [\"ssh\"]\n";

    fn loaded() -> Loaded {
        load_from_strs("c.toml", CONFIG, &[("lo.toml", SEGMENT)]).unwrap()
    }

    /// Replays the frames of lo-mixed.pcap that `keep` keeps; (client, server, protocol) sorted.
    fn judge(
        keep: impl Fn(&super::super::packet::Segment<'_>) -> bool,
    ) -> Vec<(SocketAddr, SocketAddr, Protocol)> {
        let l = loaded();
        let mut flows = Flows::new(&l.policy, l.config.detect, "lo-mixed.pcap");
        let mut out: Vec<Judged> = Vec::new();
        let mut emit = |j: Judged| out.push(j);
        for (link, frame, at) in read(LO_MIXED) {
            let seg = parse(link.unwrap(), &frame).unwrap();
            if keep(&seg) {
                let at = std::time::Duration::from_nanos(at as u64);
                flows.segment(at, &seg, &mut emit);
            }
        }
        flows.finish(&mut emit);
        assert_eq!(flows.open_flows(), 0);
        let mut v: Vec<_> = out
            .iter()
            .map(|j| (j.client, j.server, j.protocol))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_client_is_found_without_the_syn_and_even_without_the_handshake() {
        let all = judge(|_| true);
        assert_eq!(all.len(), 7);
        assert!(
            all.iter().all(|(c, s, _)| s.port() < c.port()),
            "servers listen on low ports: {all:?}"
        );
        // Capture started after the SYN: the SYN-ACK's receiver is the client.
        let no_syn = judge(|s| !s.flags.syn || s.flags.ack);
        assert_eq!(no_syn, all);
        // Capture started after the handshake: the first packet's sender. Every client here
        // speaks first, so the flows and their protocols are the same.
        let mid = judge(|s| !s.flags.syn);
        assert_eq!(mid, all);
    }

    #[test]
    fn one_flow_per_connection_and_late_packets_start_none() {
        // Bare ACKs and FINs of flows never seen start nothing: without any packet carrying
        // a payload or a SYN there is no flow at all.
        assert!(judge(|s| s.payload.is_empty() && !s.flags.syn).is_empty());
    }
}
