//! Criterion benchmarks: the two event lines every connection writes, a decision with the
//! metadata of a real ClientHello (curl's, tests/fixtures/sniff/) and a close.

use std::time::{Duration, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::events::{CloseEvent, CloseReason, DecisionEvent, Detection, Flow};
use portcullis::policy::{Action, Mode, Reason};
use portcullis::sniff::{sniff_client, Protocol, Verdict};

fn events(c: &mut Criterion) {
    let Verdict::Match(hello) =
        sniff_client(include_bytes!("../tests/fixtures/sniff/tls_curl.bin"))
    else {
        unreachable!("the fixture is a ClientHello");
    };
    let flow = Flow {
        source: "10.10.1.5:51234".parse().unwrap_or(([0; 4], 0).into()),
        destination: "203.0.113.7:443".parse().unwrap_or(([0; 4], 0).into()),
        listener: "redirect",
    };
    let decision = DecisionEvent {
        at: SystemTime::now(),
        flow,
        action: Action::Allowed,
        reason: Reason::Allowed,
        segment: Some("workstations"),
        mode: Some(Mode::Block),
        rule_id: Some("workstations/allow[0]"),
        policy_version: "9f2c4e1a7b3d",
        protocol: Protocol::Tls,
        sniffed: Some(&hello),
        detection: Detection::Matched,
        expected_protocols: &[Protocol::Tls],
        would_block: false,
        server_protocol: None,
        capture: None,
    };
    let close = CloseEvent {
        at: SystemTime::now(),
        flow,
        segment: Some("workstations"),
        policy_version: "9f2c4e1a7b3d",
        protocol: Protocol::Tls,
        client_bytes: 517,
        server_bytes: 4096,
        duration: Duration::from_micros(1500),
        reason: CloseReason::Completed,
    };
    let mut out = Vec::with_capacity(1 << 20);
    c.bench_function("event/decision_tls_curl", |b| {
        b.iter(|| {
            out.clear();
            black_box(&decision).write_json_for(None, &mut out);
            black_box(out.len())
        })
    });
    c.bench_function("event/close", |b| {
        b.iter(|| {
            out.clear();
            black_box(&close).write_json_for(None, &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, events);
criterion_main!(benches);
