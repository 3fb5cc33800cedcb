//! The end-to-end namespace lab: client, gateway and server namespaces with real servers
//! (python HTTPS, sshd) and portcullis behind an nftables redirect, torn down on drop.
//!
//! Topology (one lab per test; every name carries `pcl<pid>-<n>`):
//! `cb` 10.77.1.2 fd77:1::2 ─ `gw` ─ `srv` 10.77.2.2 (web) 10.77.2.3 (sshd) fd77:2::2 (web)
//! `cm` 10.77.3.2 fd77:3::2 ─┘  10.77.1.1 10.77.3.1 10.77.2.1 (+ fd77:N::1), forwarding on.
//! Segment "block" is 10.77.1.0/24 + fd77:1::/64, segment "monitor" 10.77.3.0/24 + fd77:3::/64.

use std::fs;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Client of the block segment.
pub const CB: Ns = Ns("cb");
/// Client of the monitor segment.
pub const CM: Ns = Ns("cm");
/// The gateway.
pub const GW: Ns = Ns("gw");
/// The servers.
pub const SRV: Ns = Ns("srv");

pub const CB_V4: &str = "10.77.1.2";
pub const CB_V6: &str = "fd77:1::2";
pub const CM_V4: &str = "10.77.3.2";
pub const WEB_V4: &str = "10.77.2.2";
pub const WEB_V6: &str = "fd77:2::2";
pub const SSH_V4: &str = "10.77.2.3";

/// Longest a client command may run before `timeout` kills it.
const CLIENT_SECS: u64 = 30;
const READY: Duration = Duration::from_secs(15);
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// A namespace role in the lab.
#[derive(Clone, Copy, Debug)]
pub struct Ns(&'static str);

/// Whether portcullis runs in `gw` behind the redirect rule, or `gw` only routes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gateway {
    On,
    Off,
}

struct Proc {
    name: &'static str,
    child: Child,
}

/// One running lab. Dropping it kills every process it started and removes its namespaces.
pub struct Lab {
    id: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);
static STALE: Once = Once::new();

/// Finds a program on PATH or in the sbin folders (root's tools live there).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found
}

fn need(name: &str) -> PathBuf {
    tool(name).unwrap_or_else(|| panic!("the lab needs `{name}` (not found on PATH or sbin)"))
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a setup command and panics with its output when it fails.
fn sh(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kill_group(pgid: u32) {
    let _ = Command::new("bash")
        .args(["-c", &format!("kill -KILL -- -{pgid} 2>/dev/null")])
        .status();
}

/// Kills whatever still runs in a namespace, deletes it and its /etc/netns files.
fn remove_namespace(ip: &Path, name: &str) {
    if let Ok(out) = Command::new(ip).args(["netns", "pids", name]).output() {
        let pids = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !pids.is_empty() {
            let _ = Command::new("bash")
                .args(["-c", &format!("kill -KILL {pids} 2>/dev/null")])
                .status();
        }
    }
    let _ = Command::new(ip).args(["netns", "del", name]).output();
    let _ = fs::remove_dir_all(Path::new("/etc/netns").join(name));
}

/// Removes namespaces (and /etc/netns entries) left by lab runs whose process is gone.
fn remove_stale(ip: &Path) {
    let listed = Command::new(ip)
        .args(["netns", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let mut names: Vec<String> = String::from_utf8_lossy(&listed)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    if let Ok(dir) = fs::read_dir("/etc/netns") {
        names.extend(
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    for name in names {
        let Some(pid) = lab_pid(&name) else { continue };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            eprintln!("lab: removing stale namespace {name} of dead pid {pid}");
            remove_namespace(ip, &name);
        }
    }
}

/// `pcl<pid>-<n>-<role>` -> pid.
fn lab_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("pcl")?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    matches!(parts.next()?, "cb" | "cm" | "gw" | "srv").then_some(pid)
}

impl Lab {
    /// Builds a lab, or prints `SKIP: ...` and returns `None` when it cannot run here (not
    /// root, no nft). With `CI` set it fails instead: CI must run the lab.
    pub fn start(gateway: Gateway) -> Option<Lab> {
        let missing = if !is_root() {
            Some("not running as root")
        } else if tool("nft").is_none() {
            Some("`nft` (nftables) is not installed")
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but the namespace lab cannot run: {why}"
            );
            println!("SKIP: namespace lab: {why}");
            return None;
        }
        let ip = need("ip");
        STALE.call_once(|| remove_stale(&ip));
        let id = format!(
            "pcl{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .expect("tempdir");
        let mut lab = Lab {
            id,
            dir,
            namespaces: Vec::new(),
            procs: Vec::new(),
        };
        lab.build_network();
        lab.start_servers();
        if gateway == Gateway::On {
            lab.start_gateway();
        }
        Some(lab)
    }

    pub fn ns(&self, ns: Ns) -> String {
        format!("{}-{}", self.id, ns.0)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ip(&self, ns: Ns, args: &str) {
        let mut full = vec!["-n".to_owned(), self.ns(ns)];
        full.extend(args.split_whitespace().map(str::to_owned));
        sh(
            &need("ip"),
            &full.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }

    fn build_network(&mut self) {
        let ip = need("ip");
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost\n{WEB_V4} web.lab.test\n{SSH_V4} ssh.lab.test\n"
        );
        for ns in [CB, CM, GW, SRV] {
            let name = self.ns(ns);
            sh(&ip, &["netns", "add", &name]);
            self.namespaces.push(name.clone());
            let etc = Path::new("/etc/netns").join(&name);
            fs::create_dir_all(&etc).expect("mkdir /etc/netns/NAME");
            fs::write(etc.join("hosts"), &hosts).expect("write hosts");
            fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n")
                .expect("write resolv.conf");
            self.ip(ns, "link set lo up");
        }
        for (client, gw_if) in [(CB, "gw-b"), (CM, "gw-m"), (SRV, "gw-s")] {
            self.ip(
                GW,
                &format!(
                    "link add {gw_if} type veth peer name eth0 netns {}",
                    self.ns(client)
                ),
            );
        }
        let addrs: [(Ns, &str, &[&str]); 6] = [
            (CB, "eth0", &["10.77.1.2/24", "fd77:1::2/64"]),
            (CM, "eth0", &["10.77.3.2/24", "fd77:3::2/64"]),
            (
                SRV,
                "eth0",
                &["10.77.2.2/24", "10.77.2.3/24", "fd77:2::2/64"],
            ),
            (GW, "gw-b", &["10.77.1.1/24", "fd77:1::1/64"]),
            (GW, "gw-m", &["10.77.3.1/24", "fd77:3::1/64"]),
            (GW, "gw-s", &["10.77.2.1/24", "fd77:2::1/64"]),
        ];
        for (ns, dev, list) in addrs {
            for a in list {
                let nodad = if a.contains(':') { " nodad" } else { "" };
                self.ip(ns, &format!("addr add {a} dev {dev}{nodad}"));
            }
            self.ip(ns, &format!("link set {dev} up"));
        }
        for (ns, n) in [(CB, 1), (CM, 3), (SRV, 2)] {
            self.ip(ns, &format!("route add default via 10.77.{n}.1"));
            self.ip(ns, &format!("-6 route add default via fd77:{n}::1"));
        }
        self.exec_ok(
            GW,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        );
        // Counts SYNs that reach sshd's port 443 from the network (not srv's own probes).
        self.nft(
            SRV,
            "srv.nft",
            &format!(
                "table inet pcllab {{\n counter ssh443 {{ }}\n chain input {{\n  type filter hook input priority filter; policy accept;\n  iifname \"eth0\" ip daddr {SSH_V4} tcp dport 443 tcp flags & (syn | ack) == syn counter name \"ssh443\"\n }}\n}}\n"
            ),
        );
    }

    fn nft(&self, ns: Ns, file: &str, ruleset: &str) {
        let path = self.path(file);
        fs::write(&path, ruleset).expect("write nft file");
        self.exec_ok(ns, &["nft", "-f", &path.to_string_lossy()]);
    }

    /// Runs a setup command in a namespace; panics when it fails.
    pub fn exec_ok(&self, ns: Ns, args: &[&str]) -> String {
        let program = need(args[0]);
        let mut full = vec!["netns", "exec"];
        let name = self.ns(ns);
        full.push(&name);
        let p = program.to_string_lossy().into_owned();
        full.push(&p);
        full.extend(&args[1..]);
        sh(&need("ip"), &full)
    }

    /// Starts a long-running process in a namespace, in its own process group.
    fn spawn(&mut self, ns: Ns, name: &'static str, program: &Path, args: &[String]) {
        let log = fs::File::create(self.path(&format!("{name}.log"))).expect("log file");
        let child = Command::new(need("ip"))
            .args(["netns", "exec", &self.ns(ns)])
            .arg(program)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        self.procs.push(Proc { name, child });
    }

    /// Polls until a TCP connect from `ns` to host:port succeeds; panics with the process
    /// log if `proc` exits first or the deadline passes.
    fn wait_tcp(&mut self, ns: Ns, host: &str, port: u16, proc: &'static str) {
        let start = Instant::now();
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        loop {
            let ok = Command::new(need("ip"))
                .args(["netns", "exec", &self.ns(ns), "bash", "-c", &probe])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            let log_path = self.path(&format!("{proc}.log"));
            let log = || fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(p) = self.procs.iter_mut().find(|p| p.name == proc) {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!(
                        "{proc} exited ({status}) before {host}:{port} was ready:\n{}",
                        log()
                    );
                }
            }
            assert!(
                start.elapsed() < READY,
                "{proc}: {host}:{port} not ready in {READY:?}:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn start_servers(&mut self) {
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let www = self.path("www");
        fs::create_dir_all(&www).expect("mkdir www");
        fs::write(www.join("index.html"), self.page()).expect("write page");
        let python = Path::new("/usr/bin/python3").to_path_buf();
        let python = if python.is_file() {
            python
        } else {
            need("python3")
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/web.py");
        let mut args = vec![script.to_string_lossy().into_owned()];
        for (k, v) in [
            ("--root", www.to_string_lossy().into_owned()),
            (
                "--cert",
                certs.join("server.pem").to_string_lossy().into_owned(),
            ),
            (
                "--key",
                certs.join("server-key.pem").to_string_lossy().into_owned(),
            ),
            ("--listen", format!("{WEB_V4}:80")),
            ("--listen", format!("{WEB_V4}:443:tls")),
            ("--listen", format!("{WEB_V4}:8443:tls")),
            ("--listen", format!("[{WEB_V6}]:443:tls")),
        ] {
            args.push(k.to_owned());
            args.push(v);
        }
        self.spawn(SRV, "web", &python, &args);

        let keygen = need("ssh-keygen");
        for key in ["ssh_host_ed25519_key", "client_key"] {
            let p = self.path(key).to_string_lossy().into_owned();
            sh(
                &keygen,
                &["-q", "-t", "ed25519", "-N", "", "-C", &self.id, "-f", &p],
            );
        }
        fs::copy(self.path("client_key.pub"), self.path("authorized_keys"))
            .expect("authorized_keys");
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let d = self.dir.path().display();
        let config = format!(
            "Port 22\nPort 443\nListenAddress {SSH_V4}\nHostKey {d}/ssh_host_ed25519_key\n\
             PidFile none\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             LogLevel VERBOSE\n"
        );
        fs::write(self.path("sshd_config"), config).expect("sshd_config");
        let args = [
            "-D",
            "-f",
            &format!("{d}/sshd_config"),
            "-E",
            &format!("{d}/sshd.events.log"),
        ];
        self.spawn(SRV, "sshd", &need("sshd"), &args.map(str::to_owned));

        for port in [80, 443, 8443] {
            self.wait_tcp(SRV, WEB_V4, port, "web");
        }
        self.wait_tcp(SRV, WEB_V6, 443, "web");
        self.wait_tcp(SRV, SSH_V4, 22, "sshd");
        self.wait_tcp(SRV, SSH_V4, 443, "sshd");
    }

    fn start_gateway(&mut self) {
        let policy = self.path("policy");
        fs::create_dir_all(&policy).expect("mkdir policy");
        let rules = "[[allow]]\nports = [443]\nprotocols = [\"tls\"]\n\n\
                     [[allow]]\nports = [80]\nprotocols = [\"http\"]\n\n\
                     [[allow]]\nports = [22]\nprotocols = [\"ssh\"]\n";
        for (segment, v4, v6) in [
            ("block", "10.77.1.0/24", "fd77:1::/64"),
            ("monitor", "10.77.3.0/24", "fd77:3::/64"),
        ] {
            let text = format!(
                "segment = \"{segment}\"\nsources = [\"{v4}\", \"{v6}\"]\nmode = \"{segment}\"\n\
                 on_unidentified = \"block\"\n\n{rules}"
            );
            fs::write(policy.join(format!("{segment}.toml")), text).expect("write policy");
        }
        let config = format!(
            "policy_dir = \"{}\"\n\n[[listener]]\nmode = \"redirect\"\nlisten = \"0.0.0.0:15001\"\n\n\
             [[listener]]\nmode = \"redirect\"\nlisten = \"[::]:15001\"\n\n[detect]\ntimeout_ms = 2000\n\n\
             [events]\nsink = \"file:{}\"\n",
            policy.display(),
            self.events_path().display()
        );
        fs::write(self.path("portcullis.toml"), config).expect("write config");
        self.nft(
            GW,
            "gw.nft",
            "table inet pcllab {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  iifname { \"gw-b\", \"gw-m\" } meta l4proto tcp redirect to :15001\n }\n}\n",
        );
        let bin = Path::new(env!("CARGO_BIN_EXE_portcullis"));
        let args = [
            "run".to_owned(),
            "--config".to_owned(),
            self.path("portcullis.toml").to_string_lossy().into_owned(),
        ];
        self.spawn(GW, "portcullis", bin, &args);
        self.wait_tcp(GW, "127.0.0.1", 15001, "portcullis");
        self.wait_tcp(GW, "::1", 15001, "portcullis");
    }

    /// The small page the web server serves at `/`.
    pub fn page(&self) -> String {
        format!("<html><body>portcullis lab {}</body></html>\n", self.id)
    }

    /// Writes `size` random bytes as `/big.bin` on the web server; returns their sha256.
    pub fn make_big_file(&self, size: usize) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut data = vec![0u8; size];
        let mut f = fs::File::open("/dev/urandom").expect("urandom");
        std::io::Read::read_exact(&mut f, &mut data).expect("read urandom");
        fs::write(self.path("www/big.bin"), &data).expect("write big.bin");
        Sha256::digest(&data).to_vec()
    }

    /// Runs a client command in a namespace, bounded by `timeout`.
    pub fn run(&self, ns: Ns, args: &[&str]) -> Output {
        self.run_input(ns, args, b"")
    }

    /// As `run`, writing `input` to the command's standard input.
    pub fn run_input(&self, ns: Ns, args: &[&str], input: &[u8]) -> Output {
        self.run_for(ns, CLIENT_SECS, args, input)
    }

    /// As `run_input`, with a time limit of `secs` seconds.
    pub fn run_for(&self, ns: Ns, secs: u64, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new(need("timeout"))
            .args(["-k", "5", &secs.to_string()])
            .arg(need("ip"))
            .args(["netns", "exec", &self.ns(ns)])
            .arg(need(args[0]))
            .args(&args[1..])
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = std::io::Write::write_all(&mut stdin, input);
        }
        let out = child.wait_with_output().expect("wait client");
        eprintln!(
            "lab[{}]: {args:?} -> {}\n  stderr: {}",
            self.ns(ns),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        out
    }

    /// `curl` with the dev CA, a time limit and silent progress; extra args appended.
    pub fn curl(&self, ns: Ns, extra: &[&str]) -> Output {
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
        let ca = ca.to_string_lossy();
        let mut args = vec!["curl", "-sS", "--fail", "--max-time", "20", "--cacert", &ca];
        args.extend(extra);
        self.run(ns, &args)
    }

    /// `ssh -p PORT root@ssh.lab.test COMMAND` with the lab's key, bounded and non-interactive.
    pub fn ssh(&self, ns: Ns, port: u16, command: &str) -> Output {
        let key = self.path("client_key").to_string_lossy().into_owned();
        let port = port.to_string();
        self.run(
            ns,
            &[
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                &key,
                "-p",
                &port,
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
                "LogLevel=ERROR",
                "root@ssh.lab.test",
                command,
            ],
        )
    }

    /// SYNs that reached 10.77.2.3:443 in `srv` from the network.
    pub fn ssh443_syns(&self) -> u64 {
        let out = self.exec_ok(SRV, &["nft", "list", "counter", "inet", "pcllab", "ssh443"]);
        let mut words = out.split_whitespace();
        words
            .find(|w| *w == "packets")
            .and_then(|_| words.next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {out}"))
    }

    /// Connections sshd logged on `port` from other hosts (srv's own readiness probes excluded).
    pub fn sshd_connections(&self, port: u16) -> usize {
        let log = fs::read_to_string(self.path("sshd.events.log")).unwrap_or_default();
        let on = format!("on {SSH_V4} port {port} ");
        let own = [format!("from {WEB_V4} "), format!("from {SSH_V4} ")];
        // "Connection from IP port N on ..."; count distinct client endpoints.
        let mut seen: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Connection from") && l.contains(&on))
            .filter(|l| !own.iter().any(|o| l.contains(o)))
            .filter_map(|l| l.split(" on ").next())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    pub fn events_path(&self) -> PathBuf {
        self.path("events.jsonl")
    }

    /// Every complete line of the event file, parsed; panics on a line that is not JSON.
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.events_path()).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits for the decision event and the close event of the one connection from `source`
    /// to `dest`:`port`, and checks there is exactly one of each.
    pub fn connection(&self, source: &str, dest: &str, port: u16) -> Conn {
        let source: IpAddr = source.parse().expect("source ip");
        let dest: IpAddr = dest.parse().expect("dest ip");
        let split = |events: &[Value]| -> (Vec<Value>, Vec<Value>) {
            events
                .iter()
                .filter(|e| ip_at(e, "/source/ip") == Some(source))
                .filter(|e| ip_at(e, "/destination/ip") == Some(dest))
                .filter(|e| {
                    e.pointer("/destination/port").and_then(Value::as_u64) == Some(port.into())
                })
                .cloned()
                .partition(|e| e.pointer("/event/action").and_then(Value::as_str) != Some("closed"))
        };
        let start = Instant::now();
        loop {
            let events = self.events();
            let (decisions, closes) = split(&events);
            if !decisions.is_empty() && !closes.is_empty() {
                // Let a duplicate, if the gateway writes one, land before counting.
                std::thread::sleep(Duration::from_millis(300));
                let (decisions, closes) = split(&self.events());
                assert_eq!(
                    decisions.len(),
                    1,
                    "one decision event per connection: {decisions:#?}"
                );
                assert_eq!(
                    closes.len(),
                    1,
                    "one close event per connection: {closes:#?}"
                );
                let conn = Conn {
                    decision: decisions[0].clone(),
                    close: closes[0].clone(),
                };
                conn.check_pair();
                return conn;
            }
            assert!(
                start.elapsed() < EVENT_WAIT,
                "no decision + close event for {source} -> {dest}:{port} within {EVENT_WAIT:?}; events:\n{}",
                events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ip_at(e: &Value, pointer: &str) -> Option<IpAddr> {
    e.pointer(pointer)?.as_str()?.parse().ok()
}

/// The two events of one connection.
#[derive(Debug)]
pub struct Conn {
    pub decision: Value,
    pub close: Value,
}

impl Conn {
    /// The decision's string at a JSON pointer ("" when absent).
    pub fn d(&self, pointer: &str) -> &str {
        self.decision
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A close event's counter at a JSON pointer; panics when absent or not a number.
    pub fn close_u64(&self, pointer: &str) -> u64 {
        self.close
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("close event lacks numeric {pointer}: {:#}", self.close))
    }

    /// The close event repeats the 5-tuple, carries bytes, duration and a close reason, and
    /// no threat.
    fn check_pair(&self) {
        for p in [
            "/source/ip",
            "/source/port",
            "/destination/ip",
            "/destination/port",
        ] {
            assert_eq!(
                self.decision.pointer(p),
                self.close.pointer(p),
                "close event repeats {p}"
            );
        }
        self.close_u64("/source/bytes");
        self.close_u64("/destination/bytes");
        self.close_u64("/event/duration");
        let reason = self
            .close
            .pointer("/portcullis/close_reason")
            .and_then(Value::as_str);
        assert!(
            reason.is_some_and(|r| !r.is_empty()),
            "close event lacks portcullis.close_reason: {:#}",
            self.close
        );
        assert!(
            self.close.get("threat").is_none(),
            "close events carry no threat: {:#}",
            self.close
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in [
                "portcullis.log",
                "web.log",
                "sshd.events.log",
                "events.jsonl",
            ] {
                let text = fs::read_to_string(self.path(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("---- lab {} {name} (last lines) ----", self.id);
                tail.iter().rev().for_each(|l| eprintln!("{l}"));
            }
        }
        for p in &mut self.procs {
            kill_group(p.child.id());
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if let Some(ip) = tool("ip") {
            for name in &self.namespaces {
                remove_namespace(&ip, name);
            }
        }
    }
}
