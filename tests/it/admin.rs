//! The admin endpoint end to end on loopback (issue 7): a real gateway process with a
//! forward listener in front of a real web server (python's http.server), driven by curl;
//! metrics parsed with the Prometheus project's own Python text parser; mTLS accepted and
//! refused with curl; reloads by SIGHUP and POST /reload, alone and in storms.

mod bounds;
mod lab;
mod metrics;
mod mtls;
mod reload;
mod unit;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

pub const CERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs");

pub fn cert(name: &str) -> String {
    format!("{CERTS}/{name}")
}

/// Python's http.server on loopback, serving a directory; killed on drop.
pub struct WebServer {
    pub addr: SocketAddr,
    /// Holds the served directory for the server's lifetime.
    _root: tempfile::TempDir,
    child: Child,
}

impl WebServer {
    pub fn start() -> WebServer {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), "hello from upstream\n").unwrap();
        let port = free_port();
        let child = Command::new(python())
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .arg("--directory")
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(addr);
        WebServer {
            addr,
            _root: root,
            child,
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's python3 (with python3-prometheus-client), else whatever python3 is on PATH.
pub fn python() -> PathBuf {
    let debian = Path::new("/usr/bin/python3");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// A gateway: forward listener -> `upstream`, block-mode segment `local` for 127.0.0.0/8
/// with `rules` (`PORT` = the upstream's port), and `[admin]` as given (`ADMIN` = its
/// address). Returns the gateway, its listener and the admin address.
pub fn gateway(
    upstream: SocketAddr,
    rules: &str,
    admin: &str,
    extra: &str,
) -> (Gateway, SocketAddr, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin = admin
        .replace("ADMIN", &admin_addr.to_string())
        .replace("CERTS", CERTS);
    let rules = rules.replace("PORT", &upstream.port().to_string());
    let cfg = ConfigDir::new(
        &forward_config(
            listen,
            upstream,
            &format!("[detect]\nclient_first_ms = 100\ntimeout_ms = 1000\n\n{extra}\n\n[admin]\n{admin}\n"),
        ),
        &[("local.toml", &local_segment("block", &rules))],
    );
    let gw = Gateway::start(cfg, listen);
    wait_listening(admin_addr);
    (gw, listen, admin_addr)
}

pub const ALLOW_HTTP: &str = "[[allow]]\nports = [PORT]\nprotocols = [\"http\"]\n";
pub const PLAIN_ADMIN: &str = "listen = \"ADMIN\"\n";

/// What curl got: its exit status, the HTTP status (0 when there was no HTTP answer), the
/// body, and its stderr.
#[derive(Debug)]
pub struct Curl {
    pub ok: bool,
    pub status: u16,
    pub body: String,
    pub headers: String,
    pub stderr: String,
}

impl Curl {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): HTTP {} {:?}; curl said {:?}",
                self.status, self.body, self.stderr
            )
        })
    }
}

/// Runs curl with a time limit; `args` come before the URL.
pub fn curl(args: &[&str], url: &str) -> Curl {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    Curl {
        ok: out.status.success(),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `curl http://ADMIN/PATH` with extra args.
pub fn admin(addr: SocketAddr, path: &str, args: &[&str]) -> Curl {
    curl(args, &format!("http://{addr}{path}"))
}

/// A GET through the gateway's forward listener with curl (the upstream answers it).
pub fn get_through(listen: SocketAddr) -> Curl {
    curl(&[], &format!("http://{listen}/index.html"))
}

/// A loopback server that answers every read with a 40-byte HTTP response and keeps the
/// connection open until the client closes it.
pub fn keep_open_upstream() -> Upstream {
    Upstream::start(|mut s| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if n == 0 || std::io::Write::write_all(&mut s, reply).is_err() {
                return;
            }
        }
    })
}

#[test]
fn every_route_answers_as_documented_and_nothing_else_does() {
    let web = WebServer::start();
    let (gw, listen, addr) = gateway(web.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    let version = gw.events()[0]["rule"]["version"]
        .as_str()
        .unwrap()
        .to_owned();

    let health = admin(addr, "/healthz", &[]);
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, "ok\n"),
        "{health:?}"
    );
    let ready = admin(addr, "/readyz", &[]);
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    let policy = admin(addr, "/policy", &[]);
    assert_eq!(policy.status, 200);
    assert!(
        policy.headers.contains("content-type: application/json"),
        "{}",
        policy.headers
    );
    let p = policy.json();
    assert_eq!(p["version"], version.as_str(), "the version events carry");
    assert!(p["loaded_at"].as_str().unwrap().ends_with('Z'));
    let segment = &p["segments"][0];
    assert_eq!(segment["name"], "local");
    assert_eq!(segment["sources"][0], "127.0.0.0/8");
    assert_eq!(segment["mode"], "block");
    assert_eq!(segment["rules"][0]["id"], "local/allow[0]");
    assert_eq!(segment["rules"][0]["protocols"][0], "http");
    assert_eq!(segment["rules"][0]["ports"]["set"][0], web.addr.port());

    assert_eq!(
        admin(addr, "/connections", &[]).json(),
        serde_json::json!([])
    );

    for (path, args, status, allow) in [
        ("/nowhere", &[][..], 404, None),
        ("/metrics/", &[][..], 404, None),
        ("/metrics", &["-X", "POST"][..], 405, Some("GET, HEAD")),
        ("/policy", &["-X", "DELETE"][..], 405, Some("GET, HEAD")),
        ("/reload", &[][..], 405, Some("POST")),
        ("/reload", &["-X", "PUT"][..], 405, Some("POST")),
    ] {
        let got = admin(addr, path, args);
        assert_eq!(got.status, status, "{path} {args:?}: {got:?}");
        if let Some(allow) = allow {
            assert!(
                got.headers.contains(&format!("allow: {allow}\r\n")),
                "{path}: {}",
                got.headers
            );
        }
    }
    // HEAD answers the headers alone.
    let head = admin(addr, "/metrics", &["-I"]);
    assert_eq!(head.status, 200);
    assert!(
        head.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        head.headers
    );

    // Malformed requests get 4xx and leave both the endpoint and the data path running.
    let huge = format!("X-Big: {}", "a".repeat(20_000));
    assert_eq!(admin(addr, "/healthz", &["-H", &huge]).status, 431);
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut raw, b"\x16\x03\x01 this is not HTTP\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut raw, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(admin(addr, "/healthz", &[]).status, 200);
    let through = get_through(listen);
    assert_eq!(
        (through.status, through.body.as_str()),
        (200, "hello from upstream\n")
    );
}
