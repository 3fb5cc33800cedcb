//! Stage two helpers: validate one value (port list, prefix, protocol, word, number) and
//! say exactly what is wrong and what is allowed.

use ipnet::IpNet;
use toml::Spanned;

use super::problem::{Doc, Problem};
use super::raw::{PortItem, RawPorts};
use crate::policy::{PortSet, Ports};
use crate::sniff::Protocol;

/// Pushes problems while validating one file.
pub(crate) struct Check<'a, 'p> {
    pub doc: &'a Doc<'a>,
    pub out: &'p mut Vec<Problem>,
}

impl Check<'_, '_> {
    pub fn at<T>(&mut self, v: &Spanned<T>, message: impl Into<String>) {
        self.out.push(self.doc.at(v.span(), message));
    }

    pub fn whole(&mut self, message: impl Into<String>) {
        self.out.push(self.doc.whole(message));
    }

    /// One of `choices`, or a problem naming them all.
    pub fn word<T: Copy>(
        &mut self,
        v: &Spanned<String>,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let found = choices
            .iter()
            .find(|(name, _)| *name == v.get_ref().as_str());
        if found.is_none() {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            self.at(
                v,
                format!(
                    "unknown {what} {:?}; expected one of {}",
                    v.get_ref(),
                    names.join(", ")
                ),
            );
        }
        found.map(|(_, value)| *value)
    }

    /// An integer in `min..=max`, or the default when absent.
    pub fn number(
        &mut self,
        v: Option<&Spanned<i64>>,
        what: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        self.number_why(v, what, default, (min, max), "")
    }

    /// [`Check::number`], with `why` explaining the range in the message.
    pub fn number_why(
        &mut self,
        v: Option<&Spanned<i64>>,
        what: &str,
        default: u64,
        (min, max): (u64, u64),
        why: &str,
    ) -> Option<u64> {
        let Some(v) = v else {
            return Some(default);
        };
        match u64::try_from(*v.get_ref()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.at(
                    v,
                    format!(
                        "{what} = {} is out of range; expected {min} to {max}{why}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A known protocol name.
    pub fn protocol(&mut self, v: &Spanned<String>) -> Option<Protocol> {
        let found = Protocol::from_name(v.get_ref());
        if found.is_none() {
            let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
            self.at(
                v,
                format!(
                    "unknown protocol {:?}; expected one of {}",
                    v.get_ref(),
                    names.join(", ")
                ),
            );
        }
        found
    }

    /// An address prefix (`10.0.0.0/8`, `fd00::/8`, or a bare address for one host) with no
    /// host bits set.
    pub fn prefix(&mut self, v: &Spanned<String>) -> Option<IpNet> {
        let text = v.get_ref().trim();
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<std::net::IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    self.at(
                        v,
                        format!(
                            "invalid address prefix {text:?}; expected CIDR like \"10.0.0.0/8\" or \"fd00::/8\", or a single address"
                        ),
                    );
                    return None;
                }
            },
        };
        if net.trunc() != net {
            self.at(
                v,
                format!("{net} has host bits set; did you mean {}?", net.trunc()),
            );
            return None;
        }
        Some(net)
    }

    /// A `ports` value: a non-empty list of ports and ranges, or (when `standard_ok`) the
    /// string `"standard"`.
    pub fn ports(&mut self, v: &Spanned<RawPorts>, standard_ok: bool) -> Option<Ports> {
        let shape = if standard_ok {
            "ports must be a non-empty list of ports and \"LOW-HIGH\" ranges or the string \"standard\""
        } else {
            "ports must be a list of ports and \"LOW-HIGH\" ranges"
        };
        match v.get_ref() {
            RawPorts::Word(w) if w == "standard" && standard_ok => Some(Ports::Standard),
            RawPorts::Word(w) => {
                self.at(v, format!("{shape}, not {w:?}"));
                None
            }
            RawPorts::Other(what) => {
                self.at(v, format!("{shape}, not {what}"));
                None
            }
            RawPorts::List(items) if items.is_empty() && standard_ok => {
                self.at(v, format!("{shape}, not an empty list"));
                None
            }
            RawPorts::List(items) => {
                let mut ranges = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.port_item(item) {
                        Some(r) => ranges.push(r),
                        None => ok = false,
                    }
                }
                ok.then(|| Ports::Set(PortSet::from_ranges(ranges)))
            }
        }
    }

    fn port_item(&mut self, v: &Spanned<PortItem>) -> Option<(u16, u16)> {
        let range_help = "expected a port 1-65535 or a range \"LOW-HIGH\" like \"8000-8099\"";
        match v.get_ref() {
            PortItem::Number(n) => match u16::try_from(*n) {
                Ok(p) if p != 0 => Some((p, p)),
                _ => {
                    self.at(v, format!("port {n} is out of range; expected 1-65535"));
                    None
                }
            },
            PortItem::Other(what) => {
                self.at(v, format!("a port cannot be {what}; {range_help}"));
                None
            }
            PortItem::Text(text) => {
                let parse = |s: &str| s.trim().parse::<u32>().ok();
                let (lo, hi) = match text.split_once('-') {
                    Some((a, b)) => (parse(a), parse(b)),
                    None => (parse(text), parse(text)),
                };
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    self.at(v, format!("invalid port range {text:?}; {range_help}"));
                    return None;
                };
                let in_range = |p: u32| (1..=65535).contains(&p);
                if !in_range(lo) || !in_range(hi) {
                    self.at(
                        v,
                        format!("port range {text:?} is out of range; expected ports 1-65535"),
                    );
                    return None;
                }
                if lo > hi {
                    self.at(
                        v,
                        format!("port range {text:?} is reversed; did you mean \"{hi}-{lo}\"?"),
                    );
                    return None;
                }
                Some((u16::try_from(lo).ok()?, u16::try_from(hi).ok()?))
            }
        }
    }
}
