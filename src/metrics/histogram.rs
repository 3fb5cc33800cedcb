//! A Prometheus histogram over atomics: one relaxed addition per bucket hit and one for the
//! sum, no lock. Bounds are kept in nanoseconds so bucketing is exact integer comparison.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::text::Exposition;

/// Upper bounds of the detection-duration buckets, in nanoseconds: 10 µs to 10 s, so both a
/// ClientHello parsed in microseconds and a server banner awaited for seconds land in a
/// bucket of their own (the last bucket, `+Inf`, is implicit).
const DETECTION_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Observations of a duration, counted per bucket (not cumulatively: the exposition sums).
#[derive(Debug)]
pub struct Histogram {
    bounds_ns: &'static [u64],
    /// One counter per bound, then `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// The buckets for `portcullis_detection_duration_seconds`.
    pub fn detection() -> Histogram {
        Histogram::with_bounds(&DETECTION_BOUNDS_NS)
    }

    fn with_bounds(bounds_ns: &'static [u64]) -> Histogram {
        Histogram {
            bounds_ns,
            buckets: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // The first bound at or above the value (`le` is inclusive).
        let i = self.bounds_ns.partition_point(|&b| b < ns);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `_bucket` lines (cumulative, ending with `+Inf`), `_sum` in seconds and `_count`
    /// (equal to the `+Inf` bucket).
    pub(super) fn render(&self, out: &mut Exposition, name: &str, label: (&str, &str)) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = self
                .bounds_ns
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |&ns| seconds(ns).to_string());
            out.sample(&bucket, &[label, ("le", &le)], cumulative);
        }
        let sum = seconds(self.sum_ns.load(Ordering::Relaxed));
        out.sample(&format!("{name}_sum"), &[label], sum);
        out.sample(&format!("{name}_count"), &[label], cumulative);
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_the_exposition_is_cumulative() {
        let h = Histogram::detection();
        h.observe(Duration::from_micros(10)); // exactly the first bound
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60)); // past every bound
        assert_eq!(h.count(), 4);
        let mut out = Exposition::default();
        h.render(&mut out, "d_seconds", ("side", "client"));
        let text = out.finish();
        let line = |le: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("d_seconds_bucket{{side=\"client\",le=\"{le}\"}} "))
                })
                .unwrap_or_else(|| panic!("no le={le} in {text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(line("0.00001"), "1");
        assert_eq!(line("0.000025"), "2");
        assert_eq!(line("0.0025"), "2");
        assert_eq!(line("0.005"), "3");
        assert_eq!(line("10"), "3");
        assert_eq!(line("+Inf"), "4");
        assert!(
            text.contains("d_seconds_count{side=\"client\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_sum{side=\"client\"} 60.003021\n"),
            "{text}"
        );
    }
}
