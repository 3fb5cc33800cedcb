//! Keeping the data-path threads evenly loaded. Each thread accepts on its own
//! `SO_REUSEPORT` socket, and the kernel spreads new connections over the sockets at random,
//! not by load: with a few dozen connections in flight one thread often holds several more
//! than another, and its connections wait longer. A thread that accepts a connection while
//! it serves more than one connection above the least busy thread hands it to that thread,
//! as HAProxy's listener queues do; when the threads are even (a lightly loaded gateway
//! most of all) every connection stays where it was accepted, at no cost.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::ListenerInfo;

/// How many more connections than the least busy thread a thread serves before it hands new
/// ones over.
const SLACK: usize = 1;

/// One data-path thread's load, and the way to hand it a connection.
struct Lane {
    active: Arc<AtomicUsize>,
    handoff: mpsc::UnboundedSender<Handoff>,
}

/// A connection accepted by one thread, for another to serve.
pub struct Handoff {
    pub info: ListenerInfo,
    pub stream: TcpStream,
    pub peer: SocketAddr,
}

/// Every data-path thread's lane.
pub struct Lanes(Vec<Lane>);

/// A connection counted in its thread's load until it is dropped (one word in the
/// connection's task).
pub struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lanes {
    /// Lanes for `threads` threads, and each thread's receiving end of its hand-offs.
    pub fn new(threads: usize) -> (Arc<Lanes>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (lanes, receivers) = (0..threads.max(1))
            .map(|_| {
                let (handoff, receiver) = mpsc::unbounded_channel();
                let lane = Lane {
                    active: Arc::new(AtomicUsize::new(0)),
                    handoff,
                };
                (lane, receiver)
            })
            .unzip();
        (Arc::new(Lanes(lanes)), receivers)
    }

    /// The thread that should serve a connection `me` just accepted.
    pub fn pick(&self, me: usize) -> usize {
        let load = |i: usize| self.0[i].active.load(Ordering::Relaxed);
        let mine = load(me);
        let (least, fewest) = (0..self.0.len())
            .map(|i| (i, load(i)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        if mine > fewest + SLACK {
            least
        } else {
            me
        }
    }

    /// Hands `stream`, accepted and in no reactor yet, to thread `lane` (`None`), or gives
    /// it back for this thread to serve when that thread is gone (shutting down).
    pub fn hand(
        &self,
        lane: usize,
        info: ListenerInfo,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<TcpStream> {
        let back = self.0[lane]
            .handoff
            .send(Handoff { info, stream, peer })
            .err()?;
        Some(back.0.stream)
    }

    /// Counts a connection in thread `lane`'s load until the result is dropped.
    pub fn count(&self, lane: usize) -> Counted {
        let active = &self.0[lane].active;
        active.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerMode;

    #[test]
    fn connections_stay_unless_their_thread_is_busier_than_the_least_busy_by_more_than_slack() {
        let (lanes, _receivers) = Lanes::new(3);
        assert_eq!(lanes.pick(1), 1, "all idle");
        let mut held: Vec<Counted> = (0..SLACK).map(|_| lanes.count(1)).collect();
        assert_eq!(lanes.pick(1), 1, "within slack");
        assert_eq!(lanes.pick(0), 0, "the least busy keeps its own");
        held.push(lanes.count(1));
        held.push(lanes.count(0));
        assert_eq!(lanes.pick(1), 2, "to the least busy");
        held.clear();
        assert_eq!(lanes.pick(1), 1, "counts fall as connections end");
    }

    #[tokio::test]
    async fn a_handed_connection_reaches_the_other_thread_whole() {
        let (lanes, mut receivers) = Lanes::new(2);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let info = ListenerInfo {
            mode: ListenerMode::Redirect,
            addr,
            upstream: None,
        };
        assert!(lanes.hand(1, info, accepted, peer).is_none());
        let handed = receivers[1].recv().await.unwrap();
        assert_eq!((handed.peer, handed.info.addr), (peer, addr));
        assert_eq!(
            handed.stream.peer_addr().unwrap(),
            client.local_addr().unwrap()
        );

        // A thread that is gone gives the connection back to be served where it is.
        drop(receivers);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let back = lanes.hand(0, info, accepted, peer).expect("given back");
        assert_eq!(back.peer_addr().unwrap(), peer);
    }
}
