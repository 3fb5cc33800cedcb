//! Metrics tests: label slots, counters across reloads, the open-connection table and the
//! exposition's lines.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::load_from_strs;

const CONFIG: &str = "[[listener]]\nmode = \"redirect\"\nlisten = \"0.0.0.0:15001\"\n";

fn policy(segments: &[&str]) -> Policy {
    let files: Vec<(String, String)> = segments
        .iter()
        .enumerate()
        .map(|(i, name)| {
            (
                format!("{name}.toml"),
                format!(
                    "segment = \"{name}\"\nsources = [\"10.{i}.0.0/16\"]\nmode = \"block\"\n\n[[allow]]\nports = [443]\nprotocols = [\"tls\"]\n"
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    load_from_strs("portcullis.toml", CONFIG, &refs)
        .unwrap()
        .policy
}

/// The exposition names a slot by `Action::ALL` / `Reason::ALL`: their order must be the
/// index functions' order.
#[test]
fn the_lists_of_actions_and_reasons_are_in_slot_order() {
    for (i, action) in ACTIONS.into_iter().enumerate() {
        assert_eq!(action_index(action), i, "{}", action.name());
    }
    for (i, reason) in REASONS.into_iter().enumerate() {
        assert_eq!(reason_index(reason), i, "{}", reason.name());
    }
}

#[test]
fn every_label_combination_has_its_own_slot() {
    let s = SegmentMetrics::new("ws");
    let mut expected = 0;
    for action in ACTIONS {
        for reason in REASONS {
            for protocol in Protocol::ALL {
                s.decided(action, reason, protocol);
                expected += 1;
                assert_eq!(s.decisions(action, reason, protocol), 1);
            }
        }
    }
    let total: u64 = s
        .decisions
        .get()
        .unwrap()
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    assert_eq!(total, expected);
    for (i, p) in Protocol::ALL.iter().enumerate() {
        assert_eq!(protocol_index(*p), Some(i));
    }
}

#[test]
fn a_segment_keeps_its_counters_across_reloads() {
    let m = Metrics::new();
    let first = m.segments_for(&policy(&["a", "b"]));
    first[1].decided(Action::Blocked, Reason::PortNotAllowed, Protocol::Ssh);
    // The reloaded policy lists the segments in another order and adds one.
    let second = m.segments_for(&policy(&["b", "c", "a"]));
    let names: Vec<&str> = second.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        ["a", "b", "c"],
        "policy order (segments sorted by file)"
    );
    assert!(Arc::ptr_eq(&first[1], &second[1]));
    assert_eq!(
        second[1].decisions(Action::Blocked, Reason::PortNotAllowed, Protocol::Ssh),
        1
    );
}

#[test]
fn decisions_counted_from_many_threads_add_up() {
    let s = Arc::new(SegmentMetrics::new("ws"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    s.decided(Action::Allowed, Reason::Allowed, Protocol::Tls);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        s.decisions(Action::Allowed, Reason::Allowed, Protocol::Tls),
        40_000
    );
}

fn tracked(segment: &Arc<SegmentMetrics>, port: u16) -> Tracked {
    Tracked {
        source: SocketAddr::from(([10, 0, 0, 1], port)),
        destination: "203.0.113.7:443".parse().unwrap(),
        listener: "redirect",
        segment: Arc::clone(segment),
        protocol: Protocol::Tls,
        action: Action::Allowed,
        started: Instant::now() - Duration::from_secs(2),
        traffic: Traffic::default(),
    }
}

#[test]
fn open_connections_are_listed_until_dropped_and_counted_as_active() {
    let m = Metrics::new();
    let segs = m.segments_for(&policy(&["ws"]));
    let first = m.connections.open(tracked(&segs[0], 40000));
    let second = m.connections.open(tracked(&segs[0], 40001));
    second.traffic().upstream.fetch_add(517, Ordering::Relaxed);
    second
        .traffic()
        .downstream
        .fetch_add(4096, Ordering::Relaxed);
    let listed = m.connections.snapshot();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].source.port(), 40001, "oldest first");
    assert_eq!(listed[1].segment, "ws");
    assert_eq!(listed[1].protocol, "tls");
    assert_eq!(listed[1].action, "allowed");
    assert_eq!(
        (listed[1].bytes_upstream, listed[1].bytes_downstream),
        (517, 4096)
    );
    assert!(listed[1].age_seconds >= 2.0);
    assert!(m
        .render("v1", 0)
        .contains("portcullis_connections_active{segment=\"ws\"} 2\n"));
    drop(first);
    assert_eq!(m.connections.len(), 1);
    drop(second);
    assert!(m.connections.is_empty());
    assert!(m
        .render("v1", 0)
        .contains("portcullis_connections_active{segment=\"ws\"} 0\n"));
}

#[test]
fn without_a_table_connections_are_counted_but_not_listed() {
    let m = Metrics::with_table(false);
    let segs = m.segments_for(&policy(&["ws"]));
    let open = m.connections.open(tracked(&segs[0], 40000));
    assert!(m.connections.is_empty());
    assert!(m
        .render("v1", 0)
        .contains("portcullis_connections_active{segment=\"ws\"} 1\n"));
    drop(open);
    assert!(m
        .render("v1", 0)
        .contains("portcullis_connections_active{segment=\"ws\"} 0\n"));
}

#[test]
fn exposition_has_every_family_with_contract_names_and_labels() {
    let m = Metrics::new();
    let segs = m.segments_for(&policy(&["ws"]));
    segs[0].decided(Action::Alerted, Reason::ProtocolNotAllowed, Protocol::Ssh);
    segs[0].closed(100, 2000);
    m.unsegmented()
        .decided(Action::Blocked, Reason::NoSegment, Protocol::Unknown);
    m.detected(Side::Server, Duration::from_millis(40));
    m.reloaded(true);
    m.reloaded(false);
    m.reloaded(false);
    let text = m.render("abc123", 7);
    for line in [
        "portcullis_decisions_total{segment=\"ws\",action=\"alerted\",reason=\"protocol_not_allowed\",protocol=\"ssh\"} 1",
        "portcullis_decisions_total{segment=\"\",action=\"blocked\",reason=\"no_segment\",protocol=\"unknown\"} 1",
        "portcullis_bytes_total{segment=\"ws\",direction=\"upstream\"} 100",
        "portcullis_bytes_total{segment=\"ws\",direction=\"downstream\"} 2000",
        "portcullis_detection_duration_seconds_bucket{side=\"server\",le=\"0.05\"} 1",
        "portcullis_detection_duration_seconds_bucket{side=\"server\",le=\"0.025\"} 0",
        "portcullis_detection_duration_seconds_count{side=\"client\"} 0",
        "portcullis_policy_reloads_total{result=\"success\"} 1",
        "portcullis_policy_reloads_total{result=\"failure\"} 2",
        "portcullis_policy_info{version=\"abc123\"} 1",
        "portcullis_events_dropped_total 7",
        "# TYPE portcullis_detection_duration_seconds histogram",
        "# TYPE portcullis_connections_active gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    // Zero counters of label sets never seen are not listed.
    assert_eq!(text.matches("portcullis_decisions_total{").count(), 2);
}
