//! Server-first protocols end to end: real SMTP (aiosmtpd) and FTP (pyftpdlib) servers behind
//! the gateway, real clients (curl's smtp:// and ftp://). The client stays silent, the gateway
//! reads the server's banner, identifies it and decides before the client sees one byte:
//! allowed on the protocol's own port, refused on a port allowed only for TLS (the client
//! never receives the banner), forwarded with an alert in a monitor segment.

use std::process::Output;

use crate::lab::{Conn, Gateway, Lab, CB, CB_V4, CM, CM_V4, FTP_FILE, FTP_V4, SMTP_V4, SSH_V4};

/// curl sends a mail over SMTP to SMTP_V4:`port`; `-v` shows every server reply on stderr.
fn send_mail(lab: &Lab, ns: crate::lab::Ns, port: u16, subject: &str) -> Output {
    let mail = lab.path(&format!("{subject}.eml"));
    std::fs::write(
        &mail,
        format!("From: a@lab.test\r\nTo: b@lab.test\r\nSubject: {subject}\r\n\r\nhello\r\n"),
    )
    .expect("write mail");
    let url = format!("smtp://{SMTP_V4}:{port}");
    let m = mail.to_string_lossy();
    let args = [
        "curl",
        "-v",
        "-sS",
        "--max-time",
        "20",
        &url,
        "--mail-from",
        "a@lab.test",
        "--mail-rcpt",
        "b@lab.test",
        "-T",
        &m,
    ];
    lab.run(ns, &args)
}

/// curl asks the FTP server on FTP_V4:`port` for the size of FTP_FILE (no data connection).
fn ftp_head(lab: &Lab, ns: crate::lab::Ns, port: u16) -> Output {
    let url = format!("ftp://{FTP_V4}:{port}/{}", FTP_FILE.0);
    lab.run(ns, &["curl", "-v", "-sS", "--max-time", "20", "-I", &url])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The decision came from the server's banner, for `protocol`, with `action` and `reason`.
fn assert_server_decided(c: &Conn, protocol: &str, action: &str, reason: &str) {
    let e = &c.decision;
    assert_eq!(c.d("/network/protocol"), protocol, "{e:#}");
    assert_eq!(c.d("/portcullis/side"), "server", "{e:#}");
    assert_eq!(c.d("/portcullis/detection"), "matched", "{e:#}");
    assert_eq!(c.d("/event/action"), action, "{e:#}");
    assert_eq!(c.d("/event/reason"), reason, "{e:#}");
}

#[test]
fn smtp_and_ftp_pass_on_their_ports_and_never_show_a_banner_on_a_tls_port() {
    let Some(mut lab) = Lab::start(Gateway::On) else {
        return;
    };
    lab.start_banner_servers();

    // SMTP on 25: the mail reaches the server.
    let out = send_mail(&lab, CB, 25, "through-25");
    assert!(out.status.success(), "curl smtp :25: {}", stderr(&out));
    assert!(
        lab.smtp_log(25).contains("Subject: through-25"),
        "{}",
        lab.smtp_log(25)
    );
    let c = lab.connection(CB_V4, SMTP_V4, 25);
    assert_server_decided(&c, "smtp", "allowed", "allowed");
    assert_eq!(c.d("/rule/id"), "block/allow[3]");
    // aiosmtpd greets "220 HOST Python SMTP 1.4.3": the banner and its host are in the event.
    assert!(
        c.d("/portcullis/smtp/banner").contains("Python SMTP"),
        "{:#}",
        c.decision
    );
    assert!(!c.d("/portcullis/smtp/host").is_empty(), "{:#}", c.decision);
    assert!(c.close_u64("/source/bytes") > 0 && c.close_u64("/destination/bytes") > 0);

    // SMTP on 443 (TLS only): refused; curl never sees the 220 greeting.
    let out = send_mail(&lab, CB, 443, "through-443");
    assert!(!out.status.success(), "smtp on 443 must fail");
    assert!(
        !stderr(&out).contains("< 220"),
        "the client must never see the banner: {}",
        stderr(&out)
    );
    assert!(!lab.smtp_log(443).contains("through-443"));
    let c = lab.connection(CB_V4, SMTP_V4, 443);
    assert_server_decided(&c, "smtp", "blocked", "protocol_not_allowed");
    assert_eq!(
        c.decision.pointer("/portcullis/expected_protocols"),
        Some(&serde_json::json!(["tls"]))
    );
    assert_eq!(
        c.close.pointer("/portcullis/close_reason"),
        Some(&serde_json::json!("blocked"))
    );

    // FTP on 21: the size of the file comes back.
    let out = ftp_head(&lab, CB, 21);
    assert!(out.status.success(), "curl ftp :21: {}", stderr(&out));
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(
        head.contains(&format!("Content-Length: {}", FTP_FILE.1.len())),
        "{head}"
    );
    let c = lab.connection(CB_V4, FTP_V4, 21);
    assert_server_decided(&c, "ftp", "allowed", "allowed");
    assert_eq!(c.d("/rule/id"), "block/allow[4]");

    // FTP on 443: refused before the banner.
    let out = ftp_head(&lab, CB, 443);
    assert!(!out.status.success(), "ftp on 443 must fail");
    assert!(!stderr(&out).contains("< 220"), "{}", stderr(&out));
    let c = lab.connection(CB_V4, FTP_V4, 443);
    assert_server_decided(&c, "ftp", "blocked", "protocol_not_allowed");

    // The monitor segment: the same SMTP on 443 goes through, with an alert.
    let out = send_mail(&lab, CM, 443, "monitored-443");
    assert!(out.status.success(), "monitor smtp :443: {}", stderr(&out));
    assert!(lab.smtp_log(443).contains("Subject: monitored-443"));
    let c = lab.connection(CM_V4, SMTP_V4, 443);
    assert_server_decided(&c, "smtp", "alerted", "protocol_not_allowed");
    assert_eq!(c.d("/event/kind"), "alert");
}

/// Both sides must agree: curl's HTTP request to port 80 (allowed for HTTP) answered by sshd
/// is a mismatch: refused in block mode before curl sees the SSH banner, alerted in monitor
/// mode (curl then receives the banner and gives up on it).
#[test]
fn an_http_client_answered_by_an_ssh_server_is_a_mismatch_not_an_allow() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let url = format!("http://{SSH_V4}/");
    let out = lab.run(CB, &["curl", "-sS", "--max-time", "20", "--http0.9", &url]);
    assert!(!out.status.success(), "block: curl must fail");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("SSH-2.0"),
        "block: the banner never reaches the client"
    );
    let c = lab.connection(CB_V4, SSH_V4, 80);
    let e = &c.decision;
    assert_eq!(c.d("/network/protocol"), "http", "{e:#}");
    assert_eq!(c.d("/portcullis/server_protocol"), "ssh", "{e:#}");
    assert_eq!(c.d("/event/action"), "blocked", "{e:#}");
    assert_eq!(c.d("/event/reason"), "protocol_not_allowed", "{e:#}");
    assert_eq!(c.d("/rule/id"), "block/allow[1]", "{e:#}");
    assert_eq!(c.d("/event/kind"), "alert", "{e:#}");

    let out = lab.run(CM, &["curl", "-sS", "--max-time", "20", "--http0.9", &url]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SSH-2.0-OpenSSH"),
        "monitor: forwarded, so curl sees the banner: {:?}",
        out
    );
    let c = lab.connection(CM_V4, SSH_V4, 80);
    assert_eq!(c.d("/event/action"), "alerted", "{:#}", c.decision);
    assert_eq!(c.d("/portcullis/server_protocol"), "ssh");
    assert_eq!(c.d("/event/reason"), "protocol_not_allowed");

    // An HTTP client answered by an HTTP server: both agree, nothing named on the server side.
    let page = lab.curl(CB, &["http://web.lab.test/"]);
    assert!(page.status.success());
    let c = lab.connection(CB_V4, crate::lab::WEB_V4, 80);
    assert_eq!(c.d("/event/action"), "allowed");
    assert!(c.decision.pointer("/portcullis/server_protocol").is_none());
}
