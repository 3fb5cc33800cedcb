//! ECS JSON events (one object per line) and the sink that writes them off the data path.
//!
//! The proxy builds a [`DecisionEvent`] or [`CloseEvent`] from plain data; this module owns the
//! schema (DESIGN.md "Events", a contract) and the writer thread. Emitting never blocks a
//! connection: when the writer cannot keep up, events are dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use crate::policy::{Action, Mode, Reason};
use crate::sniff::{Meta, Protocol, Sniffed};

/// Why detection stopped (contract: appears verbatim as `portcullis.detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Matched,
    NoMatch,
    Timeout,
    Eof,
    TooLarge,
    ReadError,
    /// Not inspected: the decision was taken before any byte was read (exempt, no segment,
    /// self destination, limits).
    Skipped,
}

impl Detection {
    pub const fn name(self) -> &'static str {
        match self {
            Detection::Matched => "matched",
            Detection::NoMatch => "no_match",
            Detection::Timeout => "timeout",
            Detection::Eof => "eof",
            Detection::TooLarge => "too_large",
            Detection::ReadError => "read_error",
            Detection::Skipped => "skipped",
        }
    }
}

/// Why a connection ended (appears verbatim as `portcullis.close_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions reached end of stream.
    Completed,
    /// The gateway refused the connection.
    Blocked,
    UpstreamRefused,
    UpstreamUnreachable,
    UpstreamTimeout,
    ClientReset,
    UpstreamReset,
    ClientError,
    UpstreamError,
    IdleTimeout,
    /// The drain period after SIGTERM ran out.
    Shutdown,
}

impl CloseReason {
    pub const fn name(self) -> &'static str {
        match self {
            CloseReason::Completed => "completed",
            CloseReason::Blocked => "blocked",
            CloseReason::UpstreamRefused => "upstream_refused",
            CloseReason::UpstreamUnreachable => "upstream_unreachable",
            CloseReason::UpstreamTimeout => "upstream_timeout",
            CloseReason::ClientReset => "client_reset",
            CloseReason::UpstreamReset => "upstream_reset",
            CloseReason::ClientError => "client_error",
            CloseReason::UpstreamError => "upstream_error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// The connection a decision is about.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// The listener's mode name (`redirect`, `forward`, ...).
    pub listener: &'static str,
}

/// Everything a decision event says.
#[derive(Debug, Clone)]
pub struct DecisionEvent<'a> {
    pub at: SystemTime,
    pub flow: Flow,
    pub action: Action,
    pub reason: Reason,
    /// Segment name, when a segment judged the connection.
    pub segment: Option<&'a str>,
    /// Segment mode, when a segment judged the connection.
    pub mode: Option<Mode>,
    pub rule_id: Option<&'a str>,
    pub policy_version: &'a str,
    pub protocol: Protocol,
    pub sniffed: Option<&'a Sniffed>,
    pub detection: Detection,
    pub expected_protocols: &'a [Protocol],
    pub would_block: bool,
}

/// Everything a close event says.
#[derive(Debug, Clone)]
pub struct CloseEvent<'a> {
    pub at: SystemTime,
    pub flow: Flow,
    pub segment: Option<&'a str>,
    pub policy_version: &'a str,
    pub protocol: Protocol,
    /// Bytes the client sent (and the gateway forwarded or discarded).
    pub client_bytes: u64,
    /// Bytes the server sent.
    pub server_bytes: u64,
    pub duration: Duration,
    pub reason: CloseReason,
}

fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn network(flow: &Flow, protocol: Protocol, segment: Option<&str>) -> Value {
    let mut network = json!({
        "transport": "tcp",
        "type": if flow.destination.is_ipv4() { "ipv4" } else { "ipv6" },
        "protocol": protocol.name(),
    });
    if let Some(name) = segment {
        network["name"] = json!(name);
    }
    network
}

fn endpoint(addr: SocketAddr) -> Value {
    json!({ "ip": addr.ip().to_string(), "port": addr.port() })
}

/// Adds the ECS objects for what the sniffers saw (`tls`, `http`, `url`, `user_agent`) to
/// `obj`, and the non-ECS ones (`ssh`, TLS details) to `pc`, the `portcullis` object; shared
/// by events and `portcullis sniff`.
pub fn add_sniffed(obj: &mut Map<String, Value>, pc: &mut Map<String, Value>, sniffed: &Sniffed) {
    match &sniffed.meta {
        Meta::None => {}
        Meta::Tls(hello) => {
            let mut client = Map::new();
            if let Some(sni) = &hello.server_name {
                client.insert("server_name".into(), json!(sni));
            }
            client.insert("ja4".into(), json!(hello.ja4));
            let mut tls = Map::new();
            tls.insert("client".into(), Value::Object(client));
            if let Some(first) = hello.alpn.first() {
                tls.insert("next_protocol".into(), json!(first));
            }
            if let Some(version) = tls_version_name(hello.version) {
                tls.insert("version".into(), json!(version));
                tls.insert("version_protocol".into(), json!("tls"));
            }
            obj.insert("tls".into(), Value::Object(tls));
            pc.insert(
                "tls".into(),
                json!({ "alpn": hello.alpn, "ech": hello.ech }),
            );
        }
        Meta::Http(req) => {
            obj.insert(
                "http".into(),
                json!({ "request": { "method": req.method } }),
            );
            if let Some(host) = &req.host {
                obj.insert("url".into(), json!({ "domain": host }));
            }
            if let Some(ua) = &req.user_agent {
                obj.insert("user_agent".into(), json!({ "original": ua }));
            }
        }
        Meta::Ssh(ssh) => {
            pc.insert("ssh".into(), json!({ "banner": ssh.banner }));
        }
    }
}

/// `0x0304` -> "1.3".
fn tls_version_name(version: u16) -> Option<&'static str> {
    Some(match version {
        0x0300 => "3.0",
        0x0301 => "1.0",
        0x0302 => "1.1",
        0x0303 => "1.2",
        0x0304 => "1.3",
        _ => return None,
    })
}

impl DecisionEvent<'_> {
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// The event as a JSON object, for callers that add fields (replay adds
    /// `portcullis.replay`).
    pub fn to_value(&self) -> Value {
        let alert = self.would_block;
        let (types, outcome) = match self.action {
            Action::Blocked => (["connection", "denied"], "failure"),
            Action::Allowed | Action::Alerted => (["connection", "allowed"], "success"),
        };
        let mut event = json!({
            "kind": if alert { "alert" } else { "event" },
            "category": if alert { json!(["network", "intrusion_detection"]) } else { json!(["network"]) },
            "type": types,
            "action": self.action.name(),
            "reason": self.reason.name(),
            "outcome": outcome,
        });
        if self.reason == Reason::ExemptDestination {
            event["type"] = json!(["connection", "allowed"]);
        }
        let mut obj = Map::new();
        obj.insert("@timestamp".into(), json!(timestamp(self.at)));
        obj.insert("event".into(), event);
        obj.insert("source".into(), endpoint(self.flow.source));
        obj.insert("destination".into(), endpoint(self.flow.destination));
        obj.insert(
            "network".into(),
            network(&self.flow, self.protocol, self.segment),
        );
        let mut rule = Map::new();
        if let Some(id) = self.rule_id {
            rule.insert("id".into(), json!(id));
        }
        if let Some(segment) = self.segment {
            rule.insert("ruleset".into(), json!(segment));
        }
        rule.insert("version".into(), json!(self.policy_version));
        obj.insert("rule".into(), Value::Object(rule));
        if self.reason.is_t1571() {
            obj.insert(
                "threat".into(),
                json!({
                    "framework": "MITRE ATT&CK",
                    "technique": { "id": ["T1571"], "name": ["Non-Standard Port"] },
                }),
            );
        }
        let expected: Vec<&str> = self.expected_protocols.iter().map(|p| p.name()).collect();
        let mut pc = Map::new();
        if let Some(mode) = self.mode {
            pc.insert("mode".into(), json!(mode_name(mode)));
        }
        pc.insert("expected_protocols".into(), json!(expected));
        pc.insert("would_block".into(), json!(self.would_block));
        pc.insert("detection".into(), json!(self.detection.name()));
        pc.insert("listener".into(), json!(self.flow.listener));
        if let Some(sniffed) = self.sniffed {
            add_sniffed(&mut obj, &mut pc, sniffed);
            pc.insert("side".into(), json!(sniffed.side.name()));
        }
        obj.insert("portcullis".into(), Value::Object(pc));
        Value::Object(obj)
    }
}

impl CloseEvent<'_> {
    pub fn to_json(&self) -> String {
        let mut source = endpoint(self.flow.source);
        source["bytes"] = json!(self.client_bytes);
        let mut destination = endpoint(self.flow.destination);
        destination["bytes"] = json!(self.server_bytes);
        let duration_ns = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
        let mut rule = json!({ "version": self.policy_version });
        if let Some(segment) = self.segment {
            rule["ruleset"] = json!(segment);
        }
        json!({
            "@timestamp": timestamp(self.at),
            "event": {
                "kind": "event",
                "category": ["network"],
                "type": ["connection", "end"],
                "action": "closed",
                "duration": duration_ns,
            },
            "source": source,
            "destination": destination,
            "network": network(&self.flow, self.protocol, self.segment),
            "rule": rule,
            "portcullis": {
                "close_reason": self.reason.name(),
                "listener": self.flow.listener,
            },
        })
        .to_string()
    }
}

/// A `policy_reloaded` event, or with `error` a `policy_reload_failed` one; `version` is the
/// policy in force afterwards.
pub fn reload_event(version: &str, error: Option<&str>) -> String {
    let mut obj = json!({
        "@timestamp": timestamp(SystemTime::now()),
        "event": {
            "kind": "event",
            "category": ["configuration"],
            "type": ["change"],
            "action": if error.is_some() { "policy_reload_failed" } else { "policy_reloaded" },
            "outcome": if error.is_some() { "failure" } else { "success" },
        },
        "rule": { "version": version },
    });
    if let Some(message) = error {
        obj["error"] = json!({ "message": message });
    }
    obj.to_string()
}

pub const fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Block => "block",
        Mode::Monitor => "monitor",
    }
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// Queue depth between the data path and the writer thread.
const QUEUE: usize = 65_536;

/// The handle the data path emits through. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct Sink {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

enum Msg {
    Line(String),
    /// Write everything queued before this, then exit.
    Finish,
}

/// Owns the writer thread; `finish` flushes every queued event and joins it.
pub struct Writer {
    handle: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open event file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot start the event writer thread: {0}")]
    Thread(io::Error),
}

impl Sink {
    /// Opens the target and starts the writer thread.
    pub fn start(target: &Target) -> Result<(Sink, Writer), SinkError> {
        let out: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(io::stdout()),
            Target::File(path) => Box::new(open_append(path)?),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let handle = std::thread::Builder::new()
            .name("portcullis-events".into())
            .spawn(move || write_loop(rx, out))
            .map_err(SinkError::Thread)?;
        let sink = Sink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        Ok((sink, Writer { handle }))
    }

    /// Queues one event line; drops (and counts) it when the writer is behind.
    pub fn emit(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// Writes every event queued so far and stops the writer; later events are dropped.
    pub fn finish(self, sink: &Sink) {
        if sink.tx.send(Msg::Finish).is_ok() {
            let _ = self.handle.join();
        }
    }
}

fn open_append(path: &PathBuf) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.clone(),
            source,
        })
}

/// Writes lines as they come, flushing whenever the queue runs empty, so events reach the
/// file promptly without a syscall per event under load.
fn write_loop(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => {
                    if let Err(err) = writeln!(out, "{line}") {
                        eprintln!("portcullis: event write failed: {err}");
                    }
                }
                Msg::Finish => {
                    let _ = out.flush();
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(err) = out.flush() {
            eprintln!("portcullis: event flush failed: {err}");
        }
    }
    let _ = out.flush();
}
