//! The event schema (DESIGN.md "Events"): the exact shape of decision, close and reload
//! events, since SIEM pipelines parse them.

use super::*;
use crate::sniff::{sniff_server, HttpRequest, Meta, Side, SshBanner, TlsHello, Verdict};
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_860_000_123)
}

fn flow() -> Flow {
    Flow {
        source: "10.10.1.5:51234".parse().unwrap(),
        destination: "203.0.113.7:443".parse().unwrap(),
        listener: "redirect",
    }
}

fn decision<'a>(sniffed: Option<&'a Sniffed>, action: Action, reason: Reason) -> DecisionEvent<'a> {
    DecisionEvent {
        at: at(),
        flow: flow(),
        action,
        reason,
        segment: Some("workstations"),
        mode: Some(Mode::Block),
        rule_id: Some("workstations/allow[0]"),
        policy_version: "abc123",
        protocol: sniffed.map_or(Protocol::Unknown, |s| s.protocol),
        sniffed,
        detection: Detection::Matched,
        expected_protocols: &[Protocol::Tls],
        would_block: reason != Reason::Allowed && reason != Reason::ExemptDestination,
        server_protocol: None,
        capture: None,
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

#[test]
fn blocked_ssh_on_443_is_exactly_the_documented_event() {
    let ssh = Sniffed {
        protocol: Protocol::Ssh,
        side: Side::Client,
        meta: Meta::Ssh(SshBanner {
            banner: "SSH-2.0-OpenSSH_9.2p1".into(),
        }),
    };
    let event = parse(&decision(Some(&ssh), Action::Blocked, Reason::ProtocolNotAllowed).to_json());
    assert_eq!(
        event,
        json!({
            "@timestamp": "2026-11-28T10:00:00.123Z",
            "event": {"kind": "alert", "category": ["network", "intrusion_detection"],
                      "type": ["connection", "denied"], "action": "blocked",
                      "reason": "protocol_not_allowed", "outcome": "failure"},
            "source": {"ip": "10.10.1.5", "port": 51234},
            "destination": {"ip": "203.0.113.7", "port": 443},
            "network": {"transport": "tcp", "type": "ipv4", "protocol": "ssh", "name": "workstations"},
            "rule": {"id": "workstations/allow[0]", "ruleset": "workstations", "version": "abc123"},
            "threat": {"framework": "MITRE ATT&CK",
                       "technique": {"id": ["T1571"], "name": ["Non-Standard Port"]}},
            "portcullis": {"mode": "block", "expected_protocols": ["tls"], "would_block": true,
                           "detection": "matched", "listener": "redirect", "side": "client",
                           "ssh": {"banner": "SSH-2.0-OpenSSH_9.2p1"}}
        })
    );
}

#[test]
fn allowed_tls_and_http_carry_their_ecs_objects_and_no_threat() {
    let tls = Sniffed {
        protocol: Protocol::Tls,
        side: Side::Client,
        meta: Meta::Tls(TlsHello {
            server_name: Some("www.example.com".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            version: 0x0304,
            ja4: "t13d1516h2_8daaf6152771_e5627efa2ab1".into(),
            ..TlsHello::default()
        }),
    };
    let event = parse(&decision(Some(&tls), Action::Allowed, Reason::Allowed).to_json());
    assert_eq!(event["event"]["kind"], "event");
    assert_eq!(event["event"]["category"], json!(["network"]));
    assert!(event.get("threat").is_none());
    assert_eq!(
        event["tls"],
        json!({"client": {"server_name": "www.example.com", "ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1"},
               "next_protocol": "h2", "version": "1.3", "version_protocol": "tls"})
    );
    assert_eq!(
        event["portcullis"]["tls"],
        json!({"alpn": ["h2", "http/1.1"], "ech": false})
    );

    let http = Sniffed {
        protocol: Protocol::Http,
        side: Side::Client,
        meta: Meta::Http(HttpRequest {
            method: "GET".into(),
            host: Some("example.com".into()),
            user_agent: Some("curl/7.88.1".into()),
        }),
    };
    let event = parse(&decision(Some(&http), Action::Alerted, Reason::PortNotAllowed).to_json());
    assert_eq!(event["event"]["action"], "alerted");
    assert_eq!(event["event"]["kind"], "alert");
    assert_eq!(event["event"]["type"], json!(["connection", "allowed"]));
    assert_eq!(event["http"], json!({"request": {"method": "GET"}}));
    assert_eq!(event["url"], json!({"domain": "example.com"}));
    assert_eq!(event["user_agent"], json!({"original": "curl/7.88.1"}));
    assert_eq!(event["threat"]["technique"]["id"], json!(["T1571"]));
}

#[test]
fn smtp_server_banner_is_under_its_protocol_name_with_the_host() {
    // The greeting aiosmtpd sends, through the real server-side sniffer.
    let Verdict::Match(smtp) = sniff_server(b"220 mail.example.test Python SMTP 1.4.3\r\n") else {
        panic!("an SMTP greeting is identified");
    };
    let event =
        parse(&decision(Some(&smtp), Action::Blocked, Reason::ProtocolNotAllowed).to_json());
    assert_eq!(
        event,
        json!({
            "@timestamp": "2026-11-28T10:00:00.123Z",
            "event": {"kind": "alert", "category": ["network", "intrusion_detection"],
                      "type": ["connection", "denied"], "action": "blocked",
                      "reason": "protocol_not_allowed", "outcome": "failure"},
            "source": {"ip": "10.10.1.5", "port": 51234},
            "destination": {"ip": "203.0.113.7", "port": 443},
            "network": {"transport": "tcp", "type": "ipv4", "protocol": "smtp", "name": "workstations"},
            "rule": {"id": "workstations/allow[0]", "ruleset": "workstations", "version": "abc123"},
            "threat": {"framework": "MITRE ATT&CK",
                       "technique": {"id": ["T1571"], "name": ["Non-Standard Port"]}},
            "portcullis": {"mode": "block", "expected_protocols": ["tls"], "would_block": true,
                           "detection": "matched", "listener": "redirect", "side": "server",
                           "smtp": {"banner": "mail.example.test Python SMTP 1.4.3",
                                    "host": "mail.example.test"}}
        })
    );
}

#[test]
fn sniff_report_shows_a_banner_without_a_host_too() {
    let Verdict::Match(ftp) = sniff_server(b"220 (vsFTPd 3.0.3)\r\n") else {
        panic!("a vsftpd greeting is identified");
    };
    assert_eq!(
        parse(&sniff_report(Some(&ftp), "matched", 2121)),
        json!({"protocol": "ftp", "detection": "matched", "side": "server",
               "destination": {"port": 2121},
               "portcullis": {"side": "server", "ftp": {"banner": "(vsFTPd 3.0.3)"}}})
    );
}

#[test]
fn decisions_without_a_segment_or_sniffed_bytes_leave_those_fields_out() {
    let mut event = decision(None, Action::Blocked, Reason::NoSegment);
    event.segment = None;
    event.mode = None;
    event.rule_id = None;
    event.detection = Detection::Skipped;
    event.flow.destination = "[2001:db8::7]:22".parse().unwrap();
    let event = parse(&event.to_json());
    assert_eq!(event["rule"], json!({"version": "abc123"}));
    assert_eq!(
        event["network"],
        json!({"transport": "tcp", "type": "ipv6", "protocol": "unknown"})
    );
    assert_eq!(event["destination"]["ip"], "2001:db8::7");
    assert!(event["portcullis"].get("mode").is_none());
    assert!(event["portcullis"].get("side").is_none());
    assert!(
        event.get("threat").is_none(),
        "no_segment is not T1571 evidence"
    );
}

#[test]
fn close_event_has_bytes_duration_and_reason_and_no_threat() {
    let close = CloseEvent {
        at: at(),
        flow: flow(),
        segment: Some("workstations"),
        policy_version: "abc123",
        protocol: Protocol::Tls,
        client_bytes: 517,
        server_bytes: 4096,
        duration: Duration::from_micros(1500),
        reason: CloseReason::Completed,
    };
    assert_eq!(
        parse(&close.to_json()),
        json!({
            "@timestamp": "2026-11-28T10:00:00.123Z",
            "event": {"kind": "event", "category": ["network"], "type": ["connection", "end"],
                      "action": "closed", "duration": 1_500_000},
            "source": {"ip": "10.10.1.5", "port": 51234, "bytes": 517},
            "destination": {"ip": "203.0.113.7", "port": 443, "bytes": 4096},
            "network": {"transport": "tcp", "type": "ipv4", "protocol": "tls", "name": "workstations"},
            "rule": {"ruleset": "workstations", "version": "abc123"},
            "portcullis": {"close_reason": "completed", "listener": "redirect"}
        })
    );
}

#[test]
fn reload_events_name_the_version_and_the_error() {
    let ok = parse(&reload_event("v2", None));
    assert_eq!(ok["event"]["action"], "policy_reloaded");
    assert_eq!(ok["event"]["category"], json!(["configuration"]));
    assert_eq!(ok["rule"]["version"], "v2");
    let failed = parse(&reload_event(
        "v1",
        Some("policy/ws.toml:3:12: unknown protocol"),
    ));
    assert_eq!(failed["event"]["action"], "policy_reload_failed");
    assert_eq!(
        failed["error"]["message"],
        "policy/ws.toml:3:12: unknown protocol"
    );
    assert_eq!(failed["rule"]["version"], "v1");
}

#[test]
fn explicit_proxy_events_carry_the_requested_host_as_destination_domain() {
    let mut refused = decision(None, Action::Blocked, Reason::PortNotAllowed);
    refused.flow.listener = "http_proxy";
    let resolved = parse(&refused.to_json_for(Some("web.example.com")));
    assert_eq!(
        resolved["destination"],
        json!({"ip": "203.0.113.7", "port": 443, "domain": "web.example.com"})
    );
    assert_eq!(resolved["portcullis"]["listener"], "http_proxy");
    // Refused before the name was resolved: the address is unknown, so none is claimed.
    refused.flow.destination = "0.0.0.0:8088".parse().unwrap();
    let unresolved = parse(&refused.to_json_for(Some("web.example.com")));
    assert_eq!(
        unresolved["destination"],
        json!({"port": 8088, "domain": "web.example.com"})
    );
    let close = CloseEvent {
        at: at(),
        flow: refused.flow,
        segment: Some("workstations"),
        policy_version: "abc123",
        protocol: Protocol::Unknown,
        client_bytes: 0,
        server_bytes: 0,
        duration: Duration::from_micros(10),
        reason: CloseReason::Unresolved,
    };
    let close = parse(&close.to_json_for(Some("web.example.com")));
    assert_eq!(close["destination"]["domain"], "web.example.com");
    assert_eq!(close["portcullis"]["close_reason"], "unresolved");
    // Redirected connections never name a host.
    let plain = parse(&decision(None, Action::Allowed, Reason::Allowed).to_json());
    assert!(plain["destination"].get("domain").is_none());
}

#[test]
fn names_written_unescaped_need_no_escaping() {
    // Events copy these names as they are (json::Object::name): a quote or a control
    // character in one would break every line that carries it.
    let names = Protocol::ALL
        .iter()
        .map(|p| p.name())
        .chain(Reason::ALL.iter().map(|r| r.name()))
        .chain(Action::ALL.iter().map(|a| a.name()));
    for name in names {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'),
            "{name:?}"
        );
    }
}
