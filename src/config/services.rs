//! The service catalogue file (`services.toml`): the built-in one is the shipped
//! `policy/services.toml`; one in `policy_dir` overrides it protocol by protocol.

use super::raw::RawServices;
use super::values::Check;
use crate::policy::{Catalogue, Ports};
use crate::sniff::Protocol;

/// The shipped catalogue, built in.
pub const BUILTIN: &str = include_str!("../../policy/services.toml");

/// The file name that holds a catalogue inside `policy_dir`.
pub const FILE_NAME: &str = "services.toml";

/// Validates a catalogue file; `None` when anything was wrong.
pub(crate) fn validate(c: &mut Check, raw: &RawServices) -> Option<Catalogue> {
    let before = c.out.len();
    let mut catalogue = Catalogue::default();
    for (name, ports) in raw {
        let protocol = c.protocol(name);
        if protocol == Some(Protocol::Unknown) {
            c.at(
                name,
                "\"unknown\" has no standard ports; it cannot be in services.toml",
            );
            continue;
        }
        let ports = c.ports(ports, false);
        if let (Some(protocol), Some(Ports::Set(set))) = (protocol, ports) {
            catalogue.set(protocol, set);
        }
    }
    (c.out.len() == before).then_some(catalogue)
}
