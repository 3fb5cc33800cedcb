//! Explicit proxies end to end (issue 8): portcullis in the lab's gateway namespace with an
//! `http_proxy` listener on 10.77.1.1:3128 and a `socks5` listener on 10.77.1.1:1080, real
//! clients in `cb` (curl -x, curl --socks5-hostname, OpenSSH through `nc -X connect` and
//! `nc -X 5`, python for exact reply bytes), the lab's real HTTPS server and sshd behind it.
//! Run with `cargo test --test it explicit -- --nocapture` (root and nftables; skips
//! elsewhere unless CI). Bad input on loopback: `explicit/input.rs`.

mod input;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::lab::{tool, Gateway, Lab, CB, CB_V4, CM, CM_V4, GW, SRV, SSH_V4, WEB_V4, WEB_V6};

const HTTP_PROXY: &str = "10.77.1.1:3128";
const SOCKS: &str = "10.77.1.1:1080";
/// Serves its request head back as the body (to see what a forwarded request carried).
const ECHO_PORT: u16 = 8080;
const BIG: usize = 32 << 20;

/// The lab with portcullis running as an explicit proxy in `gw` (no redirect).
struct ProxyLab {
    lab: Lab,
    procs: Vec<Child>,
}

impl Drop for ProxyLab {
    fn drop(&mut self) {
        for child in &mut self.procs {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const POLICY: &str =
    "[[allow]]\nports = [443]\nprotocols = [\"tls\"]\nserver_names = [\"web.lab.test\"]\n\n\
    [[allow]]\nports = [80, 8080]\nprotocols = [\"http\"]\n\n\
    [[allow]]\nports = [22]\nprotocols = [\"ssh\"]\n";

impl ProxyLab {
    fn start() -> Option<ProxyLab> {
        let lab = Lab::start(Gateway::Off)?;
        let mut me = ProxyLab {
            lab,
            procs: Vec::new(),
        };
        let policy = me.lab.path("xpolicy");
        fs::create_dir_all(&policy).unwrap();
        for (segment, v4, v6) in [
            ("block", "10.77.1.0/24", "fd77:1::/64"),
            ("monitor", "10.77.3.0/24", "fd77:3::/64"),
        ] {
            fs::write(
                policy.join(format!("{segment}.toml")),
                format!(
                    "segment = \"{segment}\"\nsources = [\"{v4}\", \"{v6}\"]\n\
                     mode = \"{segment}\"\non_unidentified = \"block\"\n\n{POLICY}"
                ),
            )
            .unwrap();
        }
        let config = format!(
            "policy_dir = \"{}\"\n\n[[listener]]\nmode = \"http_proxy\"\nlisten = \"{HTTP_PROXY}\"\n\n\
             [[listener]]\nmode = \"socks5\"\nlisten = \"{SOCKS}\"\n\n\
             [detect]\ntimeout_ms = 2000\n\n[limits]\nconnect_timeout_ms = 1500\n\n\
             [events]\nsink = \"file:{}\"\n",
            policy.display(),
            me.lab.events_path().display()
        );
        let config_path = me.lab.path("explicit.toml");
        fs::write(&config_path, config).unwrap();
        // Names only the gateway resolves: its own address, and nothing at all.
        let hosts = PathBuf::from("/etc/netns")
            .join(me.lab.ns(GW))
            .join("hosts");
        let mut text = fs::read_to_string(&hosts).unwrap();
        text.push_str("10.77.2.1 gw.lab.test\n10.77.2.2 other.lab.test\n");
        fs::write(&hosts, text).unwrap();
        // A destination that never answers: SYNs to 10.77.2.2:22 are dropped.
        me.lab
            .exec_ok(SRV, &["nft", "add", "table", "inet", "pclx"]);
        me.lab.exec_ok(
            SRV,
            &[
                "nft",
                "add",
                "chain",
                "inet",
                "pclx",
                "in",
                "{ type filter hook input priority filter; }",
            ],
        );
        me.lab.exec_ok(
            SRV,
            &[
                "nft", "add", "rule", "inet", "pclx", "in", "ip", "daddr", WEB_V4, "tcp", "dport",
                "22", "drop",
            ],
        );

        let echo = "import http.server\n\
            class H(http.server.BaseHTTPRequestHandler):\n\
            \x20   protocol_version = 'HTTP/1.1'\n\
            \x20   def do_GET(self):\n\
            \x20       body = (self.requestline + '\\n' + str(self.headers)).encode()\n\
            \x20       self.send_response(200)\n\
            \x20       self.send_header('Content-Length', str(len(body)))\n\
            \x20       self.end_headers()\n\
            \x20       self.wfile.write(body)\n\
            http.server.ThreadingHTTPServer(('10.77.2.2', 8080), H).serve_forever()\n";
        me.spawn(SRV, "echo", &["python3", "-c", echo]);
        let bin = env!("CARGO_BIN_EXE_portcullis");
        me.spawn(
            GW,
            "portcullis",
            &[bin, "run", "--config", &config_path.to_string_lossy()],
        );
        me.wait_tcp("10.77.1.1", 3128);
        me.wait_tcp("10.77.1.1", 1080);
        me.wait_tcp(WEB_V4, ECHO_PORT);
        Some(me)
    }

    fn spawn(&mut self, ns: crate::lab::Ns, name: &str, args: &[&str]) {
        let log = fs::File::create(self.lab.path(&format!("{name}.log"))).unwrap();
        let program = tool(args[0]).unwrap_or_else(|| PathBuf::from(args[0]));
        let child = Command::new(tool("ip").unwrap())
            .args(["netns", "exec", &self.lab.ns(ns)])
            .arg(program)
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.procs.push(child);
    }

    fn wait_tcp(&self, host: &str, port: u16) {
        let start = Instant::now();
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        while !Command::new(tool("ip").unwrap())
            .args(["netns", "exec", &self.lab.ns(CB), "bash", "-c", &probe])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            let log = fs::read_to_string(self.lab.path("portcullis.log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{host}:{port} not ready:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The events of the one connection from `cb` through `listener` to `port`, naming
    /// `host` (a domain, or an address when the client gave one): the close event, and the
    /// decision event when a decision was taken.
    fn conn(&self, listener: &str, host: &str, port: u16) -> Events {
        self.conn_from(CB_V4, listener, host, port)
    }

    /// As `conn`, for a client at `source`.
    fn conn_from(&self, source: &str, listener: &str, host: &str, port: u16) -> Events {
        let matches = |e: &Value| {
            e.pointer("/source/ip").and_then(Value::as_str) == Some(source)
                && e.pointer("/portcullis/listener").and_then(Value::as_str) == Some(listener)
                && e.pointer("/destination/port").and_then(Value::as_u64) == Some(port.into())
                && (e.pointer("/destination/domain").and_then(Value::as_str) == Some(host)
                    || e.pointer("/destination/ip").and_then(Value::as_str) == Some(host))
        };
        let start = Instant::now();
        loop {
            let events: Vec<Value> = self.lab.events().into_iter().filter(matches).collect();
            let (closes, decisions): (Vec<Value>, Vec<Value>) = events
                .into_iter()
                .partition(|e| e["event"]["action"] == "closed");
            if let Some(close) = closes.first() {
                assert_eq!(closes.len(), 1, "one close event: {closes:#?}");
                assert!(
                    decisions.len() <= 1,
                    "at most one decision event: {decisions:#?}"
                );
                eprintln!(
                    "explicit: decision {:?}\nexplicit: close {close}",
                    decisions.first()
                );
                return Events {
                    decision: decisions.into_iter().next(),
                    close: close.clone(),
                };
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no close event for {listener} -> {host}:{port}; events:\n{:#?}",
                self.lab.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ssh -p 443 root@ssh.lab.test true` from `ns` with the lab's key, through
    /// `ProxyCommand`.
    fn ssh_via(&self, ns: crate::lab::Ns, proxy_command: &str) -> Output {
        let key = self.lab.path("client_key").to_string_lossy().into_owned();
        let proxy = format!("ProxyCommand={proxy_command}");
        let args = [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            &key,
            "-p",
            "443",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            &proxy,
            "root@ssh.lab.test",
            "true",
        ];
        self.lab.run(ns, &args)
    }

    /// Runs a python script in `cb` (for exact proxy reply bytes); returns its stdout.
    fn python(&self, script: &str) -> String {
        let out = self.lab.run(CB, &["python3", "-c", script]);
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn connect_status(&self, authority: &str) -> String {
        self.python(&format!(
            "import socket\ns = socket.create_connection(('10.77.1.1', 3128), timeout=20)\n\
             s.sendall(b'CONNECT {authority} HTTP/1.1\\r\\nHost: {authority}\\r\\n\\r\\n')\n\
             head = b''\nwhile b'\\r\\n\\r\\n' not in head:\n    d = s.recv(4096)\n    if not d: break\n    head += d\n\
             lines = head.decode().split('\\r\\n')\n\
             reason = [l.split(': ', 1)[1] for l in lines if l.lower().startswith('x-portcullis-reason:')]\n\
             print(lines[0], *reason)\n"
        ))
    }

    /// The SOCKS5 reply code for CONNECT to `host` (a name) and `port`, as python sees it.
    fn socks_reply(&self, host: &str, port: u16) -> u8 {
        let out = self.python(&format!(
            "import socket, struct\ns = socket.create_connection(('10.77.1.1', 1080), timeout=20)\n\
             s.sendall(b'\\x05\\x01\\x00')\nassert s.recv(2) == b'\\x05\\x00'\n\
             name = b'{host}'\n\
             s.sendall(b'\\x05\\x01\\x00\\x03' + bytes([len(name)]) + name + struct.pack('>H', {port}))\n\
             r = b''\nwhile len(r) < 2:\n    d = s.recv(10)\n    if not d: break\n    r += d\nprint(r[1])\n"
        ));
        out.parse()
            .unwrap_or_else(|_| panic!("no SOCKS reply: {out}"))
    }
}

/// The events of one proxied connection.
struct Events {
    decision: Option<Value>,
    close: Value,
}

impl Events {
    fn d(&self, pointer: &str) -> &str {
        let decision = self
            .decision
            .as_ref()
            .unwrap_or_else(|| panic!("no decision event; close: {}", self.close));
        decision
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn close_reason(&self) -> &str {
        self.close
            .pointer("/portcullis/close_reason")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ca() -> String {
    format!("{}/certs/ca.pem", env!("CARGO_MANIFEST_DIR"))
}

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
    assert_eq!(e.close_reason(), "completed");

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
