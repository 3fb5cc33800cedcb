//! Lab plumbing: finding tools, running setup commands, namespaces and their network,
//! long-running processes in their own process groups, and removal of stale labs.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Lab, Ns, Proc, CB, CM, GW, READY, SRV, SSH_V4, WEB_V4};

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

pub(super) fn need(name: &str) -> PathBuf {
    tool(name).unwrap_or_else(|| panic!("the lab needs `{name}` (not found on PATH or sbin)"))
}

pub(super) fn is_root() -> bool {
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
pub(super) fn sh(program: &Path, args: &[&str]) -> String {
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

pub(super) fn kill_group(pgid: u32) {
    let _ = Command::new("bash")
        .args(["-c", &format!("kill -KILL -- -{pgid} 2>/dev/null")])
        .status();
}

/// Kills whatever still runs in a namespace, deletes it and its /etc/netns files.
pub(super) fn remove_namespace(ip: &Path, name: &str) {
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
pub(super) fn remove_stale(ip: &Path) {
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
    names.sort();
    names.dedup();
    for name in names {
        let Some(pid) = lab_pid(&name) else { continue };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            eprintln!("lab: removing stale namespace {name} of dead pid {pid}");
            remove_namespace(ip, &name);
        }
    }
}

/// `pcl<pid>-<n>-<role>` -> pid.
pub(super) fn lab_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("pcl")?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    parts.next()?.parse::<usize>().ok()?;
    matches!(parts.next()?, "cb" | "cm" | "gw" | "srv").then_some(pid)
}

impl Lab {
    pub(super) fn ip(&self, ns: Ns, args: &str) {
        let mut full = vec!["-n".to_owned(), self.ns(ns)];
        full.extend(args.split_whitespace().map(str::to_owned));
        sh(
            &need("ip"),
            &full.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }

    pub(super) fn build_network(&mut self) {
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

    pub(super) fn nft(&self, ns: Ns, file: &str, ruleset: &str) {
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
    pub(super) fn spawn(&mut self, ns: Ns, name: &'static str, program: &Path, args: &[String]) {
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
    pub(super) fn wait_tcp(&mut self, ns: Ns, host: &str, port: u16, proc: &'static str) {
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
}
