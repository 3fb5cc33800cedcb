//! Loader tests: the embedded default, the shipped policy, and broken files under
//! `tests/fixtures/config/` that must fail with exact `FILE:LINE:COL: message` lines.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::policy::{Mode, OnUnidentified, Ports, Reason, Refuse};
use crate::sniff::Protocol;

const FIXTURES: &str = "tests/fixtures/config";
const EXPECTED_PROTOCOLS: &str = "expected one of tls, http, http2, ssh, smtp, ftp, pop3, imap, dns, rdp, smb, mysql, postgresql, redis, mqtt, socks4, socks5, bittorrent, openvpn, xmpp, irc, ldap, kerberos, telnet, vnc, rtsp, sip, mongodb, amqp, mssql, nntp, rtmp, git, rsync, memcached, nats, kafka, dcerpc, cassandra, unknown";

fn fixture(dir: &str) -> Result<Loaded, Problems> {
    load(Some(Path::new(&format!(
        "{FIXTURES}/{dir}/portcullis.toml"
    ))))
}

/// Loads fixture `dir`, which must fail, and checks every problem line; `expected` lines
/// are relative to the fixture directory.
fn assert_problems(dir: &str, expected: &[&str]) {
    let problems = match fixture(dir) {
        Ok(_) => panic!("{dir} loaded but should not have"),
        Err(p) => p,
    };
    let got: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
    let want: Vec<String> = expected
        .iter()
        .map(|l| format!("{FIXTURES}/{dir}/{l}"))
        .collect();
    assert_eq!(got, want, "{dir}");
}

#[test]
fn bad_protocol_names_what_is_allowed() {
    assert_problems(
        "bad-protocol",
        &[&format!(
            "policy/ws.toml:7:21: unknown protocol \"sshh\"; {EXPECTED_PROTOCOLS}"
        )],
    );
}

#[test]
fn same_prefix_in_two_segments_names_both_files() {
    assert_problems(
        "dup-prefix",
        &[&format!("policy/b.toml:2:28: source fd00:10::/64 is also a source of segment \"a\" ({FIXTURES}/dup-prefix/policy/a.toml:2:28); each prefix belongs to one segment")],
    );
}

#[test]
fn duplicate_segment_names() {
    assert_problems(
        "dup-name",
        &[&format!("policy/b.toml:1:11: segment name \"a\" is already used in {FIXTURES}/dup-name/policy/a.toml:1:11")],
    );
}

#[test]
fn toml_syntax_error_and_other_files_still_checked() {
    assert_problems(
        "toml-syntax",
        &[
            "policy/a.toml:3:1: missing comma between array elements, expected `,`",
            "policy/b.toml:3:8: unknown mode \"drop\"; expected one of block, monitor",
        ],
    );
}

#[test]
fn every_unknown_field_and_wrong_type_in_every_file() {
    let segment_fields = "expected one of `segment`, `sources`, `mode`, `on_unidentified`, `refuse`, `exempt_destinations`, `allow`";
    assert_problems(
        "unknown-field",
        &[
            &format!("policy/a.toml:2:1: unknown field `sorces`, {segment_fields}"),
            &format!("policy/b.toml:4:1: unknown field `exempt_destination`, {segment_fields}"),
            "policy/b.toml:5:19: invalid type: integer `1`, expected a string",
            "policy/b.toml:9:1: unknown field `protocol`, expected one of `ports`, `protocols`, `destinations`, `server_names`",
            "policy/b.toml:10:16: invalid type: string \"api.example.com\", expected a sequence",
        ],
    );
}

#[test]
fn every_bad_port_is_reported() {
    let shape = "ports must be a non-empty list of ports and \"LOW-HIGH\" ranges or the string \"standard\"";
    let range = "expected a port 1-65535 or a range \"LOW-HIGH\" like \"8000-8099\"";
    assert_problems(
        "bad-ports",
        &[
            "policy/ws.toml:6:10: port 0 is out of range; expected 1-65535",
            "policy/ws.toml:6:18: port 70000 is out of range; expected 1-65535",
            "policy/ws.toml:6:25: port range \"9000-8000\" is reversed; did you mean \"8000-9000\"?",
            &format!("policy/ws.toml:6:38: invalid port range \"80-\"; {range}"),
            "policy/ws.toml:6:45: port range \"1-65536\" is out of range; expected ports 1-65535",
            &format!("policy/ws.toml:6:56: a port cannot be a boolean; {range}"),
            &format!("policy/ws.toml:10:9: {shape}, not an empty list"),
            &format!("policy/ws.toml:14:9: {shape}, not \"any\""),
            &format!("policy/ws.toml:18:9: {shape}, not a single number"),
            "policy/ws.toml:23:14: protocol \"unknown\" has no standard ports; list its ports explicitly in another [[allow]]",
        ],
    );
}

#[test]
fn one_file_with_many_problems_reports_them_all() {
    let cidr = "expected CIDR like \"10.0.0.0/8\" or \"fd00::/8\", or a single address";
    let pattern = "expected a name like \"api.example.com\" or a wildcard like \"*.example.com\" (letters, digits, '-' and '_' in dot-separated labels)";
    assert_problems(
        "many-problems",
        &[
            "policy/ws.toml:1:11: invalid segment name \"work stations\"; expected 1-64 letters, digits, '-', '_' or '.'",
            "policy/ws.toml:2:12: 10.10.0.1/16 has host bits set; did you mean 10.10.0.0/16?",
            &format!("policy/ws.toml:2:28: invalid address prefix \"10.300.0.0/16\"; {cidr}"),
            "policy/ws.toml:2:61: source fd00:10::/64 is listed twice",
            "policy/ws.toml:3:8: unknown mode \"blok\"; expected one of block, monitor",
            "policy/ws.toml:4:19: unknown on_unidentified \"pass\"; expected one of block, allow",
            "policy/ws.toml:5:10: unknown refuse \"drop\"; expected one of reset, native",
            &format!("policy/ws.toml:6:24: invalid address prefix \"10.0.0.0/33\"; {cidr}"),
            &format!("policy/ws.toml:10:21: unknown protocol \"sshh\"; {EXPECTED_PROTOCOLS}"),
            &format!("policy/ws.toml:10:29: unknown protocol \"HTTP\"; {EXPECTED_PROTOCOLS}"),
            "policy/ws.toml:11:17: 203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?",
            &format!("policy/ws.toml:12:17: invalid server name pattern \"*example.com\"; {pattern}"),
            &format!("policy/ws.toml:12:33: invalid server name pattern \"api..example.com\"; {pattern}"),
            "policy/ws.toml:14:1: this [[allow]] has no ports; expected a list of ports or \"standard\"",
            "policy/ws.toml:15:13: protocols must list at least one protocol, like [\"tls\"]",
        ],
    );
}

#[test]
fn every_config_problem_is_reported() {
    assert_problems(
        "bad-config",
        &[
            "portcullis.toml:10:10: listen address 127.0.0.1:15001 is already used by the listener on line 6",
            "portcullis.toml:13:8: a forward listener needs upstream = \"IP:PORT\"",
            "portcullis.toml:19:12: upstream is only for forward listeners, not \"redirect\"",
            "portcullis.toml:23:12: upstream is only for forward listeners, not \"socks5\"",
            "portcullis.toml:26:8: unknown listener mode \"udp\"; expected one of redirect, tproxy, forward, http_proxy, socks5",
            "portcullis.toml:27:10: invalid listen address \"localhost:15005\"; expected IP:PORT like \"0.0.0.0:15001\" or \"[::]:15001\"",
            "portcullis.toml:30:19: detect.client_first_ms (6000) is larger than detect.timeout_ms (5000); the server's banner would never be read",
            "portcullis.toml:32:13: detect.max_bytes = 100 is out of range; expected 16389 to 1048576 (a full TLS record and its header must fit; at most 1 MiB)",
            "portcullis.toml:35:8: invalid events.sink \"syslog\"; expected \"stdout\" or \"file:PATH\"",
            "portcullis.toml:38:19: limits.max_connections = 0 is out of range; expected 1 to 4294967295",
            "portcullis.toml:39:19: limits.idle_timeout_ms = -1 is out of range; expected 1 to 86400000",
            "portcullis.toml:42:10: [admin] listen 0.0.0.0:9901 is not a loopback address, so client_ca (client certificates) is required",
            "portcullis.toml:43:12: tls_cert needs tls_key beside it",
            &format!("portcullis.toml:43:12: cannot read tls_cert {FIXTURES}/bad-config/certs/admin.pem: No such file or directory (os error 2)"),
        ],
    );
}

#[test]
fn no_listener() {
    assert_problems(
        "no-listener",
        &["portcullis.toml:1:1: no [[listener]]; at least one is needed"],
    );
}

#[test]
fn empty_sources_and_rule_without_ports() {
    assert_problems(
        "empty-sources",
        &[
            "policy/ws.toml:2:11: sources must list at least one prefix, like \"10.10.0.0/16\"",
            "policy/ws.toml:5:1: this [[allow]] has no ports; expected a list of ports or \"standard\"",
        ],
    );
}

#[test]
fn bad_catalogue_override() {
    assert_problems(
        "bad-services",
        &[
            &format!("policy/services.toml:2:1: unknown protocol \"sshh\"; {EXPECTED_PROTOCOLS}"),
            "policy/services.toml:3:1: \"unknown\" has no standard ports; it cannot be in services.toml",
            "policy/services.toml:4:7: ports must be a list of ports and \"LOW-HIGH\" ranges, not \"standard\"",
            "policy/services.toml:5:9: port 0 is out of range; expected 1-65535",
        ],
    );
}

#[test]
fn missing_policy_dir_points_at_the_setting() {
    assert_problems(
        "missing-dir",
        &[&format!("portcullis.toml:2:14: cannot read policy_dir {FIXTURES}/missing-dir/nowhere: No such file or directory (os error 2)")],
    );
}

#[test]
fn unreadable_config_file() {
    let err = load(Some(Path::new("tests/fixtures/config/absent.toml"))).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(
        err.to_string()
            .starts_with("tests/fixtures/config/absent.toml:1:1: cannot read: "),
        "{err}"
    );
}

#[test]
fn embedded_default_is_application_default_in_monitor_mode() {
    let loaded = load_embedded().unwrap();
    let c = &loaded.config;
    assert_eq!(c.path, PathBuf::from("<embedded>"));
    assert_eq!(c.policy_dir, None);
    let listens: Vec<String> = c.listeners.iter().map(|l| l.listen.to_string()).collect();
    assert_eq!(listens, ["0.0.0.0:15001", "[::]:15001"]);
    assert!(c.listeners.iter().all(|l| l.mode == ListenerMode::Redirect));
    assert_eq!(c.events.sink, Sink::Stdout);
    assert_eq!(c.admin, None);
    // DESIGN.md defaults.
    assert_eq!(
        c.detect,
        Detect {
            client_first: Duration::from_millis(250),
            timeout: Duration::from_millis(5000),
            max_bytes: 16389,
        }
    );
    assert_eq!(
        c.limits,
        Limits {
            max_connections: 10_000,
            max_connections_per_source: 1000,
            rate_per_source: 100,
            rate_burst_per_source: 200,
            connect_timeout: Duration::from_millis(5000),
            idle_timeout: Duration::from_millis(600_000),
            drain: Duration::from_millis(30_000),
        }
    );
    let p = &loaded.policy;
    assert_eq!(p.segments.len(), 1);
    let seg = &p.segments[0];
    assert_eq!(seg.name, "default");
    let sources: Vec<String> = seg.sources.iter().map(ToString::to_string).collect();
    assert_eq!(sources, ["0.0.0.0/0", "::/0"]);
    assert_eq!(seg.mode, Mode::Monitor);
    assert_eq!(seg.on_unidentified, OnUnidentified::Block);
    assert_eq!(seg.refuse, Refuse::Reset);
    assert_eq!(seg.rules.len(), 1);
    assert_eq!(seg.rules[0].id, "default/allow[0]");
    assert_eq!(seg.rules[0].ports, Ports::Standard);
    let every_known: Vec<Protocol> = Protocol::ALL
        .into_iter()
        .filter(|p| *p != Protocol::Unknown)
        .collect();
    assert_eq!(seg.rules[0].protocols, every_known);
}

#[test]
fn builtin_catalogue_covers_every_protocol_but_unknown() {
    let p = load_embedded().unwrap().policy;
    for protocol in Protocol::ALL {
        let ports = p.catalogue.ports(protocol);
        if protocol == Protocol::Unknown {
            assert!(ports.is_none());
        } else {
            assert!(
                ports.is_some_and(|s| !s.is_empty()),
                "{protocol} has no standard port"
            );
        }
    }
    let tls = p.catalogue.ports(Protocol::Tls).unwrap();
    for port in [
        443, 465, 563, 636, 853, 989, 990, 993, 995, 5061, 5671, 6697, 8883,
    ] {
        assert!(tls.contains(port), "tls {port}");
    }
    assert_eq!(
        p.catalogue.ports(Protocol::Http).unwrap().to_string(),
        "80,8080"
    );
    assert_eq!(p.catalogue.ports(Protocol::Ssh).unwrap().to_string(), "22");
}

#[test]
fn shipped_policy_loads() {
    let loaded = fixture("shipped").unwrap();
    let names: Vec<&str> = loaded
        .policy
        .segments
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["servers", "workstations"]);
    assert_eq!(
        loaded.config.policy_dir,
        Some(PathBuf::from(format!(
            "{FIXTURES}/shipped/../../../../policy"
        )))
    );
    // The shipped services.toml is the built-in catalogue: overriding with it changes nothing.
    let embedded = load_embedded().unwrap().policy;
    assert_eq!(loaded.policy.catalogue, embedded.catalogue);
}

#[test]
fn catalogue_override_replaces_only_the_protocols_it_names() {
    let loaded = fixture("override").unwrap();
    let p = &loaded.policy;
    assert_eq!(
        p.catalogue.ports(Protocol::Ssh).unwrap().to_string(),
        "2222"
    );
    assert!(p.catalogue.ports(Protocol::Tls).unwrap().contains(443));
    let src = "10.10.1.5".parse().unwrap();
    let decide = |dst: &str, protocol| {
        let gate = p.gate(
            src,
            dst.parse().unwrap(),
            crate::policy::Admission::Admitted,
        );
        let crate::policy::Gate::Inspect { segment } = gate else {
            panic!("not inspected: {gate:?}")
        };
        p.decide_rules(segment, dst.parse().unwrap(), protocol, None)
            .reason
    };
    assert_eq!(decide("203.0.113.7:2222", Protocol::Ssh), Reason::Allowed);
    assert_eq!(
        decide("203.0.113.7:22", Protocol::Ssh),
        Reason::PortNotAllowed
    );
    assert_eq!(decide("203.0.113.7:443", Protocol::Tls), Reason::Allowed);
}

const MINIMAL: &str = "[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1:15001\"\n";
const SEGMENT: &str = "segment = \"a\"\nsources = [\"10.0.0.0/8\"]\nmode = \"block\"\n\n[[allow]]\nports = [443]\nprotocols = [\"tls\"]\n";

#[test]
fn version_depends_only_on_policy_content() {
    let v = |files: &[(&str, &str)]| {
        load_from_strs("c.toml", MINIMAL, files)
            .unwrap()
            .policy
            .version
    };
    let a = v(&[("a.toml", SEGMENT)]);
    assert_eq!(a.len(), 64);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    // Same files: same version, whatever order they are given in.
    assert_eq!(a, v(&[("a.toml", SEGMENT)]));
    let other = SEGMENT
        .replace("\"a\"", "\"b\"")
        .replace("10.0.0.0/8", "192.168.0.0/16");
    let two = v(&[("a.toml", SEGMENT), ("b.toml", &other)]);
    let two_swapped = v(&[("b.toml", &other), ("a.toml", SEGMENT)]);
    assert_eq!(two, two_swapped);
    // A changed byte, a renamed file or a catalogue override: another version.
    assert_ne!(a, v(&[("a.toml", &SEGMENT.replace("443", "444"))]));
    assert_ne!(a, v(&[("b.toml", SEGMENT)]));
    assert_ne!(
        a,
        v(&[("a.toml", SEGMENT), ("services.toml", "ssh = [2222]\n")])
    );
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let cfg = format!("{MINIMAL}\n[events]\nsink = \"file:events/portcullis.json\"\n");
    let loaded = load_from_strs(
        "/etc/portcullis/portcullis.toml",
        &cfg,
        &[("a.toml", SEGMENT)],
    )
    .unwrap();
    assert_eq!(
        loaded.config.events.sink,
        Sink::File(PathBuf::from("/etc/portcullis/events/portcullis.json"))
    );
}

#[test]
fn forward_listener_with_upstream_and_custom_limits() {
    let cfg = "[[listener]]\nmode = \"forward\"\nlisten = \"127.0.0.1:15002\"\nupstream = \"127.0.0.1:8443\"\n\n[detect]\nclient_first_ms = 100\ntimeout_ms = 100\nmax_bytes = 1048576\n\n[limits]\ndrain_ms = 0\nrate_per_source = 5\n";
    let c = load_from_strs("c.toml", cfg, &[("a.toml", SEGMENT)])
        .unwrap()
        .config;
    assert_eq!(c.listeners[0].mode.name(), "forward");
    assert_eq!(
        c.listeners[0].upstream,
        Some("127.0.0.1:8443".parse().unwrap())
    );
    assert_eq!(c.detect.max_bytes, 1 << 20);
    assert_eq!(c.limits.drain, Duration::ZERO);
    assert_eq!(c.limits.rate_per_source, 5);
    assert_eq!(c.limits.rate_burst_per_source, 200);
}

#[test]
fn config_and_policy_problems_are_reported_together() {
    let cfg = "[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1\"\n";
    let err = load_from_strs(
        "c.toml",
        cfg,
        &[("a.toml", "segment = \"a\"\nmode = \"block\"\n")],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.toml:3:10: invalid listen address \"127.0.0.1\"; expected IP:PORT like \"0.0.0.0:15001\" or \"[::]:15001\"\n\
         a.toml:1:1: missing sources = [\"PREFIX\", ...]: the source addresses of this segment"
    );
}

#[test]
fn policy_serializes_readably() {
    let p = load_from_strs("c.toml", MINIMAL, &[("a.toml", SEGMENT)])
        .unwrap()
        .policy;
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["segments"][0]["mode"], "block");
    assert_eq!(json["segments"][0]["sources"][0], "10.0.0.0/8");
    assert_eq!(json["segments"][0]["rules"][0]["id"], "a/allow[0]");
    assert_eq!(json["segments"][0]["rules"][0]["ports"]["set"][0], 443);
    assert_eq!(json["segments"][0]["rules"][0]["protocols"][0], "tls");
    assert_eq!(json["catalogue"]["ssh"][0], 22);
    assert_eq!(json["version"], p.version.as_str());
}

#[test]
fn policy_dir_reads_only_toml_files_directly_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("rules");
    std::fs::create_dir_all(policy.join("old")).unwrap();
    let cfg = format!("policy_dir = \"rules\"\n{MINIMAL}");
    std::fs::write(dir.path().join("portcullis.toml"), cfg).unwrap();
    std::fs::write(policy.join("a.toml"), SEGMENT).unwrap();
    std::fs::write(policy.join("README.md"), "not a segment").unwrap();
    std::fs::write(policy.join("a.toml.bak"), "not = toml = at all").unwrap();
    std::fs::write(policy.join("old").join("b.toml"), "broken [").unwrap();
    let loaded = load(Some(&dir.path().join("portcullis.toml"))).unwrap();
    assert_eq!(loaded.config.policy_dir, Some(policy.clone()));
    assert_eq!(loaded.policy.segments.len(), 1);

    // A directory with only a catalogue has no segment: that is a problem, at policy_dir.
    std::fs::remove_file(policy.join("a.toml")).unwrap();
    std::fs::write(policy.join("services.toml"), "ssh = [22]\n").unwrap();
    let err = load(Some(&dir.path().join("portcullis.toml"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1:14: no segment files (*.toml) in policy_dir {}",
            dir.path().join("portcullis.toml").display(),
            policy.display()
        )
    );
}

/// `[admin]` tables (paths relative to the crate root, where the dev certificates are) and
/// the exact problems each must produce; an empty list means valid.
#[test]
fn admin_endpoint_validation() {
    let listener = "[[listener]]\nmode = \"redirect\"\nlisten = \"0.0.0.0:15001\"\n\n";
    let segment = "segment = \"a\"\nsources = [\"10.0.0.0/8\"]\nmode = \"block\"\n";
    let cases: &[(&str, &[&str])] = &[
        ("listen = \"127.0.0.1:9901\"", &[]),
        ("listen = \"[::1]:9901\"", &[]),
        (
            "listen = \"127.0.0.1:9901\"\ntls_cert = \"certs/admin.pem\"\ntls_key = \"certs/admin-key.pem\"",
            &[],
        ),
        (
            "listen = \"0.0.0.0:9901\"\ntls_cert = \"certs/admin.pem\"\ntls_key = \"certs/admin-key.pem\"\nclient_ca = \"certs/ca.pem\"",
            &[],
        ),
        (
            "listen = \"10.0.0.1:9901\"\ntls_cert = \"certs/admin.pem\"\ntls_key = \"certs/admin-key.pem\"",
            &["portcullis.toml:6:10: [admin] listen 10.0.0.1:9901 is not a loopback address, so client_ca (client certificates) is required"],
        ),
        (
            "listen = \"127.0.0.1:9901\"\ntls_key = \"certs/admin-key.pem\"",
            &["portcullis.toml:7:11: tls_key needs tls_cert beside it"],
        ),
        (
            "listen = \"127.0.0.1:9901\"\nclient_ca = \"certs/ca.pem\"",
            &["portcullis.toml:7:13: client_ca needs tls_cert and tls_key: client certificates need TLS"],
        ),
        (
            "listen = \"localhost:9901\"",
            &["portcullis.toml:6:10: invalid admin listen address \"localhost:9901\"; expected IP:PORT like \"0.0.0.0:15001\" or \"[::]:15001\""],
        ),
        (
            "listen = \"127.0.0.1:9901\"\ntls_cert = \"certs/admin-key.pem\"\ntls_key = \"certs/admin.pem\"",
            &[
                "portcullis.toml:7:12: tls_cert certs/admin-key.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                "portcullis.toml:8:11: tls_key certs/admin.pem holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            ],
        ),
        (
            "listen = \"127.0.0.1:9901\"\ntls_cert = \"certs/admin.pem\"\ntls_key = \"certs/nothing-key.pem\"",
            &["portcullis.toml:8:11: cannot read tls_key certs/nothing-key.pem: No such file or directory (os error 2)"],
        ),
    ];
    for (admin, expected) in cases {
        let config = format!("{listener}[admin]\n{admin}\n");
        let got = match load_from_strs("portcullis.toml", &config, &[("a.toml", segment)]) {
            Ok(loaded) => {
                assert!(loaded.config.admin.is_some());
                Vec::new()
            }
            Err(p) => p.0.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(got, *expected, "{admin}");
    }
}
