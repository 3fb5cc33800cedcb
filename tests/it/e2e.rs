//! End-to-end tests: real clients (curl, openssl, ssh) in client namespaces, portcullis behind
//! an nftables redirect in the gateway namespace, real servers behind it; each test asserts
//! what the client saw and the events the gateway wrote. Run with
//! `cargo test --test it e2e -- --nocapture` (root and nftables; skips elsewhere unless CI).

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::lab::{Conn, Gateway, Lab, Ns, CB, CB_V4, CB_V6, CM, CM_V4, SSH_V4, WEB_V4, WEB_V6};

const BIG: usize = 64 << 20;

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ca() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs/ca.pem")
        .to_string_lossy()
        .into_owned()
}

/// `openssl s_client` to web.lab.test:PORT verifying the dev CA, sending one HTTP/1.0 GET.
fn s_client(lab: &Lab, ns: Ns, port: u16) -> Output {
    let ca = ca();
    let target = format!("web.lab.test:{port}");
    let args = [
        "openssl",
        "s_client",
        "-connect",
        &target,
        "-servername",
        "web.lab.test",
        "-CAfile",
        &ca,
        "-verify_return_error",
        "-ign_eof",
    ];
    lab.run_input(ns, &args, b"GET / HTTP/1.0\r\nHost: web.lab.test\r\n\r\n")
}

/// Downloads /big.bin over plain HTTP from `ns`; returns the sha256 of what arrived.
fn download_big(lab: &Lab, ns: Ns) -> Vec<u8> {
    let dest = lab.path("download.bin");
    let ca = ca();
    let d = dest.to_string_lossy();
    let args = [
        "curl",
        "-sS",
        "--fail",
        "--cacert",
        &ca,
        "--max-time",
        "150",
        "-o",
        &d,
        "http://web.lab.test/big.bin",
    ];
    stdout_ok(&lab.run_for(ns, 160, &args, b""));
    let data = std::fs::read(&dest).expect("read download");
    assert_eq!(data.len(), BIG, "downloaded size");
    Sha256::digest(&data).to_vec()
}

fn assert_allowed(c: &Conn, segment: &str, protocol: &str, rule: &str, ip_type: &str) {
    let e = &c.decision;
    assert_eq!(c.d("/event/action"), "allowed", "{e:#}");
    assert_eq!(c.d("/event/reason"), "allowed", "{e:#}");
    assert_ne!(
        c.d("/event/kind"),
        "alert",
        "an allowed connection is no alert: {e:#}"
    );
    assert_eq!(c.d("/network/protocol"), protocol, "{e:#}");
    assert_eq!(c.d("/network/transport"), "tcp", "{e:#}");
    assert_eq!(c.d("/network/type"), ip_type, "{e:#}");
    assert_eq!(c.d("/network/name"), segment, "{e:#}");
    assert_eq!(c.d("/rule/id"), rule, "{e:#}");
    assert!(
        e.get("threat").is_none(),
        "no threat on an allowed connection: {e:#}"
    );
}

fn assert_t1571(c: &Conn) {
    let e = &c.decision;
    assert_eq!(c.d("/event/kind"), "alert", "{e:#}");
    assert_eq!(
        e.pointer("/threat/technique/id"),
        Some(&json!(["T1571"])),
        "{e:#}"
    );
    assert_eq!(c.d("/threat/framework"), "MITRE ATT&CK", "{e:#}");
}

// ---- the lab itself, without the gateway: servers and clients work directly ----

#[test]
fn lab_direct_block_client_reaches_every_server() {
    let Some(lab) = Lab::start(Gateway::Off) else {
        return;
    };
    let page = lab.page();
    assert_eq!(stdout_ok(&lab.curl(CB, &["https://web.lab.test/"])), page);
    assert_eq!(
        stdout_ok(&lab.curl(CB, &["https://web.lab.test:8443/"])),
        page
    );
    assert_eq!(stdout_ok(&lab.curl(CB, &["http://web.lab.test/"])), page);
    let v6 = format!("web.lab.test:443:[{WEB_V6}]");
    assert_eq!(
        stdout_ok(&lab.curl(CB, &["-6", "--resolve", &v6, "https://web.lab.test/"])),
        page
    );
    let tls = stdout_ok(&s_client(&lab, CB, 443));
    assert!(
        tls.contains("Verify return code: 0 (ok)") && tls.contains(&page),
        "{tls}"
    );
    stdout_ok(&lab.ssh(CB, 22, "true"));
    assert_eq!(lab.ssh443_syns(), 0);
    assert_eq!(
        stdout_ok(&lab.ssh(CB, 443, "echo through-443")).trim(),
        "through-443"
    );
    assert!(lab.ssh443_syns() >= 1, "the SYN counter sees ssh on 443");
    assert_eq!(
        lab.sshd_connections(443),
        1,
        "sshd logs the connection on 443"
    );
    let sum = lab.make_big_file(BIG);
    assert_eq!(download_big(&lab, CB), sum);
    assert!(lab.events().is_empty(), "no gateway runs, so no events");
}

#[test]
fn lab_direct_monitor_client_reaches_servers() {
    let Some(lab) = Lab::start(Gateway::Off) else {
        return;
    };
    assert_eq!(
        stdout_ok(&lab.curl(CM, &["https://web.lab.test:8443/"])),
        lab.page()
    );
    stdout_ok(&lab.ssh(CM, 443, "true"));
    assert!(lab.ssh443_syns() >= 1);
}

// ---- block segment (cb), through portcullis ----

#[test]
fn block_tls_on_443_is_allowed_for_curl() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    assert_eq!(
        stdout_ok(&lab.curl(CB, &["https://web.lab.test/"])),
        lab.page()
    );
    let c = lab.connection(CB_V4, WEB_V4, 443);
    assert_allowed(&c, "block", "tls", "block/allow[0]", "ipv4");
    assert_eq!(
        c.d("/tls/client/server_name"),
        "web.lab.test",
        "{:#}",
        c.decision
    );
    assert_eq!(c.d("/portcullis/mode"), "block");
    assert!(c.close_u64("/source/bytes") > 0 && c.close_u64("/destination/bytes") > 0);
}

#[test]
fn block_tls_on_443_is_allowed_for_openssl_s_client() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let out = stdout_ok(&s_client(&lab, CB, 443));
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(
        out.contains(&lab.page()),
        "the page arrived through the gateway: {out}"
    );
    let c = lab.connection(CB_V4, WEB_V4, 443);
    assert_allowed(&c, "block", "tls", "block/allow[0]", "ipv4");
    assert_eq!(c.d("/tls/client/server_name"), "web.lab.test");
}

#[test]
fn block_tls_on_8443_is_refused_port_not_allowed() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let out = lab.curl(CB, &["https://web.lab.test:8443/"]);
    assert!(
        !out.status.success(),
        "curl to 8443 must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&lab.page()));
    let c = lab.connection(CB_V4, WEB_V4, 8443);
    assert_eq!(c.d("/event/action"), "blocked", "{:#}", c.decision);
    assert_eq!(c.d("/event/reason"), "port_not_allowed", "{:#}", c.decision);
    assert_eq!(c.d("/network/name"), "block");
    assert_t1571(&c);
}

#[test]
fn block_ssh_on_443_is_refused_before_reaching_sshd() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let out = lab.ssh(CB, 443, "echo leaked");
    assert!(!out.status.success(), "ssh -p 443 must fail");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("leaked"));
    let c = lab.connection(CB_V4, SSH_V4, 443);
    assert_eq!(c.d("/event/action"), "blocked", "{:#}", c.decision);
    assert_eq!(
        c.d("/event/reason"),
        "protocol_not_allowed",
        "{:#}",
        c.decision
    );
    assert_eq!(c.d("/network/protocol"), "ssh", "{:#}", c.decision);
    assert!(
        c.d("/portcullis/ssh/banner").starts_with("SSH-2.0-OpenSSH"),
        "{:#}",
        c.decision
    );
    assert_eq!(
        c.decision.pointer("/portcullis/expected_protocols"),
        Some(&json!(["tls"]))
    );
    assert_eq!(
        c.decision.pointer("/portcullis/would_block"),
        Some(&Value::Bool(true))
    );
    assert_t1571(&c);
    assert_eq!(
        c.close_u64("/destination/bytes"),
        0,
        "the server never spoke"
    );
    assert_eq!(lab.ssh443_syns(), 0, "no SYN reached sshd on 443");
    assert_eq!(
        lab.sshd_connections(443),
        0,
        "sshd never saw the connection"
    );
}

#[test]
fn block_plain_http_on_443_is_refused_protocol_not_allowed() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let out = lab.curl(CB, &["http://web.lab.test:443/"]);
    assert!(!out.status.success(), "plain HTTP on 443 must fail");
    let c = lab.connection(CB_V4, WEB_V4, 443);
    assert_eq!(c.d("/event/action"), "blocked", "{:#}", c.decision);
    assert_eq!(
        c.d("/event/reason"),
        "protocol_not_allowed",
        "{:#}",
        c.decision
    );
    assert_eq!(
        c.d("/network/protocol"),
        "http",
        "identified from the bytes, not the port"
    );
    assert_eq!(c.d("/http/request/method"), "GET");
    assert_eq!(
        c.decision.pointer("/portcullis/expected_protocols"),
        Some(&json!(["tls"]))
    );
    assert_t1571(&c);
    assert_eq!(
        c.close_u64("/destination/bytes"),
        0,
        "the server never spoke"
    );
}

#[test]
fn block_ssh_on_22_is_allowed_and_works() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    assert_eq!(
        stdout_ok(&lab.ssh(CB, 22, "echo hello-22")).trim(),
        "hello-22"
    );
    let c = lab.connection(CB_V4, SSH_V4, 22);
    assert_allowed(&c, "block", "ssh", "block/allow[2]", "ipv4");
    assert!(
        c.d("/portcullis/ssh/banner").starts_with("SSH-2.0-OpenSSH"),
        "{:#}",
        c.decision
    );
    assert_eq!(lab.sshd_connections(22), 1);
}

#[test]
fn block_http_on_80_is_allowed_with_method_and_domain() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    assert_eq!(
        stdout_ok(&lab.curl(CB, &["http://web.lab.test/"])),
        lab.page()
    );
    let c = lab.connection(CB_V4, WEB_V4, 80);
    assert_allowed(&c, "block", "http", "block/allow[1]", "ipv4");
    assert_eq!(c.d("/http/request/method"), "GET", "{:#}", c.decision);
    assert_eq!(c.d("/url/domain"), "web.lab.test", "{:#}", c.decision);
}

#[test]
fn block_http_64mib_download_arrives_intact() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let sum = lab.make_big_file(BIG);
    assert_eq!(
        download_big(&lab, CB),
        sum,
        "sha256 of the download equals the source file"
    );
    let c = lab.connection(CB_V4, WEB_V4, 80);
    assert_allowed(&c, "block", "http", "block/allow[1]", "ipv4");
    let down = c.close_u64("/destination/bytes");
    assert!(
        down >= BIG as u64,
        "destination.bytes {down} < file size {BIG}"
    );
    assert!(c.close_u64("/source/bytes") > 0);
}

#[test]
fn block_ipv6_tls_on_443_is_allowed_via_v6_redirect() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let v6 = format!("web.lab.test:443:[{WEB_V6}]");
    assert_eq!(
        stdout_ok(&lab.curl(CB, &["-6", "--resolve", &v6, "https://web.lab.test/"])),
        lab.page()
    );
    let c = lab.connection(CB_V6, WEB_V6, 443);
    assert_allowed(&c, "block", "tls", "block/allow[0]", "ipv6");
    assert_eq!(c.d("/tls/client/server_name"), "web.lab.test");
}

// ---- monitor segment (cm): what block mode would refuse goes through, with an alert ----

#[test]
fn monitor_ssh_on_443_goes_through_with_an_alert() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    assert_eq!(
        stdout_ok(&lab.ssh(CM, 443, "echo via-443")).trim(),
        "via-443"
    );
    let c = lab.connection(CM_V4, SSH_V4, 443);
    assert_eq!(c.d("/event/action"), "alerted", "{:#}", c.decision);
    assert_eq!(
        c.d("/event/reason"),
        "protocol_not_allowed",
        "{:#}",
        c.decision
    );
    assert_eq!(c.d("/network/protocol"), "ssh");
    assert_eq!(c.d("/network/name"), "monitor");
    assert_eq!(c.d("/portcullis/mode"), "monitor");
    assert_eq!(
        c.decision.pointer("/portcullis/would_block"),
        Some(&Value::Bool(true)),
        "{:#}",
        c.decision
    );
    assert_t1571(&c);
    assert!(c.close_u64("/destination/bytes") > 0 && c.close_u64("/source/bytes") > 0);
    assert!(lab.ssh443_syns() >= 1, "the connection reached sshd on 443");
}

#[test]
fn monitor_tls_on_8443_goes_through_with_an_alert() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    assert_eq!(
        stdout_ok(&lab.curl(CM, &["https://web.lab.test:8443/"])),
        lab.page()
    );
    let c = lab.connection(CM_V4, WEB_V4, 8443);
    assert_eq!(c.d("/event/action"), "alerted", "{:#}", c.decision);
    assert_eq!(c.d("/event/reason"), "port_not_allowed", "{:#}", c.decision);
    assert_eq!(c.d("/network/protocol"), "tls");
    assert_eq!(c.d("/tls/client/server_name"), "web.lab.test");
    assert_eq!(
        c.decision.pointer("/portcullis/would_block"),
        Some(&Value::Bool(true))
    );
    assert_t1571(&c);
}

// ---- the gateway itself is no destination ----

#[test]
fn block_connection_to_the_gateway_listener_is_self_destination() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let out = lab.curl(CB, &["http://10.77.1.1:15001/"]);
    assert!(
        !out.status.success(),
        "a request to the gateway's own listener must fail"
    );
    let c = lab.connection(CB_V4, "10.77.1.1", 15001);
    assert_eq!(c.d("/event/action"), "blocked", "{:#}", c.decision);
    assert_eq!(c.d("/event/reason"), "self_destination", "{:#}", c.decision);
    assert_eq!(c.d("/event/kind"), "alert", "{:#}", c.decision);
    assert!(
        c.decision.get("threat").is_none(),
        "self_destination is no T1571 case"
    );
    assert_eq!(c.close_u64("/destination/bytes"), 0, "nothing was dialled");
}
