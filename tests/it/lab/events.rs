//! Reading the gateway's JSON-lines events and pairing each connection's decision and close.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Lab, EVENT_WAIT};

impl Lab {
    pub fn events_path(&self) -> PathBuf {
        self.path("events.jsonl")
    }

    /// Every complete line of the event file, parsed; panics on a line that is not JSON.
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.events_path()).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits for the decision event and the close event of the one connection from `source`
    /// to `dest`:`port`, and checks there is exactly one of each.
    pub fn connection(&self, source: &str, dest: &str, port: u16) -> Conn {
        let source: IpAddr = source.parse().expect("source ip");
        let dest: IpAddr = dest.parse().expect("dest ip");
        let split = |events: &[Value]| -> (Vec<Value>, Vec<Value>) {
            events
                .iter()
                .filter(|e| ip_at(e, "/source/ip") == Some(source))
                .filter(|e| ip_at(e, "/destination/ip") == Some(dest))
                .filter(|e| {
                    e.pointer("/destination/port").and_then(Value::as_u64) == Some(port.into())
                })
                .cloned()
                .partition(|e| e.pointer("/event/action").and_then(Value::as_str) != Some("closed"))
        };
        let start = Instant::now();
        loop {
            let events = self.events();
            let (decisions, closes) = split(&events);
            if !decisions.is_empty() && !closes.is_empty() {
                // Let a duplicate, if the gateway writes one, land before counting.
                std::thread::sleep(Duration::from_millis(300));
                let (decisions, closes) = split(&self.events());
                assert_eq!(
                    decisions.len(),
                    1,
                    "one decision event per connection: {decisions:#?}"
                );
                assert_eq!(
                    closes.len(),
                    1,
                    "one close event per connection: {closes:#?}"
                );
                let conn = Conn {
                    decision: decisions[0].clone(),
                    close: closes[0].clone(),
                };
                conn.check_pair();
                eprintln!(
                    "lab[{}]: decision {}\nlab[{}]: close {}",
                    self.id, conn.decision, self.id, conn.close
                );
                return conn;
            }
            assert!(
                start.elapsed() < EVENT_WAIT,
                "no decision + close event for {source} -> {dest}:{port} within {EVENT_WAIT:?}; events:\n{}",
                events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ip_at(e: &Value, pointer: &str) -> Option<IpAddr> {
    e.pointer(pointer)?.as_str()?.parse().ok()
}

/// The two events of one connection.
#[derive(Debug)]
pub struct Conn {
    pub decision: Value,
    pub close: Value,
}

impl Conn {
    /// The decision's string at a JSON pointer ("" when absent).
    pub fn d(&self, pointer: &str) -> &str {
        self.decision
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A close event's counter at a JSON pointer; panics when absent or not a number.
    pub fn close_u64(&self, pointer: &str) -> u64 {
        self.close
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("close event lacks numeric {pointer}: {:#}", self.close))
    }

    /// The close event repeats the 5-tuple, carries bytes, duration and a close reason, and
    /// no threat.
    fn check_pair(&self) {
        for p in [
            "/source/ip",
            "/source/port",
            "/destination/ip",
            "/destination/port",
        ] {
            assert_eq!(
                self.decision.pointer(p),
                self.close.pointer(p),
                "close event repeats {p}"
            );
        }
        self.close_u64("/source/bytes");
        self.close_u64("/destination/bytes");
        self.close_u64("/event/duration");
        let reason = self
            .close
            .pointer("/portcullis/close_reason")
            .and_then(Value::as_str);
        assert!(
            reason.is_some_and(|r| !r.is_empty()),
            "close event lacks portcullis.close_reason: {:#}",
            self.close
        );
        assert!(
            self.close.get("threat").is_none(),
            "close events carry no threat: {:#}",
            self.close
        );
    }
}
