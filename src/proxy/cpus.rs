//! Where the data-path threads run: one per CPU this process may run on, each pinned to its
//! own CPU, as HAProxy's `cpu-map` and nginx's `worker_cpu_affinity` do when asked.
//!
//! A connection's client, the gateway and its server hand the connection to one another,
//! and Linux wakes each on the CPU of the one that woke it. An unpinned thread follows its
//! wakers around, so all of a connection's work, and most of the next one's, piles up on
//! one CPU while the other idles. A pinned thread stays where it is and its CPU's work
//! overlaps with the others': on a 2-CPU machine, 12 % more short connections per second
//! with 1 in flight and 5 % more with 32 (BENCHMARKS.md).
//!
//! Threads are pinned only when there is one for every CPU the process may use: with a
//! smaller CPU quota (cgroups), pinning would put every thread on the first CPUs. Setting
//! `PORTCULLIS_PIN=0` in the environment leaves the threads to the scheduler. Threads that
//! a pinned thread starts share its CPU: those of its runtime's blocking pool, which run the
//! explicit proxies' name lookups (`tokio::net::lookup_host`) and wait on DNS far more than
//! they compute.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The environment variable that turns pinning off (`0`).
pub const PIN_VAR: &str = "PORTCULLIS_PIN";

/// The CPU for each of `threads` data-path threads, in order: the CPUs this process may
/// run on, when there are exactly `threads` of them and `pin` is on; `None` otherwise.
pub fn plan(threads: usize, pin: bool) -> Option<Vec<usize>> {
    if !pin {
        return None;
    }
    let cpus = allowed().ok()?;
    (cpus.len() == threads).then_some(cpus)
}

/// The CPUs the calling thread may run on, in order.
fn allowed() -> nix::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Whether the environment asks for pinning (anything but `PORTCULLIS_PIN=0`).
pub fn wanted() -> bool {
    std::env::var_os(PIN_VAR).map_or(true, |v| v != "0")
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cpu_per_thread_only_when_the_threads_match_the_cpus() {
        let cpus = allowed().unwrap();
        assert_eq!(plan(cpus.len(), true), Some(cpus.clone()));
        assert_eq!(plan(cpus.len(), false), None);
        assert_eq!(plan(cpus.len() + 1, true), None);
        if cpus.len() > 1 {
            assert_eq!(plan(cpus.len() - 1, true), None);
        }
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_only() {
        let last = *allowed().unwrap().last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_to(last).unwrap();
            allowed().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        // The process's other threads are not affected.
        assert!(allowed().unwrap().contains(&last));
    }
}
