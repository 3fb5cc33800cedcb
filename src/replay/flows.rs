//! The flow table of one capture: finds each TCP flow's client, feeds both first turns to
//! reassembly, and hands a flow to [`classify`] and the live policy as soon as its outcome
//! is final. Decided flows drop their bytes at once and linger as small tombstones only so
//! their late packets do not start new flows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use super::classify::{classify, server_answer, Classified, Observed, TurnView};
use super::packet::Segment;
use super::reassembly::Turn;
use crate::config::Detect;
use crate::events::{DecisionEvent, Detection, Flow as EventFlow};
use crate::policy::{Admission, Decision, Gate, Policy, Reason};
use crate::sniff::{Protocol, Side, Sniffed};

/// How long (capture time) a decided flow's tombstone outlives its last packet.
const LINGER: Duration = Duration::from_secs(120);
/// How often (capture time) deadlines and tombstones are swept.
const SWEEP: Duration = Duration::from_secs(1);

/// One decided flow, as the summary needs it; `json` is the decision event.
#[derive(Debug, Clone)]
pub struct Judged {
    pub json: String,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub protocol: Protocol,
    pub segment: Option<String>,
    pub action: &'static str,
    pub reason: Reason,
    pub would_block: bool,
}

struct Direction {
    turn: Turn,
    first_byte: Option<Duration>,
    ended: Option<Duration>,
}

impl Direction {
    fn view(&self) -> TurnView<'_> {
        TurnView {
            bytes: self.turn.bytes(),
            first_byte: self.first_byte,
            ended: self.ended,
        }
    }
}

struct Open {
    segment: usize,
    blind_refusal: bool,
    /// Handshake time: the client's first packet after its SYN (else the first packet).
    start: Duration,
    established: bool,
    client: Direction,
    server: Direction,
}

enum State {
    Open(Box<Open>),
    Done { fins: u8 },
}

/// A flow's endpoints and its first packet's time.
#[derive(Debug, Clone, Copy)]
struct Who {
    client: SocketAddr,
    server: SocketAddr,
    first_at: Duration,
}

struct Flow {
    who: Who,
    last_at: Duration,
    client_isn: Option<u32>,
    state: State,
}

/// What judging needs: the policy, the detection budget and the file name for events.
struct Ctx<'a> {
    policy: &'a Policy,
    detect: Detect,
    file: &'a str,
}

/// The flows of one capture file.
pub struct Flows<'a> {
    ctx: Ctx<'a>,
    table: HashMap<(SocketAddr, SocketAddr), Flow>,
    now: Duration,
    swept: Duration,
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl<'a> Flows<'a> {
    pub fn new(policy: &'a Policy, detect: Detect, file: &'a str) -> Flows<'a> {
        Flows {
            ctx: Ctx {
                policy,
                detect,
                file,
            },
            table: HashMap::new(),
            now: Duration::ZERO,
            swept: Duration::ZERO,
        }
    }

    /// Flows currently held (open or lingering).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Flows still waiting for packets (not yet judged).
    pub fn open_flows(&self) -> usize {
        self.table
            .values()
            .filter(|f| matches!(f.state, State::Open(_)))
            .count()
    }

    /// One captured TCP segment at capture time `at`; decided flows go to `out`.
    pub fn segment(&mut self, at: Duration, seg: &Segment<'_>, out: &mut impl FnMut(Judged)) {
        self.now = self.now.max(at);
        if self.now.saturating_sub(self.swept) >= SWEEP {
            self.sweep(out);
        }
        let k = key(seg.src, seg.dst);
        let new_syn = seg.flags.syn && !seg.flags.ack;
        let reused = matches!(self.table.get(&k), Some(f) if matches!(f.state, State::Done { .. })
            && new_syn && f.who.client == seg.src && f.client_isn != Some(seg.seq));
        if reused {
            self.table.remove(&k);
        }
        if !self.table.contains_key(&k) {
            if !seg.flags.syn && seg.payload.is_empty() {
                // A bare ACK, FIN or RST of a flow not seen (or already forgotten).
                return;
            }
            let (client, server) = if seg.flags.syn && seg.flags.ack {
                (seg.dst, seg.src)
            } else {
                (seg.src, seg.dst)
            };
            let flow = self.ctx.open(client, server, at, out);
            self.table.insert(k, flow);
        }
        let ctx = &self.ctx;
        let Some(flow) = self.table.get_mut(&k) else {
            return;
        };
        if ctx.update(flow, at, self.now, seg, out) {
            self.table.remove(&k);
        }
    }

    /// Decides every flow still open: the capture has ended.
    pub fn finish(&mut self, out: &mut impl FnMut(Judged)) {
        let mut open: Vec<_> = self
            .table
            .drain()
            .filter(|(_, f)| matches!(f.state, State::Open(_)))
            .map(|(_, f)| f)
            .collect();
        open.sort_by_key(|f| f.who.first_at);
        for mut flow in open {
            self.ctx.close(&mut flow, self.now, out);
        }
    }

    fn sweep(&mut self, out: &mut impl FnMut(Judged)) {
        self.swept = self.now;
        let (now, timeout) = (self.now, self.ctx.detect.timeout);
        let mut expired: Vec<_> = Vec::new();
        self.table.retain(|k, f| match &f.state {
            State::Open(open) if now.saturating_sub(open.start) > timeout => {
                expired.push(*k);
                true
            }
            State::Open(_) => true,
            State::Done { .. } => now.saturating_sub(f.last_at) <= LINGER,
        });
        for k in expired {
            if let Some(mut flow) = self.table.remove(&k) {
                self.ctx.close(&mut flow, self.now, out);
                flow.state = State::Done { fins: 0 };
                self.table.insert(k, flow);
            }
        }
    }
}

impl Ctx<'_> {
    /// Applies one segment to a known flow; true when the flow can be forgotten.
    fn update(
        &self,
        flow: &mut Flow,
        at: Duration,
        now: Duration,
        seg: &Segment<'_>,
        out: &mut impl FnMut(Judged),
    ) -> bool {
        flow.last_at = at;
        let from_client = seg.src == flow.who.client;
        if from_client && seg.flags.syn && !seg.flags.ack {
            flow.client_isn.get_or_insert(seg.seq);
        }
        let open = match &mut flow.state {
            State::Done { fins } => {
                *fins += u8::from(seg.flags.fin);
                return seg.flags.rst || *fins >= 2;
            }
            State::Open(open) => open,
        };
        if from_client && !seg.flags.syn && !open.established {
            open.established = true;
            open.start = at;
        }
        let rel = at.saturating_sub(open.start);
        let dir = if from_client {
            &mut open.client
        } else {
            &mut open.server
        };
        if seg.flags.syn {
            dir.turn.syn(seg.seq);
        } else if rel <= self.detect.timeout {
            if !seg.payload.is_empty() || seg.flags.fin {
                dir.turn.segment(seg.seq, seg.payload, seg.flags.fin);
            }
            if !seg.payload.is_empty() {
                dir.first_byte.get_or_insert(rel);
            }
            if seg.flags.rst {
                dir.turn.rst();
            }
            if dir.turn.ended() {
                dir.ended.get_or_insert(rel);
            }
        }
        let complete = rel > self.detect.timeout
            || seg.flags.rst
            || (open.client.ended.is_some() && open.server.ended.is_some());
        let since = now.saturating_sub(open.start);
        let Some(classified) = self.observe(open, since, complete) else {
            return false;
        };
        let Some(judged) = self.judge(flow.who, open, Some(classified), since, complete) else {
            return false;
        };
        out(judged);
        flow.state = State::Done {
            fins: u8::from(seg.flags.fin),
        };
        seg.flags.rst
    }

    /// Decides an open flow with nothing more to come.
    fn close(&self, flow: &mut Flow, now: Duration, out: &mut impl FnMut(Judged)) {
        if let State::Open(open) = &flow.state {
            let since = now.saturating_sub(open.start);
            let classified = self.observe(open, since, true);
            if let Some(judged) = self.judge(flow.who, open, classified, since, true) {
                out(judged);
            }
        }
    }

    fn observe(&self, open: &Open, now: Duration, complete: bool) -> Option<Classified> {
        classify(&Self::seen(open, now, complete), &self.detect)
    }

    fn seen(open: &Open, now: Duration, complete: bool) -> Observed<'_> {
        Observed {
            client: open.client.view(),
            server: open.server.view(),
            now,
            complete,
            blind_refusal: open.blind_refusal,
        }
    }

    /// A new flow: the gate decides at once (exempt, no segment), or its turns are read.
    fn open(
        &self,
        client: SocketAddr,
        server: SocketAddr,
        at: Duration,
        out: &mut impl FnMut(Judged),
    ) -> Flow {
        let who = Who {
            client,
            server,
            first_at: at,
        };
        let mut flow = Flow {
            who,
            last_at: at,
            client_isn: None,
            state: State::Done { fins: 0 },
        };
        match self.policy.gate(client.ip(), server, Admission::Admitted) {
            Gate::Decided(decision) => {
                out(self.event(who, &decision, None, Detection::Skipped, None))
            }
            Gate::Inspect { segment } => {
                // As `proxy::conn::inspect`: a silent client on a port refused whatever is
                // spoken on it never gets the server contacted.
                let direction = || Direction {
                    turn: Turn::new(self.detect.max_bytes),
                    first_byte: None,
                    ended: None,
                };
                flow.state = State::Open(Box::new(Open {
                    segment,
                    blind_refusal: self.policy.refuses_port_blind(segment, server),
                    start: at,
                    established: false,
                    client: direction(),
                    server: direction(),
                }));
            }
        }
        flow
    }

    /// The decision on a classified flow, as live: after a client-first verdict that
    /// forwards, the server's first turn must agree (`Policy::reconcile`). `None` while the
    /// server's answer could still arrive.
    fn judge(
        &self,
        who: Who,
        open: &Open,
        classified: Option<Classified>,
        now: Duration,
        complete: bool,
    ) -> Option<Judged> {
        let (side, sniffed, detection) = match classified {
            Some(c) => (Some(c.side), c.sniffed, c.detection),
            None => (None, None, Detection::Timeout),
        };
        let protocol = sniffed.as_ref().map_or(Protocol::Unknown, |s| s.protocol);
        let server_name = sniffed.as_ref().and_then(Sniffed::server_name);
        let mut decision =
            self.policy
                .decide_rules(open.segment, who.server, protocol, server_name);
        let mut server_protocol = None;
        if side == Some(Side::Client) && decision.action.forwards() {
            let seen = Self::seen(open, now, complete);
            if let Some(named) = server_answer(&seen, &self.detect)? {
                server_protocol = Some(named.protocol);
                decision = self
                    .policy
                    .reconcile(decision, protocol, who.server, named.protocol);
            }
        }
        Some(self.event(who, &decision, sniffed.as_ref(), detection, server_protocol))
    }

    /// The live gateway's decision event, with `listener = "replay"`, `@timestamp` the flow's
    /// first packet, and `portcullis.replay.file`.
    fn event(
        &self,
        who: Who,
        decision: &Decision,
        sniffed: Option<&Sniffed>,
        detection: Detection,
        server_protocol: Option<Protocol>,
    ) -> Judged {
        let policy = self.policy;
        let segment = policy.segment(decision);
        let protocol = sniffed.map_or(Protocol::Unknown, |s| s.protocol);
        let flow = EventFlow {
            source: who.client,
            destination: who.server,
            listener: "replay",
        };
        let at = UNIX_EPOCH + who.first_at;
        let json = DecisionEvent {
            capture: Some(self.file),
            ..DecisionEvent::of(
                policy,
                decision,
                at,
                flow,
                sniffed,
                detection,
                server_protocol,
            )
        }
        .to_json();
        Judged {
            json,
            client: who.client,
            server: who.server,
            protocol,
            segment: segment.map(|s| s.name.clone()),
            action: decision.action.name(),
            reason: decision.reason,
            would_block: decision.would_block(),
        }
    }
}
