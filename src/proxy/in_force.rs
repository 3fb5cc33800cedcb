//! The policy in force and the metric counters of its segments, swapped as one value: a
//! reader gets one policy and the counters that belong to it, never a mix of two reloads.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use crate::metrics::{Metrics, SegmentMetrics};
use crate::policy::Policy;

/// What judges new connections.
#[derive(Clone)]
pub struct InForce {
    pub policy: Arc<Policy>,
    /// `policy.segments[i]`'s counters are `segments[i]`.
    pub segments: Arc<[Arc<SegmentMetrics>]>,
    /// When this policy was loaded (`GET /policy`).
    pub loaded_at: SystemTime,
}

impl InForce {
    pub fn new(policy: Policy, metrics: &Metrics) -> InForce {
        InForce {
            segments: metrics.segments_for(&policy),
            policy: Arc::new(policy),
            loaded_at: SystemTime::now(),
        }
    }
}

/// Holds the [`InForce`] value; readers clone it (two `Arc`s) under a read lock that is
/// never held across an await.
pub struct PolicyCell(RwLock<InForce>);

impl PolicyCell {
    pub fn new(first: InForce) -> PolicyCell {
        PolicyCell(RwLock::new(first))
    }

    pub fn get(&self) -> InForce {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner).policy)
    }

    /// Replaces the value in force; connections that already hold the old one keep it.
    /// The old value is dropped after the lock is released: freeing a large policy never
    /// holds up readers.
    pub fn install(&self, next: InForce) {
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(PoisonError::into_inner),
            next,
        );
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_strs;
    use crate::policy::{PortSet, Ports};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const CONFIG: &str = "[[listener]]\nmode = \"redirect\"\nlisten = \"0.0.0.0:15001\"\n";

    /// Policy `n`: segments whose names carry `n`, whose count depends on `n`, and one rule
    /// whose port is `n`, so a reader can tell whether what it got is all of one policy.
    fn policy(n: u16) -> Policy {
        let files: Vec<(String, String)> = (0..(1 + n % 4))
            .map(|i| {
                (
                    format!("s{i}.toml"),
                    format!(
                        "segment = \"p{n}-s{i}\"\nsources = [\"10.{i}.0.0/16\"]\nmode = \"block\"\n\n[[allow]]\nports = [{}]\nprotocols = [\"tls\"]\n",
                        1000 + n
                    ),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        load_from_strs("portcullis.toml", CONFIG, &refs)
            .unwrap()
            .policy
    }

    #[test]
    fn readers_never_see_a_mix_of_two_policies_while_reloads_storm() {
        let metrics = Arc::new(Metrics::new());
        let policies: Vec<Policy> = (0..8).map(policy).collect();
        let cell = Arc::new(PolicyCell::new(InForce::new(policies[0].clone(), &metrics)));
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cell, done, reads) =
                    (Arc::clone(&cell), Arc::clone(&done), Arc::clone(&reads));
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        let now = cell.get();
                        let prefix = now.policy.segments[0]
                            .name
                            .split('-')
                            .next()
                            .unwrap()
                            .to_owned();
                        let n: u16 = prefix[1..].parse().unwrap();
                        assert_eq!(now.policy.segments.len(), usize::from(1 + n % 4));
                        assert_eq!(now.segments.len(), now.policy.segments.len());
                        for (seg, counters) in now.policy.segments.iter().zip(now.segments.iter()) {
                            assert!(
                                seg.name.starts_with(&format!("{prefix}-")),
                                "{} in {prefix}",
                                seg.name
                            );
                            assert_eq!(
                                counters.name(),
                                seg.name,
                                "counters belong to the policy read"
                            );
                            let port = 1000 + n;
                            assert_eq!(
                                seg.rules[0].ports,
                                Ports::Set(PortSet::from_ranges([(port, port)]))
                            );
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for round in 0..2_000 {
            cell.install(InForce::new(
                policies[round % policies.len()].clone(),
                &metrics,
            ));
        }
        // Let the readers see the last one too, then stop them.
        while reads.load(Ordering::Relaxed) < 1_000 {
            std::thread::yield_now();
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("a reader saw a mixed policy");
        }
        assert_eq!(cell.policy().version, policies[1_999 % 8].version);
    }
}
