//! Explicit proxies end to end (issue 8): portcullis in the lab's gateway namespace with an
//! `http_proxy` listener on 10.77.1.1:3128 and a `socks5` listener on 10.77.1.1:1080, real
//! clients in `cb` (curl -x, curl --socks5-hostname, OpenSSH through `nc -X connect` and
//! `nc -X 5`, python for exact reply bytes), the lab's real HTTPS server and sshd behind it.
//! Run with `cargo test --test it explicit -- --nocapture` (root and nftables; skips
//! elsewhere unless CI). The lab setup: `explicit/harness.rs`; bad input on loopback:
//! `explicit/input.rs`.

mod harness;
mod input;

use std::fs;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::lab::{CB, CM, CM_V4, SSH_V4, WEB_V4, WEB_V6};
use harness::{ca, ok_stdout, ProxyLab, BIG, ECHO_PORT, HTTP_PROXY, SOCKS};

#[test]
fn https_through_both_proxies_is_allowed_and_large_transfers_arrive_intact() {
    let Some(p) = ProxyLab::start() else { return };
    let page = p.lab.page();
    let via_connect = p.lab.curl(
        CB,
        &[
            "-x",
            &format!("http://{HTTP_PROXY}"),
            "https://web.lab.test/",
        ],
    );
    assert_eq!(ok_stdout(&via_connect), page);
    let e = p.conn("http_proxy", "web.lab.test", 443);
    assert_eq!(e.d("/event/action"), "allowed");
    assert_eq!(e.d("/network/protocol"), "tls");
    assert_eq!(e.d("/tls/client/server_name"), "web.lab.test");
    assert_eq!(e.d("/destination/ip"), WEB_V4);
    // The page arrived whole; how the TCP connection ended is up to the two programs: when
    // curl's close_notify reaches Python's server after it has closed, the server's kernel
    // answers with a reset, which the gateway passes on and names (and the client's kernel
    // may answer the forwarded reset's leftovers the same way).
    assert!(
        ["completed", "upstream_reset", "client_reset"].contains(&e.close_reason()),
        "close reason {}",
        e.close_reason()
    );

    let via_socks = p
        .lab
        .curl(CB, &["--socks5-hostname", SOCKS, "https://web.lab.test/"]);
    assert_eq!(ok_stdout(&via_socks), page);
    let e = p.conn("socks5", "web.lab.test", 443);
    assert_eq!(e.d("/event/action"), "allowed");
    assert_eq!(e.d("/network/protocol"), "tls");
    assert_eq!(e.d("/rule/id"), "block/allow[0]");

    // IPv6 literals: CONNECT [fd77:2::2]:443, and SOCKS5 address type 4 (curl resolving
    // the name itself); the SNI still names the server.
    let to_v6 = ["--connect-to", "web.lab.test:443:[fd77:2::2]:443"];
    let via_v6 = p.lab.curl(
        CB,
        &[
            &["-x", &format!("http://{HTTP_PROXY}")][..],
            &to_v6,
            &["https://web.lab.test/"],
        ]
        .concat(),
    );
    assert_eq!(ok_stdout(&via_v6), page);
    assert_eq!(p.conn("http_proxy", WEB_V6, 443).d("/network/type"), "ipv6");
    let resolve_v6 = ["--resolve", "web.lab.test:443:[fd77:2::2]"];
    let socks_v6 = p.lab.curl(
        CB,
        &[
            &["--socks5", SOCKS][..],
            &resolve_v6,
            &["https://web.lab.test/"],
        ]
        .concat(),
    );
    assert_eq!(ok_stdout(&socks_v6), page);
    assert_eq!(p.conn("socks5", WEB_V6, 443).d("/event/action"), "allowed");

    let want = p.lab.make_big_file(BIG);
    for (flag, proxy) in [
        ("-x", format!("http://{HTTP_PROXY}")),
        ("--socks5-hostname", SOCKS.to_owned()),
    ] {
        let dest = p.lab.path("big.download");
        let d = dest.to_string_lossy();
        let args = [
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "150",
            "--cacert",
            &ca(),
            flag,
            &proxy,
            "-o",
            &d,
            "https://web.lab.test/big.bin",
        ];
        ok_stdout(&p.lab.run_for(CB, 160, &args, b""));
        let got = fs::read(&dest).unwrap();
        assert_eq!(got.len(), BIG, "size through {flag}");
        assert_eq!(
            Sha256::digest(&got).to_vec(),
            want,
            "checksum through {flag}"
        );
    }
}

/// A client that does not wait for the `200` (Python's TLS writing its ClientHello in the
/// same write as the CONNECT head): the bytes after the head are the tunnel's first turn,
/// judged like any other and delivered whole, and the page comes back through the tunnel.
#[test]
fn bytes_sent_with_the_connect_head_are_the_tunnels_first_turn() {
    let Some(p) = ProxyLab::start() else { return };
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="web.lab.test")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
s = socket.create_connection(("10.77.1.1", 3128), timeout=20)
connect = b"CONNECT web.lab.test:443 HTTP/1.1\r\nHost: web.lab.test:443\r\n\r\n"
s.sendall(connect + outgoing.read())
got = b""
while b"\r\n\r\n" not in got:
    more = s.recv(65536)
    if not more:
        raise SystemExit("closed before the proxy answered")
    got += more
head, rest = got.split(b"\r\n\r\n", 1)
incoming.write(rest)
def flush():
    out = outgoing.read()
    if out:
        s.sendall(out)
def receive():
    more = s.recv(65536)
    if not more:
        incoming.write_eof()
    incoming.write(more)
    return bool(more)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        if not receive():
            raise SystemExit("closed during the handshake")
flush()
tls.write(b"GET / HTTP/1.0\r\nHost: web.lab.test\r\n\r\n")
flush()
body = b""
while True:
    try:
        chunk = tls.read(65536)
    except ssl.SSLWantReadError:
        if receive():
            continue
        break
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
    if not chunk:
        break
    body += chunk
print(head.split(b"\r\n")[0].decode())
print(body.split(b"\r\n\r\n", 1)[1].decode(), end="")
"#,
        ca = ca()
    );
    let out = p.python(&script);
    let (status, page) = out.split_once('\n').unwrap_or((&out, ""));
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    assert_eq!(page, p.lab.page().trim_end());
    let e = p.conn("http_proxy", "web.lab.test", 443);
    assert_eq!(e.d("/event/action"), "allowed");
    assert_eq!(e.d("/network/protocol"), "tls");
    assert_eq!(e.d("/tls/client/server_name"), "web.lab.test");
}

/// OpenSSH tunnelled through `CONNECT ssh.lab.test:443` / SOCKS5: refused as
/// `protocol_not_allowed` on its first bytes, and sshd never gets one of them.
#[test]
fn ssh_through_either_proxy_on_443_is_refused_before_sshd_sees_a_byte() {
    let Some(p) = ProxyLab::start() else { return };
    for (listener, proxy_command) in [
        ("http_proxy", format!("nc -X connect -x {HTTP_PROXY} %h %p")),
        ("socks5", format!("nc -X 5 -x {SOCKS} %h %p")),
    ] {
        let out = p.ssh_via(CB, &proxy_command);
        assert!(!out.status.success(), "ssh through {listener} must fail");
        let e = p.conn(listener, "ssh.lab.test", 443);
        assert_eq!(e.d("/event/action"), "blocked");
        assert_eq!(e.d("/event/reason"), "protocol_not_allowed");
        assert_eq!(e.d("/network/protocol"), "ssh");
        assert_eq!(e.d("/destination/ip"), SSH_V4);
        assert_eq!(e.d("/threat/technique/id/0"), "T1571");
        assert_eq!(
            e.close
                .pointer("/destination/bytes")
                .and_then(Value::as_u64),
            Some(0)
        );
    }
    // sshd was dialled (the proxy answers 200 only once it is) and closed without one byte:
    // for each of the gateway's two connections it logs that the peer closed during the
    // identification exchange, and nothing else (a byte would give "invalid format" or a
    // client version).
    std::thread::sleep(Duration::from_millis(500));
    let log = fs::read_to_string(p.lab.path("sshd.events.log")).unwrap();
    let first = log
        .find("from 10.77.2.1 ")
        .expect("sshd saw the gateway connect");
    let after: Vec<&str> = log[first..].lines().skip(1).collect();
    assert_eq!(
        after.len(),
        5,
        "sshd log after the gateway's first connection:\n{log}"
    );
    for (i, line) in after.iter().enumerate() {
        let expected = match i % 3 {
            0 => "kex_exchange_identification: Connection closed by remote host",
            1 => "Connection closed by 10.77.2.1 port",
            _ => "Connection from 10.77.2.1 port",
        };
        assert!(line.starts_with(expected), "line {line:?} in:\n{log}");
    }
}

#[test]
fn refusals_before_the_tunnel_have_exact_codes_and_events() {
    let Some(p) = ProxyLab::start() else { return };
    // A port no rule names: 403 / 0x02 before the name is even resolved.
    assert_eq!(
        p.connect_status("web.lab.test:8443"),
        "HTTP/1.1 403 Forbidden port_not_allowed"
    );
    let e = p.conn("http_proxy", "web.lab.test", 8443);
    assert_eq!(e.d("/event/reason"), "port_not_allowed");
    assert!(
        e.decision
            .as_ref()
            .unwrap()
            .pointer("/destination/ip")
            .is_none(),
        "not resolved"
    );
    assert_eq!(p.socks_reply("web.lab.test", 8443), 0x02);
    assert_eq!(
        p.conn("socks5", "web.lab.test", 8443).d("/event/reason"),
        "port_not_allowed"
    );
    let curl = p.lab.curl(
        CB,
        &[
            "-x",
            &format!("http://{HTTP_PROXY}"),
            "https://web.lab.test:8443/",
        ],
    );
    assert!(
        String::from_utf8_lossy(&curl.stderr).contains("403"),
        "curl reports the 403"
    );

    // The gateway's own addresses, by address and by a name that resolves to one.
    assert_eq!(
        p.connect_status("127.0.0.1:443"),
        "HTTP/1.1 403 Forbidden self_destination"
    );
    assert_eq!(
        p.conn("http_proxy", "127.0.0.1", 443).d("/event/reason"),
        "self_destination"
    );
    assert_eq!(
        p.connect_status("gw.lab.test:22"),
        "HTTP/1.1 403 Forbidden self_destination"
    );
    let e = p.conn("http_proxy", "gw.lab.test", 22);
    assert_eq!(e.d("/event/reason"), "self_destination");
    assert_eq!(e.d("/destination/ip"), "10.77.2.1");
    assert_eq!(p.socks_reply("localhost", 443), 0x02);
    assert_eq!(
        p.conn("socks5", "localhost", 443).d("/event/reason"),
        "self_destination"
    );

    // server_names match the host the client asked for as well as the SNI: a CONNECT to
    // other.lab.test carrying SNI web.lab.test (the same server) is refused in the tunnel.
    let curl = p.lab.curl(
        CB,
        &[
            "-x",
            &format!("http://{HTTP_PROXY}"),
            "--connect-to",
            "web.lab.test:443:other.lab.test:443",
            "https://web.lab.test/",
        ],
    );
    assert!(!curl.status.success(), "refused inside the tunnel");
    let e = p.conn("http_proxy", "other.lab.test", 443);
    assert_eq!(e.d("/event/reason"), "server_name_not_allowed");
    assert_eq!(e.d("/tls/client/server_name"), "web.lab.test");

    // A name that does not resolve: 502 / 0x04 and a close event that says so.
    assert_eq!(
        p.connect_status("nope.lab.test:443").split(' ').nth(1),
        Some("502")
    );
    assert_eq!(
        p.conn("http_proxy", "nope.lab.test", 443).close_reason(),
        "unresolved"
    );
    assert_eq!(p.socks_reply("nope.lab.test", 443), 0x04);
    assert_eq!(
        p.conn("socks5", "nope.lab.test", 443).close_reason(),
        "unresolved"
    );

    // Upstream refuses (nothing on ssh.lab.test:8080): 502 / 0x05; never answers: 504 / 0x06.
    assert_eq!(
        p.connect_status("ssh.lab.test:8080").split(' ').nth(1),
        Some("502")
    );
    assert_eq!(
        p.conn("http_proxy", "ssh.lab.test", 8080).close_reason(),
        "upstream_refused"
    );
    assert_eq!(p.socks_reply("ssh.lab.test", 8080), 0x05);
    assert_eq!(
        p.connect_status("web.lab.test:22").split(' ').nth(1),
        Some("504")
    );
    assert_eq!(
        p.conn("http_proxy", "web.lab.test", 22).close_reason(),
        "upstream_timeout"
    );
    assert_eq!(p.socks_reply("web.lab.test", 22), 0x06);
}

/// `curl -x` with a plain http:// URL: the request is forwarded in origin-form, judged as
/// http, and the upstream sees neither the proxy credentials nor hop-by-hop fields.
#[test]
fn absolute_form_requests_are_forwarded_without_proxy_credentials() {
    let Some(p) = ProxyLab::start() else { return };
    let out = p.lab.curl(
        CB,
        &[
            "-x",
            &format!("http://{HTTP_PROXY}"),
            "-U",
            "alice:s3cret",
            "-H",
            "Keep-Alive: 300",
            "http://web.lab.test:8080/echo?x=1",
        ],
    );
    let body = ok_stdout(&out);
    assert!(
        body.starts_with("GET /echo?x=1 HTTP/1.1\n"),
        "origin-form: {body}"
    );
    let lower = body.to_ascii_lowercase();
    assert!(
        !lower.contains("proxy-authorization") && !lower.contains("s3cret"),
        "{body}"
    );
    assert!(
        !lower.contains("keep-alive") && !lower.contains("proxy-connection"),
        "{body}"
    );
    assert!(lower.contains("host: web.lab.test:8080"), "{body}");
    let e = p.conn("http_proxy", "web.lab.test", ECHO_PORT);
    assert_eq!(e.d("/event/action"), "allowed");
    assert_eq!(e.d("/network/protocol"), "http");
    assert_eq!(e.d("/http/request/method"), "GET");

    // A request body (Content-Length) arrives whole, after the rewritten head.
    let form = "note=".to_owned() + &"0123456789".repeat(3000);
    let out = p.lab.curl(
        CB,
        &[
            "-x",
            &format!("http://{HTTP_PROXY}"),
            "--data-binary",
            &form,
            "http://other.lab.test:8080/submit",
        ],
    );
    assert_eq!(
        ok_stdout(&out),
        format!("POST /submit HTTP/1.1\n{form}"),
        "request line and body as the server got them"
    );
    // (Another name of the same server: one connection per name and port in the events.)
    let e = p.conn("http_proxy", "other.lab.test", ECHO_PORT);
    assert_eq!(e.d("/http/request/method"), "POST");
}

/// A monitor segment through the proxies: what block mode would refuse is forwarded and
/// alerted, a port no rule names and SSH inside CONNECT alike.
#[test]
fn monitor_segment_forwards_and_alerts_through_the_proxies() {
    let Some(p) = ProxyLab::start() else { return };
    let out = p.lab.curl(
        CM,
        &[
            "-x",
            &format!("http://{HTTP_PROXY}"),
            "https://web.lab.test:8443/",
        ],
    );
    assert_eq!(ok_stdout(&out), p.lab.page());
    let e = p.conn_from(CM_V4, "http_proxy", "web.lab.test", 8443);
    assert_eq!(e.d("/event/action"), "alerted");
    assert_eq!(e.d("/event/reason"), "port_not_allowed");
    assert_eq!(e.d("/network/protocol"), "tls");

    let out = p.ssh_via(CM, &format!("nc -X 5 -x {SOCKS} %h %p"));
    assert!(
        out.status.success(),
        "ssh through socks5 in monitor mode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = p.conn_from(CM_V4, "socks5", "ssh.lab.test", 443);
    assert_eq!(e.d("/event/action"), "alerted");
    assert_eq!(e.d("/event/reason"), "protocol_not_allowed");
    assert_eq!(e.d("/network/protocol"), "ssh");
}
