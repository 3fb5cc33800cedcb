//! The table of open connections behind `GET /connections`, and each connection's live byte
//! counts. A connection is entered once its decision is taken and leaves when it closes; both
//! take one short shard lock (never held across an await). The relay only adds to the
//! connection's own atomics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::SegmentMetrics;
use crate::policy::Action;
use crate::sniff::Protocol;

/// Shards of the table: connections opening and closing on different cores rarely meet.
const SHARDS: usize = 16;

/// Bytes moved so far, each way; the relay adds as it goes.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Client to server.
    pub upstream: AtomicU64,
    /// Server to client.
    pub downstream: AtomicU64,
}

/// What the table knows of one open connection.
#[derive(Debug)]
pub struct Tracked {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// The listener's mode (`redirect`, `forward`, ...).
    pub listener: &'static str,
    pub segment: Arc<SegmentMetrics>,
    pub protocol: Protocol,
    pub action: Action,
    pub started: Instant,
    pub traffic: Traffic,
}

/// Every open connection.
#[derive(Debug)]
pub struct OpenConnections {
    shards: [Mutex<HashMap<u64, Arc<Tracked>>>; SHARDS],
    next: AtomicU64,
    /// False when nothing can list them (no admin endpoint): connections then skip the
    /// table's locks, and only their counters are kept.
    listed: bool,
}

impl Default for OpenConnections {
    fn default() -> OpenConnections {
        OpenConnections::new(true)
    }
}

/// A connection's place in the table and in `portcullis_connections_active`; it leaves
/// both when dropped.
pub struct Open<'a> {
    table: &'a OpenConnections,
    id: u64,
    entry: Entry,
}

/// What an open connection keeps of its tracking.
enum Entry {
    /// Shared with the table, which lists it.
    Listed(Arc<Tracked>),
    /// Nothing lists it: only its segment's counters and its own byte counts, kept inline
    /// (no allocation per connection).
    Counted {
        segment: Arc<SegmentMetrics>,
        traffic: Traffic,
    },
}

impl Open<'_> {
    pub fn traffic(&self) -> &Traffic {
        match &self.entry {
            Entry::Listed(tracked) => &tracked.traffic,
            Entry::Counted { traffic, .. } => traffic,
        }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        match &self.entry {
            Entry::Listed(tracked) => {
                self.table.shard(self.id).remove(&self.id);
                tracked.segment.left();
            }
            Entry::Counted { segment, .. } => segment.left(),
        }
    }
}

/// One entry of `GET /connections`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenConnection {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub listener: &'static str,
    /// Empty when the source matched no segment.
    pub segment: String,
    pub protocol: &'static str,
    pub action: &'static str,
    pub age_seconds: f64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
}

impl OpenConnections {
    pub fn new(listed: bool) -> OpenConnections {
        OpenConnections {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            next: AtomicU64::new(0),
            listed,
        }
    }

    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        self.shards[(id % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters a connection; it stays until the returned guard is dropped.
    pub fn open(&self, tracked: Tracked) -> Open<'_> {
        tracked.segment.opened();
        if !self.listed {
            return Open {
                table: self,
                id: 0,
                entry: Entry::Counted {
                    segment: tracked.segment,
                    traffic: tracked.traffic,
                },
            };
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(tracked);
        self.shard(id).insert(id, Arc::clone(&tracked));
        Open {
            table: self,
            id,
            entry: Entry::Listed(tracked),
        }
    }

    /// Every open connection, oldest first.
    pub fn snapshot(&self) -> Vec<OpenConnection> {
        let now = Instant::now();
        let mut all: Vec<(u64, Arc<Tracked>)> = Vec::new();
        for i in 0..SHARDS {
            let shard = self.shard(i as u64);
            all.extend(shard.iter().map(|(id, t)| (*id, Arc::clone(t))));
        }
        all.sort_by_key(|(id, _)| *id);
        all.iter()
            .map(|(_, t)| OpenConnection {
                source: t.source,
                destination: t.destination,
                listener: t.listener,
                segment: t.segment.name().to_string(),
                protocol: t.protocol.name(),
                action: t.action.name(),
                age_seconds: now
                    .checked_duration_since(t.started)
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64(),
                bytes_upstream: t.traffic.upstream.load(Ordering::Relaxed),
                bytes_downstream: t.traffic.downstream.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
