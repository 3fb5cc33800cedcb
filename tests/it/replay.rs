//! `portcullis replay` on captures recorded from real clients and servers
//! (tests/fixtures/pcap/record.sh): one decision event per flow, the live event schema, a
//! summary on stderr, damaged files reported by name without stopping the run; and, in the
//! namespace lab, replayed verdicts equal to the ones the live gateway gave.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::ConfigDir;

const CONFIG: &str = "policy_dir = \"policy\"\n\n[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1:15001\"\n\n[detect]\ntimeout_ms = 2000\n";

/// Loopback is one monitor segment: TLS on 443/8443, HTTP on 8080, SSH on 2222.
const SEGMENT: &str = "segment = \"loopback\"\nsources = [\"127.0.0.0/8\", \"::1/128\"]\nmode = \"monitor\"\non_unidentified = \"block\"\n\n[[allow]]\nports = [443, 8443]\nprotocols = [\"tls\"]\n\n[[allow]]\nports = [8080]\nprotocols = [\"http\"]\n\n[[allow]]\nports = [2222]\nprotocols = [\"ssh\"]\n";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pcap")
        .join(name)
        .display()
        .to_string()
}

fn replay(files: &[&str]) -> (Output, Vec<Value>) {
    let cfg = ConfigDir::new(CONFIG, &[("loopback.toml", SEGMENT)]);
    let paths: Vec<String> = files.iter().map(|f| fixture(f)).collect();
    let mut args = vec!["replay"];
    args.extend(paths.iter().map(String::as_str));
    let out = cfg.portcullis(&args);
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out, events)
}

fn s<'a>(e: &'a Value, pointer: &str) -> &'a str {
    e.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// (destination port, network.type, protocol, reason, detection) of every event, sorted.
fn verdicts(events: &[Value]) -> Vec<(u64, String, String, String, String)> {
    let mut v: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.pointer("/destination/port")
                    .and_then(Value::as_u64)
                    .unwrap(),
                s(e, "/network/type").to_owned(),
                s(e, "/network/protocol").to_owned(),
                s(e, "/event/reason").to_owned(),
                s(e, "/portcullis/detection").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn v(port: u64, ip: &str, proto: &str, reason: &str) -> (u64, String, String, String, String) {
    (
        port,
        ip.into(),
        proto.into(),
        reason.into(),
        "matched".into(),
    )
}

#[test]
fn replay_judges_each_flow_of_a_loopback_capture_like_the_gateway() {
    let (out, events) = replay(&["lo-mixed.pcap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        verdicts(&events),
        vec![
            v(443, "ipv4", "ssh", "protocol_not_allowed"),
            v(2222, "ipv4", "ssh", "allowed"),
            v(2222, "ipv6", "ssh", "allowed"),
            v(8080, "ipv4", "http", "allowed"),
            v(8080, "ipv6", "http", "allowed"),
            v(8443, "ipv4", "tls", "allowed"),
            v(8443, "ipv6", "tls", "allowed"),
        ]
    );
    for e in &events {
        assert_eq!(s(e, "/portcullis/listener"), "replay", "{e:#}");
        assert!(
            s(e, "/portcullis/replay/file").ends_with("lo-mixed.pcap"),
            "{e:#}"
        );
        assert!(s(e, "/@timestamp").starts_with("20"), "{e:#}");
        assert_eq!(s(e, "/network/name"), "loopback", "{e:#}");
    }
    let t1571 = events
        .iter()
        .find(|e| s(e, "/event/reason") == "protocol_not_allowed")
        .unwrap();
    assert_eq!(
        s(t1571, "/event/action"),
        "alerted",
        "monitor mode: {t1571:#}"
    );
    assert_eq!(s(t1571, "/event/kind"), "alert");
    assert!(s(t1571, "/portcullis/ssh/banner").starts_with("SSH-2.0-OpenSSH"));
    assert!(t1571.get("threat").is_some());
    let tls = events
        .iter()
        .find(|e| s(e, "/network/protocol") == "tls")
        .unwrap();
    assert_eq!(s(tls, "/tls/client/server_name"), "web.lab.test", "{tls:#}");

    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("replay: 7 flow(s)"), "{summary}");
    assert!(
        summary.contains("block mode would refuse 1 flow(s)"),
        "{summary}"
    );
    assert!(
        summary.contains("-> 127.0.0.1:443 ssh protocol_not_allowed"),
        "{summary}"
    );
}

#[test]
fn replay_reassembles_turns_through_loss_and_retransmission() {
    let (out, events) = replay(&["lo-loss.pcap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        verdicts(&events),
        vec![
            v(8080, "ipv4", "http", "allowed"),
            v(8080, "ipv6", "http", "allowed"),
            v(8443, "ipv4", "tls", "allowed"),
        ]
    );
    let tls = events
        .iter()
        .find(|e| s(e, "/network/protocol") == "tls")
        .unwrap();
    assert_eq!(s(tls, "/tls/client/server_name"), "web.lab.test", "{tls:#}");
}

#[test]
fn replay_reads_linux_cooked_captures_in_pcap_and_pcapng() {
    let (out, events) = replay(&["any-sll2.pcap", "any-sll.pcapng"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        verdicts(&events),
        vec![
            v(443, "ipv6", "ssh", "protocol_not_allowed"),
            v(8080, "ipv4", "http", "allowed"),
            v(8443, "ipv4", "tls", "allowed"),
        ]
    );
}

#[test]
fn replay_names_a_damaged_file_and_goes_on_with_the_rest() {
    let (out, events) = replay(&[
        "truncated.pcap",
        "no-such.pcap",
        "record.sh",
        "any-sll2.pcap",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("truncated.pcap: truncated"), "{stderr}");
    assert!(stderr.contains("no-such.pcap: cannot open"), "{stderr}");
    assert!(
        stderr.contains("record.sh: not a pcap or pcapng file"),
        "{stderr}"
    );
    // The truncated file's first flow was complete before the damage; the one cut short
    // is not judged.
    let files: Vec<&str> = events
        .iter()
        .map(|e| s(e, "/portcullis/replay/file"))
        .collect();
    assert_eq!(files.len(), 2, "{events:#?}");
    assert!(files[0].ends_with("truncated.pcap") && files[1].ends_with("any-sll2.pcap"));

    let (out, events) = replay(&["no-such.pcap", "record.sh"]);
    assert_eq!(out.status.code(), Some(1), "no file could be read");
    assert!(events.is_empty());
}

/// (source ip -> destination, protocol, reason, action, detection and side) of each decision
/// event, sorted.
///
/// The source port is left out: when a client reuses a source port towards another
/// destination, the redirect's conntrack entry can clash with the previous one and NAT picks a
/// new source port, which is what the live gateway then sees and reports; the capture shows
/// the port the client really used.
fn by_flow(events: &[Value]) -> Vec<(String, String, String, String, String)> {
    let mut flows: Vec<_> = events
        .iter()
        .filter(|e| s(e, "/event/action") != "closed")
        .map(|e| {
            (
                format!(
                    "{} -> {}:{}",
                    s(e, "/source/ip"),
                    s(e, "/destination/ip"),
                    e.pointer("/destination/port").unwrap_or(&Value::Null)
                ),
                s(e, "/network/protocol").to_owned(),
                s(e, "/event/reason").to_owned(),
                s(e, "/event/action").to_owned(),
                format!(
                    "{}/{}/{}",
                    s(e, "/portcullis/detection"),
                    s(e, "/portcullis/side"),
                    s(e, "/portcullis/server_protocol")
                ),
            )
        })
        .collect();
    flows.sort();
    flows
}

#[test]
fn replay_of_the_gateways_own_capture_gives_the_live_verdicts() {
    use crate::lab::{tool, Gateway, Lab, CB, CM, SSH_V4};

    if tool("tcpdump").is_none() {
        // .ci/run installs the lab's tools; tcpdump must be among them for this to run there.
        println!("SKIP: replay lab test: tcpdump is not installed");
        return;
    }
    let Some(mut lab) = Lab::start(Gateway::On) else {
        return;
    };
    let capture = lab.start_capture("gw.pcap");
    let _ = lab.curl(CB, &["https://web.lab.test/"]);
    let _ = lab.curl(
        CB,
        &[
            "-g",
            "https://[fd77:2::2]/",
            "--resolve",
            "web.lab.test:443:[fd77:2::2]",
        ],
    );
    let _ = lab.curl(CB, &["http://web.lab.test:443/"]);
    let _ = lab.curl(CB, &["https://web.lab.test:8443/"]);
    let _ = lab.ssh(CB, 443, "true");
    let _ = lab.curl(CM, &["http://web.lab.test/"]);
    let _ = lab.curl(CM, &["https://web.lab.test:8443/"]);
    let _ = lab.ssh(CM, 22, "true");
    let _ = lab.ssh(CM, 443, "true");
    // Both sides must agree: an HTTP request answered by sshd (monitor: forwarded with an
    // alert, so the capture holds the banner the gateway saw).
    let _ = lab.curl(CM, &["--http0.9", &format!("http://{SSH_V4}/")]);
    // Silent clients: the gateway reads sshd's banner after client_first_ms (server-first),
    // and never contacts a port the segment refuses whatever is spoken (2222).
    for (ns, port) in [(CB, 22), (CM, 443), (CB, 2222)] {
        let script = format!("exec 3<>/dev/tcp/{SSH_V4}/{port} && timeout 1 head -c 100 <&3");
        let _ = lab.run(ns, &["bash", "-c", &script]);
    }
    lab.stop_capture();

    // The lab's own readiness probes of the listener (from loopback) are not client traffic.
    let mut live = by_flow(&lab.events());
    live.retain(|flow| !flow.0.starts_with("127.0.0.1 ") && !flow.0.starts_with("::1 "));
    let out = std::process::Command::new(crate::support::BIN)
        .args(["replay", "--config"])
        .arg(lab.path("portcullis.toml"))
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let replayed = by_flow(&replayed);
    eprintln!("live: {live:#?}\nreplayed: {replayed:#?}");
    assert!(
        live.len() >= 10,
        "every client connection has a live decision: {live:#?}"
    );
    assert_eq!(replayed, live);
    let reasons: Vec<&str> = live.iter().map(|v| v.2.as_str()).collect();
    let server_first = live.iter().filter(|f| f.4 == "matched/server/").count();
    assert_eq!(
        server_first, 2,
        "the silent clients got sshd's banner sniffed: {live:#?}"
    );
    assert!(
        live.iter()
            .any(|f| f.1 == "http" && f.4 == "matched/client/ssh"),
        "the HTTP request answered by sshd is a mismatch, live and replayed: {live:#?}"
    );
    for reason in ["allowed", "protocol_not_allowed", "port_not_allowed"] {
        assert!(
            reasons.contains(&reason),
            "the lab run covers {reason}: {live:#?}"
        );
    }
}
