//! The replay summary printed on stderr: flows per protocol, per segment and per verdict, and
//! the flows block mode would refuse.

use std::collections::BTreeMap;
use std::fmt;

use super::flows::Judged;

/// Refused flows listed one by one; beyond this only their number is kept.
const LISTED: usize = 1000;

/// Counts over every flow of a run (all files).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub flows: u64,
    pub by_protocol: BTreeMap<&'static str, u64>,
    pub by_segment: BTreeMap<String, u64>,
    /// `action/reason`, e.g. `alerted/protocol_not_allowed`.
    pub by_verdict: BTreeMap<String, u64>,
    /// `file: client -> server protocol reason` for each flow block mode would refuse.
    pub refused: Vec<String>,
    pub refused_total: u64,
}

impl Summary {
    pub fn add(&mut self, file: &str, j: &Judged) {
        self.flows += 1;
        *self.by_protocol.entry(j.protocol.name()).or_default() += 1;
        let segment = j.segment.as_deref().unwrap_or("(none)");
        if let Some(n) = self.by_segment.get_mut(segment) {
            *n += 1;
        } else {
            self.by_segment.insert(segment.to_owned(), 1);
        }
        *self
            .by_verdict
            .entry(format!("{}/{}", j.action, j.reason.name()))
            .or_default() += 1;
        if j.would_block {
            self.refused_total += 1;
            if self.refused.len() < LISTED {
                self.refused.push(format!(
                    "{file}: {} -> {} {} {} ({})",
                    j.client,
                    j.server,
                    j.protocol.name(),
                    j.reason.name(),
                    segment
                ));
            }
        }
    }
}

fn counts<K: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    map: &BTreeMap<K, u64>,
) -> fmt::Result {
    writeln!(f, "{title}:")?;
    for (k, n) in map {
        writeln!(f, "  {k:<40} {n}")?;
    }
    Ok(())
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "replay: {} flow(s)", self.flows)?;
        counts(f, "per protocol", &self.by_protocol)?;
        counts(f, "per segment", &self.by_segment)?;
        counts(f, "per verdict (action/reason)", &self.by_verdict)?;
        writeln!(f, "block mode would refuse {} flow(s):", self.refused_total)?;
        for line in &self.refused {
            writeln!(f, "  {line}")?;
        }
        let unlisted = self.refused_total.saturating_sub(self.refused.len() as u64);
        if unlisted > 0 {
            writeln!(f, "  ... and {unlisted} more")?;
        }
        Ok(())
    }
}
