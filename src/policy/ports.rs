//! Destination port sets: compiled at load time into sorted, merged ranges for binary search.

use serde::{Serialize, Serializer};

/// A set of TCP ports, kept as sorted, non-overlapping, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// Builds a set from inclusive ranges in any order; overlapping and adjacent ranges merge.
    /// A range whose low end is above its high end is ignored (validation reports those).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u16, u16)>) -> PortSet {
        let mut all: Vec<(u16, u16)> = ranges.into_iter().filter(|(lo, hi)| lo <= hi).collect();
        all.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(all.len());
        for (lo, hi) in all {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        PortSet { ranges: merged }
    }

    /// True when `port` is in the set (binary search over the ranges).
    pub fn contains(&self, port: u16) -> bool {
        let idx = self.ranges.partition_point(|&(_, hi)| hi < port);
        self.ranges.get(idx).is_some_and(|&(lo, _)| lo <= port)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The merged ranges, ascending.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }
}

impl std::fmt::Display for PortSet {
    /// `443,8000-8099`: the form the policy files use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for PortSet {
    /// A list of single ports (numbers) and ranges (`"8000-8099"`), as written in policy files.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Item {
            Port(u16),
            Range(String),
        }
        s.collect_seq(self.ranges.iter().map(|&(lo, hi)| {
            if lo == hi {
                Item::Port(lo)
            } else {
                Item::Range(format!("{lo}-{hi}"))
            }
        }))
    }
}

/// The ports a rule names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ports {
    /// These ports, for every protocol of the rule.
    Set(PortSet),
    /// `ports = "standard"`: each protocol of the rule on its own catalogue ports.
    Standard,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_overlapping_and_adjacent_ranges() {
        let set = PortSet::from_ranges([(8000, 8099), (443, 443), (8100, 8100), (8050, 8200)]);
        assert_eq!(set.ranges(), &[(443, 443), (8000, 8200)]);
        assert_eq!(set.to_string(), "443,8000-8200");
    }

    #[test]
    fn contains_checks_range_edges() {
        let set = PortSet::from_ranges([(22, 22), (8000, 8099), (65535, 65535)]);
        for (port, want) in [
            (1, false),
            (21, false),
            (22, true),
            (23, false),
            (7999, false),
            (8000, true),
            (8050, true),
            (8099, true),
            (8100, false),
            (65534, false),
            (65535, true),
        ] {
            assert_eq!(set.contains(port), want, "port {port}");
        }
        assert!(!PortSet::default().contains(443));
    }

    #[test]
    fn serializes_as_policy_file_syntax() {
        let set = PortSet::from_ranges([(443, 443), (8000, 8099)]);
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"[443,"8000-8099"]"#);
    }
}
