//! The whole pipeline through a `forward` listener on loopback (no root needed): verdicts,
//! events, bad input, upstream failures, half-close and large transfers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

const HTTP_ONLY: &str = "[[allow]]\nports = [8000]\nprotocols = [\"http\"]\n";

/// A gateway forwarding `127.0.0.1:<free>` to `upstream`, whose policy names `port` in
/// `rules` (the upstream's real port is rewritten to 8000 in the rules for readability).
fn gateway(
    upstream: SocketAddr,
    on_unidentified: &str,
    rules: &str,
    extra: &str,
) -> (Gateway, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rules = rules.replace("8000", &upstream.port().to_string());
    let cfg = ConfigDir::new(
        &forward_config(listen, upstream, extra),
        &[("local.toml", &local_segment(on_unidentified, &rules))],
    );
    (Gateway::start(cfg, listen), listen)
}

fn http_upstream() -> Upstream {
    Upstream::start(|mut s| {
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    })
}

#[test]
fn curl_http_is_allowed_and_tls_on_the_http_port_is_refused_before_upstream() {
    let up = http_upstream();
    let (gw, listen) = gateway(up.addr, "block", HTTP_ONLY, "");
    let url = format!("http://127.0.0.1:{}/index.html", listen.port());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello");
    let (decisions, closes) = gw.connections_after(2, 1);
    let d = &decisions[0];
    assert_eq!(d["event"]["action"], "allowed");
    assert_eq!(d["event"]["reason"], "allowed");
    assert_eq!(d["event"]["kind"], "event");
    assert_eq!(d["network"]["protocol"], "http");
    assert_eq!(d["network"]["name"], "local");
    assert_eq!(d["http"]["request"]["method"], "GET");
    assert_eq!(d["url"]["domain"], "127.0.0.1");
    assert_eq!(d["rule"]["id"], "local/allow[0]");
    assert_eq!(d["portcullis"]["detection"], "matched");
    assert_eq!(d["portcullis"]["listener"], "forward");
    assert!(d.get("threat").is_none());
    assert_eq!(closes[0]["portcullis"]["close_reason"], "completed");
    assert!(closes[0]["destination"]["bytes"].as_u64().unwrap() >= 5);
    assert_eq!(up.accepted(), 1);

    // TLS (curl's real ClientHello) to the port that is allowed only for HTTP.
    let url = format!("https://127.0.0.1:{}/", listen.port());
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10", &url])
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl over TLS must be refused");
    let (decisions, closes) = gw.connections_after(4, 1);
    let d = &decisions[0];
    assert_eq!(d["event"]["action"], "blocked");
    assert_eq!(d["event"]["reason"], "protocol_not_allowed");
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(d["event"]["outcome"], "failure");
    assert_eq!(d["network"]["protocol"], "tls");
    assert_eq!(d["tls"]["client"]["server_name"], serde_json::Value::Null);
    assert_eq!(d["threat"]["technique"]["id"][0], "T1571");
    assert_eq!(d["portcullis"]["expected_protocols"][0], "http");
    assert_eq!(d["portcullis"]["would_block"], true);
    assert_eq!(closes[0]["portcullis"]["close_reason"], "blocked");
    assert_eq!(closes[0]["destination"]["bytes"], 0);
    assert_eq!(
        up.accepted(),
        1,
        "a refused connection must never reach the upstream"
    );
}

/// A server that speaks only when spoken to, and counts the bytes it was sent.
fn quiet_upstream() -> (Upstream, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let up = Upstream::start(move |mut s| {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            counter.fetch_add(n, Ordering::SeqCst);
        }
    });
    (up, received)
}

#[test]
fn silent_client_and_silent_server_get_the_unidentified_verdict_at_the_deadline() {
    let (up, received) = quiet_upstream();
    let (gw, listen) = gateway(
        up.addr,
        "block",
        HTTP_ONLY,
        "[detect]\nclient_first_ms = 100\ntimeout_ms = 400\n",
    );
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(client.read(&mut buf), Err(_) | Ok(0)),
        "refused without a byte"
    );
    let (decisions, _) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["portcullis"]["detection"], "timeout");
    assert_eq!(decisions[0]["event"]["reason"], "unidentified_protocol");
    assert_eq!(decisions[0]["network"]["protocol"], "unknown");
    assert_eq!(decisions[0]["threat"]["technique"]["id"][0], "T1571");
    // The destination was dialled to read a banner (server-first), and sent nothing.
    assert_eq!(up.accepted(), 1);
    assert_eq!(received.load(Ordering::SeqCst), 0);
}

#[test]
fn silent_client_on_a_port_no_rule_names_never_reaches_the_destination() {
    let (up, _) = quiet_upstream();
    let (gw, listen) = gateway(
        up.addr,
        "block",
        "[[allow]]\nports = [1]\nprotocols = [\"http\"]\n",
        "[detect]\nclient_first_ms = 100\n",
    );
    let client = TcpStream::connect(listen).unwrap();
    let (decisions, _) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["event"]["reason"], "port_not_allowed");
    assert_eq!(up.accepted(), 0);
    drop(client);
}

const SSHD_BANNER: &[u8] = include_bytes!("../fixtures/sniff/ssh_server_openssh.bin");

#[test]
fn server_first_banner_on_a_port_allowed_only_for_tls_is_refused_before_the_client_sees_it() {
    let up = Upstream::start(|mut s| {
        let _ = s.write_all(SSHD_BANNER);
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    });
    let (gw, listen) = gateway(
        up.addr,
        "block",
        "[[allow]]\nports = [8000]\nprotocols = [\"tls\"]\n",
        "[detect]\nclient_first_ms = 100\n",
    );
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "the banner must never reach the client: {got:?}"
    );
    let (decisions, closes) = gw.connections_after(2, 1);
    let d = &decisions[0];
    assert_eq!(d["event"]["reason"], "protocol_not_allowed");
    assert_eq!(d["network"]["protocol"], "ssh");
    assert_eq!(d["portcullis"]["side"], "server");
    assert!(d["portcullis"]["ssh"]["banner"]
        .as_str()
        .unwrap()
        .starts_with("SSH-2.0-OpenSSH"));
    assert_eq!(closes[0]["destination"]["bytes"], SSHD_BANNER.len() as u64);
    assert_eq!(closes[0]["source"]["bytes"], 0);
}

#[test]
fn server_first_banner_allowed_on_its_port_is_delivered_then_relayed() {
    let up = Upstream::start(|mut s| {
        let _ = s.write_all(SSHD_BANNER);
        let mut request = Vec::new();
        let _ = s.read_to_end(&mut request);
        let _ = s.write_all(&request);
    });
    let (gw, listen) = gateway(
        up.addr,
        "block",
        "[[allow]]\nports = [8000]\nprotocols = [\"ssh\"]\n",
        "[detect]\nclient_first_ms = 100\n",
    );
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = vec![0u8; SSHD_BANNER.len()];
    client.read_exact(&mut banner).unwrap();
    assert_eq!(banner, SSHD_BANNER);
    client.write_all(b"after the banner").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut echo = Vec::new();
    client.read_to_end(&mut echo).unwrap();
    assert_eq!(echo, b"after the banner");
    let (decisions, closes) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["event"]["action"], "allowed");
    assert_eq!(decisions[0]["portcullis"]["side"], "server");
    assert_eq!(
        closes[0]["destination"]["bytes"],
        (SSHD_BANNER.len() + 16) as u64
    );
    assert_eq!(closes[0]["source"]["bytes"], 16);
}

#[test]
fn unidentified_server_banner_is_delivered_when_the_segment_allows_unidentified_traffic() {
    let up = Upstream::start(|mut s| {
        let _ = s.write_all(b"banner from the server\r\n");
    });
    let (gw, listen) = gateway(up.addr, "allow", HTTP_ONLY, "[detect]\ntimeout_ms = 300\n");
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"banner from the server\r\n");
    drop(client);
    let (decisions, _) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["event"]["action"], "allowed");
    assert_eq!(decisions[0]["network"]["protocol"], "unknown");
    // The server sent its line and closed before any sniffer could say what it was.
    assert_eq!(decisions[0]["portcullis"]["detection"], "eof");
}

#[test]
fn random_bytes_and_an_endless_request_line_are_named_and_refused() {
    let up = http_upstream();
    let (gw, listen) = gateway(up.addr, "block", HTTP_ONLY, "");
    for (i, payload) in [
        noise(3000, 7),
        [b"GET /".as_slice(), &[b'a'; 40_000]].concat(),
    ]
    .iter()
    .enumerate()
    {
        let mut client = TcpStream::connect(listen).unwrap();
        let _ = client.write_all(payload);
        let _ = client.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = client.read_to_end(&mut sink);
        let (decisions, _) = gw.connections_after(2 + 2 * i, 1);
        let d = &decisions[0];
        assert_eq!(d["event"]["reason"], "unidentified_protocol", "{d}");
        let detection = d["portcullis"]["detection"].as_str().unwrap();
        assert!(["no_match", "too_large"].contains(&detection), "{d}");
    }
    assert_eq!(up.accepted(), 0);
}

#[test]
fn client_hello_larger_than_max_bytes_is_too_large() {
    if !have("python3") {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let up = http_upstream();
    let (gw, listen) = gateway(
        up.addr,
        "block",
        "[[allow]]\nports = [8000]\nprotocols = [\"tls\"]\n",
        "",
    );
    // Python's OpenSSL with a 20 KiB ALPN list: a real ClientHello over two TLS records.
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\nctx.set_alpn_protocols(['p%04d' % i + 'x' * 190 for i in range(100)])\ns = socket.create_connection(('127.0.0.1', {}), timeout=10)\ntry:\n    ctx.wrap_socket(s, server_hostname='big.example')\nexcept OSError:\n    pass\n",
        listen.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (decisions, _) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["portcullis"]["detection"], "too_large");
    assert_eq!(decisions[0]["event"]["reason"], "unidentified_protocol");
    assert_eq!(up.accepted(), 0);
}

#[test]
fn upstream_refusing_or_timing_out_closes_the_client_with_a_named_reason() {
    // Refused: nothing listens on the upstream port.
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (gw, listen) = gateway(closed, "allow", HTTP_ONLY, "");
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(client.read(&mut buf), Err(_) | Ok(0)));
    let (decisions, closes) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["event"]["action"], "allowed");
    assert_eq!(closes[0]["portcullis"]["close_reason"], "upstream_refused");

    // Timed out: a listener whose accept queue is full drops further SYNs.
    let full = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = socket2::Socket::from(full.try_clone().unwrap());
    socket.listen(0).unwrap();
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            TcpStream::connect_timeout(&full.local_addr().unwrap(), Duration::from_millis(200)).ok()
        })
        .collect();
    let (gw, listen) = gateway(
        full.local_addr().unwrap(),
        "allow",
        HTTP_ONLY,
        "[limits]\nconnect_timeout_ms = 400\n",
    );
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(matches!(client.read(&mut buf), Err(_) | Ok(0)));
    let (_, closes) = gw.connections_after(2, 1);
    assert_eq!(closes[0]["portcullis"]["close_reason"], "upstream_timeout");
    drop(fillers);
}

#[test]
fn half_closed_client_gets_the_whole_large_response_intact() {
    // The upstream reads the whole upload, then answers with 32 MiB derived from it.
    let up = Upstream::answering(|request| {
        let mut response = sha256_hex(request).into_bytes();
        response.extend(noise(32 << 20, 99));
        response
    });
    let (gw, listen) = gateway(up.addr, "allow", HTTP_ONLY, "");
    let upload = noise(8 << 20, 5);
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let writer = {
        let mut client = client.try_clone().unwrap();
        let upload = upload.clone();
        std::thread::spawn(move || {
            client.write_all(&upload).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(
        &got[..64],
        sha256_hex(&upload).as_bytes(),
        "upload corrupted"
    );
    assert!(
        got[64..] == noise(32 << 20, 99)[..],
        "download corrupted or truncated"
    );
    let (_, closes) = gw.connections_after(2, 1);
    assert_eq!(closes[0]["portcullis"]["close_reason"], "completed");
    assert_eq!(closes[0]["source"]["bytes"], upload.len() as u64);
    assert_eq!(closes[0]["destination"]["bytes"], got.len() as u64);
    assert!(closes[0]["event"]["duration"].as_u64().unwrap() > 0);
}

#[test]
fn forwarding_to_the_gateway_itself_is_refused_as_self_destination() {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = ConfigDir::new(
        &forward_config(listen, listen, ""),
        &[(
            "local.toml",
            &local_segment("allow", "[[allow]]\nports = [1]\nprotocols = [\"http\"]\n"),
        )],
    );
    let gw = Gateway::start(cfg, listen);
    let events = gw.events();
    assert_eq!(events[0]["event"]["reason"], "self_destination");
    assert_eq!(events[0]["event"]["action"], "blocked");
    assert_eq!(events[0]["portcullis"]["detection"], "skipped");
}

#[test]
fn sigterm_lets_an_open_connection_finish_then_exits_zero() {
    let up = Upstream::answering(|request| request.to_vec());
    let (mut gw, listen) = gateway(
        up.addr,
        "allow",
        HTTP_ONLY,
        "[detect]\nclient_first_ms = 100\ntimeout_ms = 200\n[limits]\ndrain_ms = 10000\n",
    );
    let mut client = TcpStream::connect(listen).unwrap();
    client.write_all(b"first part ").unwrap();
    gw.wait_events(3);
    let stopper = std::thread::spawn(move || gw.terminate());
    std::thread::sleep(Duration::from_millis(300));
    client.write_all(b"second part").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"first part second part");
    assert!(stopper.join().unwrap().success());
}

#[test]
fn connection_and_rate_limits_refuse_with_their_reasons() {
    // Closes once the client has: allowed connections end at once and free their slots.
    let up = Upstream::answering(|_| Vec::new());
    let limits = "[limits]\nmax_connections = 100\nmax_connections_per_source = 2\nrate_per_source = 1\nrate_burst_per_source = 3\n";
    let (gw, listen) = gateway(
        up.addr,
        "allow",
        HTTP_ONLY,
        &format!("[detect]\nclient_first_ms = 5000\n{limits}"),
    );
    // The readiness probe took one token; two connections stay open (silent clients).
    let a = TcpStream::connect(listen).unwrap();
    let b = TcpStream::connect(listen).unwrap();
    let c = TcpStream::connect(listen).unwrap();
    let (decisions, _) = gw.connections_after(2, 1);
    assert_eq!(decisions[0]["event"]["reason"], "connection_limit");
    assert_eq!(decisions[0]["event"]["action"], "blocked");
    assert_eq!(decisions[0]["portcullis"]["detection"], "skipped");
    drop((a, b, c));
    // Wait until the two open connections have ended and released their slots.
    gw.wait_events(2 + 2 * 3);
    // The bucket holds at most three tokens and one comes back per second: of six quick
    // connections, at least three are over the rate, however long the wait above took.
    for _ in 0..6 {
        drop(TcpStream::connect(listen).unwrap());
    }
    let events = gw.wait_events(2 + 2 * 3 + 2 * 6);
    let rate_limited = events
        .iter()
        .filter(|e| e["event"]["reason"] == "rate_limited")
        .count();
    assert!(rate_limited >= 3, "{events:#?}");
}

#[test]
fn native_refusals_are_an_http_403_and_a_tls_alert() {
    let up = http_upstream();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let segment = format!(
        "segment = \"local\"\nsources = [\"127.0.0.0/8\"]\nmode = \"block\"\nrefuse = \"native\"\n\n[[allow]]\nports = [{}]\nprotocols = [\"smtp\"]\n",
        up.addr.port()
    );
    let cfg = ConfigDir::new(
        &forward_config(listen, up.addr, ""),
        &[("local.toml", &segment)],
    );
    let _gw = Gateway::start(cfg, listen);

    let url = format!("http://127.0.0.1:{}/", listen.port());
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", &url])
        .output()
        .unwrap();
    let response = String::from_utf8_lossy(&out.stdout);
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(
        response.contains("X-Portcullis-Reason: protocol_not_allowed\r\n"),
        "{response}"
    );

    let url = format!("https://127.0.0.1:{}/", listen.port());
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "10", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access denied"),
        "curl should report the TLS alert: {err}"
    );
    assert_eq!(up.accepted(), 0);
}

#[test]
fn upstream_half_close_still_carries_the_clients_bytes_after_it() {
    // The server speaks first, shuts its write side, and then reads what the client sends.
    let (tx, rx) = std::sync::mpsc::channel();
    let up = Upstream::start(move |mut s| {
        s.write_all(SSHD_BANNER).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    let (gw, listen) = gateway(
        up.addr,
        "block",
        "[[allow]]\nports = [8000]\nprotocols = [\"ssh\"]\n",
        "[detect]\nclient_first_ms = 100\n",
    );
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, SSHD_BANNER, "banner, then end of stream");
    let upload = noise(4 << 20, 11);
    client.write_all(&upload).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let received = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        received == upload,
        "client bytes after the server's half-close were lost"
    );
    let (_, closes) = gw.connections_after(2, 1);
    assert_eq!(closes[0]["portcullis"]["close_reason"], "completed");
    assert_eq!(closes[0]["source"]["bytes"], upload.len() as u64);
}
