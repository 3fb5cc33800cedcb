//! Client commands run in the lab's namespaces (bounded by `timeout`) and server-side
//! evidence of what reached the servers (nft SYN counter, sshd log).

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::host::need;
use super::{Lab, Ns, CLIENT_SECS, SRV, SSH_V4, WEB_V4};

impl Lab {
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
        self.ssh_with(ns, port, &[], command)
    }

    /// As `ssh`, with extra `-o` options (e.g. a `ProxyCommand`).
    pub fn ssh_with(&self, ns: Ns, port: u16, options: &[&str], command: &str) -> Output {
        let key = self.path("client_key").to_string_lossy().into_owned();
        let port = port.to_string();
        let mut args = vec![
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
        ];
        for option in options {
            args.extend(["-o", option]);
        }
        args.extend(["root@ssh.lab.test", command]);
        self.run(ns, &args)
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
}
