//! Stage two for segment files: one file, one [`Segment`]; then the checks across files
//! (duplicate names, a source prefix in two segments).

use std::collections::HashMap;

use ipnet::IpNet;
use toml::Spanned;

use super::problem::Problem;
use super::raw::RawSegment;
use super::values::Check;
use crate::policy::{Mode, NamePattern, OnUnidentified, Ports, Refuse, Rule, Segment};
use crate::sniff::Protocol;

const MODES: &[(&str, Mode)] = &[("block", Mode::Block), ("monitor", Mode::Monitor)];
const ON_UNIDENTIFIED: &[(&str, OnUnidentified)] = &[
    ("block", OnUnidentified::Block),
    ("allow", OnUnidentified::Allow),
];
const REFUSE: &[(&str, Refuse)] = &[("reset", Refuse::Reset), ("native", Refuse::Native)];

/// A validated segment and where its name and sources were written, for the cross-file
/// checks.
pub(crate) struct Parsed {
    pub segment: Segment,
    pub name_at: Problem,
    pub sources_at: Vec<(IpNet, Problem)>,
}

/// Validates one segment file; `None` when anything was wrong.
pub(crate) fn validate(c: &mut Check, raw: &RawSegment) -> Option<Parsed> {
    let before = c.out.len();
    let name = match &raw.segment {
        None => {
            c.whole("missing segment = \"NAME\"");
            None
        }
        Some(v) => segment_name(c, v),
    };
    let mut sources_at = Vec::new();
    match &raw.sources {
        None => {
            c.whole("missing sources = [\"PREFIX\", ...]: the source addresses of this segment")
        }
        Some(list) if list.get_ref().is_empty() => c.at(
            list,
            "sources must list at least one prefix, like \"10.10.0.0/16\"",
        ),
        Some(list) => {
            for v in list.get_ref() {
                if let Some(net) = c.prefix(v) {
                    if sources_at.iter().any(|(n, _)| *n == net) {
                        c.at(v, format!("source {net} is listed twice"));
                    }
                    sources_at.push((net, c.doc.at(v.span(), "")));
                }
            }
        }
    }
    let mode = match &raw.mode {
        None => {
            c.whole("missing mode = \"block\" or \"monitor\"");
            None
        }
        Some(v) => c.word(v, "mode", MODES),
    };
    let on_unidentified = raw
        .on_unidentified
        .as_ref()
        .map_or(Some(OnUnidentified::Block), |v| {
            c.word(v, "on_unidentified", ON_UNIDENTIFIED)
        });
    let refuse = raw
        .refuse
        .as_ref()
        .map_or(Some(Refuse::Reset), |v| c.word(v, "refuse", REFUSE));
    let exempt: Vec<IpNet> = raw
        .exempt_destinations
        .iter()
        .filter_map(|v| c.prefix(v))
        .collect();
    let seg_name = name.clone().unwrap_or_default();
    let rules: Vec<Rule> = raw
        .allow
        .iter()
        .enumerate()
        .filter_map(|(i, r)| rule(c, &seg_name, i, r))
        .collect();
    if c.out.len() != before {
        return None;
    }
    let name_at = raw.segment.as_ref().map(|v| c.doc.at(v.span(), ""))?;
    Some(Parsed {
        segment: Segment {
            name: name?,
            sources: sources_at.iter().map(|(n, _)| *n).collect(),
            mode: mode?,
            on_unidentified: on_unidentified?,
            refuse: refuse?,
            exempt_destinations: exempt,
            rules,
        },
        name_at,
        sources_at,
    })
}

fn segment_name(c: &mut Check, v: &Spanned<String>) -> Option<String> {
    let name = v.get_ref();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        c.at(
            v,
            format!(
                "invalid segment name {name:?}; expected 1-64 letters, digits, '-', '_' or '.'"
            ),
        );
        return None;
    }
    Some(name.clone())
}

fn rule(
    c: &mut Check,
    segment: &str,
    index: usize,
    raw: &Spanned<super::raw::RawRule>,
) -> Option<Rule> {
    let r = raw.get_ref();
    let before = c.out.len();
    let ports = match &r.ports {
        None => {
            c.at(
                raw,
                "this [[allow]] has no ports; expected a list of ports or \"standard\"",
            );
            None
        }
        Some(p) => c.ports(p, true),
    };
    let mut protocols = Vec::new();
    match &r.protocols {
        None => c.at(
            raw,
            "this [[allow]] has no protocols; expected a list like [\"tls\"]",
        ),
        Some(list) if list.get_ref().is_empty() => c.at(
            list,
            "protocols must list at least one protocol, like [\"tls\"]",
        ),
        Some(list) => {
            for v in list.get_ref() {
                let Some(p) = c.protocol(v) else { continue };
                if p == Protocol::Unknown && ports == Some(Ports::Standard) {
                    c.at(
                        v,
                        "protocol \"unknown\" has no standard ports; list its ports explicitly in another [[allow]]",
                    );
                }
                if !protocols.contains(&p) {
                    protocols.push(p);
                }
            }
        }
    }
    let destinations = r.destinations.iter().filter_map(|v| c.prefix(v)).collect();
    let mut server_names = Vec::new();
    for v in &r.server_names {
        match NamePattern::parse(v.get_ref()) {
            Ok(p) => server_names.push(p),
            Err(e) => c.at(v, e.to_string()),
        }
    }
    if c.out.len() != before {
        return None;
    }
    Some(Rule {
        id: format!("{segment}/allow[{index}]"),
        ports: ports?,
        protocols,
        destinations,
        server_names,
    })
}

/// Checks across segment files: every segment name once, every source prefix in one
/// segment only. Problems point at the later occurrence and name the earlier one.
pub(crate) fn cross_check(parsed: &[Parsed], out: &mut Vec<Problem>) {
    let mut names: HashMap<&str, &Problem> = HashMap::new();
    let mut prefixes: HashMap<IpNet, (&str, &Problem)> = HashMap::new();
    for p in parsed {
        let name = p.segment.name.as_str();
        if let Some(first) = names.insert(name, &p.name_at) {
            let mut problem = p.name_at.clone();
            problem.message = format!(
                "segment name {name:?} is already used in {}:{}:{}",
                first.file, first.line, first.col
            );
            out.push(problem);
        }
        for (net, at) in &p.sources_at {
            match prefixes.get(net) {
                Some((other, first)) if *other != name => {
                    let mut problem = at.clone();
                    problem.message = format!(
                        "source {net} is also a source of segment {other:?} ({}:{}:{}); each prefix belongs to one segment",
                        first.file, first.line, first.col
                    );
                    out.push(problem);
                }
                Some(_) => {}
                None => {
                    prefixes.insert(*net, (name, at));
                }
            }
        }
    }
}
