//! Admission limits checked before the policy: concurrent connections (whole gateway and per
//! source address) and the per-source rate of new connections (governor).
//!
//! Silent or slow clients count against `max_connections` like any other, so a flood of them
//! cannot exhaust file descriptors or memory: beyond the limit new connections are refused at
//! once with `connection_limit`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;

use crate::config::Limits;
use crate::policy::Admission;

/// How many admissions between sweeps of idle sources out of the rate limiter's table.
const SWEEP_EVERY: u32 = 4096;

type SourceRate<C> =
    RateLimiter<IpAddr, HashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The gateway's admission state; shared by every listener.
pub struct Limiter<C: Clock = DefaultClock> {
    max_total: usize,
    max_per_source: usize,
    counts: Mutex<Counts>,
    rate: Option<SourceRate<C>>,
    since_sweep: AtomicU32,
    idle: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// A connection's place in the connection limits; released on drop.
pub struct Slot<C: Clock = DefaultClock> {
    limiter: Arc<Limiter<C>>,
    source: IpAddr,
}

impl Limiter<DefaultClock> {
    pub fn new(limits: &Limits) -> Limiter<DefaultClock> {
        Limiter::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    /// `rate_per_source = 0` turns the rate limit off.
    pub fn with_clock(limits: &Limits, clock: C) -> Limiter<C> {
        let rate = NonZeroU32::new(limits.rate_per_source).map(|per_second| {
            let burst = NonZeroU32::new(limits.rate_burst_per_source).unwrap_or(per_second);
            RateLimiter::hashmap_with_clock(Quota::per_second(per_second).allow_burst(burst), clock)
        });
        Limiter {
            max_total: limits.max_connections,
            max_per_source: limits.max_connections_per_source,
            counts: Mutex::new(Counts::default()),
            rate,
            since_sweep: AtomicU32::new(0),
            idle: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.lock().total
    }

    /// Connection limits first, then the source's rate; on success the returned slot holds
    /// the connection's place until it is dropped.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot<C>, Admission> {
        let mut counts = self.lock();
        let from_source = counts.per_source.get(&source).copied().unwrap_or(0);
        if counts.total >= self.max_total || from_source >= self.max_per_source {
            return Err(Admission::ConnectionLimit);
        }
        if let Some(rate) = &self.rate {
            if self.since_sweep.fetch_add(1, Ordering::Relaxed) >= SWEEP_EVERY {
                self.since_sweep.store(0, Ordering::Relaxed);
                rate.retain_recent();
            }
            if rate.check_key(&source).is_err() {
                return Err(Admission::RateLimited);
            }
        }
        counts.total += 1;
        *counts.per_source.entry(source).or_insert(0) += 1;
        drop(counts);
        Ok(Slot {
            limiter: Arc::clone(self),
            source,
        })
    }

    /// Resolves once no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<C: Clock> Drop for Slot<C> {
    fn drop(&mut self) {
        let mut counts = self.limiter.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
        if counts.total == 0 {
            self.limiter.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    fn limits(total: usize, per_source: usize, rate: u32, burst: u32) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_source: per_source,
            rate_per_source: rate,
            rate_burst_per_source: burst,
            ..crate::config::load_embedded().unwrap().config.limits
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn concurrent_limits_count_open_connections_and_release_on_drop() {
        let limiter = Arc::new(Limiter::new(&limits(3, 2, 0, 0)));
        let a1 = limiter.admit(A).unwrap();
        let _a2 = limiter.admit(A).unwrap();
        assert_eq!(
            limiter.admit(A).err(),
            Some(Admission::ConnectionLimit),
            "per source"
        );
        let _b1 = limiter.admit(B).unwrap();
        assert_eq!(
            limiter.admit(B).err(),
            Some(Admission::ConnectionLimit),
            "whole gateway"
        );
        drop(a1);
        assert!(limiter.admit(B).is_ok());
    }

    #[test]
    fn rate_limit_allows_the_burst_then_refills_per_source() {
        let clock = FakeRelativeClock::default();
        let limiter = Arc::new(Limiter::with_clock(&limits(100, 100, 2, 4), clock.clone()));
        for _ in 0..4 {
            drop(limiter.admit(A).unwrap());
        }
        assert_eq!(limiter.admit(A).err(), Some(Admission::RateLimited));
        assert!(
            limiter.admit(B).is_ok(),
            "another source has its own budget"
        );
        clock.advance(Duration::from_millis(500));
        assert!(limiter.admit(A).is_ok(), "one connection per 500 ms at 2/s");
        assert_eq!(limiter.admit(A).err(), Some(Admission::RateLimited));
    }

    #[test]
    fn refused_connections_do_not_hold_a_slot() {
        let clock = FakeRelativeClock::default();
        let limiter = Arc::new(Limiter::with_clock(&limits(1, 1, 1, 1), clock));
        assert_eq!(limiter.admit(A).map(drop), Ok(()));
        assert_eq!(limiter.admit(A).err(), Some(Admission::RateLimited));
        assert_eq!(limiter.active(), 0);
    }
}
