//! The explicit-proxy lab: portcullis as `http_proxy` (10.77.1.1:3128) and `socks5`
//! (10.77.1.1:1080) in the lab's gateway namespace, no redirect; two segments (block for
//! `cb`, monitor for `cm`), an echo server on web.lab.test:8080, a silent 10.77.2.2:22, and
//! names only the gateway resolves (gw.lab.test is its own address, other.lab.test the web
//! server). Helpers read the events of one proxied connection and exact proxy replies.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{tool, Gateway, Lab, Ns, CB, CB_V4, GW, SRV, WEB_V4};

pub const HTTP_PROXY: &str = "10.77.1.1:3128";
pub const SOCKS: &str = "10.77.1.1:1080";
/// Serves its request head back as the body (to see what a forwarded request carried).
pub const ECHO_PORT: u16 = 8080;
pub const BIG: usize = 32 << 20;

/// The lab with portcullis running as an explicit proxy in `gw` (no redirect).
pub struct ProxyLab {
    pub lab: Lab,
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
    pub fn start() -> Option<ProxyLab> {
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
            \x20   def do_POST(self):\n\
            \x20       sent = self.rfile.read(int(self.headers['Content-Length']))\n\
            \x20       body = (self.requestline + '\\n').encode() + sent\n\
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

    pub fn spawn(&mut self, ns: Ns, name: &str, args: &[&str]) {
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

    pub fn wait_tcp(&self, host: &str, port: u16) {
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
    pub fn conn(&self, listener: &str, host: &str, port: u16) -> Events {
        self.conn_from(CB_V4, listener, host, port)
    }

    /// As `conn`, for a client at `source`.
    pub fn conn_from(&self, source: &str, listener: &str, host: &str, port: u16) -> Events {
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
    pub fn ssh_via(&self, ns: Ns, proxy_command: &str) -> Output {
        let proxy = format!("ProxyCommand={proxy_command}");
        self.lab.ssh_with(ns, 443, &[&proxy], "true")
    }

    /// Runs a python script in `cb` (for exact proxy reply bytes); returns its stdout.
    pub fn python(&self, script: &str) -> String {
        let out = self.lab.run(CB, &["python3", "-c", script]);
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn connect_status(&self, authority: &str) -> String {
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
    pub fn socks_reply(&self, host: &str, port: u16) -> u8 {
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
pub struct Events {
    pub decision: Option<Value>,
    pub close: Value,
}

impl Events {
    pub fn d(&self, pointer: &str) -> &str {
        let decision = self
            .decision
            .as_ref()
            .unwrap_or_else(|| panic!("no decision event; close: {}", self.close));
        decision
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn close_reason(&self) -> &str {
        self.close
            .pointer("/portcullis/close_reason")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ca() -> String {
    format!("{}/certs/ca.pem", env!("CARGO_MANIFEST_DIR"))
}
