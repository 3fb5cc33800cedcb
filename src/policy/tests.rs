//! Table-driven decision tests (smokescreen style): each row is one connection and the
//! reason, action, segment and rule id the policy must give it.

use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::config::load_from_strs;
use Action::{Alerted, Allowed as Allow};
use Protocol::{Http, Ssh, Tls, Unknown};
use Reason::*;

const CONFIG: &str = "[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1:15001\"\n";

/// Block mode, unidentified traffic refused.
const WS: &str = r#"
segment = "ws"
sources = ["10.10.0.0/16", "fd00:10::/64"]
mode = "block"
on_unidentified = "block"
exempt_destinations = ["10.0.0.0/8", "fd00:99::/64"]

[[allow]]   # ws/allow[0]
ports = [443, 8443]
protocols = ["tls"]

[[allow]]   # ws/allow[1]
ports = ["8000-8099"]
protocols = ["http"]
destinations = ["203.0.113.0/24"]
server_names = ["*.example.com"]

[[allow]]   # ws/allow[2]
ports = "standard"
protocols = ["tls", "ssh"]

[[allow]]   # ws/allow[3]
ports = [9000]
protocols = ["unknown"]

[[allow]]   # ws/allow[4]
ports = [8180]
protocols = ["http"]
server_names = ["api.example.com"]

[[allow]]   # ws/allow[5]
ports = ["8000-8099"]
protocols = ["http"]
destinations = ["198.51.100.0/24"]
"#;

/// Monitor mode, unidentified traffic allowed; longer prefixes inside ws.
const LAB: &str = r#"
segment = "lab"
sources = ["10.10.5.0/24", "fd00:10::/80"]
mode = "monitor"
on_unidentified = "allow"

[[allow]]   # lab/allow[0]
ports = [443]
protocols = ["tls"]

[[allow]]   # lab/allow[1]
ports = [5000]
protocols = ["http"]
"#;

fn policy() -> Policy {
    load_from_strs("c.toml", CONFIG, &[("ws.toml", WS), ("lab.toml", LAB)])
        .unwrap()
        .policy
}

/// One connection per line: source, destination, detected protocol, server name (`-`:
/// none), admission (`ok`, `self`, `conns`, `rate`), then the expected reason, action,
/// segment, rule id and expected protocols (comma-separated; `-`: none).
const TABLE: &str = "
# Admission facts come first, whatever the segment says; monitor mode does not soften them.
10.10.1.5        10.10.1.1:15001           tls     -                 self  self_destination        blocked ws  -           -
10.10.1.5        203.0.113.7:443           tls     -                 conns connection_limit        blocked ws  -           -
192.0.2.1        203.0.113.7:443           tls     -                 rate  rate_limited            blocked -   -           -
10.10.5.9        203.0.113.7:443           tls     -                 rate  rate_limited            blocked lab -           -
192.0.2.1        203.0.113.7:443           tls     -                 ok    no_segment              blocked -   -           -
2001:db8::1      [2001:db8::2]:443         tls     -                 ok    no_segment              blocked -   -           -
# Exempt destinations are forwarded untouched, before the rules.
10.10.1.5        10.1.2.3:22               ssh     -                 ok    exempt_destination      allowed ws  -           -
fd00:10::1:0:0:5 [fd00:99::7]:13505        unknown -                 ok    exempt_destination      allowed ws  -           -
# Port, then protocol (T1571: ssh on 443).
10.10.1.5        203.0.113.7:443           tls     -                 ok    allowed                 allowed ws  ws/allow[0] tls
10.10.1.5        203.0.113.7:8443          tls     -                 ok    allowed                 allowed ws  ws/allow[0] tls
10.10.1.5        203.0.113.7:443           ssh     -                 ok    protocol_not_allowed    blocked ws  ws/allow[0] tls
10.10.1.5        203.0.113.7:8443          http    -                 ok    protocol_not_allowed    blocked ws  ws/allow[0] tls
10.10.1.5        203.0.113.7:13505         tls     -                 ok    port_not_allowed        blocked ws  -           -
# Standard ports: each protocol on its own catalogue ports only.
10.10.1.5        203.0.113.7:22            ssh     -                 ok    allowed                 allowed ws  ws/allow[2] ssh
10.10.1.5        203.0.113.7:993           tls     -                 ok    allowed                 allowed ws  ws/allow[2] tls
10.10.1.5        203.0.113.7:993           ssh     -                 ok    protocol_not_allowed    blocked ws  ws/allow[2] tls
10.10.1.5        203.0.113.7:22            tls     -                 ok    protocol_not_allowed    blocked ws  ws/allow[2] ssh
10.10.1.5        203.0.113.7:80            http    -                 ok    port_not_allowed        blocked ws  -           -
# Destinations, then server names; no server name known never matches server_names.
10.10.1.5        203.0.113.7:8050          http    www.example.com   ok    allowed                 allowed ws  ws/allow[1] http
10.10.1.5        198.51.100.9:8050         http    anything.test     ok    allowed                 allowed ws  ws/allow[5] http
10.10.1.5        192.0.2.9:8050            http    www.example.com   ok    destination_not_allowed blocked ws  ws/allow[1] http
10.10.1.5        203.0.113.7:8050          http    example.com       ok    server_name_not_allowed blocked ws  ws/allow[1] http
10.10.1.5        203.0.113.7:8050          http    -                 ok    server_name_not_allowed blocked ws  ws/allow[1] http
10.10.1.5        203.0.113.7:8180          http    API.Example.com.  ok    allowed                 allowed ws  ws/allow[4] http
10.10.1.5        203.0.113.7:8180          http    www.example.com   ok    server_name_not_allowed blocked ws  ws/allow[4] http
# Unknown: allowed where a rule lists it on the port, else on_unidentified decides.
10.10.1.5        203.0.113.7:9000          unknown -                 ok    allowed                 allowed ws  ws/allow[3] unknown
10.10.1.5        203.0.113.7:443           unknown -                 ok    unidentified_protocol   blocked ws  ws/allow[0] tls
10.10.1.5        203.0.113.7:13505         unknown -                 ok    port_not_allowed        blocked ws  -           -
10.10.1.5        203.0.113.7:9000          tls     -                 ok    protocol_not_allowed    blocked ws  ws/allow[3] unknown
# Longest prefix: 10.10.5.0/24 (lab, monitor) inside 10.10.0.0/16 (ws, block).
10.10.5.9        203.0.113.7:22            ssh     -                 ok    port_not_allowed        alerted lab -           -
10.10.5.9        203.0.113.7:443           ssh     -                 ok    protocol_not_allowed    alerted lab lab/allow[0] tls
10.10.5.9        203.0.113.7:443           tls     -                 ok    allowed                 allowed lab lab/allow[0] tls
10.10.5.9        203.0.113.7:5000          unknown -                 ok    allowed                 allowed lab -           http
# IPv6 and its longest prefix (fd00:10::/80 is lab).
fd00:10::1:0:0:5 [2001:db8::1]:443         tls     -                 ok    allowed                 allowed ws  ws/allow[0] tls
fd00:10::1:0:0:5 [2001:db8::1]:443         ssh     -                 ok    protocol_not_allowed    blocked ws  ws/allow[0] tls
fd00:10::5       [2001:db8::1]:443         ssh     -                 ok    protocol_not_allowed    alerted lab lab/allow[0] tls
# IPv4-mapped IPv6 (a dual-stack listener) is judged as IPv4.
::ffff:10.10.1.5 [::ffff:203.0.113.7]:8050 http    a.example.com     ok    allowed                 allowed ws  ws/allow[1] http
::ffff:10.10.1.5 [::ffff:10.1.2.3]:22      ssh     -                 ok    exempt_destination      allowed ws  -           -
";

const REASONS: [Reason; 11] = Reason::ALL;

struct Row<'a> {
    line: &'a str,
    source: IpAddr,
    destination: SocketAddr,
    protocol: Protocol,
    server_name: Option<&'a str>,
    admission: Admission,
    reason: Reason,
    action: Action,
    segment: Option<&'a str>,
    rule: Option<&'a str>,
    expected: Vec<Protocol>,
}

fn rows() -> Vec<Row<'static>> {
    let dash = |s: &'static str| (s != "-").then_some(s);
    TABLE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 10, "{line}");
            Row {
                line,
                source: f[0].parse().unwrap(),
                destination: f[1].parse().unwrap(),
                protocol: Protocol::from_name(f[2]).unwrap(),
                server_name: dash(f[3]),
                admission: match f[4] {
                    "ok" => Admission::Admitted,
                    "self" => Admission::SelfDestination,
                    "conns" => Admission::ConnectionLimit,
                    "rate" => Admission::RateLimited,
                    other => panic!("admission {other}"),
                },
                reason: *REASONS.iter().find(|r| r.name() == f[5]).unwrap(),
                action: *Action::ALL.iter().find(|a| a.name() == f[6]).unwrap(),
                segment: dash(f[7]),
                rule: dash(f[8]),
                expected: dash(f[9]).map_or(Vec::new(), |list| {
                    list.split(',')
                        .map(|p| Protocol::from_name(p).unwrap())
                        .collect()
                }),
            }
        })
        .collect()
}

#[test]
fn decision_table() {
    let p = policy();
    for r in rows() {
        let d = p.decide(&Request {
            source: r.source,
            destination: r.destination,
            protocol: r.protocol,
            server_name: r.server_name,
            admission: r.admission,
        });
        let what = r.line;
        assert_eq!(d.reason, r.reason, "{what}");
        assert_eq!(d.action, r.action, "{what}");
        assert_eq!(p.segment(&d).map(|s| s.name.as_str()), r.segment, "{what}");
        assert_eq!(p.rule(&d).map(|rule| rule.id.as_str()), r.rule, "{what}");
        assert_eq!(d.expected_protocols, r.expected, "{what}");
        let refusal = !matches!(r.reason, Reason::Allowed | Reason::ExemptDestination);
        assert_eq!(d.would_block(), refusal, "{what}");
        assert_eq!(d.is_alert(), refusal, "{what}");
    }
}

#[test]
fn every_reason_and_action_is_in_the_table() {
    let table = rows();
    assert!(table.len() >= 30);
    for reason in REASONS {
        assert!(
            table.iter().any(|r| r.reason == reason),
            "{}",
            reason.name()
        );
    }
    for action in Action::ALL {
        assert!(
            table.iter().any(|r| r.action == action),
            "{}",
            action.name()
        );
    }
}

#[test]
fn gate_inspects_only_what_it_cannot_decide() {
    let p = policy();
    let src = "10.10.1.5".parse().unwrap();
    let ws = p.segments.iter().position(|s| s.name == "ws").unwrap();
    assert_eq!(
        p.gate(src, "203.0.113.7:443".parse().unwrap(), Admission::Admitted),
        Gate::Inspect { segment: ws }
    );
    let Gate::Decided(d) = p.gate(src, "10.9.9.9:443".parse().unwrap(), Admission::Admitted) else {
        panic!("exempt destination must be decided at the gate")
    };
    assert_eq!((d.reason, d.action), (ExemptDestination, Allow));
    // Admission wins over the exemption.
    let Gate::Decided(d) = p.gate(src, "10.9.9.9:443".parse().unwrap(), Admission::RateLimited)
    else {
        panic!("rate limited must be decided at the gate")
    };
    assert_eq!(d.reason, RateLimited);
}

#[test]
fn segment_for_picks_the_longest_prefix() {
    let p = policy();
    let name = |ip: &str| {
        p.segment_for(ip.parse().unwrap())
            .map(|i| p.segments[i].name.as_str())
    };
    assert_eq!(name("10.10.0.1"), Some("ws"));
    assert_eq!(name("10.10.5.0"), Some("lab"));
    assert_eq!(name("10.10.5.255"), Some("lab"));
    assert_eq!(name("10.10.6.0"), Some("ws"));
    assert_eq!(name("10.11.0.0"), None);
    assert_eq!(name("fd00:10::1"), Some("lab"));
    assert_eq!(name("fd00:10::1:0:0:1"), Some("ws"));
    assert_eq!(name("fd00:11::1"), None);
}

#[test]
fn embedded_default_is_application_default() {
    let p = crate::config::load_embedded().unwrap().policy;
    let d = |dst: &str, protocol| {
        p.decide(&Request {
            source: "192.0.2.10".parse().unwrap(),
            destination: dst.parse().unwrap(),
            protocol,
            server_name: None,
            admission: Admission::Admitted,
        })
    };
    let ok = d("203.0.113.7:443", Tls);
    assert_eq!((ok.reason, ok.action), (Allowed, Allow));
    assert_eq!(p.rule(&ok).map(|r| r.id.as_str()), Some("default/allow[0]"));
    let ssh_on_443 = d("203.0.113.7:443", Ssh);
    assert_eq!(
        (ssh_on_443.reason, ssh_on_443.action),
        (ProtocolNotAllowed, Alerted)
    );
    // Port 80 is standard for http and http2.
    assert_eq!(
        d("203.0.113.7:80", Tls).expected_protocols,
        [Http, Protocol::Http2]
    );
    let unknown = d("203.0.113.7:443", Unknown);
    assert_eq!(
        (unknown.reason, unknown.action),
        (UnidentifiedProtocol, Alerted)
    );
    let odd = d("203.0.113.7:13505", Tls);
    assert_eq!((odd.reason, odd.action), (PortNotAllowed, Alerted));
    let v6 = p.decide(&Request {
        source: "2001:db8::5".parse().unwrap(),
        destination: "[2001:db8::1]:22".parse().unwrap(),
        protocol: Ssh,
        server_name: None,
        admission: Admission::Admitted,
    });
    assert_eq!(v6.reason, Allowed);
}

#[test]
fn decision_serializes_with_contract_names() {
    let d = Decision {
        action: Alerted,
        reason: ProtocolNotAllowed,
        segment: Some(0),
        rule: Some(0),
        expected_protocols: vec![Tls],
    };
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(
        json,
        r#"{"action":"alerted","reason":"protocol_not_allowed","segment":0,"rule":0,"expected_protocols":["tls"]}"#
    );
}

/// `reconcile`: the server's first turn confirms, names, or contradicts the client's.
#[test]
fn both_sides_must_agree() {
    let p = policy();
    let judge = |source: &str, destination: &str, client: Protocol, server: Protocol| {
        let destination: SocketAddr = destination.parse().unwrap();
        let first = p.decide(&Request {
            source: source.parse().unwrap(),
            destination,
            protocol: client,
            server_name: None,
            admission: Admission::Admitted,
        });
        assert!(first.action.forwards(), "{source} {destination} {client:?}");
        let d = p.reconcile(first, client, destination, server);
        (d.reason, d.action, p.rule(&d).map(|r| r.id.clone()))
    };
    let rule = |id: &str| Some(id.to_owned());
    // The same protocol on both sides, or a server turn nobody can name: the client's verdict.
    assert_eq!(
        judge("10.10.1.5", "203.0.113.7:22", Ssh, Ssh),
        (Allowed, Allow, rule("ws/allow[2]"))
    );
    assert_eq!(
        judge("10.10.1.5", "203.0.113.7:443", Tls, Unknown),
        (Allowed, Allow, rule("ws/allow[0]"))
    );
    // An HTTP request answered with an SSH banner: a mismatch, not an allow.
    assert_eq!(
        judge("10.10.1.5", "198.51.100.9:8050", Http, Ssh),
        (ProtocolNotAllowed, Action::Blocked, rule("ws/allow[5]"))
    );
    // Monitor mode lets it through with an alert.
    assert_eq!(
        judge("10.10.5.9", "203.0.113.7:443", Tls, Ssh),
        (ProtocolNotAllowed, Alerted, rule("lab/allow[0]"))
    );
    // An unidentified client turn that was allowed: the server's protocol is judged.
    assert_eq!(
        judge("10.10.1.5", "203.0.113.7:9000", Unknown, Ssh),
        (ProtocolNotAllowed, Action::Blocked, rule("ws/allow[3]"))
    );
    assert_eq!(
        judge("10.10.5.9", "203.0.113.7:5000", Unknown, Http),
        (Allowed, Allow, rule("lab/allow[1]"))
    );
}
