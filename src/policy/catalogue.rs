//! The service catalogue: each protocol's standard (IANA) ports, for `ports = "standard"`.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::PortSet;
use crate::sniff::Protocol;

/// Standard ports per protocol. A protocol absent from the catalogue has no standard port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    ports: BTreeMap<Protocol, PortSet>,
}

impl Catalogue {
    /// Sets (or replaces) the standard ports of `protocol`.
    pub fn set(&mut self, protocol: Protocol, ports: PortSet) {
        self.ports.insert(protocol, ports);
    }

    /// Replaces each protocol `other` names, keeping the others: an override file.
    pub fn override_with(&mut self, other: &Catalogue) {
        for (protocol, ports) in &other.ports {
            self.set(*protocol, ports.clone());
        }
    }

    /// The standard ports of `protocol`, if it has any.
    pub fn ports(&self, protocol: Protocol) -> Option<&PortSet> {
        self.ports.get(&protocol)
    }

    /// True when `port` is a standard port of `protocol`.
    pub fn is_standard(&self, protocol: Protocol, port: u16) -> bool {
        self.ports(protocol).is_some_and(|set| set.contains(port))
    }

    /// Every protocol and its ports, in protocol order.
    pub fn iter(&self) -> impl Iterator<Item = (Protocol, &PortSet)> {
        self.ports.iter().map(|(p, set)| (*p, set))
    }
}

impl Serialize for Catalogue {
    /// `{"tls": [443, ...], ...}`: protocol names as keys.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.ports.len()))?;
        for (protocol, ports) in &self.ports {
            map.serialize_entry(protocol.name(), ports)?;
        }
        map.end()
    }
}
