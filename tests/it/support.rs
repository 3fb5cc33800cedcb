//! Shared test plumbing: a gateway process on a temporary configuration, its event file,
//! and small loopback servers that count what reaches them.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A configuration directory: `portcullis.toml` plus `policy/*.toml`.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    /// `config` is the portcullis.toml text; `{EVENTS}` in it becomes the event file path.
    pub fn new(config: &str, policies: &[(&str, &str)]) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policy")).unwrap();
        let events = dir.path().join("events.jsonl");
        let config = config.replace("{EVENTS}", &events.display().to_string());
        std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
        for (name, text) in policies {
            std::fs::write(dir.path().join("policy").join(name), text).unwrap();
        }
        ConfigDir { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    pub fn portcullis(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all: Vec<&str> = args.to_vec();
        all.push("--config");
        all.push(config.to_str().unwrap());
        Command::new(BIN).args(&all).output().unwrap()
    }
}

/// A running `portcullis run`; stopped with SIGTERM (then killed) on drop.
pub struct Gateway {
    pub cfg: ConfigDir,
    child: Option<Child>,
}

impl Gateway {
    /// Starts the gateway and waits until `listen` accepts connections.
    pub fn start(cfg: ConfigDir, listen: SocketAddr) -> Gateway {
        Gateway::start_with_env(cfg, listen, &[])
    }

    /// As `start`, with `env` added to the gateway's environment.
    pub fn start_with_env(cfg: ConfigDir, listen: SocketAddr, env: &[(&str, &str)]) -> Gateway {
        let child = Command::new(BIN)
            .args(["run", "--config", cfg.config().to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut gw = Gateway {
            cfg,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_err() {
            if let Some(status) = gw.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                gw.child
                    .as_mut()
                    .unwrap()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("gateway exited with {status} before listening: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "gateway never listened on {listen}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        // The readiness probe above is itself a connection: wait for its two events.
        gw.wait_events(2);
        gw
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The first event `pred` accepts, waiting up to 15 s for it; panics with every event
    /// otherwise.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event: {:#?}",
                self.events()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn events(&self) -> Vec<Value> {
        read_events(&self.cfg.events_path())
    }

    /// Waits (bounded) until at least `n` events are written; returns them all.
    pub fn wait_events(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} events, got {}: {events:#?}",
                events.len()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The decision and close events written after the first `skip` events, once there are
    /// at least `pairs` of each.
    pub fn connections_after(&self, skip: usize, pairs: usize) -> (Vec<Value>, Vec<Value>) {
        let events = self.wait_events(skip + 2 * pairs);
        let (closes, decisions): (Vec<Value>, Vec<Value>) = events[skip..]
            .iter()
            .cloned()
            .partition(|e| e["event"]["action"] == "closed");
        (decisions, closes)
    }

    /// Sends a signal (`HUP`, `USR1`, ...) to the gateway.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway did not exit after SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The events written so far: whole lines only. The gateway writes lines whole, but a
/// reader can catch a write half-way (Linux makes a write visible a page at a time), so, as
/// a log shipper does, a last line without its newline is left for the next read.
pub fn read_events(path: &Path) -> Vec<Value> {
    let mut bytes = std::fs::read(path).unwrap_or_default();
    bytes.truncate(
        bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1),
    );
    let text = String::from_utf8(bytes).expect("event files are UTF-8");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

/// A loopback server that counts connections and answers each with `respond`.
pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    /// `respond` gets each accepted stream on its own thread.
    pub fn start<F>(respond: F) -> Upstream
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let respond = Arc::new(respond);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let respond = Arc::clone(&respond);
                thread::spawn(move || respond(stream));
            }
        });
        Upstream { addr, accepted }
    }

    /// Reads the request to end of stream, then answers `reply(request)` and closes.
    pub fn answering<F>(reply: F) -> Upstream
    where
        F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        Upstream::start(move |mut s| {
            let mut request = Vec::new();
            if s.read_to_end(&mut request).is_ok() {
                let _ = s.write_all(&reply(&request));
                let _ = s.shutdown(Shutdown::Write);
            }
        })
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A forward-listener configuration for `listen` -> `upstream`, events to the file.
pub fn forward_config(listen: SocketAddr, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "policy_dir = \"policy\"\n\n[[listener]]\nmode = \"forward\"\nlisten = \"{listen}\"\nupstream = \"{upstream}\"\n\n[events]\nsink = \"file:{{EVENTS}}\"\n\n{extra}\n"
    )
}

/// A block-mode segment for loopback clients with the given rules.
pub fn local_segment(on_unidentified: &str, rules: &str) -> String {
    format!(
        "segment = \"local\"\nsources = [\"127.0.0.0/8\"]\nmode = \"block\"\non_unidentified = \"{on_unidentified}\"\n\n{rules}\n"
    )
}

/// Deterministic pseudo-random bytes (xorshift64).
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// True when `cmd` exists on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
