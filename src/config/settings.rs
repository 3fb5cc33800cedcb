//! Stage two for `portcullis.toml`: listeners, detection, events, limits and admin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAdmin, RawConfig, RawDetect, RawLimits};
use super::values::Check;
use super::{Admin, Config, Detect, Events, Limits, Listener, ListenerMode, Sink};

/// The smallest detection buffer: a full TLS record (16384 bytes) and its 5-byte header.
pub const MIN_DETECT_BYTES: u64 = 16389;
/// The largest detection buffer: 1 MiB.
pub const MAX_DETECT_BYTES: u64 = 1 << 20;
/// Upper bound for any millisecond setting: a day.
const MAX_MS: u64 = 86_400_000;

const LISTENER_MODES: &[(&str, ListenerMode)] = &[
    ("redirect", ListenerMode::Redirect),
    ("tproxy", ListenerMode::Tproxy),
    ("forward", ListenerMode::Forward),
    ("http_proxy", ListenerMode::HttpProxy),
    ("socks5", ListenerMode::Socks5),
];

/// Validates a parsed config file. Relative paths are resolved against `base_dir` (the
/// config file's directory). `None` when anything was wrong (all of it is in `c.out`).
pub(crate) fn validate(
    c: &mut Check,
    raw: &RawConfig,
    path: PathBuf,
    base_dir: &Path,
) -> Option<Config> {
    let before = c.out.len();
    let listeners = listeners(c, raw);
    let detect = detect(c, raw.detect.as_ref());
    let events = events(c, raw, base_dir);
    let limits = limits(c, raw.limits.as_ref());
    let admin = raw.admin.as_ref().map(|a| admin(c, a, base_dir));
    let policy_dir = Some(
        base_dir.join(
            raw.policy_dir
                .as_ref()
                .map_or("policy", |d| d.get_ref().as_str()),
        ),
    );
    if c.out.len() != before {
        return None;
    }
    Some(Config {
        path,
        policy_dir,
        listeners,
        detect: detect?,
        events: events?,
        limits: limits?,
        admin: admin.flatten(),
    })
}

fn socket_addr(c: &mut Check, v: &Spanned<String>, what: &str) -> Option<SocketAddr> {
    let addr = v.get_ref().parse::<SocketAddr>().ok();
    if addr.is_none() {
        c.at(
            v,
            format!(
                "invalid {what} address {:?}; expected IP:PORT like \"0.0.0.0:15001\" or \"[::]:15001\"",
                v.get_ref()
            ),
        );
    }
    addr
}

fn listeners(c: &mut Check, raw: &RawConfig) -> Vec<Listener> {
    if raw.listener.is_empty() {
        c.whole("no [[listener]]; at least one is needed");
    }
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::new();
    for spanned in &raw.listener {
        let l = spanned.get_ref();
        let mode = c.word(&l.mode, "listener mode", LISTENER_MODES);
        let listen = socket_addr(c, &l.listen, "listen");
        if let Some(addr) = listen {
            let line = c.doc.at(l.listen.span(), "").line;
            if let Some(first) = seen.insert(addr, line) {
                c.at(
                    &l.listen,
                    format!(
                        "listen address {addr} is already used by the listener on line {first}"
                    ),
                );
            }
        }
        let upstream = l
            .upstream
            .as_ref()
            .and_then(|u| socket_addr(c, u, "upstream"));
        match (mode, &l.upstream) {
            (Some(ListenerMode::Forward), None) => {
                c.at(&l.mode, "a forward listener needs upstream = \"IP:PORT\"");
            }
            (Some(m), Some(u)) if m != ListenerMode::Forward => c.at(
                u,
                format!("upstream is only for forward listeners, not {:?}", m.name()),
            ),
            _ => {}
        }
        if let (Some(mode), Some(listen)) = (mode, listen) {
            out.push(Listener {
                mode,
                listen,
                upstream,
            });
        }
    }
    out
}

fn detect(c: &mut Check, raw: Option<&RawDetect>) -> Option<Detect> {
    let client_first = raw.and_then(|d| d.client_first_ms.as_ref());
    let timeout = raw.and_then(|d| d.timeout_ms.as_ref());
    let max_bytes = raw.and_then(|d| d.max_bytes.as_ref());
    let cf = c.number(client_first, "detect.client_first_ms", 250, 1, MAX_MS);
    let to = c.number(timeout, "detect.timeout_ms", 5000, 1, MAX_MS);
    let mb = c.number_why(
        max_bytes,
        "detect.max_bytes",
        MIN_DETECT_BYTES,
        (MIN_DETECT_BYTES, MAX_DETECT_BYTES),
        " (a full TLS record and its header must fit; at most 1 MiB)",
    );
    if let (Some(cf_ms), Some(to_ms)) = (cf, to) {
        if cf_ms > to_ms {
            let msg = format!(
                "detect.client_first_ms ({cf_ms}) is larger than detect.timeout_ms ({to_ms}); the server's banner would never be read"
            );
            match (client_first, timeout) {
                (Some(v), _) => c.at(v, msg),
                (None, Some(v)) => c.at(v, msg),
                (None, None) => c.whole(msg),
            }
        }
    }
    Some(Detect {
        client_first: Duration::from_millis(cf?),
        timeout: Duration::from_millis(to?),
        max_bytes: usize::try_from(mb?).ok()?,
    })
}

fn events(c: &mut Check, raw: &RawConfig, base_dir: &Path) -> Option<Events> {
    let Some(sink) = raw.events.as_ref().and_then(|e| e.sink.as_ref()) else {
        return Some(Events { sink: Sink::Stdout });
    };
    match sink.get_ref().as_str() {
        "stdout" => Some(Events { sink: Sink::Stdout }),
        s => match s.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Some(Events {
                sink: Sink::File(base_dir.join(path)),
            }),
            _ => {
                c.at(
                    sink,
                    format!("invalid events.sink {s:?}; expected \"stdout\" or \"file:PATH\""),
                );
                None
            }
        },
    }
}

fn limits(c: &mut Check, raw: Option<&RawLimits>) -> Option<Limits> {
    let field = |f: fn(&RawLimits) -> Option<&Spanned<i64>>| raw.and_then(f);
    let count_max = u64::from(u32::MAX);
    let max_connections = c.number(
        field(|l| l.max_connections.as_ref()),
        "limits.max_connections",
        10_000,
        1,
        count_max,
    );
    let per_source = c.number(
        field(|l| l.max_connections_per_source.as_ref()),
        "limits.max_connections_per_source",
        1000,
        1,
        count_max,
    );
    let rate = c.number(
        field(|l| l.rate_per_source.as_ref()),
        "limits.rate_per_source",
        100,
        1,
        count_max,
    );
    let burst = c.number(
        field(|l| l.rate_burst_per_source.as_ref()),
        "limits.rate_burst_per_source",
        200,
        1,
        count_max,
    );
    let connect = c.number(
        field(|l| l.connect_timeout_ms.as_ref()),
        "limits.connect_timeout_ms",
        5000,
        1,
        MAX_MS,
    );
    let idle = c.number(
        field(|l| l.idle_timeout_ms.as_ref()),
        "limits.idle_timeout_ms",
        600_000,
        1,
        MAX_MS,
    );
    let drain = c.number(
        field(|l| l.drain_ms.as_ref()),
        "limits.drain_ms",
        30_000,
        0,
        MAX_MS,
    );
    Some(Limits {
        max_connections: usize::try_from(max_connections?).ok()?,
        max_connections_per_source: usize::try_from(per_source?).ok()?,
        rate_per_source: u32::try_from(rate?).ok()?,
        rate_burst_per_source: u32::try_from(burst?).ok()?,
        connect_timeout: Duration::from_millis(connect?),
        idle_timeout: Duration::from_millis(idle?),
        drain: Duration::from_millis(drain?),
    })
}

fn admin(c: &mut Check, raw: &Spanned<RawAdmin>, base_dir: &Path) -> Option<Admin> {
    let a = raw.get_ref();
    c.at(
        raw,
        "the [admin] endpoint is not supported by this build yet",
    );
    let listen = socket_addr(c, &a.listen, "admin listen");
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && a.client_ca.is_none() {
            c.at(
                &a.listen,
                format!("[admin] listen {addr} is not a loopback address, so client_ca (client certificates) is required"),
            );
        }
    }
    match (&a.tls_cert, &a.tls_key) {
        (Some(cert), None) => c.at(cert, "tls_cert needs tls_key beside it"),
        (None, Some(key)) => c.at(key, "tls_key needs tls_cert beside it"),
        _ => {}
    }
    if let (Some(ca), None) = (&a.client_ca, &a.tls_cert) {
        c.at(
            ca,
            "client_ca needs tls_cert and tls_key: client certificates need TLS",
        );
    }
    let path = |v: &Option<Spanned<String>>| v.as_ref().map(|p| base_dir.join(p.get_ref()));
    Some(Admin {
        listen: listen?,
        tls_cert: path(&a.tls_cert),
        tls_key: path(&a.tls_key),
        client_ca: path(&a.client_ca),
    })
}
