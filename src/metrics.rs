//! Prometheus metrics (DESIGN.md "Operations", a contract): the counters, gauges and
//! histograms the data path updates, the table of open connections, and the text exposition
//! format that `GET /metrics` serves.
//!
//! Written by hand over atomics rather than with `prometheus-client`: that crate's histogram
//! takes a mutex per observation and its labelled families a lock per label lookup, and
//! issue 7 wants metrics that cost the data path nothing measurable. Here a connection costs
//! a few relaxed atomic additions and no lock: each segment's counters are found once per
//! policy (they travel with it, see `proxy::InForce`), and the decision counters are a
//! dense array indexed by (action, reason, protocol), allocated the first time a segment
//! decides anything.
//!
//! Counters survive reloads: a segment keeps its counters under its name for the life of the
//! process, so they only ever grow.

mod connections;
mod histogram;
mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

pub use connections::{Open, OpenConnection, OpenConnections, Tracked, Traffic};
pub use histogram::Histogram;

use crate::policy::{Action, Policy, Reason};
use crate::sniff::Protocol;
pub use crate::sniff::Side;
use text::Exposition;

/// Every action and reason, in the order of [`action_index`] and [`reason_index`].
const ACTIONS: [Action; 3] = Action::ALL;
const REASONS: [Reason; 11] = Reason::ALL;

const PROTOCOLS: usize = Protocol::ALL.len();
const DECISION_SLOTS: usize = ACTIONS.len() * REASONS.len() * PROTOCOLS;

/// Exhaustive on purpose: a new action does not compile until it has a slot.
const fn action_index(action: Action) -> usize {
    match action {
        Action::Allowed => 0,
        Action::Blocked => 1,
        Action::Alerted => 2,
    }
}

/// Exhaustive on purpose: a new reason does not compile until it has a slot.
const fn reason_index(reason: Reason) -> usize {
    match reason {
        Reason::Allowed => 0,
        Reason::ExemptDestination => 1,
        Reason::PortNotAllowed => 2,
        Reason::ProtocolNotAllowed => 3,
        Reason::UnidentifiedProtocol => 4,
        Reason::DestinationNotAllowed => 5,
        Reason::ServerNameNotAllowed => 6,
        Reason::RateLimited => 7,
        Reason::ConnectionLimit => 8,
        Reason::NoSegment => 9,
        Reason::SelfDestination => 10,
    }
}

/// The protocol's position in `Protocol::ALL` (its discriminant, when the two agree).
fn protocol_index(protocol: Protocol) -> Option<usize> {
    let guess = protocol as usize;
    if Protocol::ALL.get(guess) == Some(&protocol) {
        return Some(guess);
    }
    Protocol::ALL.iter().position(|&p| p == protocol)
}

/// Which way bytes went (label `direction` of `portcullis_bytes_total`).
const DIRECTIONS: [&str; 2] = ["upstream", "downstream"];

/// One segment's counters, shared by every policy version that has a segment of that name.
#[derive(Debug)]
pub struct SegmentMetrics {
    name: String,
    /// `DECISION_SLOTS` counters, allocated at the first decision.
    decisions: OnceLock<Box<[AtomicU64]>>,
    active: AtomicI64,
    /// Client to server, server to client.
    bytes: [AtomicU64; 2],
}

impl SegmentMetrics {
    fn new(name: &str) -> SegmentMetrics {
        SegmentMetrics {
            name: name.to_string(),
            decisions: OnceLock::new(),
            active: AtomicI64::new(0),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The segment's name; empty for connections that matched no segment.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts one decision (`portcullis_decisions_total`).
    pub fn decided(&self, action: Action, reason: Reason, protocol: Protocol) {
        let Some(p) = protocol_index(protocol) else {
            return;
        };
        let slot = (action_index(action) * REASONS.len() + reason_index(reason)) * PROTOCOLS + p;
        let counters = self
            .decisions
            .get_or_init(|| (0..DECISION_SLOTS).map(|_| AtomicU64::new(0)).collect());
        if let Some(c) = counters.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a closed connection's bytes (`portcullis_bytes_total`): the same numbers as
    /// its close event's `source.bytes` and `destination.bytes`.
    pub fn closed(&self, upstream: u64, downstream: u64) {
        self.bytes[0].fetch_add(upstream, Ordering::Relaxed);
        self.bytes[1].fetch_add(downstream, Ordering::Relaxed);
    }

    fn opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    fn left(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Decisions counted so far with these labels.
    pub fn decisions(&self, action: Action, reason: Reason, protocol: Protocol) -> u64 {
        let Some(p) = protocol_index(protocol) else {
            return 0;
        };
        let slot = (action_index(action) * REASONS.len() + reason_index(reason)) * PROTOCOLS + p;
        self.decisions
            .get()
            .and_then(|c| c.get(slot))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Every metric of one gateway process.
#[derive(Debug)]
pub struct Metrics {
    /// By segment name; consulted when a policy is installed and when metrics are scraped,
    /// never per connection.
    segments: Mutex<BTreeMap<String, Arc<SegmentMetrics>>>,
    /// Connections that matched no segment (label `segment=""`).
    unsegmented: Arc<SegmentMetrics>,
    /// Client side, server side.
    detection: [Histogram; 2],
    /// Successful, failed.
    reloads: [AtomicU64; 2],
    /// `GET /connections`.
    pub connections: OpenConnections,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics with the open-connection table.
    pub fn new() -> Metrics {
        Metrics::with_table(true)
    }

    /// `listed = false` keeps every counter but not the table of open connections (nothing
    /// can read it without an admin endpoint), sparing connections its locks.
    pub fn with_table(listed: bool) -> Metrics {
        Metrics {
            segments: Mutex::new(BTreeMap::new()),
            unsegmented: Arc::new(SegmentMetrics::new("")),
            detection: [Histogram::detection(), Histogram::detection()],
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            connections: OpenConnections::new(listed),
        }
    }

    /// The counters of `policy`'s segments, in the policy's order; a segment that an earlier
    /// policy had under the same name keeps its counters.
    pub fn segments_for(&self, policy: &Policy) -> Arc<[Arc<SegmentMetrics>]> {
        let mut known = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
        policy
            .segments
            .iter()
            .map(|s| {
                Arc::clone(
                    known
                        .entry(s.name.clone())
                        .or_insert_with(|| Arc::new(SegmentMetrics::new(&s.name))),
                )
            })
            .collect()
    }

    /// The counters for connections that matched no segment.
    pub fn unsegmented(&self) -> &Arc<SegmentMetrics> {
        &self.unsegmented
    }

    /// Records how long detection took (`portcullis_detection_duration_seconds`).
    pub fn detected(&self, side: Side, took: Duration) {
        let h = match side {
            Side::Client => &self.detection[0],
            Side::Server => &self.detection[1],
        };
        h.observe(took);
    }

    /// Counts a reload (`portcullis_policy_reloads_total`).
    pub fn reloaded(&self, success: bool) {
        self.reloads[usize::from(!success)].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self, policy_version: &str, events_dropped: u64) -> String {
        let segments: Vec<Arc<SegmentMetrics>> = {
            let known = self.segments.lock().unwrap_or_else(PoisonError::into_inner);
            std::iter::once(Arc::clone(&self.unsegmented))
                .chain(known.values().cloned())
                .collect()
        };
        let mut out = Exposition::default();

        out.family(
            "portcullis_decisions_total",
            "counter",
            "Connections decided, by segment, action, reason and detected protocol.",
        );
        for s in &segments {
            let Some(counters) = s.decisions.get() else {
                continue;
            };
            for (slot, c) in counters.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let protocol = Protocol::ALL[slot % PROTOCOLS];
                let reason = REASONS[(slot / PROTOCOLS) % REASONS.len()];
                let action = ACTIONS[slot / (PROTOCOLS * REASONS.len())];
                out.sample(
                    "portcullis_decisions_total",
                    &[
                        ("segment", &s.name),
                        ("action", action.name()),
                        ("reason", reason.name()),
                        ("protocol", protocol.name()),
                    ],
                    n,
                );
            }
        }

        out.family(
            "portcullis_connections_active",
            "gauge",
            "Connections open now (from their decision to their close), by segment.",
        );
        for s in &segments {
            let n = s.active.load(Ordering::Relaxed).max(0);
            out.sample("portcullis_connections_active", &[("segment", &s.name)], n);
        }

        out.family(
            "portcullis_bytes_total",
            "counter",
            "Bytes of closed connections, by segment and direction (upstream: client to server).",
        );
        for s in &segments {
            for (direction, c) in DIRECTIONS.iter().zip(&s.bytes) {
                out.sample(
                    "portcullis_bytes_total",
                    &[("segment", &s.name), ("direction", direction)],
                    c.load(Ordering::Relaxed),
                );
            }
        }

        out.family(
            "portcullis_detection_duration_seconds",
            "histogram",
            "Time from accept to a protocol verdict, by whose bytes decided.",
        );
        for (side, h) in [Side::Client, Side::Server].iter().zip(&self.detection) {
            h.render(
                &mut out,
                "portcullis_detection_duration_seconds",
                ("side", side.name()),
            );
        }

        out.family(
            "portcullis_policy_reloads_total",
            "counter",
            "Policy reloads (SIGHUP or POST /reload), by result.",
        );
        for (result, c) in ["success", "failure"].iter().zip(&self.reloads) {
            out.sample(
                "portcullis_policy_reloads_total",
                &[("result", result)],
                c.load(Ordering::Relaxed),
            );
        }

        out.family(
            "portcullis_policy_info",
            "gauge",
            "The policy in force (version: sha256 of its files); always 1.",
        );
        out.sample("portcullis_policy_info", &[("version", policy_version)], 1);

        out.family(
            "portcullis_events_dropped_total",
            "counter",
            "Events dropped because the event sink could not keep up.",
        );
        out.sample("portcullis_events_dropped_total", &[], events_dropped);
        out.finish()
    }
}

#[cfg(test)]
mod tests;
